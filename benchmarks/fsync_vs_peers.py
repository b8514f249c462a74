#!/usr/bin/env python3
"""pvectl perf's durable-write figures beside fio, pg_test_fsync, ioping and pveperf's loop.

All tools run in one go on the same directory (default /var/tmp), alternating in rounds
so that drift from other load hits every tool alike; medians over the rounds are
printed with ratios pvectl / peer. Targets: rates within 10 % of fio's and p99 within
20 % for the same pattern (4 KiB sequential pwrite + fsync / fdatasync, laid-out file).

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


def pvectl_durable(directory: str, seconds: float) -> dict[str, dict[str, float]]:
    runtime = seconds * probe.DEFAULT_RUNTIME / probe.TEST_WEIGHTS["durable"]
    args = ["--json", "--runtime", repr(runtime), "--file-size", "64m", "--no-drop-caches"]
    for test in ("cpu", "regex", "hdsize", "reads", "seek", "fsync", "dns"):
        args += ["--skip", test]
    report = parse_probe_output(run_probe_locally([*args, directory]))
    out = {}
    for d in report.durable:
        assert d.latency is not None
        out[d.kind] = {"rate": d.rate, "p50": d.latency.p50, "p99": d.latency.p99}
    return out


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", nargs="?", default="/var/tmp")
    parser.add_argument("--seconds", type=float, default=5.0, help="per timed test")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="also print the raw figures")
    ns = parser.parse_args()
    for tool in ("fio", "ioping", "perl", PG_TEST_FSYNC):
        if shutil.which(tool) is None and not os.access(tool, os.X_OK):
            print(f"missing: {tool}", file=sys.stderr)
            return 69
    work = tempfile.mkdtemp(prefix="pvectl-bench.", dir=ns.directory)
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in ("pvectl", "fio_fsync", "fio_fds")}
    fsyncs: dict[str, list[float]] = {"honest": [], "compat": [], "perl": []}
    try:
        # fio lays its file out without syncing it; a short untimed run per job first, so
        # that no round pays for flushing 64 MiB of layout (pvectl syncs its layout).
        fio(work, "fsync", 1)
        fio(work, "fdatasync", 1)
        for rnd in range(ns.rounds):
            print(f"round {rnd + 1}/{ns.rounds} ...", file=sys.stderr, flush=True)
            runs["pvectl"].append(pvectl_durable(work, ns.seconds))
            runs["fio_fsync"].append(fio(work, "fsync", ns.seconds))
            runs["fio_fds"].append(fio(work, "fdatasync", ns.seconds))
            fsyncs["compat"].append(pvectl_pveperf_fsyncs(work, 3.0, compat=True))
            fsyncs["perl"].append(perl_pveperf_loop(work, 3.0))
            fsyncs["honest"].append(pvectl_pveperf_fsyncs(work, 3.0, compat=False))
        pg = pg_test_fsync(work)
        io_w = ioping(work, ["-W"], 3000)
        io_wd = ioping(work, ["-W", "-D"], 3000)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def med(kind: str, tool: str, field: str) -> float:
        if tool == "pvectl":
            return median([r[kind][field] for r in runs["pvectl"]])
        return median([r[field] for r in runs[tool]])

    print(f"\nfsync_vs_peers on {ns.directory}: {ns.rounds} rounds, {ns.seconds:g} s per test, ")
    print("medians; 4 KiB sequential pwrite + sync through a laid-out 64 MiB file\n")
    head = f"{'measurement':<34}{'pvectl':>12}{'peer':>12}{'ratio':>8}  peer"
    print(head)
    print("-" * len(head))
    rows = [
        ("write+fsync ops/s", "fsync", "fio_fsync", "rate", "fio --fsync=1"),
        ("write+fsync p50 us", "fsync", "fio_fsync", "p50", "fio sync lat"),
        ("write+fsync p99 us", "fsync", "fio_fsync", "p99", "fio sync lat"),
        ("write+fdatasync ops/s", "fdatasync", "fio_fds", "rate", "fio --fdatasync=1"),
        ("write+fdatasync p50 us", "fdatasync", "fio_fds", "p50", "fio sync lat"),
        ("write+fdatasync p99 us", "fdatasync", "fio_fds", "p99", "fio sync lat"),
    ]
    for label, kind, tool, field, peer in rows:
        mine, theirs = med(kind, "pvectl", field), med(kind, tool, field)
        print(f"{label:<34}{mine:>12.1f}{theirs:>12.1f}{ratio(mine, theirs):>8}  {peer}")
    odsync = med("odsync", "pvectl", "rate")
    fdatasync = med("fdatasync", "pvectl", "rate")
    fsync = med("fsync", "pvectl", "rate")
    for label, mine, key, peer in (
        ("fdatasync ops/s (8 kB: pg)", fdatasync, "fdatasync", "pg_test_fsync one 8kB"),
        ("fsync ops/s (8 kB: pg)", fsync, "fsync", "pg_test_fsync one 8kB"),
        ("O_DSYNC ops/s (8 kB: pg)", odsync, "open_datasync", "pg_test_fsync one 8kB"),
    ):
        theirs = pg.get(key, float("nan"))
        print(f"{label:<34}{mine:>12.1f}{theirs:>12.1f}{ratio(mine, theirs):>8}  {peer}")
    for label, result, peer in (
        ("fdatasync ops/s (ioping -W)", io_w, "ioping -W -i 0 (1 MiB random)"),
        ("fdatasync ops/s (ioping -W -D)", io_wd, "ioping -W -D -i 0 (O_DIRECT)"),
    ):
        print(
            f"{label:<34}{fdatasync:>12.1f}{result['rate']:>12.1f}"
            f"{ratio(fdatasync, result['rate']):>8}  {peer}"
        )
    compat, perl, honest = (median(fsyncs[k]) for k in ("compat", "perl", "honest"))
    print(
        f"{'FSYNCS/SECOND --pveperf-compat':<34}{compat:>12.1f}{perl:>12.1f}"
        f"{ratio(compat, perl):>8}  pveperf's loop in Perl"
    )
    print(
        f"{'FSYNCS/SECOND honest':<34}{honest:>12.1f}{perl:>12.1f}"
        f"{ratio(honest, perl):>8}  (honest writes before fsync)"
    )
    if ns.json:
        print(json.dumps({"runs": runs, "fsyncs": fsyncs, "pg": pg, "ioping": [io_w, io_wd]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
