#!/usr/bin/env python3
"""pvectl perf probe: the measuring core, standard library only.

It runs unchanged on a node with nothing installed (``python3 - --json ARGS < probe.py``
over SSH), so it imports nothing from pvectl and prints one JSON document on stdout.
It measures pveperf's eight figures with pveperf's methods (``--pveperf-compat`` also
reproduces its quirks) and the durable-write section (fsync, fdatasync, O_DSYNC) with
fio's loop: pwrite one block into a fallocated file, then sync, timed with
``perf_counter_ns``.

Exit codes (same numbers as pvectl's ExitCode): 0 ok, 64 usage, 66 no such path,
73 cannot create / nowhere to write, 74 I/O error or no space left, 77 permission,
130 interrupted. On error stdout still carries a JSON document with an ``error`` object.
"""

from __future__ import annotations

import argparse
import errno
import json
import math
import mmap
import os
import random
import re
import shutil
import signal
import socket
import stat
import struct
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: the probe must start on a node's Python 3.7+
    from collections.abc import Callable, Iterator, Sequence

    Progress = Callable[[dict[str, Any]], None]

PROBE_NAME = "pvectl-perf-probe"
PROBE_VERSION = 1
PROGRESS_PREFIX = "PVECTL-PROGRESS "

EXIT_OK = 0
EXIT_USAGE = 64
EXIT_NO_INPUT = 66
EXIT_CANT_CREATE = 73
EXIT_IO = 74
EXIT_NO_PERMISSION = 77
EXIT_SOFTWARE = 70
EXIT_INTERRUPTED = 130

MIB = 1024 * 1024
GIB = 1024 * MIB
MAX_BLOCK_SIZE = 64 * MIB  # --block-size is one buffer held in memory
MAX_FILE_SIZE = 1024 * GIB  # --file-size is fallocated (and must fit an off_t)
TESTS = ("cpu", "regex", "hdsize", "reads", "seek", "fsync", "durable", "dns")
DURABLE_KINDS = ("fsync", "fdatasync", "odsync")
FSTYPES_WITHOUT_DURABILITY = frozenset({"tmpfs", "ramfs", "devtmpfs", "hugetlbfs"})
# Seconds per test for the default budget (16 s of timed tests); --runtime scales them.
TEST_WEIGHTS = {
    "regex": 1.5,
    "reads": 1.5,
    "seek": 1.5,
    "fsync": 2.0,
    "durable": 2.5,  # per kind: fsync, fdatasync, O_DSYNC
    "dns": 1.0,  # per lookup series (EXT, INT)
}
DEFAULT_RUNTIME = 16.0
QUICK_RUNTIME = 3.0
PVEPERF_SECONDS = 3.0


class ProbeError(Exception):
    """A failure the user can act on: one line and an exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class ProbeOptions:
    target: str = "/"
    fsync_dir: str | None = None  # where to write when target is a device (psutil found it)
    compat: bool = False
    runtime: float = DEFAULT_RUNTIME
    block_size: int = 4096
    file_size: int = 64 * MIB
    pattern: str = "seq"  # seq: like fio rw=write; same: one offset rewritten
    direct: bool = False
    skip: frozenset[str] = frozenset()
    sync_kinds: tuple[str, ...] = DURABLE_KINDS
    resolv_conf: str = "/etc/resolv.conf"
    dns_port: int = 53
    dns_timeout: float = 2.0
    drop_caches: bool = True

    def seconds(self, test: str) -> float:
        return TEST_WEIGHTS[test] * self.runtime / DEFAULT_RUNTIME


@dataclass
class Target:
    argument: str
    kind: str  # "directory" | "block-device"
    directory: str | None  # where the fsync tests write (None: nowhere)
    df_device: str | None  # the mount source, as df prints it
    read_device: str | None  # the block device the read tests open
    mountpoint: str | None
    fs_type: str | None
    total_bytes: int = 0
    avail_bytes: int = 0
    warnings: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- pure helpers


def percentile(sorted_values: Sequence[int], pct: float) -> int:
    """Nearest-rank percentile of already sorted values (the value, never interpolated)."""
    if not sorted_values:
        return 0
    rank = max(1, math.ceil(round(pct / 100.0 * len(sorted_values), 9)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def histogram(sorted_ns: Sequence[int], per_octave: int = 4) -> list[list[float]]:
    """Log-spaced buckets (``per_octave`` per doubling) as [low_us, high_us, count]."""
    buckets: dict[int, int] = {}
    for value in sorted_ns:
        index = math.floor(math.log2(max(value, 1)) * per_octave)
        buckets[index] = buckets.get(index, 0) + 1
    return [
        [
            round(2 ** (i / per_octave) / 1000.0, 3),
            round(2 ** ((i + 1) / per_octave) / 1000.0, 3),
            float(buckets[i]),
        ]
        for i in sorted(buckets)
    ]


def summarize_latencies(latencies_ns: Sequence[int]) -> dict[str, Any]:
    """Percentiles in microseconds, plus a histogram, from raw nanosecond timings."""
    ordered = sorted(latencies_ns)
    if not ordered:
        return {"unit": "us", "samples": 0}

    def us(ns: float) -> float:
        return round(ns / 1000.0, 3)

    return {
        "unit": "us",
        "samples": len(ordered),
        "min": us(ordered[0]),
        "mean": us(sum(ordered) / len(ordered)),
        "p50": us(percentile(ordered, 50)),
        "p90": us(percentile(ordered, 90)),
        "p99": us(percentile(ordered, 99)),
        "p99_9": us(percentile(ordered, 99.9)),
        "max": us(ordered[-1]),
        "histogram": histogram(ordered),
    }


def parse_bogomips(cpuinfo: str) -> float:
    """Sum of every ``bogomips : N.NN`` line (any case, as pveperf since 2026-08)."""
    pattern = re.compile(r"^bogomips\s*:\s*(\d+\.\d+)\s*$", re.IGNORECASE | re.MULTILINE)
    return sum(float(m) for m in pattern.findall(cpuinfo))


def parse_resolv_conf(text: str) -> tuple[list[str], str | None]:
    """Nameservers, and the search domain pveperf uses for DNS INT (one-domain line only)."""
    servers = [m for m in re.findall(r"^\s*nameserver\s+(\S+)", text, re.MULTILINE)]
    match = re.search(r"^search\s+(\S+)\s*$", text, re.MULTILINE)
    return servers, (match.group(1) if match else None)


def dns_query_packet(query_id: int, name: str) -> bytes:
    """A recursive A/IN query for ``name`` (RFC 1035 section 4.1)."""
    header = struct.pack("!HHHHHH", query_id, 0x0100, 1, 0, 0, 0)
    labels = b"".join(
        bytes([len(part)]) + part for part in (p.encode("ascii") for p in name.split(".") if p)
    )
    return header + labels + b"\x00" + struct.pack("!HH", 1, 1)


def unescape_mount_field(text: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def parse_mountinfo(text: str) -> list[dict[str, str]]:
    """Rows of /proc/self/mountinfo: mountpoint, fs_type, source, devno (major:minor)."""
    rows = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields = left.split()
        tail = right.split()
        if len(fields) < 5 or len(tail) < 2:
            continue
        rows.append(
            {
                "devno": fields[2],
                "mountpoint": unescape_mount_field(fields[4]),
                "fs_type": tail[0],
                "source": unescape_mount_field(tail[1]),
            }
        )
    return rows


def mount_containing(rows: list[dict[str, str]], path: str) -> dict[str, str] | None:
    """The mount a path lives on: the longest matching mountpoint, the last one mounted."""
    best: dict[str, str] | None = None
    for row in rows:
        mp = row["mountpoint"]
        inside = path == mp or mp == "/" or path.startswith(mp.rstrip("/") + "/")
        if inside and (best is None or len(mp) >= len(best["mountpoint"])):
            best = row
    return best


# ---------------------------------------------------------------- environment


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return ""


def _os_error(exc: OSError, what: str) -> ProbeError:
    """Map an OSError to the documented exit code, with a one-line message."""
    reason = exc.strerror or str(exc)
    code = {
        errno.ENOENT: EXIT_NO_INPUT,
        errno.EACCES: EXIT_NO_PERMISSION,
        errno.EPERM: EXIT_NO_PERMISSION,
        errno.ENOSPC: EXIT_IO,
        errno.EDQUOT: EXIT_IO,
        errno.EIO: EXIT_IO,
        errno.EROFS: EXIT_CANT_CREATE,
        errno.ENOTDIR: EXIT_CANT_CREATE,
    }.get(exc.errno or 0, EXIT_IO)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        reason = "no space left on device"
    return ProbeError(f"{what}: {reason}", code)


def _block_device_for(devno: str, source: str) -> str | None:
    """A /dev node for the mount: its source if that is a block device, else by major:minor."""
    try:
        if stat.S_ISBLK(os.stat(source).st_mode):
            return source
    except OSError:
        pass
    uevent = _read_text(f"/sys/dev/block/{devno}/uevent")
    match = re.search(r"^DEVNAME=(\S+)$", uevent, re.MULTILINE)
    if match and os.path.exists("/dev/" + match.group(1)):
        return "/dev/" + match.group(1)
    return None


def _devnos_of_disk(rdev: int) -> list[str]:
    """The device itself first, then its partitions (a disk's filesystems live on those)."""
    own = f"{os.major(rdev)}:{os.minor(rdev)}"
    found = [own]
    base = f"/sys/dev/block/{own}"
    try:
        for entry in sorted(os.listdir(base)):
            dev = _read_text(os.path.join(base, entry, "dev")).strip()
            if dev and os.path.exists(os.path.join(base, entry, "partition")):
                found.append(dev)
    except OSError:
        pass
    return found


def resolve_target(opts: ProbeOptions) -> Target:
    """What the argument names: a directory to write in, or a block device to read."""
    arg = opts.target
    try:
        st = os.stat(arg)
    except FileNotFoundError:
        raise ProbeError(f"{arg}: no such file or directory", EXIT_NO_INPUT) from None
    except OSError as exc:
        raise _os_error(exc, arg) from None
    rows = parse_mountinfo(_read_text("/proc/self/mountinfo"))
    if stat.S_ISBLK(st.st_mode):
        mount: dict[str, str] | None = None
        if opts.fsync_dir is not None:
            mount = mount_containing(rows, os.path.realpath(opts.fsync_dir))
            directory: str | None = opts.fsync_dir
        else:
            for devno in _devnos_of_disk(st.st_rdev):
                mount = next((r for r in rows if r["devno"] == devno), None)
                if mount is not None:
                    break
            directory = mount["mountpoint"] if mount else None
        target = Target(
            argument=arg,
            kind="block-device",
            directory=directory,
            df_device=mount["source"] if mount else arg,
            read_device=arg,
            mountpoint=mount["mountpoint"] if mount else None,
            fs_type=mount["fs_type"] if mount else None,
        )
        if directory is None and not {"fsync", "durable"} <= opts.skip:
            raise ProbeError(
                f"{arg}: no mounted filesystem on this device, so there is nowhere to run the "
                "fsync tests (pvectl never writes to a raw device); mount it, or pass "
                "--skip fsync --skip durable to run the read tests only",
                EXIT_CANT_CREATE,
            )
    elif stat.S_ISDIR(st.st_mode):
        real = os.path.realpath(arg)
        mount = mount_containing(rows, real)
        read_device = None
        if mount and mount["source"].startswith("/dev/"):
            read_device = _block_device_for(mount["devno"], mount["source"])
        target = Target(
            argument=arg,
            kind="directory",
            directory=arg,
            df_device=mount["source"] if mount else None,
            read_device=read_device,
            mountpoint=mount["mountpoint"] if mount else None,
            fs_type=mount["fs_type"] if mount else None,
        )
    elif stat.S_ISREG(st.st_mode):
        raise ProbeError(
            f"{arg}: is a file; give a directory (the fsync tests write a temporary "
            "subdirectory there) or a block device",
            EXIT_CANT_CREATE,
        )
    else:
        raise ProbeError(f"{arg}: not a directory or a block device", EXIT_CANT_CREATE)
    statvfs_path = target.directory or target.mountpoint
    if statvfs_path:
        vfs = os.statvfs(statvfs_path)
        target.total_bytes = vfs.f_blocks * vfs.f_frsize
        target.avail_bytes = vfs.f_bavail * vfs.f_frsize
    if target.fs_type in FSTYPES_WITHOUT_DURABILITY:
        target.warnings.append(
            f"{target.directory} is on {target.fs_type}: fsync returns at once there, so the "
            "fsync figures measure memory, not a disk"
        )
    return target


def _open_device(path: str, direct: bool) -> int:
    flags = os.O_RDONLY | (os.O_DIRECT if direct else 0)
    try:
        return os.open(path, flags)
    except OSError as exc:
        raise _os_error(exc, f"unable to open {path} for reading") from None


def _drop_caches(fd: int | None, global_drop: bool) -> str:
    """Empty the page cache for what we read next; say how (goes into the method text)."""
    if global_drop:
        try:
            with open("/proc/sys/vm/drop_caches", "w") as handle:
                handle.write("3\n")
            return "drop_caches=3"
        except OSError:
            pass
    if fd is not None:
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            return "fadvise DONTNEED"
        except OSError:
            pass
    return "caches not dropped"


def _device_size(fd: int) -> int:
    return os.lseek(fd, 0, os.SEEK_END)


# ---------------------------------------------------------------- the measurements


def figure(
    key: str, label: str, value: float | None, unit: str, method: str, **extra: Any
) -> dict[str, Any]:
    return {"key": key, "label": label, "value": value, "unit": unit, "method": method, **extra}


def measure_bogomips() -> dict[str, Any]:
    value = parse_bogomips(_read_text("/proc/cpuinfo"))
    return figure(
        "cpu_bogomips",
        "CPU BOGOMIPS",
        round(value, 2),
        "BogoMIPS",
        "sum of the bogomips lines of /proc/cpuinfo (all CPUs), as pveperf",
        cpus=os.cpu_count(),
    )


def measure_regex(opts: ProbeOptions) -> dict[str, Any]:
    pattern = re.compile(r"(.+)123.?123")
    search = pattern.search
    randrange = random.randrange
    wall = time.time
    clock = time.perf_counter
    seconds = PVEPERF_SECONDS if opts.compat else opts.seconds("regex")
    start = clock()
    iterations = 0
    while True:
        search(str(randrange(1000000)) + str(int(wall())))
        iterations += 1
        elapsed = clock() - start
        if elapsed > seconds:
            break
    if opts.compat:
        # pveperf prints its loop counter: iterations - 1, over ~3 s, not divided.
        return figure(
            "regex_per_second",
            "REGEX/SECOND",
            float(iterations - 1),
            "matches per ~3 s (pveperf's raw count)",
            "pveperf-compat: count of /(.+)123.?123/ matches on rand.time strings in "
            f"{elapsed:.2f} s, not divided by time (Python re, not Perl)",
            seconds=round(elapsed, 3),
        )
    return figure(
        "regex_per_second",
        "REGEX/SECOND",
        round(iterations / elapsed, 2),
        "matches/s",
        "matches of /(.+)123.?123/ on rand.time strings per second "
        f"({iterations} in {elapsed:.2f} s; Python re, not Perl)",
        seconds=round(elapsed, 3),
    )


def measure_hdsize(target: Target) -> dict[str, Any]:
    return figure(
        "hd_size",
        "HD SIZE",
        round(target.total_bytes / GIB, 2),
        "GiB",
        "statvfs of the filesystem (df's total 1K blocks; pveperf labels GiB 'GB')",
        device=target.df_device,
        available_gib=round(target.avail_bytes / GIB, 2),
    )


def measure_reads(target: Target, opts: ProbeOptions) -> dict[str, Any]:
    assert target.read_device is not None
    fd = _open_device(target.read_device, opts.direct)
    chunk = 2 * MIB
    try:
        dropped = _drop_caches(fd, opts.compat and opts.drop_caches)
        buf = mmap.mmap(-1, chunk)  # page-aligned, as O_DIRECT needs
        seconds = opts.seconds("reads")
        total = 0
        eof = False
        clock = time.perf_counter
        start = clock()
        while True:
            try:
                got = os.readv(fd, [buf])
            except OSError as exc:
                raise _os_error(exc, f"read failed on {target.read_device}") from None
            total += got
            elapsed = clock() - start
            if got == 0 and not opts.compat:
                eof = True
                break
            if elapsed > seconds:
                break
        buf.close()
    finally:
        os.close(fd)
    access = "O_DIRECT" if opts.direct else "buffered (page cache, readahead)"
    return figure(
        "buffered_reads",
        "BUFFERED READS",
        round(total / (elapsed * MIB), 2),
        "MiB/s",
        f"sequential 2 MiB read()s of {target.read_device} from offset 0, {access}, "
        f"after {dropped}; bytes / elapsed (pveperf labels MiB 'MB')",
        device=target.read_device,
        bytes=total,
        seconds=round(elapsed, 3),
        reached_end=eof,
    )


def measure_seek(target: Target, opts: ProbeOptions) -> dict[str, Any]:
    assert target.read_device is not None
    fd = _open_device(target.read_device, opts.direct)
    size = 4096 if opts.direct else 512
    try:
        dropped = _drop_caches(fd, opts.compat and opts.drop_caches)
        span = target.total_bytes if opts.compat and target.total_bytes else _device_size(fd)
        span = min(span, _device_size(fd))
        slots = max(1, span // size)
        buf = mmap.mmap(-1, 4096)
        view = memoryview(buf)[:size]
        seconds = opts.seconds("seek")
        rng = random.Random()
        latencies: list[int] = []
        append = latencies.append
        clock = time.perf_counter_ns
        preadv = os.preadv
        deadline = clock() + int(seconds * 1e9)
        start = clock()
        while True:
            offset = rng.randrange(slots) * size
            t0 = clock()
            try:
                got = preadv(fd, [view], offset)
            except OSError as exc:
                raise _os_error(exc, f"read failed on {target.read_device}") from None
            t1 = clock()
            if got != size:
                raise ProbeError(f"read failed on {target.read_device}: short read", EXIT_IO)
            append(t1 - t0)
            if t1 > deadline:
                break
        elapsed_ns = clock() - start
        view.release()
        buf.close()
    finally:
        os.close(fd)
    count = len(latencies)
    access = "O_DIRECT 4 KiB" if opts.direct else "buffered 512 B"
    return figure(
        "average_seek_time",
        "AVERAGE SEEK TIME",
        round(elapsed_ns / count / 1e6, 2),
        "ms",
        f"{access} reads at random aligned offsets of {target.read_device} over "
        f"{span / GIB:.1f} GiB, after {dropped}; elapsed / reads",
        device=target.read_device,
        reads=count,
        seconds=round(elapsed_ns / 1e9, 3),
        latency=summarize_latencies(latencies),
    )


def measure_pveperf_fsync(workdir: str, opts: ProbeOptions) -> dict[str, Any]:
    """pveperf's loop over 300 recycled 4001-byte files (open O_TRUNC, write, fsync, close)."""
    if opts.compat and opts.drop_caches:
        _drop_caches(None, True)
    payload = b"A" * 4000 + b"\n"
    subdir = os.path.join(workdir, "pveperf")
    os.mkdir(subdir)
    names = [os.path.join(subdir, f"tf_{i}.dat") for i in range(300)]
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    seconds = opts.seconds("fsync")
    clock = time.perf_counter_ns
    fsync, write, osopen, close = os.fsync, os.write, os.open, os.close
    latencies: list[int] = []
    append = latencies.append
    compat = opts.compat
    count = 0
    start = clock()
    deadline = start + int(seconds * 1e9)
    while True:
        count += 1
        fd = osopen(names[count % 300], flags, 0o644)
        try:
            if compat:  # Perl's buffered print reaches the file only at close
                t0 = clock()
                fsync(fd)
                t1 = clock()
                write(fd, payload)
            else:
                write(fd, payload)
                t0 = clock()
                fsync(fd)
                t1 = clock()
        finally:
            close(fd)
        append(t1 - t0)
        if clock() > deadline:
            break
    elapsed = (clock() - start) / 1e9
    order = (
        "open(O_TRUNC), fsync, write 4001 B, close (pveperf's real syscall order: the fsync "
        "persists an empty file)"
        if compat
        else "open(O_TRUNC), write 4001 B, fsync, close (the durable write pveperf means)"
    )
    return figure(
        "fsyncs_per_second",
        "FSYNCS/SECOND",
        round(count / elapsed, 2),
        "fsyncs/s",
        f"{order}, over 300 recycled files; files / elapsed",
        files=count,
        seconds=round(elapsed, 3),
        latency=summarize_latencies(latencies),
    )


def lay_out_file(path: str, size: int) -> None:
    """Reserve the file as fio does for a write job (fallocate: allocated, unwritten
    extents; etcd preallocates its WAL segments the same way), then sync the metadata."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.posix_fallocate(fd, 0, size)
        os.fsync(fd)
    finally:
        os.close(fd)


def measure_durable(path: str, kind: str, opts: ProbeOptions, laid_out: int) -> dict[str, Any]:
    """fio's ``--rw=write --ioengine=sync --fsync=1`` (or fdatasync=1, or sync=dsync) loop."""
    bs = opts.block_size
    size = max(bs, laid_out // bs * bs)
    flags = os.O_WRONLY | (os.O_DSYNC if kind == "odsync" else 0)
    fd = os.open(path, flags)
    buf = os.urandom(bs)
    clock = time.perf_counter_ns
    pwrite = os.pwrite
    sync = os.fdatasync if kind == "fdatasync" else os.fsync
    step = bs if opts.pattern == "seq" else 0
    latencies: list[int] = []
    append = latencies.append
    seconds = opts.seconds("durable")
    offset = 0
    try:
        start = clock()
        deadline = start + int(seconds * 1e9)
        if kind == "odsync":
            t1 = start
            while t1 <= deadline:
                t0 = clock()
                pwrite(fd, buf, offset)
                t1 = clock()
                append(t1 - t0)
                offset += step
                if offset >= size:
                    offset = 0
        else:
            t1 = start
            while t1 <= deadline:
                pwrite(fd, buf, offset)
                t0 = clock()
                sync(fd)
                t1 = clock()
                append(t1 - t0)
                offset += step
                if offset >= size:
                    offset = 0
        end = t1
    finally:
        os.close(fd)
    count = len(latencies)
    elapsed = (end - start) / 1e9
    where = f"sequential through a fallocated {size / MIB:g} MiB file" if step else "one offset"
    if kind == "odsync":
        method = f"pwrite {bs} B with O_DSYNC, {where}; latency = the write call"
    else:
        method = f"pwrite {bs} B then {kind}, {where}; latency = the {kind} call"
    return {
        "kind": kind,
        "rate": round(count / elapsed, 2),
        "rate_unit": "ops/s",
        "ops": count,
        "seconds": round(elapsed, 3),
        "block_size": bs,
        "pattern": opts.pattern,
        "method": method + " (as fio --ioengine=sync)",
        "latency": summarize_latencies(latencies),
    }


def dns_series(
    servers: list[str], domain: str, opts: ProbeOptions, seconds: float
) -> dict[str, Any]:
    """pveperf's DNS loop: A queries for random names until 101 queries or the time is up."""
    rng = random.Random()
    latencies: list[int] = []
    failures = 0
    timeout = max(0.2, min(opts.dns_timeout, seconds))  # one dead server cannot eat the run
    clock = time.perf_counter_ns
    start = clock()
    count = 0
    while True:
        count += 1
        name = f"test{rng.randrange(1000000)}.{domain}"
        t0 = clock()
        if not _dns_lookup(servers, name, timeout, opts.dns_port, rng):
            failures += 1
        latencies.append(clock() - t0)
        elapsed = (clock() - start) / 1e9
        if count > 100 or elapsed > seconds:
            break
    return {
        "value": round(elapsed * 1000 / count, 2),
        "queries": count,
        "failures": failures,
        "seconds": round(elapsed, 3),
        "timeout_s": timeout,
        "latency": summarize_latencies(latencies),
    }


def _dns_lookup(
    servers: list[str], name: str, timeout: float, port: int, rng: random.Random
) -> bool:
    """One query, servers in order (Net::DNS with retry=1); True when any server answered."""
    for server in servers:
        family = socket.AF_INET6 if ":" in server else socket.AF_INET
        query_id = rng.randrange(65536)
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.settimeout(timeout)
            try:
                sock.sendto(dns_query_packet(query_id, name), (server, port))
                deadline = time.monotonic() + timeout
                while True:
                    sock.settimeout(max(0.001, deadline - time.monotonic()))
                    reply = sock.recv(4096)
                    if len(reply) >= 2 and struct.unpack("!H", reply[:2])[0] == query_id:
                        return True
            except OSError:
                continue
    return False


def measure_dns(opts: ProbeOptions) -> list[dict[str, Any]]:
    text = _read_text(opts.resolv_conf)
    servers, search_domain = parse_resolv_conf(text)
    if not servers:
        servers = ["127.0.0.1"]  # the resolver library default
    seconds = opts.seconds("dns")
    out = []
    ext_domain = f"nonexistent{int(time.time())}{random.randrange(1000000)}.com"
    ext = dns_series(servers, ext_domain, opts, seconds)
    method = (
        f"mean time of {ext['queries']} A queries for random names under a nonexistent .com "
        f"domain to {servers[0]} (timeout {ext['timeout_s']:g} s); elapsed / queries"
    )
    out.append(figure("dns_ext", "DNS EXT", ext.pop("value"), "ms", method, servers=servers, **ext))
    if search_domain:
        internal = dns_series(servers, search_domain, opts, seconds)
        out.append(
            figure(
                "dns_int",
                "DNS INT",
                internal.pop("value"),
                "ms",
                f"as DNS EXT, names under the resolv.conf search domain {search_domain}",
                domain=search_domain,
                servers=servers,
                **internal,
            )
        )
    return out


# ---------------------------------------------------------------- the run


@contextmanager
def temporary_workdir(directory: str) -> Iterator[str]:
    """A private subdirectory, removed on every way out (signals blocked while removing)."""
    try:
        workdir = tempfile.mkdtemp(prefix=f"pvectl-perf.{os.getpid()}.", dir=directory)
    except OSError as exc:
        raise _os_error(exc, f"cannot create a test directory in {directory}") from None
    try:
        yield workdir
    finally:
        blocked = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
        old = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
        try:
            shutil.rmtree(workdir, ignore_errors=True)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)


def run(opts: ProbeOptions, progress: Progress | None = None) -> dict[str, Any]:
    """Every measurement in pveperf's order (durable section after FSYNCS), as one dict."""
    say = progress or (lambda event: None)
    started = time.monotonic()
    target = resolve_target(opts)
    warnings = list(target.warnings)
    figures: list[dict[str, Any]] = []
    durable: list[dict[str, Any]] = []

    def step(test: str, label: str, seconds: float) -> None:
        say({"event": "begin", "test": test, "label": label, "seconds": round(seconds, 2)})

    reads_wanted = bool({"reads", "seek"} - opts.skip)
    if reads_wanted and target.read_device is not None:
        try:
            fd = _open_device(target.read_device, opts.direct)
            if not target.total_bytes:  # an unmounted device: its own size
                target.total_bytes = _device_size(fd)
            os.close(fd)
        except ProbeError as exc:
            if target.kind == "block-device":
                raise
            warnings.append(f"read tests skipped: {exc}")
            target.read_device = None
    writes_wanted = bool({"fsync", "durable"} - opts.skip) and target.directory is not None
    if writes_wanted and target.total_bytes == 0:  # proc, sysfs...: no storage behind it
        raise ProbeError(
            f"{target.directory}: not a writable filesystem ({target.fs_type or 'virtual'}, "
            "no storage behind it); give a directory on a disk, or pass --skip fsync "
            "--skip durable",
            EXIT_CANT_CREATE,
        )
    if writes_wanted and target.avail_bytes == 0:
        raise ProbeError(f"{target.directory}: no space left on device", EXIT_IO)

    if "cpu" not in opts.skip:
        step("cpu", "CPU BOGOMIPS", 0)
        figures.append(measure_bogomips())
    if "regex" not in opts.skip:
        step("regex", "REGEX/SECOND", PVEPERF_SECONDS if opts.compat else opts.seconds("regex"))
        figures.append(measure_regex(opts))
    if "hdsize" not in opts.skip and target.df_device and target.total_bytes:
        figures.append(measure_hdsize(target))
    if target.read_device is not None:
        if "reads" not in opts.skip:
            step("reads", "BUFFERED READS", opts.seconds("reads"))
            figures.append(measure_reads(target, opts))
        if "seek" not in opts.skip:
            step("seek", "AVERAGE SEEK TIME", opts.seconds("seek"))
            figures.append(measure_seek(target, opts))
    elif reads_wanted and not any("read tests skipped" in w for w in warnings):
        warnings.append(
            f"read tests skipped: {target.df_device or target.argument} is not a block device "
            "(ZFS, tmpfs, NFS, overlay...), as pveperf"
        )
    if writes_wanted:
        assert target.directory is not None
        with temporary_workdir(target.directory) as workdir:
            try:
                if "fsync" not in opts.skip:
                    step("fsync", "FSYNCS/SECOND", opts.seconds("fsync"))
                    figures.append(measure_pveperf_fsync(workdir, opts))
                if "durable" not in opts.skip:
                    step("layout", "laying out the test file", 0)
                    data = os.path.join(workdir, "durable.dat")
                    laid_out = max(opts.block_size, opts.file_size)
                    lay_out_file(data, laid_out)
                    for kind in opts.sync_kinds:
                        step(kind, kind, opts.seconds("durable"))
                        durable.append(measure_durable(data, kind, opts, laid_out))
            except OSError as exc:
                raise _os_error(exc, f"writing in {target.directory}") from None
    if "dns" not in opts.skip:
        step("dns", "DNS", 2 * opts.seconds("dns"))
        figures.extend(measure_dns(opts))
    say({"event": "done"})
    return {
        "probe": PROBE_NAME,
        "probe_version": PROBE_VERSION,
        "hostname": socket.gethostname(),
        "mode": "pveperf-compat" if opts.compat else "honest",
        "target": {
            "argument": target.argument,
            "kind": target.kind,
            "directory": target.directory,
            "device": target.df_device,
            "read_device": target.read_device,
            "mountpoint": target.mountpoint,
            "fs_type": target.fs_type,
            "size_bytes": target.total_bytes,
            "available_bytes": target.avail_bytes,
        },
        "settings": {
            "runtime_s": opts.runtime,
            "block_size": opts.block_size,
            "file_size": opts.file_size,
            "pattern": opts.pattern,
            "direct_reads": opts.direct,
            "skipped": sorted(opts.skip),
        },
        "figures": figures,
        "durable": durable,
        "warnings": warnings,
        "elapsed_s": round(time.monotonic() - started, 3),
    }


# ---------------------------------------------------------------- command line


def parse_size(text: str, maximum: int = MAX_FILE_SIZE) -> int:
    """``4096``, ``4k``, ``64m``, ``1g`` (KiB units) in [512, maximum] bytes."""
    match = re.fullmatch(r"\s*([0-9]+)\s*([kmg]?)(i?b?)\s*", text.lower())
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text[:40]!r} (e.g. 4096, 4k, 64m)")
    scale = {"": 1, "k": 1024, "m": MIB, "g": GIB}[match.group(2)]
    digits = match.group(1).lstrip("0") or "0"
    value = int(digits) * scale if len(digits) <= 20 else maximum + 1
    if value < 512:
        raise argparse.ArgumentTypeError(f"size too small: {text[:40]!r} (at least 512)")
    if value > maximum:
        raise argparse.ArgumentTypeError(
            f"size too large: {text[:40]!r} (at most {maximum // MIB}m)"
        )
    return value


def parse_block_size(text: str) -> int:
    """A durable-write block: it becomes one buffer in memory, so at most 64 MiB."""
    return parse_size(text, MAX_BLOCK_SIZE)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="probe.py", description="pvectl perf probe (stdlib only; prints JSON)."
    )
    parser.add_argument("target", nargs="?", default="/", help="directory or block device")
    parser.add_argument("--json", action="store_true", help="JSON output (the only format)")
    parser.add_argument("--fsync-dir", help="with a device: the directory to write in")
    parser.add_argument("--pveperf-compat", action="store_true")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_RUNTIME:g} s of tests")
    parser.add_argument("--runtime", type=float, help="seconds of timed tests (default 16)")
    parser.add_argument("--block-size", type=parse_block_size, default=4096)
    parser.add_argument("--file-size", type=parse_size, default=None)
    parser.add_argument("--pattern", choices=("seq", "same"), default="seq")
    parser.add_argument("--direct", action="store_true", help="O_DIRECT reads")
    parser.add_argument("--skip", action="append", choices=TESTS, default=[])
    parser.add_argument(
        "--sync", action="append", choices=DURABLE_KINDS, help="durable kinds (default: all)"
    )
    parser.add_argument("--resolv-conf", default="/etc/resolv.conf")
    parser.add_argument("--dns-port", type=int, default=53)
    parser.add_argument("--dns-timeout", type=float, default=2.0)
    parser.add_argument("--no-drop-caches", action="store_true")
    parser.add_argument("--progress", action="store_true", help="progress lines on stderr")
    return parser


def options_from_args(argv: Sequence[str]) -> ProbeOptions:
    """Parse probe arguments; bad ones raise ProbeError(EXIT_USAGE), never SystemExit."""

    class _Parser(argparse.ArgumentParser):
        def error(self, message: str) -> Any:
            raise ProbeError(message, EXIT_USAGE)

    parser = build_parser()
    parser.__class__ = _Parser
    ns = parser.parse_args(list(argv))
    runtime = ns.runtime if ns.runtime is not None else (QUICK_RUNTIME if ns.quick else None)
    if runtime is not None and not 0.05 <= runtime <= 3600:
        raise ProbeError("--runtime must be between 0.05 and 3600 seconds", EXIT_USAGE)
    file_size = ns.file_size or (16 * MIB if ns.quick else 64 * MIB)
    return ProbeOptions(
        target=ns.target,
        fsync_dir=ns.fsync_dir,
        compat=ns.pveperf_compat,
        runtime=runtime if runtime is not None else DEFAULT_RUNTIME,
        block_size=ns.block_size,
        file_size=max(file_size, ns.block_size),
        pattern=ns.pattern,
        direct=ns.direct,
        skip=frozenset(ns.skip),
        sync_kinds=tuple(k for k in DURABLE_KINDS if k in ns.sync) if ns.sync else DURABLE_KINDS,
        resolv_conf=ns.resolv_conf,
        dns_port=ns.dns_port,
        dns_timeout=ns.dns_timeout,
        drop_caches=not ns.no_drop_caches,
    )


def error_document(message: str, exit_code: int) -> dict[str, Any]:
    return {
        "probe": PROBE_NAME,
        "probe_version": PROBE_VERSION,
        "error": {"message": message, "exit_code": exit_code},
    }


def run_argv(argv: Sequence[str], progress: Progress | None = None) -> tuple[int, str]:
    """Parse, measure, serialize: (exit code, JSON text). Interrupts are re-raised."""
    try:
        doc = run(options_from_args(argv), progress)
    except OSError as exc:  # anything not mapped where it happened
        mapped = _os_error(exc, "perf probe")
        return mapped.exit_code, json.dumps(error_document(str(mapped), mapped.exit_code))
    except ProbeError as exc:
        return exc.exit_code, json.dumps(error_document(str(exc), exc.exit_code))
    return EXIT_OK, json.dumps(doc)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _raise_interrupt)

    def progress(event: dict[str, Any]) -> None:
        sys.stderr.write(PROGRESS_PREFIX + json.dumps(event) + "\n")
        sys.stderr.flush()

    try:
        code, text = run_argv(args, progress if "--progress" in args else None)
    except KeyboardInterrupt:
        code, text = EXIT_INTERRUPTED, json.dumps(error_document("interrupted", 130))
    except Exception as exc:  # a bug: still one JSON document for the caller to read
        message = f"internal error in the perf probe: {type(exc).__name__}: {exc}"
        code, text = EXIT_SOFTWARE, json.dumps(error_document(message, EXIT_SOFTWARE))
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
    return code


if __name__ == "__main__":
    sys.exit(main())
