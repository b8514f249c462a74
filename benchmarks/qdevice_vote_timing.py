"""How fast real corosync-qdevice daemons get (and lose) the qdevice vote, served by
``pvectl qdevice serve`` and by corosync-qnetd, side by side.

Runs the private pvt-qd namespace lab (tests/qdevice_lab.py; root, Debian corosync
packages). Per qnetd and repeat it measures, by polling corosync-quorumtool -s every
0.3 s on the nodes:

* connect: qdevice daemons started -> both nodes show Total votes 3;
* split:   node1<->node2 link cut -> node1 quorate with 2 votes and node2 shows
           A,NV (includes corosync's own token+consensus detection, about 6.6 s);
* qnetd down: qnetd stopped -> both nodes show A,NV (qdevice's heartbeat timeouts).

Usage: sudo python benchmarks/qdevice_vote_timing.py [REPEATS]
"""

from __future__ import annotations

import signal
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.qdevice_lab import QdLab, QuorumView, available


def _until(lab: QdLab, checks: list[tuple[int, Callable[[QuorumView], bool]]]) -> float:
    start = time.monotonic()
    for node, pred in checks:
        lab.wait_for(node, pred, 120)
    return time.monotonic() - start


def one_run(kind: str) -> dict[str, float]:
    lab = QdLab(nodes=2, tls=True)
    try:
        lab.up()
        if kind == "pvectl":
            lab.start_pvectl_qnetd(lab.setup_certs_from_pvectl())
        else:
            lab.start_real_qnetd()
        t0 = time.monotonic()
        for n in (1, 2):
            lab.start_qdevice(n)
        for n in (1, 2):
            lab.wait_for(n, lambda v: v.total == 3, 120)
        figures = {"connect": time.monotonic() - t0}
        time.sleep(2)
        t0 = time.monotonic()
        lab.partition(1, 2)
        lab.wait_for(1, lambda v: v.quorate and v.total == 2 and len(v.qdevice_flags) == 1, 120)
        lab.wait_for(2, lambda v: v.qdevice_flags.get(2) == "A,NV,NMW", 120)
        figures["split"] = time.monotonic() - t0
        lab.heal()
        for n in (1, 2):
            lab.wait_for(n, lambda v: v.total == 3, 120)
        time.sleep(2)
        t0 = time.monotonic()
        lab.stop("qnetd", signal.SIGTERM)
        for n in (1, 2):
            lab.wait_for(n, lambda v, n=n: v.qdevice_flags.get(n) == "A,NV,NMW", 120)
        figures["qnetd down"] = time.monotonic() - t0
        return figures
    finally:
        lab.down()


def main() -> int:
    reason = available()
    if reason:
        print(f"skipped: {reason}")
        return 0
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    results: dict[str, list[dict[str, float]]] = {"pvectl": [], "corosync-qnetd": []}
    for _ in range(repeats):
        for kind in results:
            results[kind].append(one_run(kind))
    print(
        f"{'seconds (median of ' + str(repeats) + ')':<24} {'pvectl qnetd':>14} "
        f"{'corosync-qnetd':>15} {'ratio':>7}"
    )
    for key in ("connect", "split", "qnetd down"):
        ours = statistics.median(r[key] for r in results["pvectl"])
        real = statistics.median(r[key] for r in results["corosync-qnetd"])
        print(f"{key:<24} {ours:>14.2f} {real:>15.2f} {ours / real:>7.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
