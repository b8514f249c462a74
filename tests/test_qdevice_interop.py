"""Real corosync + real corosync-qdevice (2 nodes in namespaces) get their vote from
``pvectl qdevice serve``; the same scenarios against real corosync-qnetd give the same
corosync-quorumtool figures and flags.

Scenarios (shared/reference/corosync-lab scenario g): both nodes up; a 1:1 split where
both still reach qnetd (ffsplit gives the vote to the lowest node id only); node2
crashed (node1 + qdevice stay quorate); qnetd down with both nodes up (quorate, the
qdevice no longer votes). TLS on, with pvectl's CA in the nodes' NSS databases.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from tests.qdevice_lab import REPO, QdLab, QuorumView, available

pytestmark = [
    pytest.mark.root,
    pytest.mark.corosync,
    pytest.mark.slow,
    pytest.mark.skipif(available() is not None, reason=f"qdevice lab: {available()}"),
]

Snapshot = dict[str, dict[int, QuorumView]]


def _run_scenarios(lab: QdLab, listings: dict[str, str]) -> Snapshot:
    seen: Snapshot = {}
    for n in (1, 2):
        lab.start_qdevice(n)
    for n in (1, 2):
        lab.wait_for(n, lambda v, n=n: v.total == 3 and v.qdevice_flags.get(n) == "A,V,NMW", 90)
    time.sleep(2)
    seen["both-up"] = {n: lab.quorum(n) for n in (1, 2)}
    listings["both-up"] = lab.qnetd_listing()

    lab.partition(1, 2)
    lab.wait_members(1, 1)
    lab.wait_members(2, 1)
    lab.wait_for(1, lambda v: v.quorate and v.total == 2, 60)
    lab.wait_for(2, lambda v: not v.quorate and v.qdevice_flags.get(2) == "A,NV,NMW", 60)
    time.sleep(3)
    seen["split-1-1"] = {n: lab.quorum(n) for n in (1, 2)}
    listings["split-1-1"] = lab.qnetd_listing()
    lab.heal()
    lab.wait_members(1, 2)
    for n in (1, 2):
        lab.wait_for(n, lambda v: v.total == 3, 90)

    lab.stop("corosync2", signal.SIGKILL)
    lab.stop("qdevice2", signal.SIGKILL)
    lab.wait_members(1, 1)
    lab.wait_for(1, lambda v: v.total == 2 and v.quorate, 60)
    time.sleep(3)
    seen["node2-down"] = {1: lab.quorum(1)}

    lab.start_corosync(2)
    lab.start_qdevice(2)
    lab.wait_members(1, 2)
    for n in (1, 2):
        lab.wait_for(n, lambda v: v.total == 3, 90)
    lab.stop("qnetd", signal.SIGTERM)
    for n in (1, 2):
        lab.wait_for(n, lambda v, n=n: v.qdevice_flags.get(n) == "A,NV,NMW" and v.total == 2, 60)
    time.sleep(2)
    seen["qnetd-down"] = {n: lab.quorum(n) for n in (1, 2)}
    return seen


def _lab_run(kind: str) -> tuple[Snapshot, dict[str, str]]:
    lab = QdLab(nodes=2, tls=True)
    listings: dict[str, str] = {}
    try:
        lab.up()
        if kind == "pvectl":
            lab.start_pvectl_qnetd(lab.setup_certs_from_pvectl())
        else:
            lab.start_real_qnetd()
        return _run_scenarios(lab, listings), listings
    finally:
        lab.down()


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

    real, _ = _lab_run("corosync-qnetd")
    _print_side_by_side(ours, real)
    for scenario, views in ours.items():
        for node, view in views.items():
            assert view.figures() == real[scenario][node].figures(), (scenario, node)


def _pvectl_on_node(lab: QdLab, node: int, *args: str) -> subprocess.CompletedProcess[str]:
    argv = lab.wrap(node, ["env", f"PYTHONPATH={REPO}", sys.executable, "-m", "pvectl", *args])
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=REPO, check=False)


def test_tls_off_and_qdevice_status_on_a_real_node() -> None:
    lab = QdLab(nodes=2, tls=False)
    try:
        lab.up()
        lab.start_pvectl_qnetd(None)
        for n in (1, 2):
            lab.start_qdevice(n)
        for n in (1, 2):
            lab.wait_for(n, lambda v: v.total == 3, 90)
        time.sleep(1)
        run = _pvectl_on_node(lab, 1, "qdevice", "status", "--output-format", "json")
        assert run.returncode == 0, run.stderr
        status = json.loads(run.stdout)
        assert status["state"] == "Connected" and status["casting_vote"] is True
        assert status["tls"] == "Unsupported"
        assert status["votequorum_flags"] == "A,V,NMW"
        assert (status["device_votes"], status["device_counted"]) == (1, True)
        assert "TLS active:\t\tNo" in lab.qnetd_listing()

        lab.stop("qnetd", signal.SIGTERM)
        lab.wait_for(1, lambda v: v.total == 2, 60)
        print(lab.quorum(1).raw)
        run = _pvectl_on_node(lab, 1, "qdevice", "status", "--output-format", "json")
        assert run.returncode == 2, run.stderr
        status = json.loads(run.stdout)
        assert status["state"] != "Connected" and status["casting_vote"] is False
        assert (status["device_votes"], status["device_counted"]) == (1, False)
    finally:
        lab.down()
