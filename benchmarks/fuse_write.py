"""What the FUSE layer costs: a config write through a FUSE mount of an embedded lab node,
beside the same write sent straight to the node's control socket (no kernel, no libfuse)
and beside a plain write + fsync of a file on this machine's disk.

Run: python benchmarks/fuse_write.py [--nodes 3] [--count 100] [--size 200] [--token MS]
It starts lab `tfusebench` in a temporary XDG_RUNTIME_DIR, measures, and removes it.
"""

from __future__ import annotations

import argparse
import base64
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pvectl.node import control_socket

NAME = "tfusebench"
MIB = 1024 * 1024


def cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "pvectl", *args], env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"pvectl {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def sample(action: Callable[[int], None], count: int) -> list[float]:
    action(-1)  # warm-up (creates the file, opens connections)
    found = []
    for i in range(count):
        started = time.perf_counter()
        action(i)
        found.append((time.perf_counter() - started) * 1000)
    return found


def row(label: str, values: list[float]) -> str:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"{label:<52}{statistics.median(values):>9.2f}{p99:>9.2f}{len(values):>6}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--size", type=int, default=200, help="bytes per config write")
    parser.add_argument("--token", type=int, default=1000, help="totem token in ms")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="pvectl-fusebench-"))
    env = dict(os.environ, XDG_RUNTIME_DIR=str(base), NO_COLOR="1")
    local_mount, all_mount = base / "local", base / "all"
    local_mount.mkdir()
    all_mount.mkdir()
    payload = os.urandom(args.size)
    cli(env, "lab", "up", str(args.nodes), "--name", NAME, "--token", str(args.token))
    try:
        cli(env, "lab", "mount", "1", str(local_mount), "--name", NAME)
        cli(env, "lab", "mount", "1", str(all_mount), "--name", NAME, "--level", "all")
        sock = base / "pvectl/lab" / NAME / "node1/control.sock"
        connection = control_socket.Connection(sock)
        encoded = base64.b64encode(payload).decode()

        def direct(level: str, data: str = encoded) -> Callable[[int], None]:
            def act(_: int) -> None:
                reply = connection.request(
                    "write", 60.0, op="put", path=f"direct-{level}.cfg", data=data, level=level
                )
                assert reply["ok"], reply

            return act

        def whole_file(mount: Path) -> Callable[[int], None]:
            def act(_: int) -> None:
                (mount / "whole.cfg").write_bytes(payload)  # O_TRUNC + write: 2 store writes

            return act

        def pwrite(mount: Path) -> Callable[[int], None]:
            fd = os.open(mount / "pwrite.cfg", os.O_CREAT | os.O_WRONLY)

            def act(_: int) -> None:
                os.pwrite(fd, payload, 0)  # one store write

            return act

        disk_file = Path(tempfile.gettempdir()) / "pvectl-fusebench.disk"

        def disk(_: int) -> None:
            with open(disk_file, "wb") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())

        big = os.urandom(MIB)

        def one_mib(_: int) -> None:
            (local_mount / "big.bin").write_bytes(big)  # 8 chunks of 128 KiB

        rows = [
            ("control socket put, level local (no FUSE)", sample(direct("local"), args.count)),
            ("FUSE pwrite on an open fd, level local", sample(pwrite(local_mount), args.count)),
            (
                "FUSE whole file (O_TRUNC + write), level local",
                sample(whole_file(local_mount), args.count),
            ),
            ("control socket put, level all (no FUSE)", sample(direct("all"), args.count)),
            ("FUSE pwrite on an open fd, level all", sample(pwrite(all_mount), args.count)),
            (
                "FUSE 1 MiB file (8 x 128 KiB), level local",
                sample(one_mib, max(5, args.count // 10)),
            ),
            (
                "control socket put 1 MiB in one write (no FUSE)",
                sample(direct("local", base64.b64encode(big).decode()), max(5, args.count // 10)),
            ),
            (f"plain file write + fsync on {tempfile.gettempdir()}", sample(disk, args.count)),
        ]
        connection.close()
        disk_file.unlink(missing_ok=True)
        print(
            f"\n{args.nodes} embedded nodes, token {args.token} ms, {args.size}-byte writes "
            "(milliseconds)"
        )
        print(f"{'write':<52}{'p50':>9}{'p99':>9}{'n':>6}")
        for label, values in rows:
            print(row(label, values))
    finally:
        for mount in (local_mount, all_mount):
            subprocess.run(
                [sys.executable, "-m", "pvectl", "lab", "umount", str(mount)],
                env=env,
                capture_output=True,
                check=False,
            )
        cli(env, "lab", "down", "--name", NAME)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
