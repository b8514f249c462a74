"""Failure detection on a real corosync lab, beside corosync's own timers, and the cost of
`pvectl status` beside the raw `corosync-quorumtool -siH` it wraps.

Run as root: python benchmarks/corosync_lab.py [--nodes 3] [--repeats 3] [--token MS]
It starts lab `tbench`, measures, and takes it down again.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pvectl.lab import corosync_engine
from pvectl.lab import state as lab_state
from pvectl.lab.options import UpOptions
from pvectl.targets import corosync_parse

NAME = "tbench"


def timed(argv: list[str], repeats: int) -> list[float]:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=False)
        samples.append(time.perf_counter() - started)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--token", type=int, default=None, help="default: corosync's")
    args = parser.parse_args()
    options = UpOptions(nodes=args.nodes, token=args.token)
    corosync_engine.up(NAME, options, report=print)
    try:
        state = lab_state.load(NAME)
        assert state is not None
        first = state.node(1)
        cmap = corosync_parse.parse_cmap(
            subprocess.run(
                [*corosync_engine.node_prefix(first), "corosync-cmapctl", "runtime.config.totem."],
                capture_output=True,
                text=True,
                check=False,
            ).stdout
        )
        token = int(cmap["runtime.config.totem.token"])
        consensus = int(cmap["runtime.config.totem.consensus"])
        victim = args.nodes
        rows = []
        for action, sig in (("kill", signal.SIGKILL), ("stop", signal.SIGTERM)):
            for _ in range(args.repeats):
                change = corosync_engine.stop_node(NAME, victim, sig)
                rows.append((action, change.seconds))
                back = corosync_engine.start_node(NAME, victim)
                rows.append((f"rejoin after {action}", back.seconds))
        print(
            f"\n{args.nodes} nodes, knet; corosync runtime token {token} ms, consensus "
            f"{consensus} ms: token + consensus = {(token + consensus) / 1000:.2f} s"
        )
        print(f"{'event':<22}{'median s':>10}{'min s':>8}{'max s':>8}")
        for event in dict.fromkeys(name for name, _ in rows):
            values = [v for name, v in rows if name == event and v is not None]
            if values:
                print(
                    f"{event:<22}{statistics.median(values):>10.2f}"
                    f"{min(values):>8.2f}{max(values):>8.2f}"
                )
        prefix = list(corosync_engine.node_prefix(first))
        raw = timed([*prefix, "corosync-quorumtool", "-siH"], 10)
        ours = timed(
            [
                sys.executable,
                "-m",
                "pvectl",
                "status",
                "--target",
                "lab",
                "--name",
                NAME,
                "--node",
                "1",
            ],
            10,
        )
        print(
            f"\ncorosync-quorumtool -siH in the node: median {statistics.median(raw) * 1000:.0f} ms"
        )
        print(
            f"pvectl status --target lab:          median {statistics.median(ours) * 1000:.0f} ms "
            f"({statistics.median(ours) / statistics.median(raw):.1f}x; it also runs -l, "
            "cmapctl, cfgtool and reads corosync.conf)"
        )
    finally:
        corosync_engine.down(NAME)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
