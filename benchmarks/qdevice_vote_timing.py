"""How fast real corosync-qdevice daemons get (and lose) the qdevice vote, served by
``pvectl qdevice serve`` and by corosync-qnetd, side by side.

Runs ``pvectl lab up 2 --engine corosync --qdevice --qnetd pvectl|corosync`` (root,
Debian packages corosync, corosync-qdevice, corosync-qnetd). Per qnetd and repeat it
measures, by polling corosync-quorumtool -s every 0.3 s on the nodes:

* connect: qdevice daemons (re)started -> both nodes show Total votes 3;
* split:   node1<->node2 link cut -> node1 quorate with 2 votes and node2 shows
           A,NV (includes corosync's own token+consensus detection, about 6.6 s);
* qnetd down: SIGTERM to qnetd -> both nodes show A,NV (qnetd closes the connections;
  the time does not include the qnetd process's own exit).

Usage: sudo python benchmarks/qdevice_vote_timing.py [REPEATS]
"""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pvectl.lab import netns
from pvectl.lab import state as lab_state
from pvectl.lab.qdevice import corosync as corosync_qdevice
from pvectl.lab.qdevice import qnetd as lab_qnetd
from tests.helpers.quorum_view import QuorumView, parse_quorumtool

LAB = "bench-qdvote"


def available() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    for tool in ("corosync", "corosync-qdevice", "corosync-qnetd", "nft"):
        if shutil.which(tool) is None:
            return f"{tool} not installed"
    return None


def lab(*args: str) -> None:
    argv = [sys.executable, "-m", "pvectl", "lab", *args, "--name", LAB]
    subprocess.run(argv, check=True, capture_output=True, text=True, timeout=300)


def quorum(node: int) -> QuorumView:
    argv = ["ip", "netns", "exec", netns.node_namespace(LAB, node), "corosync-quorumtool", "-s"]
    return parse_quorumtool(subprocess.run(argv, capture_output=True, text=True).stdout)


def wait_for(node: int, pred: Callable[[QuorumView], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not pred(view := quorum(node)):
        if time.monotonic() > deadline:
            raise TimeoutError(f"node{node}: condition not reached; last view:\n{view.raw}")
        time.sleep(0.3)


def one_run(kind: str) -> dict[str, float]:
    subprocess.run([sys.executable, "-m", "pvectl", "lab", "down", "--name", LAB], check=False)
    lab("up", "2", "--engine", "corosync", "--qdevice", "--qnetd", kind)
    try:
        state = lab_state.load(LAB)
        assert state is not None
        for node in state.nodes:  # lab up started them: time a fresh start
            corosync_qdevice.stop_qdevice(node, signal.SIGTERM)
        for n in (1, 2):
            wait_for(n, lambda v: v.total == 2, 120)
        t0 = time.monotonic()
        for node in state.nodes:
            corosync_qdevice.start_qdevice(node)
        for n in (1, 2):
            wait_for(n, lambda v: v.total == 3, 120)
        figures = {"connect": time.monotonic() - t0}
        time.sleep(2)
        t0 = time.monotonic()
        lab("partition", "1", "2")
        wait_for(1, lambda v: v.quorate and v.total == 2 and len(v.qdevice_flags) == 1, 120)
        wait_for(2, lambda v: v.qdevice_flags.get(2) == "A,NV,NMW", 120)
        figures["split"] = time.monotonic() - t0
        lab("heal")
        for n in (1, 2):
            wait_for(n, lambda v: v.total == 3, 120)
        time.sleep(2)
        qnetd = lab_qnetd.pid_of(state.options["qdevice"])
        assert qnetd is not None
        t0 = time.monotonic()
        os.kill(qnetd, signal.SIGTERM)  # not waiting for the process exit
        for n in (1, 2):
            wait_for(n, lambda v, n=n: v.qdevice_flags.get(n) == "A,NV,NMW", 120)
        figures["qnetd down"] = time.monotonic() - t0
        return figures
    finally:
        lab("down")


def main() -> int:
    reason = available()
    if reason:
        print(f"skipped: {reason}")
        return 0
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    results: dict[str, list[dict[str, float]]] = {"pvectl": [], "corosync": []}
    for _ in range(repeats):
        for kind in results:
            results[kind].append(one_run(kind))
    print(
        f"{'seconds (median of ' + str(repeats) + ')':<24} {'pvectl qnetd':>14} "
        f"{'corosync-qnetd':>15} {'ratio':>7}"
    )
    for key in ("connect", "split", "qnetd down"):
        ours = statistics.median(r[key] for r in results["pvectl"])
        real = statistics.median(r[key] for r in results["corosync"])
        print(f"{key:<24} {ours:>14.2f} {real:>15.2f} {ours / real:>7.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
