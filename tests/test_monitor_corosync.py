"""``pvectl exporter`` and ``pvectl watch`` against real corosync: a 3-node corosync lab
(``lab up --engine corosync``), scraped by a real Prometheus (knet links going down under
``lab partition``), and the dashboard over SSH (one real sshd inside each node) in tmux,
marking a node stale when its sshd goes away.

Names: labs ``tmcs*``, our own namespaces ``pvt-mon*`` only.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.prometheus_harness import (
    Prometheus,
    TmuxPane,
    exporter_command,
    first_scrape,
    prometheus_skip_reason,
    wait_for,
)
from tests.helpers.sshd_harness import (
    SshLab,
    corosync_lab_with_sshd,
    free_port,
    sshd_skip_reason,
)


def _skip_reason() -> str | None:
    reason = sshd_skip_reason() or prometheus_skip_reason()
    if reason:
        return reason
    if shutil.which("corosync") is None:
        return "needs the Debian package corosync"
    if shutil.which("tmux") is None:
        return "needs tmux"
    return None


pytestmark = [
    pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason())),
    pytest.mark.root,
    pytest.mark.corosync,
    pytest.mark.slow,
]

LAB = f"tmcs{os.getpid() % 100000}"
CLIENT_NS = f"pvt-mon-c{os.getpid() % 100000}"


class Lab(SshLab):
    """The shared SSH lab, with this module's way of running pvectl in it."""

    def lab(self, *args: str) -> None:
        run = subprocess.run(
            [sys.executable, "-m", "pvectl", "lab", *args, "--name", self.name],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert run.returncode == 0, run.stderr


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("monlab")
    with corosync_lab_with_sshd(LAB, root, CLIENT_NS, 201, "pvtmon") as made:
        yield Lab(**vars(made))


def test_exporter_on_corosync_sees_knet_links_go_down_under_partition(lab: Lab) -> None:
    port = free_port()
    exporter = subprocess.Popen(
        exporter_command(
            sys.executable, "--target", "lab", "--name", lab.name,
            "--listen", f"127.0.0.1:{port}", "--interval", "1",
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    prometheus = Prometheus(lab.root / "prometheus", f"127.0.0.1:{port}")
    try:
        scrape = first_scrape(port, 60)
        assert "pvectl_token_rotation_seconds" in scrape
        prometheus.start()
        wait_for(
            lambda: prometheus.query("pvectl_quorate") == {f"node{n}": 1.0 for n in (1, 2, 3)},
            60,
            "pvectl_quorate 1 on every node",
        )
        links = prometheus.query("pvectl_link_up")
        assert links == {f"node{a}->{b}": 1.0 for a in (1, 2, 3) for b in (1, 2, 3) if a != b}
        assert prometheus.query("pvectl_link_latency_seconds")  # knet measured something
        before = prometheus.query("pvectl_membership_changes_total")["node1"]
        lab.lab("partition", "1,2", "3")
        try:
            wait_for(
                lambda: prometheus.query("pvectl_link_up").get("node1->3") == 0.0,
                60,
                "knet link from node1 to node3 down",
            )
            wait_for(
                lambda: (
                    prometheus.query("pvectl_membership_changes_total").get("node1", 0) > before
                ),
                60,
                "the partition as a membership change",
            )
            wait_for(lambda: prometheus.query("pvectl_quorate").get("node3") == 0.0, 30, "3 alone")
            assert prometheus.query("pvectl_link_errors")["node1"] == 1.0
        finally:
            lab.lab("heal")
        wait_for(lambda: prometheus.query("pvectl_members").get("node3") == 3.0, 60, "healed")
        assert exporter.poll() is None
    finally:
        prometheus.stop()
        exporter.terminate()
        exporter.wait(10)
    assert exporter.returncode == 0, exporter.stderr.read() if exporter.stderr else ""


def _sshd_sessions(namespace: str) -> list[int]:
    """sshd processes left in a node's namespace once its listener is stopped: the
    per-connection ones our sshd forked (a dead host takes them down too)."""
    out = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True)
    pids = []
    for text in out.stdout.split():
        try:
            comm = Path(f"/proc/{text}/comm").read_text().strip()
        except OSError:
            continue
        if comm.startswith("sshd"):
            pids.append(int(text))
    return pids


def test_watch_over_ssh_in_tmux_shows_kill_then_stale(lab: Lab) -> None:
    env = " ".join(
        f"{k}={shlex.quote(v)}"
        for k, v in lab.home.env().items()
        if k in ("HOME", "XDG_CONFIG_HOME", "NO_COLOR", "PATH")
    )
    hosts = " ".join(f"--host node{n}" for n in (1, 2, 3))
    command = (
        f"ip netns exec {CLIENT_NS} env {env} TERM=xterm {shlex.quote(sys.executable)} "
        f"-m pvectl watch {hosts} --interval 1 --connect-timeout 3"
    )
    pane = TmuxPane("watch", command, lab.root / "tmux.sock")
    pane.start()
    try:
        screen = pane.wait_screen(lambda s: s.count(" ok") >= 3, 90, "rows")
        assert "failures survivable: 1" in screen, screen
        lab.lab("kill", "3")
        # Both events must show; the log is a few lines at 80x24, so under load (more link
        # events at once) one may scroll off before the other appears: collect across frames.
        seen: set[str] = set()

        def both_events(screen: str) -> bool:
            seen.update(e for e in ("left 3", "node3 not answering") if e in screen)
            return len(seen) == 2

        pane.wait_screen(both_events, 60, "the kill in the event log")
        sshd = lab.sshds[2]
        sshd.stop()
        for pid in _sshd_sessions(lab.state.node(2).namespace):
            os.kill(pid, signal.SIGTERM)
        screen = pane.wait_screen(
            lambda s: any(line.startswith("node2") and "STALE" in line for line in s.splitlines()),
            60,
            "node2 marked stale",
        )
        assert "node2 not answering" in screen
        row = next(line for line in screen.splitlines() if line.startswith("node2"))
        assert "1,2" in row  # the last known members are kept
        assert pane.alive()
        pane.keys("q")
        wait_for(lambda: not pane.alive(), 15, "q to quit")
    finally:
        pane.stop()
