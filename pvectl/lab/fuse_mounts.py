"""FUSE mounts of lab nodes' config stores: start the filesystem process, find it again,
unmount it. Each mount is recorded as ``<node dir>/mounts/<id>.json`` (written by the
filesystem process once the kernel has the mount, removed when it exits), so ``lab down``
and ``lab umount`` find every mount of a lab, also after a crash.
"""

from __future__ import annotations

import contextlib
import ctypes.util
import hashlib
import importlib.util
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from pvectl.errors import CommandRefused, ExitCode, PvectlError, UsageError
from pvectl.lab import state as lab_state

MOUNTS_DIR = "mounts"
FSTYPE = "fuse.pvectl-cfs"
MOUNT_WAIT_S = 60.0
# After the unmount the process normally sees ENODEV and exits at once; but when another
# mount namespace (ip netns exec, unshare) holds a copy of the mount, the connection
# stays up and only a signal ends the process.
EXIT_GRACE_S = 1.0
EXIT_WAIT_S = 5.0
_OCTAL = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True)
class MountRecord:
    pid: int
    mountpoint: str
    lab: str
    node: int
    level: str
    socket: str
    record: str  # the record file itself


def preflight() -> None:
    """What a FUSE mount needs, each missing piece named in one line."""
    try:
        device = os.stat("/dev/fuse")
    except FileNotFoundError as exc:
        raise PvectlError(
            "/dev/fuse is missing: load the fuse kernel module (modprobe fuse), or give the "
            "container the device (--device /dev/fuse)",
            ExitCode.UNAVAILABLE,
        ) from exc
    if not stat.S_ISCHR(device.st_mode):
        raise PvectlError("/dev/fuse is not a character device", ExitCode.UNAVAILABLE)
    if shutil.which("fusermount3") is None:
        raise PvectlError(
            "fusermount3 not found: install the Debian package fuse3", ExitCode.UNAVAILABLE
        )
    if ctypes.util.find_library("fuse3") is None:
        raise PvectlError(
            "libfuse3 not found: install the Debian package libfuse3-3 (comes with fuse3)",
            ExitCode.UNAVAILABLE,
        )
    if importlib.util.find_spec("mfusepy") is None:
        raise PvectlError(
            "the Python package mfusepy is missing (a pvectl dependency): pip install mfusepy",
            ExitCode.UNAVAILABLE,
        )


def mount_table() -> dict[str, str]:
    """Mount point -> filesystem type, from this process's mount namespace."""
    found: dict[str, str] = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split(" ")
        try:
            separator = fields.index("-")
        except ValueError:
            continue
        point = _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), fields[4])
        found[point] = fields[separator + 1]
    return found


def check_mountpoint(mountpoint: Path) -> Path:
    """An existing, empty directory that is not mounted on yet (absolute, resolved)."""
    path = Path(os.path.abspath(mountpoint))
    if str(path) in mount_table():
        raise CommandRefused(f"{path} is already a mount point ('pvectl lab umount {path}')")
    try:
        if not path.exists():
            raise PvectlError(f"{path}: no such directory", ExitCode.NO_INPUT)
        if not path.is_dir():
            raise UsageError(f"{path} is not a directory")
        with os.scandir(path) as entries:
            if next(entries, None) is not None:
                raise UsageError(f"{path} is not empty: mounting would hide its files")
    except PermissionError as exc:
        raise PvectlError(f"{path}: permission denied", ExitCode.NO_PERMISSION) from exc
    return path.resolve()


def record_path(node_dir: Path, mountpoint: Path) -> Path:
    digest = hashlib.sha256(str(mountpoint).encode()).hexdigest()[:16]
    return node_dir / MOUNTS_DIR / f"{digest}.json"


def _load_record(path: Path) -> MountRecord | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return MountRecord(
            int(data["pid"]),
            str(data["mountpoint"]),
            str(data.get("lab", "")),
            int(data.get("node", 0)),
            str(data.get("level", "local")),
            str(data.get("socket", "")),
            str(path),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def records(lab_dir: Path | None = None) -> list[MountRecord]:
    """The mounts of one lab, or of every lab under this runtime directory."""
    pattern = f"node*/{MOUNTS_DIR}/*.json"
    roots = [lab_dir] if lab_dir is not None else sorted(lab_state.labs_root().glob("*"))
    found = []
    for root in roots:
        for path in sorted(root.glob(pattern)):
            record = _load_record(path)
            if record is not None:
                found.append(record)
    return found


def _is_mount_process(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"pvectl.node.fuse_mount" in cmdline


def _daemon_command(
    socket: Path, config: Path, node_id: int, mountpoint: Path, level: str, lab: str, rec: Path
) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pvectl.node.fuse_mount",
        "--socket",
        str(socket),
        "--config",
        str(config),
        "--node-id",
        str(node_id),
        "--mountpoint",
        str(mountpoint),
        "--level",
        level,
        "--lab",
        lab,
        "--fsname",
        f"pvectl-cfs:{lab}:node{node_id}",
        "--record",
        str(rec),
    ]


def mount_background(
    lab: str,
    node_id: int,
    node_dir: Path,
    socket: Path,
    config: Path,
    mountpoint: Path,
    level: str,
) -> MountRecord:
    """Start the filesystem process and return once the kernel serves the mount."""
    rec = record_path(node_dir, mountpoint)
    rec.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    rec.unlink(missing_ok=True)
    log_path = rec.with_suffix(".log")
    command = _daemon_command(socket, config, node_id, mountpoint, level, lab, rec)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    deadline = time.monotonic() + MOUNT_WAIT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            lines = log_path.read_text(errors="replace").strip().splitlines()
            detail = next((line for line in reversed(lines) if "error" in line), "")
            raise PvectlError(
                "the FUSE process exited before mounting"
                + (f": {detail}" if detail else f" (see {log_path})")
            )
        record = _load_record(rec)
        if record is not None and mount_table().get(str(mountpoint)) == FSTYPE:
            return record
        time.sleep(0.05)
    proc.terminate()
    raise PvectlError(
        f"{mountpoint}: not mounted after {MOUNT_WAIT_S:g} s (see {log_path})", ExitCode.TEMP_FAIL
    )


def mount_foreground(
    lab: str,
    node_id: int,
    node_dir: Path,
    socket: Path,
    config: Path,
    mountpoint: Path,
    level: str,
) -> int:
    """Serve the mount in this process until it is unmounted or interrupted."""
    from pvectl.node import fuse_mount

    rec = record_path(node_dir, mountpoint)
    command = _daemon_command(socket, config, node_id, mountpoint, level, lab, rec)
    return fuse_mount.main(command[3:])


def _wait_exit(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _is_mount_process(pid):
            return True
        time.sleep(0.05)
    return False


def _stop(pid: int) -> None:
    for sig, wait in ((None, EXIT_GRACE_S), (signal.SIGTERM, EXIT_WAIT_S), (signal.SIGKILL, 1.0)):
        if sig is not None and _is_mount_process(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        if _wait_exit(pid, wait):
            return


def unmount(mountpoint: Path, lazy: bool = False) -> MountRecord | None:
    """fusermount3 -u, then wait for the filesystem process to exit (SIGTERM if it hangs)."""
    path = Path(os.path.abspath(mountpoint))
    known = [r for r in records() if r.mountpoint == str(path)]
    fstype = mount_table().get(str(path))
    if fstype is None and not known:
        raise CommandRefused(f"{path} is not mounted")
    if fstype is not None and fstype != FSTYPE:
        raise CommandRefused(f"{path} is a {fstype} mount, not a pvectl config store")
    if fstype is not None:
        if shutil.which("fusermount3") is None:
            raise PvectlError(
                "fusermount3 not found: install the Debian package fuse3", ExitCode.UNAVAILABLE
            )
        argv = ["fusermount3", "-u", *(["-z"] if lazy else []), str(path)]
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            message = done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]
            raise CommandRefused(f"cannot unmount {path}: {message[0]}")
    for record in known:
        _stop(record.pid)
        Path(record.record).unlink(missing_ok=True)
    return known[0] if known else None


def unmount_all(lab_dir: Path) -> list[str]:
    """Every mount of a lab, lazily (a shell sitting in it must not stop ``lab down``)."""
    done = []
    for record in records(lab_dir):
        try:
            unmount(Path(record.mountpoint), lazy=True)
            done.append(f"unmounted {record.mountpoint}")
        except PvectlError as exc:
            done.append(f"{record.mountpoint}: {exc}")
            _stop(record.pid)
            Path(record.record).unlink(missing_ok=True)
    return done
