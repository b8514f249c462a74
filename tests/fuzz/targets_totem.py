"""Fuzz targets of the Totem layer: the wire codec (raw, and signed with the cluster key so
the body parsers and the protocol core are reached) and the fragment reassembler."""

from __future__ import annotations

import contextlib
import hmac
import struct

from pvectl.results import RingId
from pvectl.totem import wire
from pvectl.totem.packing import MAX_MESSAGE, REC_LEN, Reassembler, SendQueue
from pvectl.totem.srp import PacketReceived, Srp, Start, TotemConfig
from tests.fuzz.harness import FuzzTarget

KEY = bytes(range(32))
CLUSTER = "fuzz"
NODES = (1, 2, 3)
_CONFIG = TotemConfig(token=1000, token_coefficient=0)


def _nonce(size: int) -> bytes:
    return b"\x07" * size  # deterministic: a fuzz input must replay identically


def _codec(node: int, *, encrypt: bool = False) -> wire.Codec:
    return wire.Codec(node, CLUSTER, KEY, encrypt=encrypt, nonce_source=_nonce)


_RECEIVER = {enc: _codec(1, encrypt=enc) for enc in (False, True)}
_ENCODERS = {enc: {n: _codec(n, encrypt=enc) for n in NODES} for enc in (False, True)}


def _sample_messages() -> list[wire.Message]:
    ring = RingId(1, 8)
    old = RingId(1, 4)
    return [
        wire.Token(ring, 3, 10, 9, 2, 4, 1, False, (7, 9)),
        wire.Mcast(ring, 11, 2, b"\x00\x00\x05hello"),
        wire.Mcast(ring, 12, 3, b"\x00\x00\x02ok", old, 5),
        wire.MergeDetect(ring),
        wire.Join((1, 2, 3), (4,), 8),
        wire.Leave((1, 2), (3,), 8),
        wire.CommitToken(RingId(1, 12), 1, (1, 2, 3), (wire.CommitEntry(old, 9, 9, True),)),
        wire.TokenHoldCancel(ring),
    ]


# ---- without a key: whole datagrams, as they arrive on the socket ----------------------


def run_wire_raw(data: bytes) -> None:
    for codec in _RECEIVER.values():
        with contextlib.suppress(wire.WireError):
            codec.decode(data)


def _raw_seeds() -> list[bytes]:
    return [_ENCODERS[enc][2].encode(m) for enc in (False, True) for m in _sample_messages()]


# ---- with the key: a signed header around fuzzed bytes, then the protocol core ---------
# input: type (u8) | sender (u8) | flags (u8; bit 0 = encrypt with the cluster key) | body


def _signed(data: bytes) -> tuple[bool, bytes]:
    mtype, sender, flags = data[0], data[1], data[2]
    body = data[3:]
    encrypt = bool(flags & 1)
    codec = _RECEIVER[encrypt]
    header = wire.HEADER.pack(
        wire.MAGIC,
        wire.VERSION,
        mtype,
        wire.FLAG_ENCRYPTED if encrypt else 0,
        codec.cluster,
        sender,
    )
    if encrypt:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        aead = AESGCM(wire._derive(KEY, b"aes-gcm"))
        nonce = _nonce(wire.NONCE_LEN)
        body = nonce + aead.encrypt(nonce, body, header)
    packet = header + body
    return encrypt, packet + hmac.digest(wire._derive(KEY, b"hmac"), packet, "sha256")


def run_wire_keyed(data: bytes) -> None:
    if len(data) < 3:
        return
    encrypt, packet = _signed(data)
    try:
        sender, _message = _RECEIVER[encrypt].decode(packet)
    except wire.WireError:
        return
    assert sender == data[1] and sender != 0
    # what a member does with it: a fresh node in GATHER, then the same packet again
    srp = Srp(1, NODES, _codec(1, encrypt=encrypt), _CONFIG, ring_seq=4)
    srp.handle(Start(), 0.0)
    srp.handle(PacketReceived(packet), 0.01)
    srp.handle(PacketReceived(packet), 0.02)


def _keyed_seeds() -> list[bytes]:
    seeds = []
    for enc in (False, True):
        codec = _ENCODERS[enc][2]
        for message in _sample_messages():
            datagram = codec.encode(message)
            mtype = datagram[4]
            body = datagram[wire.HEADER_LEN : -wire.MAC_LEN]
            if enc:  # the target encrypts: give it the plaintext body
                from cryptography.hazmat.primitives.ciphers.aead import AESGCM

                aead = AESGCM(wire._derive(KEY, b"aes-gcm"))
                body = aead.decrypt(
                    body[: wire.NONCE_LEN], body[wire.NONCE_LEN :], datagram[: wire.HEADER_LEN]
                )
            seeds.append(bytes([mtype, 2, int(enc)]) + body)
    return seeds


# ---- the reassembler: a sequence of delivered frames ------------------------------------
# input: records of origin (u8) | op (u8) | length (u16). op < 0x80: a frame of one record
# of kind ``op % 5`` (4 is no kind) and ``length`` zero bytes; op >= 0x80: the next
# ``length`` input bytes are the frame as is (truncated records and the like).

_OP = struct.Struct("!BBH")


def run_reassembler(data: bytes) -> None:
    reassembler = Reassembler()
    off = 0
    while off + _OP.size <= len(data):
        origin, op, length = _OP.unpack_from(data, off)
        off += _OP.size
        if op & 0x80:
            frame = data[off : off + length]
            off += length
        else:
            frame = struct.pack("!BH", op % 5, length) + bytes(length)
        origin = origin % 4 + 1
        for message in reassembler.unpack(origin, frame):
            assert len(message) <= MAX_MESSAGE, f"delivered {len(message)} bytes"
        held = sum(map(len, reassembler._partial.get(origin, ())))
        assert held <= MAX_MESSAGE, f"holds {held} bytes of one unfinished message"
        if op == 0x7F:
            reassembler.drop_partials()


def _reassembler_seeds() -> list[bytes]:
    # many small seeds: the kept 16 MiB input costs ~40 ms, it must be a rare pick
    seeds = []
    shapes = [(5, 70, 3000), (200_000,), (0, 65_000, 1), (1, 1, 1, 1), (1399,), (1400, 1401)]
    shapes += [(n, 2 * n) for n in (10, 100, 700, 1500, 2800, 5000, 9000, 20_000)]
    for sizes in shapes:
        queue = SendQueue(1400)
        for size in sizes:
            queue.push(bytes(size))
        frames = []
        while len(queue):
            frames.append(queue.next_frame())
        seeds.append(b"".join(_OP.pack(2, 0x80, len(f)) + f for f in frames[:40]))
    seeds.append(_OP.pack(1, 1, 100) + _OP.pack(1, 2, 100) + _OP.pack(1, 3, 100))
    return seeds


def oversize_reassembly() -> bytes:
    """The finding's input: one origin's FIRST, then MIDDLE fragments past 16 MiB and a LAST
    (the reassembler used to hold all of it and deliver a message above the send limit)."""
    chunk = 0xFFFF - REC_LEN
    count = MAX_MESSAGE // chunk + 2
    return _OP.pack(3, 1, chunk) + _OP.pack(3, 2, chunk) * count + _OP.pack(3, 3, 10)


TARGETS: list[FuzzTarget] = [
    FuzzTarget("totem_wire_raw", run_wire_raw, seeds=_raw_seeds(), max_size=2048),
    FuzzTarget("totem_wire_keyed", run_wire_keyed, seeds=_keyed_seeds(), max_size=2048),
    FuzzTarget("totem_reassembler", run_reassembler, seeds=_reassembler_seeds(), max_size=4096),
]
