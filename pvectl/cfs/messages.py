"""DFSM messages of the config store, in pmxcfs's layout (pve-cluster's dfsm.c).

A base header ``type u16, subtype u16, protocol_version u32, time u32, reserved u32``;
normal messages add a per-sender ``count u64``; state-class messages add the epoch
``{epoch u32, time u32, nodeid u32, pid u32}``. Little-endian (pmxcfs uses host order, and
every node it runs on is little-endian). Decoding untrusted bytes returns a message or
raises ``MessageError``; nothing else.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from pvectl.cfs.memdb import (
    DT_DIR,
    DT_REG,
    Create,
    Delete,
    Entry,
    Mkdir,
    Operation,
    Rename,
    SetMtime,
    Write,
)

# 2: the STATE index carries the store's epoch (ring seq of its last write) ahead of its
# version; a node speaking 1 would rank sync leaders by version alone, so the two must not mix
PROTOCOL_VERSION = 2

NORMAL, SYNC_START, STATE, UPDATE, UPDATE_COMPLETE, VERIFY_REQUEST, VERIFY = range(7)
WRITE, MKDIR, DELETE, RENAME, CREATE, MTIME = 1, 2, 3, 4, 5, 6
FLAG_TRUNCATE = 1

_BASE = struct.Struct("<HHIII")
_COUNT = struct.Struct("<Q")
_EPOCH = struct.Struct("<IIII")
_FUSE = struct.Struct("<IIIII")
_UPDATE = struct.Struct("<QQQIIIIB")
_VERIFY = struct.Struct("<Q")


class MessageError(ValueError):
    """A DFSM message that cannot be decoded (truncated, unknown type, bad fields)."""


@dataclass(frozen=True, order=True)
class Epoch:
    """Identifies one sync round; state-class messages of another epoch are dropped."""

    epoch: int
    time: int
    node_id: int
    pid: int


@dataclass(frozen=True)
class NormalMessage:
    """A write operation, ordered by the token and applied on every member."""

    count: int
    time: int
    op: Operation


@dataclass(frozen=True)
class StateMessage:
    """SYNC_START, STATE (payload = memdb index), UPDATE (one entry), UPDATE_COMPLETE,
    VERIFY_REQUEST and VERIFY (payload = counter + checksum)."""

    kind: int
    epoch: Epoch
    time: int
    payload: bytes = b""


Message = NormalMessage | StateMessage


def _cstr(text: str) -> bytes:
    return text.encode() + b"\0"


def encode_op(op: Operation, count: int, time: int) -> bytes:
    path = to = ""
    data = b""
    offset = flags = 0
    if isinstance(op, Write):
        subtype, path, data, offset = WRITE, op.path, op.data, op.offset
        flags = FLAG_TRUNCATE if op.truncate else 0
    elif isinstance(op, Mkdir):
        subtype, path = MKDIR, op.path
    elif isinstance(op, Create):
        subtype, path = CREATE, op.path
    elif isinstance(op, Delete):
        subtype, path = DELETE, op.path
    elif isinstance(op, Rename):
        subtype, path, to = RENAME, op.path, op.to
    else:
        subtype, path, offset = MTIME, op.path, op.mtime
    raw_path, raw_to = _cstr(path), _cstr(to) if to else b""
    return (
        _BASE.pack(NORMAL, subtype, PROTOCOL_VERSION, time, 0)
        + _COUNT.pack(count)
        + _FUSE.pack(len(data), offset, len(raw_path), len(raw_to), flags)
        + raw_path
        + raw_to
        + data
    )


def encode_state(kind: int, epoch: Epoch, time: int, payload: bytes = b"") -> bytes:
    return (
        _BASE.pack(kind, 0, PROTOCOL_VERSION, time, 0)
        + _EPOCH.pack(epoch.epoch, epoch.time, epoch.node_id, epoch.pid)
        + payload
    )


def _text(raw: bytes) -> str:
    if not raw.endswith(b"\0"):
        raise MessageError("path is not NUL-terminated")
    try:
        return raw[:-1].decode()
    except UnicodeDecodeError as exc:
        raise MessageError("path is not UTF-8") from exc


def decode(raw: bytes) -> Message:
    if len(raw) < _BASE.size:
        raise MessageError("message shorter than its header")
    kind, subtype, version, time, _ = _BASE.unpack_from(raw)
    if version != PROTOCOL_VERSION:
        raise MessageError(f"protocol version {version}, expected {PROTOCOL_VERSION}")
    body = raw[_BASE.size :]
    if kind == NORMAL:
        return _decode_normal(subtype, time, body)
    if kind in (SYNC_START, STATE, UPDATE, UPDATE_COMPLETE, VERIFY_REQUEST, VERIFY):
        if len(body) < _EPOCH.size:
            raise MessageError("state message shorter than its epoch")
        epoch = Epoch(*_EPOCH.unpack_from(body))
        return StateMessage(kind, epoch, time, bytes(body[_EPOCH.size :]))
    raise MessageError(f"unknown message type {kind}")


def _decode_normal(subtype: int, time: int, body: bytes) -> NormalMessage:
    if len(body) < _COUNT.size + _FUSE.size:
        raise MessageError("normal message too short")
    (count,) = _COUNT.unpack_from(body)
    size, offset, pathlen, tolen, flags = _FUSE.unpack_from(body, _COUNT.size)
    start = _COUNT.size + _FUSE.size
    if pathlen < 1 or len(body) != start + pathlen + tolen + size:
        raise MessageError("normal message lengths do not add up")
    path = _text(body[start : start + pathlen])
    to = _text(body[start + pathlen : start + pathlen + tolen]) if tolen else ""
    data = bytes(body[start + pathlen + tolen :])
    op: Operation
    if subtype == WRITE:
        op = Write(path, offset, data, bool(flags & FLAG_TRUNCATE))
    elif subtype == MKDIR:
        op = Mkdir(path)
    elif subtype == CREATE:
        op = Create(path)
    elif subtype == DELETE:
        op = Delete(path)
    elif subtype == RENAME:
        if not to:
            raise MessageError("rename without a target")
        op = Rename(path, to)
    elif subtype == MTIME:
        op = SetMtime(path, offset)
    else:
        raise MessageError(f"unknown operation subtype {subtype}")
    return NormalMessage(count, time, op)


def encode_entry(entry: Entry) -> bytes:
    name = _cstr(entry.name)
    data = entry.data or b""
    return (
        _UPDATE.pack(
            entry.parent,
            entry.inode,
            entry.version,
            entry.writer,
            entry.mtime,
            len(data),
            len(name),
            entry.type,
        )
        + name
        + data
    )


def decode_entry(raw: bytes) -> Entry:
    if len(raw) < _UPDATE.size:
        raise MessageError("update entry too short")
    parent, inode, version, writer, mtime, size, namelen, kind = _UPDATE.unpack_from(raw)
    if kind not in (DT_DIR, DT_REG) or namelen < 1:
        raise MessageError("update entry with a bad type or name")
    if len(raw) != _UPDATE.size + namelen + size:
        raise MessageError("update entry lengths do not add up")
    name = _text(raw[_UPDATE.size : _UPDATE.size + namelen])
    data = bytes(raw[_UPDATE.size + namelen :])
    return Entry(
        inode,
        parent,
        version,
        writer,
        mtime,
        kind,
        name,
        None if kind == DT_DIR and inode != 0 else data if kind == DT_REG else None,
    )


def encode_verify(counter: int, checksum: str = "") -> bytes:
    return _VERIFY.pack(counter) + bytes.fromhex(checksum)


def decode_verify(raw: bytes) -> tuple[int, str]:
    if len(raw) not in (_VERIFY.size, _VERIFY.size + 32):
        raise MessageError("verify message of the wrong size")
    (counter,) = _VERIFY.unpack_from(raw)
    return counter, raw[_VERIFY.size :].hex()
