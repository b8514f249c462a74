"""Fuzz targets of the config store and the node services: DFSM messages, the DFSM's
deliver path (a synced member fed a sequence of messages), and the services' deliver
(votequorum NODEINFO/expected, store messages, acknowledgements)."""

from __future__ import annotations

import contextlib
import struct

from pvectl.cfs import dfsm, messages
from pvectl.cfs.memdb import Create, Delete, Entry, MemDB, Mkdir, Rename, SetMtime, Write
from pvectl.nodecore import services as svc
from pvectl.quorum import votequorum as vq
from pvectl.results import RingId
from tests.fuzz.harness import FuzzTarget

MEMBERS = (1, 2, 3)
NOW = 1000
_OPS = [
    Mkdir("nodes"),
    Create("nodes/a"),
    Write("nodes/a", 0, b"memory: 2048\n", truncate=True),
    Write("nodes/a", 5, b"x"),
    Rename("nodes/a", "nodes/b"),
    SetMtime("nodes/b", 77),
    Delete("nodes/b"),
]


# ---- one message: decode, and decode what a state message carries -----------------------


def run_messages(data: bytes) -> None:
    try:
        message = messages.decode(data)
    except messages.MessageError:
        return
    if isinstance(message, messages.StateMessage):
        for decode in (messages.decode_entry, messages.decode_verify, dfsm._decode_index):
            with contextlib.suppress(messages.MessageError):
                decode(message.payload)


def _epoch() -> messages.Epoch:
    return messages.Epoch(1, NOW, 1, 0)


_EMPTY_INDEX = MemDB().index().encode()  # every member's tree before the first write
_EMPTY_CHECKSUM = MemDB().checksum()


def _message_seeds() -> list[bytes]:
    epoch = _epoch()
    entry = Entry(5, 0, 9, 2, NOW, 8, "datacenter.cfg", b"keyboard: en-us\n")
    return [
        *(messages.encode_op(op, i + 1, NOW) for i, op in enumerate(_OPS)),
        messages.encode_state(messages.SYNC_START, epoch, NOW),
        messages.encode_state(messages.STATE, epoch, NOW, _EMPTY_INDEX),
        messages.encode_state(messages.UPDATE, epoch, NOW, messages.encode_entry(entry)),
        messages.encode_state(messages.UPDATE_COMPLETE, epoch, NOW),
        messages.encode_state(messages.VERIFY_REQUEST, epoch, NOW, messages.encode_verify(1)),
        messages.encode_state(
            messages.VERIFY, epoch, NOW, messages.encode_verify(1, _EMPTY_CHECKSUM)
        ),
    ]


# ---- a sequence of delivered messages ----------------------------------------------------
# input: records of sender (u8, node ``sender % 4``: 0 is not a member) | length (u16) | bytes

_REC = struct.Struct("<BH")


def _records(data: bytes) -> list[tuple[int, bytes]]:
    out = []
    off = 0
    while off + _REC.size <= len(data):
        sender, length = _REC.unpack_from(data, off)
        off += _REC.size
        out.append((sender % 4, data[off : off + length]))
        off += length
    return out


def _record(sender: int, raw: bytes) -> bytes:
    return _REC.pack(sender, len(raw)) + raw


def _synced_member() -> dfsm.Dfsm:
    """Node 2 of a three-member group, after the sync round (every member's tree empty)."""
    node = dfsm.Dfsm(2, MemDB(), pid=0)
    node.membership_changed(MEMBERS, NOW)
    start = messages.encode_state(messages.SYNC_START, _epoch(), NOW)
    node.deliver(1, start, NOW)
    state = messages.encode_state(messages.STATE, _epoch(), NOW, _EMPTY_INDEX)
    for sender in MEMBERS:
        node.deliver(sender, state, NOW)
    assert node.synced
    return node


def run_dfsm(data: bytes) -> None:
    node = _synced_member()
    for sender, raw in _records(data):
        node.deliver(sender, raw, NOW)  # must never raise: a failure is a reported event
    if node.mode == dfsm.Mode.SYNCED and node.members:
        node.request_verify(NOW)
    node.membership_changed((1, 2), NOW)


def _dfsm_seeds() -> list[bytes]:
    seeds = [b"".join(_record(1 + i % 3, raw) for i, raw in enumerate(_message_seeds()))]
    seeds.append(b"".join(_record(3, messages.encode_op(op, 1, NOW)) for op in _OPS))
    return seeds


def malformed_verify_batch() -> bytes:
    """The finding's input: a write, a VERIFY_REQUEST with a 3-byte payload, a VERIFY of the
    wrong size, a write (``deliver`` raised MessageError and the batch was lost)."""
    epoch = _epoch()
    return b"".join(
        [
            _record(1, messages.encode_op(Mkdir("before"), 1, NOW)),
            _record(1, messages.encode_state(messages.VERIFY_REQUEST, epoch, NOW, b"\x01\x02\x03")),
            _record(3, messages.encode_state(messages.VERIFY, epoch, NOW, b"\x00" * 9)),
            _record(3, messages.encode_op(Mkdir("after"), 1, NOW)),
        ]
    )


# ---- the node services' deliver ---------------------------------------------------------


_NODEINFO = struct.Struct("<BBQIIII")
_CFS = struct.Struct("<BQ")


def _services() -> svc.NodeServices:
    """Node 2 of three, after votequorum's and the store's sync: quorate and synced."""
    options = vq.QuorumOptions.build([(n, 1) for n in MEMBERS])
    services = svc.NodeServices(2, vq.initial_state(options, 2), MemDB())
    services.regular_configuration(MEMBERS, RingId(1, 8), 0, NOW)
    for node in MEMBERS:
        info = _NODEINFO.pack(svc.SERVICE_VOTEQUORUM, 1, 8, node, 1, 3, 0)
        services.deliver(node, info, NOW, 0)
    start = messages.encode_state(messages.SYNC_START, _epoch(), NOW)
    services.deliver(1, _CFS.pack(svc.SERVICE_CFS, 0) + start, NOW, 0)
    state = messages.encode_state(messages.STATE, _epoch(), NOW, _EMPTY_INDEX)
    for node in MEMBERS:
        services.deliver(node, _CFS.pack(svc.SERVICE_CFS, 0) + state, NOW, 0)
    assert services.quorum.quorate and services.store.synced
    return services


def run_services(data: bytes) -> None:
    services = _services()
    for sender, payload in _records(data):
        services.deliver(sender, payload, NOW, 0)  # must never raise
    if services.lms_deadline() is not None:
        services.lms_timer(1e9)


def _services_seeds() -> list[bytes]:
    nodeinfo = [
        _NODEINFO.pack(svc.SERVICE_VOTEQUORUM, 1, 8, n, 1, 3, int(vq.NodeFlag.FIRST))
        for n in MEMBERS
    ]
    expected = struct.pack("<BBI", svc.SERVICE_VOTEQUORUM, 2, 2)
    cfs = [
        _CFS.pack(svc.SERVICE_CFS, 5) + raw
        for raw in (messages.encode_op(op, i + 1, NOW) for i, op in enumerate(_OPS))
    ]
    ack = struct.pack("<BI", svc.SERVICE_ACK, 2) + struct.pack("<IQIQ", 1, 3, 2, 4)
    return [
        b"".join(_record(n, p) for n, p in zip(MEMBERS, nodeinfo, strict=True)),
        b"".join(_record(n, p) for n, p in zip(MEMBERS, nodeinfo, strict=True))
        + b"".join(_record(1, p) for p in cfs)
        + _record(3, expected)
        + _record(2, ack),
    ]


TARGETS: list[FuzzTarget] = [
    FuzzTarget("cfs_messages", run_messages, seeds=_message_seeds(), max_size=1024),
    FuzzTarget("cfs_dfsm_deliver", run_dfsm, seeds=_dfsm_seeds(), max_size=2048),
    FuzzTarget("services_deliver", run_services, seeds=_services_seeds(), max_size=2048),
]
