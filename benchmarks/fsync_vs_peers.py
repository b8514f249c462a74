#!/usr/bin/env python3
"""pvectl perf's durable-write figures beside fio, pg_test_fsync, ioping and pveperf's loop.

All tools run in one go on the same directory (default /var/tmp), alternating in rounds
so that drift from other load hits every tool alike; medians over the rounds are
printed with ratios pvectl / peer. Targets: rates within 10 % of fio's and p99 within
20 % for the same pattern (4 KiB sequential pwrite + fsync / fdatasync, fallocated file).

    python3 benchmarks/fsync_vs_peers.py [DIR] [--seconds 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pvectl.perf import probe
from pvectl.perf.report import parse_probe_output
from pvectl.perf.run import run_probe_locally

PG_TEST_FSYNC = "/usr/lib/postgresql/15/bin/pg_test_fsync"
# pveperf's FSYNCS/SECOND loop in Perl: IO::Handle::sync is fsync(fileno) without a
# flush of PerlIO's buffer, the same order of syscalls as pveperf's fsync call.
PVEPERF_LOOP_PL = r"""
use strict; use warnings; use IO::Handle; use Time::HiRes qw(gettimeofday tv_interval);
my ($dir, $secs) = @ARGV; my $data = ('A' x 4000) . "\n";
my $t0 = [gettimeofday]; my ($count, $elapsed) = (0, 0);
for ($count = 1;; $count++) {
    open(my $fh, '>', "$dir/tf_" . ($count % 300) . ".dat") or die "open failed";
    print $fh $data; $fh->sync; close($fh);
    $elapsed = tv_interval($t0); last if $elapsed > $secs;
}
printf "FSYNCS/SECOND:     %.2f\n", $count / $elapsed;
"""


def pvectl_durable(directory: str, seconds: float, kind: str) -> dict[str, float]:
    runtime = seconds * probe.DEFAULT_RUNTIME / probe.TEST_WEIGHTS["durable"]
    args = ["--json", "--runtime", repr(runtime), "--file-size", "64m", "--no-drop-caches"]
    for test in ("cpu", "regex", "hdsize", "reads", "seek", "fsync", "dns"):
        args += ["--skip", test]
    report = parse_probe_output(run_probe_locally([*args, "--sync", kind, directory]))
    d = report.durable[0]
    assert d.latency is not None
    return {"rate": d.rate, "p50": d.latency.p50, "p99": d.latency.p99}


def pvectl_pveperf_fsyncs(directory: str, seconds: float, compat: bool) -> float:
    runtime = seconds * probe.DEFAULT_RUNTIME / probe.TEST_WEIGHTS["fsync"]
    args = ["--json", "--runtime", repr(runtime), "--no-drop-caches"]
    if compat:
        args.append("--pveperf-compat")
    for test in ("cpu", "regex", "hdsize", "reads", "seek", "durable", "dns"):
        args += ["--skip", test]
    figure = parse_probe_output(run_probe_locally([*args, directory])).figure("fsyncs_per_second")
    assert figure is not None and figure.value is not None
    return figure.value


def fio(directory: str, sync_option: str, seconds: float) -> dict[str, float]:
    """fio's etcd-style job on a fresh file each run (fio fallocates it, as pvectl does)."""
    for name in os.listdir(directory):
        if name.startswith(f"pvectl-{sync_option}."):
            os.unlink(os.path.join(directory, name))
    proc = subprocess.run(
        [
            "fio",
            f"--name=pvectl-{sync_option}",
            f"--directory={directory}",
            "--rw=write",
            "--bs=4k",
            "--size=64m",
            f"--{sync_option}=1",
            "--ioengine=sync",
            f"--runtime={seconds:g}",
            "--time_based",
            "--output-format=json",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    job = json.loads(proc.stdout[proc.stdout.index("{") :])["jobs"][0]
    pct = job["sync"]["lat_ns"]["percentile"]
    return {
        "rate": float(job["write"]["iops"]),
        "p50": pct["50.000000"] / 1000.0,
        "p99": pct["99.000000"] / 1000.0,
    }


def pg_test_fsync(directory: str) -> dict[str, float]:
    proc = subprocess.run(
        [PG_TEST_FSYNC, "-s", "2", "-f", os.path.join(directory, "pg_test_fsync.out")],
        capture_output=True,
        text=True,
        check=True,
    )
    rates: dict[str, float] = {}
    section = ""
    for line in proc.stdout.splitlines():
        if "one 8kB write" in line:
            section = "one"
        elif "two 8kB writes" in line or "two 8kB" in line:
            section = "two"
        match = re.match(r"\s+(open_datasync|fdatasync|fsync|open_sync)\s+([\d.]+) ops/sec", line)
        if match and section == "one":
            rates.setdefault(match.group(1), float(match.group(2)))
    return rates


def ioping(directory: str, flags: list[str], count: int) -> dict[str, float]:
    proc = subprocess.run(
        ["ioping", "-B", "-q", "-i", "0", "-c", str(count), *flags, directory],
        capture_output=True,
        text=True,
        check=True,
    )
    fields = proc.stdout.split()
    # -B: requests, time (ns), iops, bytes/s, min, avg, max, mdev (ns), ...
    return {"rate": float(fields[2]), "avg": float(fields[5]) / 1000.0}


def perl_pveperf_loop(directory: str, seconds: float) -> float:
    proc = subprocess.run(
        ["perl", "-e", PVEPERF_LOOP_PL, directory, f"{seconds:g}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(proc.stdout.split(":")[1])


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ratio(a: float, b: float) -> str:
    return f"{a / b:5.2f}" if b else "  n/a"


def paired_rounds(directory: str, seconds: float, rounds: int) -> dict[str, list[dict[str, Any]]]:
    """pvectl and fio back to back, order swapped every round (ABBA), so drift in the
    disk's load hits both alike; each round gives one pair per sync kind."""
    pairs: dict[str, list[dict[str, Any]]] = {"fsync": [], "fdatasync": []}
    for rnd in range(rounds):
        print(f"  round {rnd + 1}/{rounds}", file=sys.stderr, flush=True)
        for kind in ("fsync", "fdatasync") if rnd % 2 == 0 else ("fdatasync", "fsync"):
            if rnd % 2 == 0:
                mine, theirs = (
                    pvectl_durable(directory, seconds, kind),
                    fio(directory, kind, seconds),
                )
            else:
                theirs, mine = (
                    fio(directory, kind, seconds),
                    pvectl_durable(directory, seconds, kind),
                )
            pairs[kind].append({"pvectl": mine, "fio": theirs})
    return pairs


def print_pairs(title: str, pairs: dict[str, list[dict[str, Any]]]) -> None:
    """Medians of each tool, their ratio, and the spread of the per-round ratios."""
    print(f"\n{title}")
    head = (
        f"{'4 KiB seq write + ...':<26}{'pvectl':>10}{'fio':>10}{'ratio':>7}"
        "  per-round ratio: median [min-max]"
    )
    print(head)
    print("-" * len(head))
    for kind, pair_list in pairs.items():
        for field, unit in (("rate", "ops/s"), ("p50", "us"), ("p99", "us")):
            mine = median([p["pvectl"][field] for p in pair_list])
            theirs = median([p["fio"][field] for p in pair_list])
            per_round = [p["pvectl"][field] / p["fio"][field] for p in pair_list]
            spread = f"{median(per_round):.2f} [{min(per_round):.2f}-{max(per_round):.2f}]"
            label = f"{kind} {field} {unit}"
            print(f"{label:<26}{mine:>10.1f}{theirs:>10.1f}{ratio(mine, theirs):>7}  {spread}")


def ram_loop_directory(size_mib: int = 320) -> tuple[str, str, str] | None:
    """ext4 on a loop device backed by RAM (/dev/shm): the tools' own overhead, no disk."""
    if os.geteuid() != 0 or not shutil.which("losetup") or not shutil.which("mkfs.ext4"):
        return None
    image = tempfile.mktemp(prefix="pvectl-bench.", suffix=".img", dir="/dev/shm")
    with open(image, "wb") as handle:
        handle.truncate(size_mib * 1024 * 1024)
    subprocess.run(["mkfs.ext4", "-q", "-F", image], check=True)
    device = subprocess.run(
        ["losetup", "-f", "--show", image], capture_output=True, text=True, check=True
    ).stdout.strip()
    mnt = tempfile.mkdtemp(prefix="pvectl-bench-mnt.")
    subprocess.run(["mount", device, mnt], check=True)
    return image, device, mnt


def ram_loop_remove(image: str, device: str, mnt: str) -> None:
    subprocess.run(["umount", mnt], check=False)
    subprocess.run(["losetup", "-d", device], check=False)
    os.rmdir(mnt)
    os.unlink(image)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", nargs="?", default="/var/tmp")
    parser.add_argument("--seconds", type=float, default=4.0, help="per timed run")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--no-ram-control", action="store_true")
    parser.add_argument("--json", action="store_true", help="also print the raw figures")
    ns = parser.parse_args()
    for tool in ("fio", "ioping", "perl", PG_TEST_FSYNC):
        if shutil.which(tool) is None and not os.access(tool, os.X_OK):
            print(f"missing: {tool}", file=sys.stderr)
            return 69
    raw: dict[str, Any] = {}
    work = tempfile.mkdtemp(prefix="pvectl-bench.", dir=ns.directory)
    fsyncs: dict[str, list[float]] = {"honest": [], "compat": [], "perl": []}
    try:
        print(f"disk: {ns.directory}", file=sys.stderr)
        raw["disk"] = paired_rounds(work, ns.seconds, ns.rounds)
        print("pveperf loop, pg_test_fsync, ioping", file=sys.stderr)
        for _ in range(3):
            fsyncs["compat"].append(pvectl_pveperf_fsyncs(work, 3.0, compat=True))
            fsyncs["perl"].append(perl_pveperf_loop(work, 3.0))
            fsyncs["honest"].append(pvectl_pveperf_fsyncs(work, 3.0, compat=False))
        pg = pg_test_fsync(work)
        io_w = ioping(work, ["-W"], 3000)
        io_wd = ioping(work, ["-W", "-D"], 3000)
        pv_fds = pvectl_durable(work, ns.seconds, "fdatasync")
        pv_fsync = pvectl_durable(work, ns.seconds, "fsync")
        pv_dsync = pvectl_durable(work, ns.seconds, "odsync")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ram = None if ns.no_ram_control else ram_loop_directory()
    if ram is not None:
        try:
            print("control: ext4 on a RAM-backed loop device", file=sys.stderr)
            raw["ram"] = paired_rounds(ram[2], 2.0, 4)
        finally:
            ram_loop_remove(*ram)

    print(f"\nfsync_vs_peers: {ns.rounds} rounds of {ns.seconds:g} s per tool and sync kind; ")
    print("4 KiB sequential pwrite + sync through a fallocated 64 MiB file (as fio); medians")
    print_pairs(f"on {ns.directory} (same disk, tools alternating)", raw["disk"])
    if "ram" in raw:
        print_pairs("control: ext4 on a loop device in RAM (the tools' own overhead)", raw["ram"])
    print(f"\n{'other peers':<34}{'pvectl':>10}{'peer':>10}{'ratio':>7}  peer")
    for label, mine, key in (
        ("fdatasync ops/s", pv_fds["rate"], "fdatasync"),
        ("fsync ops/s", pv_fsync["rate"], "fsync"),
        ("O_DSYNC ops/s", pv_dsync["rate"], "open_datasync"),
    ):
        theirs = pg.get(key, float("nan"))
        print(f"{label:<34}{mine:>10.1f}{theirs:>10.1f}{ratio(mine, theirs):>7}  pg_test_fsync 8kB")
    for label, result, peer in (
        ("fdatasync ops/s", io_w, "ioping -W -i 0 (4k, random in 1 MiB)"),
        ("fdatasync ops/s", io_wd, "ioping -W -D -i 0 (O_DIRECT)"),
    ):
        print(
            f"{label:<34}{pv_fds['rate']:>10.1f}{result['rate']:>10.1f}"
            f"{ratio(pv_fds['rate'], result['rate']):>7}  {peer}"
        )
    compat, perl, honest = (median(fsyncs[k]) for k in ("compat", "perl", "honest"))
    print(
        f"{'FSYNCS/SECOND --pveperf-compat':<34}{compat:>10.1f}{perl:>10.1f}"
        f"{ratio(compat, perl):>7}  pveperf's loop in Perl"
    )
    print(
        f"{'FSYNCS/SECOND honest':<34}{honest:>10.1f}{perl:>10.1f}"
        f"{ratio(honest, perl):>7}  (writes before its fsync)"
    )
    if ns.json:
        print(json.dumps({"raw": raw, "fsyncs": fsyncs, "pg": pg, "ioping": [io_w, io_wd]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
