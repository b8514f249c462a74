"""Running the probe here, and the seam for running it elsewhere.

``run_probe_locally(args)`` runs the probe in this process and returns its JSON text;
a remote transport runs ``python3 - <args> < probe.py`` on the node and hands its stdout
to the same ``parse_probe_output``. ``probe_args`` builds the argument list both use.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from pvectl.perf import probe

if TYPE_CHECKING:
    from pvectl.perf.probe import Progress

PROBE_SOURCE = Path(probe.__file__)


@dataclass(frozen=True)
class PerfOptions:
    """What the user asked for; the probe's command line is built from it."""

    target: str = "/"
    compat: bool = False
    quick: bool = False
    runtime: float | None = None
    block_size: str = "4k"
    file_size: str | None = None
    pattern: str = "seq"
    direct: bool = False
    skip: tuple[str, ...] = field(default_factory=tuple)
    sync_kinds: tuple[str, ...] = field(default_factory=tuple)  # empty: all
    resolv_conf: str | None = None
    dns_port: int | None = None
    dns_timeout: float | None = None
    drop_caches: bool = True
    pveperf_layout: bool = False  # --format pveperf: go on or stop where pveperf does


def probe_args(opts: PerfOptions, fsync_dir: str | None = None) -> list[str]:
    """The probe's argv (without the interpreter): the remote invocation contract."""
    args = ["--json"]
    if opts.compat:
        args.append("--pveperf-compat")
    if opts.quick:
        args.append("--quick")
    if opts.runtime is not None:
        args += ["--runtime", repr(opts.runtime)]
    args += ["--block-size", opts.block_size, "--pattern", opts.pattern]
    if opts.file_size is not None:
        args += ["--file-size", opts.file_size]
    if opts.direct:
        args.append("--direct")
    for test in opts.skip:
        args += ["--skip", test]
    for kind in opts.sync_kinds:
        args += ["--sync", kind]
    if opts.resolv_conf is not None:
        args += ["--resolv-conf", opts.resolv_conf]
    if opts.dns_port is not None:
        args += ["--dns-port", str(opts.dns_port)]
    if opts.dns_timeout is not None:
        args += ["--dns-timeout", repr(opts.dns_timeout)]
    if not opts.drop_caches:
        args.append("--no-drop-caches")
    if opts.pveperf_layout:
        args.append("--pveperf-layout")
    if fsync_dir is not None:
        args += ["--fsync-dir", fsync_dir]
    args += ["--", opts.target]
    return args


def mounted_directory_of(device: str) -> str | None:
    """Where a filesystem from ``device`` (or one of its partitions) is mounted, via psutil."""
    try:
        rdev = os.stat(device).st_rdev
    except OSError:
        return None
    wanted = {rdev}
    sys_dir = Path(f"/sys/dev/block/{os.major(rdev)}:{os.minor(rdev)}")
    if sys_dir.is_dir():
        for child in sys_dir.iterdir():
            dev_file = child / "dev"
            if (child / "partition").exists() and dev_file.exists():
                major, _, minor = dev_file.read_text().strip().partition(":")
                wanted.add(os.makedev(int(major), int(minor)))
    for part in psutil.disk_partitions(all=True):
        try:
            st = os.stat(part.device)
        except OSError:
            continue
        if stat.S_ISBLK(st.st_mode) and st.st_rdev in wanted:
            return part.mountpoint
    return None


def local_probe_args(opts: PerfOptions) -> list[str]:
    """probe_args, with a device's mounted filesystem found here with psutil."""
    fsync_dir = None
    try:
        is_device = stat.S_ISBLK(os.stat(opts.target).st_mode)
    except OSError:
        is_device = False  # the probe reports the missing path with its exit code
    if is_device and not {"fsync", "durable"} <= set(opts.skip):
        fsync_dir = mounted_directory_of(opts.target)
    return probe_args(opts, fsync_dir)


def run_probe_locally(args: Sequence[str], progress: Progress | None = None) -> str:
    """Run the probe in this process; its JSON text (an error document on failure).

    KeyboardInterrupt (Ctrl-C, or SIGTERM turned into it by the CLI) propagates after
    the probe has removed its temporary directory.
    """
    _code, text = probe.run_argv(list(args), progress)
    return text


def parse_progress_line(line: str) -> dict[str, Any] | None:
    """A remote probe's ``--progress`` stderr line as the event the local display takes."""
    if not line.startswith(probe.PROGRESS_PREFIX):
        return None
    try:
        event = json.loads(line[len(probe.PROGRESS_PREFIX) :])
    except json.JSONDecodeError:
        return None
    return event if isinstance(event, dict) else None
