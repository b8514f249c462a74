"""The qnetd message/TLV codec: layout against hand-built bytes, round trips, and fuzzing
(malformed or hostile input raises WireError only). Hypothesis prints a failing input as
``@reproduce_failure``; replay a whole run with ``pytest --hypothesis-seed=N``."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pvectl.quorum.qdevice import wire as w


def tlv(opt: int, value: bytes) -> bytes:
    return struct.pack("!HH", opt, len(value)) + value


def frame(msg_type: int, body: bytes) -> bytes:
    return struct.pack("!HI", msg_type, len(body)) + body


def test_preinit_layout_matches_hand_built_bytes() -> None:
    expected = frame(0, tlv(0, b"\x00\x00\x00\x01") + tlv(1, b"x"))
    assert w.encode(w.Message(w.MsgType.PREINIT, seq_number=1, cluster_name="x")) == expected
    assert expected.hex() == "00000000000d00000004000000010001000178"


def test_init_as_corosync_qdevice_sends_it_decodes() -> None:
    body = (
        tlv(0, struct.pack("!I", 2))
        + tlv(4, struct.pack("!3H", 0, 3, 4))
        + tlv(5, struct.pack("!2H", 0, 1))
        + tlv(9, struct.pack("!I", 1))
        + tlv(11, struct.pack("!H", 1))
        + tlv(12, struct.pack("!I", 8000))
        + tlv(21, struct.pack("!BI", 1, 0))
        + tlv(13, struct.pack("!IQ", 1, 0x1A))
        + tlv(999, b"future option, skipped")
    )
    msg = w.decode(frame(3, body))
    assert msg.type == w.MsgType.INIT
    assert msg.seq_number == 2 and msg.node_id == 1
    assert msg.decision_algorithm == w.Algorithm.FFSPLIT
    assert msg.heartbeat_interval == 8000
    assert msg.tie_breaker == w.TieBreaker(w.TieBreakerMode.LOWEST)
    assert msg.ring_id == w.WireRingId(1, 0x1A) and str(msg.ring_id) == "1.1a"
    assert msg.supported_messages == (0, 3, 4)


def test_node_list_with_nested_node_info() -> None:
    info1 = tlv(17, tlv(9, struct.pack("!I", 1)) + tlv(16, b"\x01"))
    info2 = tlv(17, tlv(9, struct.pack("!I", 2)) + tlv(15, struct.pack("!I", 7)))
    body = tlv(0, struct.pack("!I", 5)) + tlv(18, b"\x03") + tlv(20, b"\x01") + info1 + info2
    msg = w.decode(frame(10, body))
    assert msg.node_list_type is w.NodeListType.QUORUM
    assert msg.quorate is w.Quorate.QUORATE
    assert msg.nodes == (
        w.NodeInfo(1, 0, w.NodeState.MEMBER),
        w.NodeInfo(2, 7, w.NodeState.NOT_SET),
    )


def test_echo_reply_is_the_request_retyped() -> None:
    request = w.encode(w.Message(w.MsgType.ECHO_REQUEST, seq_number=77))
    reply = w.decode(w.echo_reply_for(request))
    assert reply.type == w.MsgType.ECHO_REPLY and reply.seq_number == 77


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"\x00\x00\x00", "short"),
        (frame(0, b"")[:-1] + b"\x00\x01", "length field"),
        (frame(0, tlv(0, b"\x00\x01")), "length 2, expected 4"),
        (frame(0, b"\x00\x01\x00\x09abc"), "longer than the message"),
        (frame(0, b"\x00\x01"), "truncated TLV header"),
        (frame(10, tlv(19, b"\x09")), "invalid Vote"),
        (frame(10, tlv(17, tlv(16, b"\x01"))), "without a node id"),
        (frame(3, tlv(21, struct.pack("!BI", 7, 0))), "tie-breaker mode"),
        (frame(0, tlv(1, b"\xff\xfe")), "UTF-8"),
        (frame(10, tlv(13, b"\x00" * 11)), "ring id"),
    ],
)
def test_malformed_messages_raise_wire_error(data: bytes, needle: str) -> None:
    with pytest.raises(w.WireError, match=needle):
        w.decode(data)


def test_error_keeps_the_sequence_number_for_the_reply() -> None:
    data = frame(10, tlv(0, struct.pack("!I", 42)) + tlv(19, b"\x09"))
    with pytest.raises(w.WireError) as info:
        w.decode(data)
    assert info.value.seq_number == 42 and info.value.code == w.ErrorCode.ERROR_DECODING_MSG


def test_frame_reader_refuses_huge_length_before_buffering() -> None:
    reader = w.FrameReader(max_size=1024)
    with pytest.raises(w.WireError) as info:
        reader.feed(struct.pack("!HI", 10, 0xFFFFFFF0))
    assert info.value.code == w.ErrorCode.MESSAGE_TOO_LONG


def test_frame_reader_splits_a_stream_and_keeps_the_rest() -> None:
    a = w.encode(w.Message(w.MsgType.STARTTLS, seq_number=1))
    b = b"\x16\x03\x01\x02\x00TLS client hello..."
    reader = w.FrameReader()
    reader.push(a[:3])
    assert reader.next_frame() is None
    reader.push(a[3:] + b)
    assert reader.next_frame() == a
    assert reader.take_rest() == b


# --- round trips and fuzzing ----------------------------------------------------------

ring_ids = st.builds(w.WireRingId, st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1))
node_infos = st.builds(
    w.NodeInfo,
    st.integers(1, 2**32 - 1),
    st.integers(0, 2**32 - 1),
    st.sampled_from(list(w.NodeState)),
)
messages = st.builds(
    w.Message,
    type=st.sampled_from([int(t) for t in w.MsgType]),
    seq_number=st.none() | st.integers(0, 2**32 - 1),
    cluster_name=st.none() | st.text(max_size=40),
    tls_supported=st.none() | st.sampled_from(list(w.TlsSupported)),
    node_id=st.none() | st.integers(0, 2**32 - 1),
    heartbeat_interval=st.none() | st.integers(0, 2**32 - 1),
    ring_id=st.none() | ring_ids,
    config_version=st.none() | st.integers(0, 2**64 - 1),
    nodes=st.lists(node_infos, max_size=8).map(tuple),
    node_list_type=st.none() | st.sampled_from(list(w.NodeListType)),
    vote=st.none() | st.sampled_from([v for v in w.Vote if v is not w.Vote.UNDEFINED]),
    quorate=st.none() | st.sampled_from(list(w.Quorate)),
    tie_breaker=st.none()
    | st.builds(w.TieBreaker, st.sampled_from(list(w.TieBreakerMode)), st.just(0)),
    heuristics=st.sampled_from(list(w.Heuristics)),
    keep_active_partition_tie_breaker=st.none() | st.booleans(),
)


@given(messages)
def test_encode_decode_round_trip(msg: w.Message) -> None:
    assert w.decode(w.encode(msg), max_size=1 << 20) == msg


@settings(max_examples=500)
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_wire_error(data: bytes) -> None:
    with contextlib.suppress(w.WireError):
        w.decode(data)


tlv_items = st.tuples(
    st.integers(0, 30) | st.integers(0, 0xFFFF),
    st.binary(max_size=20),
    st.integers(-3, 3),  # lie about the length
)


@settings(max_examples=500)
@given(st.integers(0, 40), st.lists(tlv_items, max_size=12), st.integers(-4, 4))
def test_hostile_tlv_streams_raise_only_wire_error(
    msg_type: int, items: list[tuple[int, bytes, int]], length_lie: int
) -> None:
    body = b""
    for opt, value, lie in items:
        body += struct.pack("!HH", opt, max(0, min(0xFFFF, len(value) + lie))) + value
    data = struct.pack("!HI", msg_type, max(0, len(body) + length_lie)) + body
    try:
        msg = w.decode(data)
    except w.WireError:
        return
    assert msg.type == msg_type


@settings(max_examples=300)
@given(messages, st.data())
def test_mutated_valid_messages_raise_only_wire_error(msg: w.Message, data: st.DataObject) -> None:
    raw = bytearray(w.encode(msg))
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    with contextlib.suppress(w.WireError):
        w.decode(bytes(raw), max_size=1 << 20)
