"""Config-store write benchmark on a 3-node embedded lab.

Prints, for both durability modes (fsync, wal-normal) and both commit levels (local, all),
commit latency p50/p99 beside the lower bound "one token rotation + one fsync" measured on
the same disk (the rotation is Totem's own round trip, ``bench-echo``: send, agreed delivery
back on the sender).

Then writes/s with 1 and 16 concurrent writers, for the two couplings: ``decoupled`` (group
commit: one fsync covers every write applied while the previous fsync ran) and ``coupled``
(one commit per delivered write, in the protocol loop: the store's own one-fsync-per-write),
beside the disk's own fsync/s. On a disk whose fsync is cheaper than the lab's CPU cost per
write (SSDs with power-loss protection, NVMe), CPU is the ceiling and the disk ratio says
little; so the same figures are also taken on an emulated slow disk (``lab slow-disk`` adds
``--slow-ms`` to every commit, as one fsync of a rotating disk costs, batch or not).

    python benchmarks/cfs_write.py [--seconds 5] [--token 1000] [--slow-ms 8] [--writers 16]
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
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pvectl.node import control_socket

LAB = "bcfs"
PAYLOAD = base64.b64encode(b"x" * 512).decode()


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


def write(connection: control_socket.Connection, path: str, level: str) -> bool:
    """One 512-byte overwrite; a kept-open connection per writer, as the FUSE mount uses."""
    reply = connection.request(
        "write", 60, path=path, op="pwrite", offset=0, data=PAYLOAD, level=level
    )
    return bool(reply.get("ok"))


def latency(sock: Path, level: str, seconds: float) -> list[float]:
    connection = control_socket.Connection(sock)
    samples = []
    end = time.perf_counter() + seconds
    try:
        while time.perf_counter() < end:
            start = time.perf_counter()
            if write(connection, "bench/file0", level):
                samples.append((time.perf_counter() - start) * 1000)
    finally:
        connection.close()
    return samples


def throughput(sock: Path, writers: int, seconds: float) -> float:
    done = [0] * writers
    barrier = threading.Barrier(writers + 1)
    end = [0.0]

    def run(index: int) -> None:
        connection = control_socket.Connection(sock)
        write(connection, f"bench/file{index}", "local")  # connect before the clock starts
        barrier.wait()
        try:
            while time.perf_counter() < end[0]:
                if write(connection, f"bench/file{index}", "local"):
                    done[index] += 1
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(writers)]
    for thread in threads:
        thread.start()
    end[0] = time.perf_counter() + seconds
    barrier.wait()
    for thread in threads:
        thread.join()
    return sum(done) / seconds


def token_rotation_p50(sock: Path) -> float:
    """Totem's round trip on this lab: a message from node 1 back to node 1 in agreed order."""
    reply = control_socket.call(sock, "bench-echo", timeout=60, count=200, size=512)
    return float(reply["round_trip_ms"]["p50"])


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))] if ordered else 0


@dataclass
class Lab:
    env: dict[str, str]
    runtime: Path
    token: int

    @property
    def sock(self) -> Path:
        return self.runtime / "pvectl" / "lab" / LAB / "node1" / "control.sock"

    def up(self, durability: str, coupling: str, slow_ms: float, writers: int) -> None:
        self.down()
        up = pvectl(
            self.env,
            "lab",
            "up",
            "3",
            "--name",
            LAB,
            "--token",
            str(self.token),
            "--durability",
            durability,
            "--coupling",
            coupling,
        )
        if up.returncode != 0:
            raise SystemExit(f"lab up failed: {up.stderr.strip()}")
        for node in (1, 2, 3) if slow_ms else ():
            slowed = pvectl(self.env, "lab", "slow-disk", str(node), str(slow_ms), "--name", LAB)
            if slowed.returncode != 0:
                raise SystemExit(f"lab slow-disk failed: {slowed.stderr.strip()}")
        control_socket.call(self.sock, "write", timeout=60, path="bench", op="mkdir")
        for i in range(writers):
            control_socket.call(self.sock, "write", timeout=60, path=f"bench/file{i}", op="create")

    def down(self) -> None:
        pvectl(self.env, "lab", "down", "--name", LAB)


def latency_table(lab: Lab, seconds: float, disk_p50: float) -> None:
    header = f"{'durability':<11} {'level':<6} {'p50 ms':>8} {'p99 ms':>8} {'bound ms':>9}"
    print(header)
    print("-" * len(header))
    for durability in ("fsync", "wal-normal"):
        lab.up(durability, "decoupled", 0, 1)
        rotation = token_rotation_p50(lab.sock)
        # wal-normal does not fsync a commit: its bound is the rotation alone
        bound = rotation + (disk_p50 if durability == "fsync" else 0.0)
        for level in ("local", "all"):
            samples = latency(lab.sock, level, seconds)
            print(
                f"{durability:<11} {level:<6} {pct(samples, 0.5):>8.2f} "
                f"{pct(samples, 0.99):>8.2f} {bound:>9.2f}"
            )
    print(f"bound = one token rotation (Totem round trip, {rotation:.2f} ms p50 in the last")
    print("lab) + one fsync of this disk (fsync mode only)")


def throughput_table(
    lab: Lab, seconds: float, writers: int, disk: tuple[float, float], slow_ms: float
) -> None:
    disk_rate, disk_p50 = disk
    header = (
        f"{'disk':<18} {'coupling':<10} {'1 writer/s':>10} {f'{writers} writers/s':>12} "
        f"{'disk fsync/s':>12} {'vs disk':>8} {'vs coupled':>10}"
    )
    print(header)
    print("-" * len(header))
    disks = [("this disk", 0.0, disk_rate)]
    if slow_ms > 0:
        disks.append((f"+{slow_ms:g} ms/fsync", slow_ms, 1000.0 / (disk_p50 + slow_ms)))
    for label, extra, rate in disks:
        coupled_many = 0.0
        for coupling in ("coupled", "decoupled"):
            lab.up("fsync", coupling, extra, writers)
            one = throughput(lab.sock, 1, seconds)
            many = throughput(lab.sock, writers, seconds)
            if coupling == "coupled":
                coupled_many = many
            versus = f"{many / coupled_many:>9.1f}x" if coupling == "decoupled" else f"{'':>10}"
            print(
                f"{label:<18} {coupling:<10} {one:>10.0f} {many:>12.0f} {rate:>12.0f} "
                f"{many / rate:>7.1f}x {versus}"
            )
    print(
        f"vs disk = {writers} writers' writes/s / the disk's fsync/s (one fsync per write "
        "could not beat 1x; the target for group commit is >= 5x)"
    )
    print(f"vs coupled = decoupled / coupled with {writers} writers (group commit vs one")
    print("commit per delivered write, in the same lab)")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--token", type=int, default=1000)
    parser.add_argument("--writers", type=int, default=16)
    parser.add_argument(
        "--slow-ms",
        type=float,
        default=8.0,
        help="also measure on an emulated slow disk: this much per commit (0: skip)",
    )
    args = parser.parse_args()
    runtime = Path(tempfile.mkdtemp(prefix="pvectl-bench-"))
    lab = Lab(dict(os.environ, XDG_RUNTIME_DIR=str(runtime), NO_COLOR="1"), runtime, args.token)
    disk = disk_fsync(runtime, args.seconds)
    print(
        f"disk under {runtime}: {disk[0]:,.0f} fsync/s, p50 {disk[1]:.3f} ms "
        "(4 KiB write + fsync)\n"
    )
    try:
        latency_table(lab, args.seconds / 2, disk[1])
        print()
        throughput_table(lab, args.seconds, args.writers, disk, args.slow_ms)
    finally:
        lab.down()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
