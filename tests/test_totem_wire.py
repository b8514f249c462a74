"""The Totem wire codec: round trips, authentication, and a fuzz of untrusted input."""

from __future__ import annotations

import hmac
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pvectl.totem.ring_id import RingId
from pvectl.totem.wire import (
    HEADER,
    MAGIC,
    VERSION,
    Codec,
    CommitEntry,
    CommitToken,
    Join,
    Leave,
    Mcast,
    MergeDetect,
    Message,
    Token,
    TokenHoldCancel,
    WireError,
)

KEY = b"k" * 32
R = RingId(1, 0x7B1)
SAMPLES: list[Message] = [
    Token(R, 5, 100, 98, 3, 12, 40, True, (99, 100)),
    Mcast(R, 100, 2, b"payload"),
    Mcast(R, 3, 4, b"old", RingId(4, 0x7AD), 57),
    MergeDetect(R),
    Join((1, 2, 3), (4,), 0x7B1),
    Leave((1, 2), (3,), 9),
    CommitToken(RingId(1, 0x7B5), 2, (1, 2, 3), (CommitEntry(R, 98, 97, False),)),
    TokenHoldCancel(R),
]


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
@pytest.mark.parametrize("encrypt", [False, True])
def test_round_trip(msg: Message, encrypt: bool) -> None:
    a = Codec(1, "pve", KEY, encrypt=encrypt, nonce_source=os.urandom)
    b = Codec(2, "pve", KEY, encrypt=encrypt, nonce_source=os.urandom)
    assert b.decode(a.encode(msg)) == (1, msg)


def test_encrypted_body_hides_payload() -> None:
    a = Codec(1, "pve", KEY, encrypt=True, nonce_source=os.urandom)
    assert b"secret-config" not in a.encode(Mcast(R, 1, 1, b"secret-config"))
    assert b"secret-config" in Codec(1, "pve", KEY).encode(Mcast(R, 1, 1, b"secret-config"))


def test_wrong_key_and_wrong_cluster_are_rejected_and_counted() -> None:
    packet = Codec(1, "pve", KEY).encode(SAMPLES[0])
    other_key = Codec(2, "pve", b"x" * 32)
    other_cluster = Codec(2, "lab", KEY)
    with pytest.raises(WireError) as e1:
        other_key.decode(packet)
    with pytest.raises(WireError) as e2:
        other_cluster.decode(packet)
    assert e1.value.reason == "auth" and other_key.rejected["auth"] == 1
    assert e2.value.reason == "cluster" and other_cluster.rejected["cluster"] == 1


def test_plain_packet_refused_by_encrypting_codec() -> None:
    packet = Codec(1, "pve", KEY).encode(SAMPLES[1])
    enc = Codec(2, "pve", KEY, encrypt=True, nonce_source=os.urandom)
    with pytest.raises(WireError):
        enc.decode(packet)


def test_every_single_bit_flip_is_detected() -> None:
    c = Codec(1, "pve", KEY)
    packet = c.encode(SAMPLES[0])
    for i in range(len(packet) * 8):
        mutated = bytearray(packet)
        mutated[i // 8] ^= 1 << (i % 8)
        with pytest.raises(WireError):
            c.decode(bytes(mutated))


class ForgingCodec(Codec):
    """Signs whatever body bytes it is given: a peer with the key but a bug."""

    def raw(self, mtype: int, body: bytes) -> bytes:
        packet = HEADER.pack(MAGIC, VERSION, mtype, 0, self.cluster, self.node_id) + body
        return packet + hmac.digest(self._mac_key, packet, "sha256")


_decoder = Codec(9, "pve", KEY)
_forger = ForgingCodec(3, "pve", KEY)
_valid = [Codec(1, "pve", KEY).encode(m) for m in SAMPLES]


def _decode_or_wire_error(data: bytes) -> None:
    try:
        sender, msg = _decoder.decode(data)
    except WireError:
        return
    assert sender > 0
    assert isinstance(
        msg, Token | Mcast | MergeDetect | Join | Leave | CommitToken | TokenHoldCancel
    )


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_random_bytes(data: bytes) -> None:
    _decode_or_wire_error(data)


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(_valid),
    st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=6),
    st.integers(0, 400),
)
def test_fuzz_mutated_valid_packets(base: bytes, edits: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(base)
    for pos, val in edits:
        if data:
            data[pos % len(data)] = val
    _decode_or_wire_error(bytes(data[: max(cut, 1)] if cut < len(data) else data))


@settings(max_examples=600, deadline=None)
@given(st.integers(0, 10), st.binary(max_size=200))
def test_fuzz_authenticated_garbage_bodies(mtype: int, body: bytes) -> None:
    # a correctly signed packet with a nonsense body must still only raise WireError
    _decode_or_wire_error(_forger.raw(mtype, body))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(_valid), st.integers(0, 60))
def test_fuzz_signed_truncations(base: bytes, trim: int) -> None:
    body = base[13:-32]
    mtype = base[3]
    _decode_or_wire_error(_forger.raw(mtype, body[: max(len(body) - trim, 0)]))


@pytest.mark.parametrize("key_len", [16, 32, 64, 65, 200])
def test_prehashed_hmac_equals_hmac_digest(key_len: int) -> None:
    """The codec's HMAC (pad blocks hashed once) is RFC 2104 HMAC-SHA256, byte for byte."""
    from pvectl.totem.wire import _HmacSha256

    key = bytes(range(key_len % 256)) * (key_len // 256 + 1)
    key = key[:key_len]
    mac = _HmacSha256(key)
    for size in (0, 1, 55, 64, 1400, 65000):
        msg = os.urandom(size)
        assert mac(msg) == hmac.digest(key, msg, "sha256")
        assert mac(memoryview(msg)) == hmac.digest(key, msg, "sha256")


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(1, 2**32 - 1),
    st.integers(0, 2**64 - 1),
    st.lists(st.integers(0, 2**32 - 1), min_size=6, max_size=6),
    st.booleans(),
    st.binary(max_size=300),
)
def test_fast_paths_decode_like_the_general_parser(
    rep: int, rseq: int, nums: list[int], flag: bool, payload: bytes
) -> None:
    """Plain frames and tokens take decode's prefix-test path: same message (or the same
    rejection) as the field-by-field parser gives for the same body."""
    from pvectl.totem.wire import _parse_mcast, _parse_token

    ring = RingId(rep, rseq)
    tseq, seq, aru, aru_addr, fcc, backlog = nums
    a, b = Codec(7, "pve", KEY), Codec(8, "pve", KEY)
    for msg, parse in (
        (Mcast(ring, seq, aru_addr, payload), _parse_mcast),
        (Token(ring, tseq, seq, aru, aru_addr, fcc, backlog, flag, ()), _parse_token),
    ):
        data = a.encode(msg)
        try:
            expected: object = parse(data[HEADER.size : -32])
        except ValueError:
            expected = "malformed"
        try:
            sender, got = b.decode(data)
            assert sender == 7
        except WireError as exc:
            got = exc.reason
        assert got == expected
        assert type(got) is type(expected)
