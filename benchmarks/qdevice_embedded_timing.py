"""How fast embedded pvectl nodes get (and lose) the qdevice vote, from pvectl's qnetd and
from the real corosync-qnetd, side by side; to compare with real corosync +
corosync-qdevice, see benchmarks/qdevice_vote_timing.py (README "QDevice").

A 2-node embedded lab (``pvectl lab up 2 --qdevice``, token 1000 ms, TLS on). Polling
each node's control socket every 0.05 s, per qnetd kind and repeat:

* connect:    ``lab qnetd start`` returned -> both nodes show Total votes 3 (includes the
              clients' random reconnect delay, 0..4.5 s, as corosync-qdevice);
* split:      ``lab partition 1 2`` -> node1 quorate with 2 votes and node2 A,NV (includes
              Totem's failure detection, token 1000 ms + consensus);
* qnetd down: SIGTERM to the lab's qnetd -> both nodes A,NV.

The split includes the start-up of the ``pvectl lab partition`` command (~0.5-1 s).

Usage: python benchmarks/qdevice_embedded_timing.py [REPEATS]   (root adds corosync-qnetd)
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
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pvectl.lab import state as lab_state  # noqa: E402
from pvectl.node import control_socket  # noqa: E402

SUBNETS = {"pvectl": "127.77.235.0/24", "corosync": "127.77.236.0/24"}


def cli(*args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "pvectl", *args], cwd=REPO, check=True, capture_output=True
    )


def status(lab: str, node: int) -> dict[str, Any]:
    sock = lab_state.lab_dir(lab) / f"node{node}" / "control.sock"
    result: dict[str, Any] = control_socket.call(sock, "status", timeout=5.0)["status"]
    return result


def column(view: dict[str, Any], node: int) -> str | None:
    return next((m["qdevice"] for m in view["members"] if m["node_id"] == node), None)


def until(ok: Callable[[], bool], timeout: float = 60) -> float:
    started = time.monotonic()
    while not ok():
        if time.monotonic() - started > timeout:
            raise TimeoutError("condition not reached")
        time.sleep(0.05)
    return time.monotonic() - started


def one_run(kind: str) -> dict[str, float]:
    lab = f"tqdeb{kind[:2]}"
    cli("lab", "down", "--name", lab)
    cli(
        "lab", "up", "2", "--qdevice", "--qnetd", kind, "--name", lab,
        "--subnet", SUBNETS[kind], "--token", "1000",
    )  # fmt: skip
    try:
        both = (1, 2)
        until(lambda: all(status(lab, n)["total_votes"] == 3 for n in both))
        out: dict[str, float] = {}
        started = time.monotonic()
        cli("lab", "partition", "1", "2", "--name", lab)
        until(lambda: status(lab, 1)["quorate"] and status(lab, 1)["total_votes"] == 2)
        until(lambda: column(status(lab, 2), 2) == "A,NV,NMW")
        out["split"] = time.monotonic() - started
        cli("lab", "heal", "--name", lab)
        until(lambda: all(status(lab, n)["total_votes"] == 3 for n in both))
        cli("lab", "qnetd", "stop", "--name", lab)
        cli("lab", "qnetd", "start", "--name", lab)
        out["connect"] = until(lambda: all(status(lab, n)["total_votes"] == 3 for n in both))
        state = lab_state.load(lab)
        assert state is not None
        started = time.monotonic()
        os.kill(int(state.options["qdevice"]["pid"]), signal.SIGTERM)
        until(lambda: all(column(status(lab, n), n) == "A,NV,NMW" for n in both))
        out["qnetd down"] = time.monotonic() - started
        return out
    finally:
        cli("lab", "down", "--name", lab)


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    kinds = ["pvectl"]
    if os.geteuid() == 0 and shutil.which("corosync-qnetd"):
        kinds.append("corosync")
    runs: dict[str, list[dict[str, float]]] = {k: [] for k in kinds}
    for _ in range(repeats):
        for kind in kinds:
            runs[kind].append(one_run(kind))
    print(f"seconds, median of {repeats} (embedded nodes)  " + "  ".join(f"{k:>10}" for k in kinds))
    for key in ("connect", "split", "qnetd down"):
        cells = [statistics.median(r[key] for r in runs[k]) for k in kinds]
        print(f"{key:<38}" + "  ".join(f"{c:>10.2f}" for c in cells))


if __name__ == "__main__":
    main()
