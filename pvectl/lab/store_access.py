"""``pvectl lab fs``: read and write an embedded node's config store, as any client would.

Writes travel through the cluster like the FUSE layer's: refused with EACCES while the
partition is not quorate, acknowledged only once committed at the requested level.
"""

from __future__ import annotations

import base64
import errno
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pvectl.cfs.memdb import MAX_FILE_SIZE
from pvectl.errors import CommandRefused, ExitCode, PvectlError, UsageError
from pvectl.lab import embedded_engine
from pvectl.lab import state as lab_state

LEVELS = ("local", "all")


@dataclass(frozen=True)
class StoreEntry:
    name: str
    dir: bool
    size: int
    mtime: int
    version: int
    writer: int


def _engine_check(name: str) -> None:
    state = embedded_engine.load_running(lab_state.check_lab_name(name))
    if state.engine != embedded_engine.ENGINE:
        raise UsageError("lab fs needs an embedded lab: a corosync lab has no pvectl store")


def _path(path: str) -> str:
    clean = path.strip("/")
    if any(part in (".", "..") for part in clean.split("/")):
        raise UsageError(f"{path!r}: '.' and '..' are not allowed in store paths")
    return clean


def _stat(name: str, node: int, path: str) -> dict[str, object]:
    return embedded_engine.control_call(name, node, "stat", path=path)


def ls(name: str, node: int, path: str) -> tuple[StoreEntry, ...]:
    _engine_check(name)
    clean = _path(path)
    found = _stat(name, node, clean)
    if not found.get("exists"):
        raise PvectlError(f"{path}: no such file or directory in the store", ExitCode.NO_INPUT)
    if not found.get("dir"):
        raw = found
        return (
            StoreEntry(
                str(raw["name"]),
                False,
                int(str(raw["size"])),
                int(str(raw["mtime"])),
                int(str(raw["version"])),
                int(str(raw["writer"])),
            ),
        )
    reply = embedded_engine.control_call(name, node, "readdir", path=clean)
    return tuple(
        StoreEntry(
            str(e["name"]),
            bool(e["dir"]),
            int(e["size"]),
            int(e["mtime"]),
            int(e["version"]),
            int(e["writer"]),
        )
        for e in reply["entries"]
    )


def cat(name: str, node: int, path: str) -> bytes:
    _engine_check(name)
    clean = _path(path)
    found = _stat(name, node, clean)
    if not found.get("exists"):
        raise PvectlError(f"{path}: no such file in the store", ExitCode.NO_INPUT)
    if found.get("dir"):
        raise UsageError(f"{path}: is a directory (use 'lab fs ls')")
    reply = embedded_engine.control_call(name, node, "read", path=clean)
    return base64.b64decode(str(reply["data"]))


def _too_big(path: str, size: str) -> CommandRefused:
    return CommandRefused(
        f"{path}: {size} bytes: EFBIG, the store's files are limited to 1 MiB (pmxcfs's limit)"
    )


def read_input(path: str, file: Path | None, stdin: BinaryIO) -> bytes:
    """The content for ``lab fs put``: ``file``, or ``stdin`` without one. Reads at most
    the limit plus one byte, so an endless or huge input is refused at once instead of
    being held in memory."""
    try:
        if file is None:
            return _bounded(path, stdin)
        with open(file, "rb") as handle:
            return _bounded(path, handle)
    except OSError as exc:
        raise PvectlError(f"{file or 'standard input'}: {exc.strerror}", ExitCode.NO_INPUT) from exc


def _bounded(path: str, stream: BinaryIO) -> bytes:
    parts: list[bytes] = []
    have = 0
    while have <= MAX_FILE_SIZE:
        chunk = stream.read(MAX_FILE_SIZE + 1 - have)
        if not chunk:
            return b"".join(parts)
        parts.append(chunk)
        have += len(chunk)
    raise _too_big(path, f"more than {MAX_FILE_SIZE}")


def write(name: str, node: int, path: str, op: str, data: bytes = b"", level: str = "local") -> str:
    """put/mkdir/rm through the cluster; returns the write id once committed at ``level``."""
    _engine_check(name)
    if level not in LEVELS:
        raise UsageError(f"--level must be local or all, not {level!r}")
    clean = _path(path)
    if not clean:
        raise UsageError("the store's root cannot be written")
    if op == "put" and len(data) > MAX_FILE_SIZE:
        raise _too_big(path, str(len(data)))
    encoded = base64.b64encode(data).decode()
    try:
        reply = embedded_engine.control_call(
            name, node, "write", timeout=60.0, path=clean, op=op, data=encoded, level=level
        )
    except PvectlError as exc:
        raise CommandRefused(str(exc)) from exc
    if not reply.get("ok"):
        code = int(reply.get("errno", 0) or 0)
        label = errno.errorcode.get(code, "error")
        raise CommandRefused(f"{path}: {reply.get('error', label)}")
    return str(reply.get("write_id", ""))
