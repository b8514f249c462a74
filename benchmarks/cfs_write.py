"""Config-store write benchmark on a 3-node embedded lab.

Prints, for both durability modes (fsync, wal-normal) and both commit levels (local, all):
commit latency p50/p99 beside the lower bound "one token rotation + one fsync" measured on
the same disk, and writes/s with 1 and 16 concurrent writers beside the disk's own
fsync/s (group commit should beat one fsync per write by 5x or more with 16 writers).

    python benchmarks/cfs_write.py [--seconds 5] [--token 1000]
"""

from __future__ import annotations

import argparse
import base64
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pvectl.node import control

LAB = "bcfs"


def pvectl(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pvectl", *args],
        env=env,
        text=True,
        capture_output=True,
        check=False,
    )


def disk_fsync(directory: Path, seconds: float) -> tuple[float, float]:
    """The disk's own rate and p50 latency of 4 KiB write + fsync (what one commit costs)."""
    path = directory / "fsync.probe"
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    block = b"\0" * 4096
    latencies = []
    end = time.perf_counter() + seconds
    try:
        while time.perf_counter() < end:
            start = time.perf_counter()
            os.pwrite(fd, block, 0)
            os.fsync(fd)
            latencies.append(time.perf_counter() - start)
    finally:
        os.close(fd)
        path.unlink()
    return len(latencies) / seconds, statistics.median(latencies) * 1000


def write(sock: Path, path: str, level: str) -> dict[str, Any]:
    return control.call(
        sock,
        "write",
        timeout=60,
        path=path,
        op="pwrite",
        offset=0,
        data=base64.b64encode(b"x" * 512).decode(),
        level=level,
    )


def latency(sock: Path, level: str, seconds: float) -> list[float]:
    samples = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        start = time.perf_counter()
        reply = write(sock, "bench/file0", level)
        if reply.get("ok"):
            samples.append((time.perf_counter() - start) * 1000)
    return samples


def throughput(sock: Path, writers: int, seconds: float) -> float:
    done = [0] * writers
    end = time.perf_counter() + seconds

    def run(index: int) -> None:
        while time.perf_counter() < end:
            if write(sock, f"bench/file{index}", "local").get("ok"):
                done[index] += 1

    threads = [threading.Thread(target=run, args=(i,)) for i in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(done) / seconds


def ordering_p50(env: dict[str, str]) -> float:
    """One token rotation as the store sees it: the 'ordering' phase of sync-trace."""
    import json

    run = pvectl(
        env,
        "sync-trace",
        "--name",
        LAB,
        "--count",
        "30",
        "--size",
        "512",
        "--output-format",
        "json",
    )
    trace = json.loads(run.stdout)
    return next(p["p50_ms"] for p in trace["phases"] if p["phase"] == "ordering")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))] if ordered else 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--token", type=int, default=1000)
    args = parser.parse_args()
    runtime = Path(tempfile.mkdtemp(prefix="pvectl-bench-"))
    env = dict(os.environ, XDG_RUNTIME_DIR=str(runtime), NO_COLOR="1")
    disk_rate, disk_p50 = disk_fsync(runtime, args.seconds)
    print(
        f"disk under {runtime}: {disk_rate:,.0f} fsync/s, p50 {disk_p50:.3f} ms "
        "(4 KiB write + fsync)"
    )
    print()
    header = (
        f"{'durability':<11} {'level':<6} {'p50 ms':>8} {'p99 ms':>8} {'bound ms':>9}  "
        f"{'1 writer/s':>10} {'16 writers/s':>12} {'16w/disk':>9}"
    )
    print(header)
    print("-" * len(header))
    try:
        for durability in ("fsync", "wal-normal"):
            up = pvectl(
                env,
                "lab",
                "up",
                "3",
                "--name",
                LAB,
                "--token",
                str(args.token),
                "--durability",
                durability,
            )
            if up.returncode != 0:
                print(up.stderr)
                return 1
            sock = runtime / "pvectl" / "lab" / LAB / "node1" / "control.sock"
            control.call(sock, "write", path="bench", op="mkdir")
            for i in range(16):
                control.call(sock, "write", path=f"bench/file{i}", op="create")
            bound = ordering_p50(env) + disk_p50
            one = throughput(sock, 1, args.seconds)
            sixteen = throughput(sock, 16, args.seconds)
            for level in ("local", "all"):
                samples = latency(sock, level, args.seconds / 2)
                print(
                    f"{durability:<11} {level:<6} {pct(samples, 0.5):>8.2f} "
                    f"{pct(samples, 0.99):>8.2f} {bound:>9.2f}  {one:>10.0f} "
                    f"{sixteen:>12.0f} {sixteen / disk_rate:>8.1f}x"
                )
            pvectl(env, "lab", "down", "--name", LAB)
    finally:
        pvectl(env, "lab", "down", "--name", LAB)
    print()
    print("bound = one token rotation (sync-trace 'ordering' p50) + one fsync of this disk;")
    print(
        "16w/disk = writes/s with 16 concurrent writers / the disk's own fsync/s "
        "(group commit wins when > 1; target >= 5x)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
