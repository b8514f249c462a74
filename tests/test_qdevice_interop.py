"""Real corosync + real corosync-qdevice (``pvectl lab up N --engine corosync --qdevice``)
get their vote from ``pvectl qdevice serve`` (``--qnetd pvectl``); the same scenarios
against the real corosync-qnetd (``--qnetd corosync``) give the same corosync-quorumtool
figures and flags.

Scenarios (as a real 2-node corosync + qnetd lab behaves): both nodes up; a 1:1 split where
both still reach qnetd (ffsplit gives the vote to the lowest node id only); node2
crashed (node1 + qdevice stay quorate); qnetd down with both nodes up (quorate, the
qdevice no longer votes). TLS on, each qnetd's own CA in the nodes' NSS databases.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pvectl.lab import corosync_engine, netns
from pvectl.lab import state as lab_state
from pvectl.lab.qdevice import qnetd as lab_qnetd
from tests.conftest import CliRun, run_cli
from tests.helpers.json_schema import validated
from tests.helpers.quorum_view import REPO, QuorumView, parse_quorumtool


def _unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    for tool in ("corosync", "corosync-qdevice", "corosync-qnetd", "nft"):
        if shutil.which(tool) is None:
            return f"{tool} not installed (Debian package {tool})"
    return None


pytestmark = [
    pytest.mark.root,
    pytest.mark.corosync,
    pytest.mark.slow,
    pytest.mark.skipif(_unavailable() is not None, reason=f"qdevice lab: {_unavailable()}"),
]

Snapshot = dict[str, dict[int, QuorumView]]
QNETD_COROSYNC = ("--engine", "corosync", "--qdevice", "--qnetd", "corosync")
LAB_NAMES = {  # unique to this file: other test files run in parallel
    ("ffsplit", "pvectl"): "qdi-ff-pv",
    ("ffsplit", "corosync"): "qdi-ff-co",
    ("lms", "pvectl"): "qdi-lms-pv",
    ("lms", "corosync"): "qdi-lms-co",
}


class Lab:
    """A ``pvectl lab`` corosync lab with a qdevice, driven through the CLI."""

    def __init__(self, name: str, nodes: int, qnetd: str, algorithm: str, tls: bool) -> None:
        self.name = name
        self.nodes = nodes
        self.args = ["--engine", "corosync", "--qdevice", "--qnetd", qnetd]
        self.args += ["--qdevice-algorithm", algorithm]
        self.args += [] if tls else ["--no-qdevice-tls"]

    def __enter__(self) -> Lab:
        run_cli("lab", "down", "--name", self.name)  # a run killed before its cleanup
        try:
            self.lab("up", str(self.nodes), *self.args)
        except BaseException:
            run_cli("lab", "down", "--name", self.name)
            raise
        return self

    def __exit__(self, *_: object) -> None:
        down = run_cli("lab", "down", "--name", self.name)
        assert down.code == 0, down.stderr
        assert netns.lab_namespaces(self.name) == []

    def lab(self, *args: str) -> CliRun:
        run = run_cli("lab", *args, "--name", self.name)
        assert run.code == 0, (args, run.stderr)
        return run

    @property
    def qnetd(self) -> dict[str, Any]:
        state = lab_state.load(self.name)
        assert state is not None
        info = state.options["qdevice"]
        assert isinstance(info, dict)
        return info

    def qnetd_listing(self) -> str:
        proc = subprocess.run(
            lab_qnetd.listing_command(self.qnetd),
            capture_output=True,
            text=True,
            timeout=30,
            cwd=REPO,
            env=dict(os.environ, PYTHONPATH=str(REPO)),
            check=False,
        )
        return proc.stdout

    def _tool(self, node: int, option: str) -> str:
        namespace = netns.node_namespace(self.name, node)
        argv = ["ip", "netns", "exec", namespace, "corosync-quorumtool", option]
        return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout

    def quorum(self, node: int) -> QuorumView:
        return parse_quorumtool(self._tool(node, "-s"))

    def wait_members(self, node: int, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self._tool(node, "-l")
            ids = [int(x) for x in re.findall(r"^\s+(\d+)\s+\d+", out, re.M) if int(x) != 0]
            if len(ids) == count:
                return
            time.sleep(0.2)
        raise TimeoutError(f"node{node} did not see {count} members")

    def wait_for(
        self, node: int, pred: Callable[[QuorumView], bool], timeout: float = 60
    ) -> QuorumView:
        deadline = time.monotonic() + timeout
        view = self.quorum(node)
        while time.monotonic() < deadline:
            view = self.quorum(node)
            if pred(view):
                return view
            time.sleep(0.3)
        raise TimeoutError(f"node{node}: condition not reached; last view:\n{view.raw}")

    def pvectl_on_node(self, node: int, *args: str) -> CliRun:
        """pvectl run on a lab node (its /etc/corosync, its corosync-qdevice socket)."""
        pvectl = ["env", f"PYTHONPATH={REPO}", sys.executable, "-m", "pvectl", *args]
        return run_cli("lab", "exec", str(node), "--name", self.name, "--", *pvectl)


def _run_scenarios(lab: Lab, listings: dict[str, str]) -> Snapshot:
    seen: Snapshot = {}
    for n in (1, 2):
        lab.wait_for(n, lambda v, n=n: v.total == 3 and v.qdevice_flags.get(n) == "A,V,NMW", 90)
    time.sleep(2)
    seen["both-up"] = {n: lab.quorum(n) for n in (1, 2)}
    listings["both-up"] = lab.qnetd_listing()

    lab.lab("partition", "1", "2")
    lab.wait_members(1, 1)
    lab.wait_members(2, 1)
    lab.wait_for(1, lambda v: v.quorate and v.total == 2, 60)
    lab.wait_for(2, lambda v: not v.quorate and v.qdevice_flags.get(2) == "A,NV,NMW", 60)
    time.sleep(3)
    seen["split-1-1"] = {n: lab.quorum(n) for n in (1, 2)}
    listings["split-1-1"] = lab.qnetd_listing()
    lab.lab("heal")
    lab.wait_members(1, 2)
    for n in (1, 2):
        lab.wait_for(n, lambda v: v.total == 3, 90)

    lab.lab("kill", "2")  # the node's corosync and corosync-qdevice, SIGKILL
    lab.wait_members(1, 1)
    lab.wait_for(1, lambda v: v.total == 2 and v.quorate, 60)
    time.sleep(3)
    seen["node2-down"] = {1: lab.quorum(1)}

    lab.lab("start", "2")  # corosync, then its corosync-qdevice
    lab.wait_members(1, 2)
    for n in (1, 2):
        lab.wait_for(n, lambda v: v.total == 3, 90)
    lab.lab("qnetd", "stop")
    for n in (1, 2):
        lab.wait_for(n, lambda v, n=n: v.qdevice_flags.get(n) == "A,NV,NMW" and v.total == 2, 60)
    time.sleep(2)
    seen["qnetd-down"] = {n: lab.quorum(n) for n in (1, 2)}
    return seen


def _lab_run(qnetd: str) -> tuple[Snapshot, dict[str, str]]:
    listings: dict[str, str] = {}
    with Lab(LAB_NAMES["ffsplit", qnetd], 2, qnetd, "ffsplit", tls=True) as lab:
        return _run_scenarios(lab, listings), listings


def _print_side_by_side(ours: Snapshot, real: Snapshot) -> None:
    print(f"\n{'scenario':<12} {'node':<5} {'pvectl qnetd':<58} corosync-qnetd")
    for scenario, views in ours.items():
        for node, view in views.items():
            other = real[scenario][node]
            print(f"{scenario:<12} {node:<5} {view.figures()!s:<58} {other.figures()}")


def test_real_qdevice_votes_from_pvectl_qnetd_match_real_qnetd() -> None:
    ours, our_listings = _lab_run("pvectl")

    # the figures corosync shows with pvectl's qnetd (reference lab README, scenario g)
    both = ours["both-up"][1]
    assert (both.quorate, both.expected, both.total, both.quorum) == (True, 3, 3, 2)
    assert both.flags == ("Quorate", "Qdevice")
    assert both.qdevice_flags == {1: "A,V,NMW", 2: "A,V,NMW"}
    assert both.qdevice_row == "0 1 Qdevice"
    assert "TLS active:\t\tYes (client certificate verified)" in our_listings["both-up"]

    split1, split2 = ours["split-1-1"][1], ours["split-1-1"][2]
    assert (split1.quorate, split1.total) == (True, 2)  # lowest node id wins the tie
    assert (split2.quorate, split2.total) == (False, 1)
    assert split2.qdevice_flags == {2: "A,NV,NMW"}
    assert "Vote:\t\t\tNo change (NACK)" in our_listings["split-1-1"]

    down = ours["node2-down"][1]
    assert (down.quorate, down.total, down.quorum) == (True, 2, 2)

    for node in (1, 2):
        off = ours["qnetd-down"][node]
        assert (off.quorate, off.total, off.quorum) == (True, 2, 2)
        assert off.qdevice_flags[node] == "A,NV,NMW"

    real, real_listings = _lab_run("corosync")
    _print_side_by_side(ours, real)
    # the real qnetd, enrolled by the lab as pvecm qdevice setup does, verified the clients
    assert real_listings["both-up"].count("TLS active:\t\tYes (client certificate verified)") == 2
    assert "Vote:\t\t\tNo change (NACK)" in real_listings["split-1-1"]
    for scenario, views in ours.items():
        for node, view in views.items():
            assert view.figures() == real[scenario][node].figures(), (scenario, node)


def test_tls_off_and_qdevice_status_on_a_real_node() -> None:
    with Lab("qdi-tls-off", 2, "pvectl", "ffsplit", tls=False) as lab:
        for n in (1, 2):
            lab.wait_for(n, lambda v: v.total == 3, 90)
        time.sleep(1)
        run = lab.pvectl_on_node(1, "qdevice", "status", "--output-format", "json")
        assert run.code == 0, run.stderr
        status = validated(run.stdout, "qdevice-status")
        assert status["state"] == "Connected" and status["casting_vote"] is True
        assert status["tls"] == "Unsupported"
        assert status["votequorum_flags"] == "A,V,NMW"
        assert (status["device_votes"], status["device_counted"]) == (1, True)
        assert "TLS active:\t\tNo" in lab.qnetd_listing()

        lab.lab("qnetd", "stop")
        lab.wait_for(1, lambda v: v.total == 2, 60)
        print(lab.quorum(1).raw)
        run = lab.pvectl_on_node(1, "qdevice", "status", "--output-format", "json")
        assert run.code == 2, run.stderr
        status = validated(run.stdout, "qdevice-status")
        assert status["state"] != "Connected" and status["casting_vote"] is False
        assert (status["device_votes"], status["device_counted"]) == (1, False)


def _lms_scenarios(lab: Lab) -> Snapshot:
    seen: Snapshot = {}
    for n in (1, 2, 3):
        lab.wait_for(n, lambda v: v.total == 5, 90)
    time.sleep(2)
    seen["all-up"] = {n: lab.quorum(n) for n in (1, 2, 3)}

    lab.lab("partition", "1,2", "3")
    lab.wait_members(1, 2)
    lab.wait_members(3, 1)
    lab.wait_for(1, lambda v: v.quorate and v.total == 4, 90)
    lab.wait_for(3, lambda v: not v.quorate and v.qdevice_flags.get(3) == "A,NV,NMW", 90)
    time.sleep(3)
    seen["split-2-1"] = {n: lab.quorum(n) for n in (1, 3)}
    lab.lab("heal")
    lab.wait_members(1, 3)
    for n in (1, 2, 3):
        lab.wait_for(n, lambda v: v.total == 5, 90)

    for n in (2, 3):
        lab.lab("kill", str(n))
    lab.wait_members(1, 1)
    lab.wait_for(1, lambda v: v.quorate and v.total == 3, 90)
    time.sleep(3)
    seen["last-man"] = {1: lab.quorum(1)}
    return seen


def _lms_run(qnetd: str) -> Snapshot:
    with Lab(LAB_NAMES["lms", qnetd], 3, qnetd, "lms", tls=True) as lab:
        return _lms_scenarios(lab)


def test_lms_three_nodes_last_man_standing_matches_real_qnetd() -> None:
    ours = _lms_run("pvectl")
    everyone = ours["all-up"][1]  # lms: device votes N-1 = 2, expected 5, quorum 3
    assert (everyone.quorate, everyone.expected, everyone.total, everyone.quorum) == (
        True,
        5,
        5,
        3,
    )
    assert everyone.qdevice_row == "0 2 Qdevice"
    majority, lone = ours["split-2-1"][1], ours["split-2-1"][3]
    assert (majority.quorate, majority.total) == (True, 4)
    assert (lone.quorate, lone.total) == (False, 1)
    last = ours["last-man"][1]
    assert (last.quorate, last.total, last.quorum) == (True, 3, 3)

    real = _lms_run("corosync")
    _print_side_by_side(ours, real)
    for scenario, views in ours.items():
        for node, view in views.items():
            assert view.figures() == real[scenario][node].figures(), (scenario, node)


def test_qnetd_corosync_lab_shows_its_qnetd_and_cleans_up_after_pvectl_is_killed() -> None:
    """``lab ls`` names the real qnetd; a ``lab up`` killed with SIGKILL once the qnetd
    runs leaves it behind, and ``lab down`` removes it with its namespace."""
    name = "qdi-kill"
    run_cli("lab", "down", "--name", name)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pvectl", "lab", "up", "2", "--name", name, *QNETD_COROSYNC],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=REPO,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            state = lab_state.load(name)
            info = state.options.get("qdevice") if state else None
            if info and lab_qnetd.pid_of(info) is not None:
                break
            assert proc.poll() is None and time.monotonic() < deadline, "no qnetd came up"
            time.sleep(0.05)
        listing = run_cli("lab", "ls", "--name", name)
        assert listing.code == 0, listing.stderr
        assert "qnetd (corosync-qnetd, ffsplit, TLS required) " in listing.stdout
        assert ":5403 pid " in listing.stdout
    finally:
        proc.kill()
        proc.wait()
    qnetd_pid = lab_qnetd.pid_of(info)
    assert qnetd_pid is not None, "the killed 'lab up' should have left its qnetd running"
    assert qnetd_pid in netns.namespace_pids(f"pvcl-{name}-qnetd")

    down = run_cli("lab", "down", "--name", name)
    assert down.code == 0, down.stderr
    assert f"removed pvcl-{name}-qnetd (stopped pids [{qnetd_pid}])" in down.stderr
    assert netns.wait_gone([qnetd_pid], 5) == []
    assert netns.lab_namespaces(name) == []
    assert lab_state.load(name) is None


def test_qnetd_corosync_needs_its_package_and_is_named_in_the_error(tmp_path: Path) -> None:
    """corosync and corosync-qdevice on PATH, corosync-qnetd not: a one-line error naming
    the Debian package, and no lab left behind."""
    for tool in (*corosync_engine.TOOLS, "corosync-qdevice", "ip", "unshare", "nft"):
        found = shutil.which(tool)
        if found:
            (tmp_path / tool).symlink_to(found)
    env = dict(os.environ, PATH=str(tmp_path))
    run = run_cli(
        "lab", "up", "2", "--name", "qdi-nopkg", "--engine", "corosync", "--qdevice",
        "--qnetd", "corosync", env=env,
    )  # fmt: skip
    assert run.code == 69, run.stderr
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert "install the Debian package 'corosync-qnetd'" in run.stderr
    assert lab_state.load("qdi-nopkg") is None
    assert netns.lab_namespaces("qdi-nopkg") == []
