"""Packing and fragmentation: any message sequence comes back whole and in order."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pvectl.totem.packing import FIRST, LAST, MAX_MESSAGE, MIDDLE, Reassembler, SendQueue

sizes = st.one_of(st.integers(0, 80), st.integers(0, 5000), st.sampled_from([70_000, 300_000]))


@settings(max_examples=200, deadline=None)
@given(st.lists(sizes, min_size=1, max_size=40), st.sampled_from([67, 200, 1318, 9000, 65000]))
def test_round_trip_in_order_within_frame_budget(lengths: list[int], capacity: int) -> None:
    q = SendQueue(capacity)
    msgs = [bytes([i % 251]) * n for i, n in enumerate(lengths)]
    for m in msgs:
        q.push(m)
    assert q.frames_pending() >= 1
    r = Reassembler()
    out: list[bytes] = []
    frames = 0
    while len(q):
        frame = q.next_frame()
        assert 0 < len(frame) <= capacity
        frames += 1
        out += r.unpack(7, frame)
    assert out == msgs
    assert q.bytes_pending == 0 and r.dropped == 0
    total = sum(len(m) + 3 for m in msgs)
    assert frames <= total // (capacity // 2) + len(msgs) + 1


def test_restart_after_configuration_change_resends_whole_message() -> None:
    q = SendQueue(1000)
    big = b"x" * 5000
    q.push(big)
    q.push(b"after")
    r = Reassembler()
    assert r.unpack(1, q.next_frame()) == []  # first fragment sent on the old ring
    r.drop_partials()  # every receiver drops partial messages at the REGULAR change
    q.restart_partial()  # and the sender starts the message again
    out: list[bytes] = []
    while len(q):
        out += r.unpack(1, q.next_frame())
    assert out == [big, b"after"] and q.bytes_pending == 0


def test_continuation_without_start_is_dropped_and_counted() -> None:
    q = SendQueue(1000)
    q.push(b"y" * 3000)
    q.next_frame()
    r = Reassembler()
    assert r.unpack(1, q.next_frame()) == []
    assert r.dropped == 1


def test_limits() -> None:
    with pytest.raises(ValueError):
        SendQueue(10)
    with pytest.raises(ValueError):
        SendQueue(1000).push(b"z" * (MAX_MESSAGE + 1))


def _record(kind: int, chunk: bytes) -> bytes:
    return struct.pack("!BH", kind, len(chunk)) + chunk


def test_reassembly_is_capped_at_the_send_limit() -> None:
    """Finding 6: one never-finished message used to grow without bound (22.9 MiB seen);
    now a message whose fragments pass 16 MiB is dropped, counted, and its remaining
    fragments skipped, while other origins and the sender's next message are unaffected."""
    r = Reassembler()
    chunk = b"z" * 65_000
    out = r.unpack(3, _record(FIRST, chunk))
    held = len(chunk)
    out += r.unpack(4, _record(FIRST, b"other origin "))  # interleaved, stays intact
    while held <= MAX_MESSAGE + 2 * len(chunk):
        out += r.unpack(3, _record(MIDDLE, chunk))
        held += len(chunk)
        assert sum(map(len, r._partial.get(3, []))) <= MAX_MESSAGE
    out += r.unpack(3, _record(LAST, b"end"))
    assert out == []
    assert r.oversize == 1 and r.dropped == 0
    assert r.unpack(4, _record(LAST, b"survives")) == [b"other origin survives"]
    assert r.unpack(3, _record(FIRST, b"next ") + _record(LAST, b"one")) == [b"next one"]
    # exactly the limit still passes
    limit = Reassembler(limit=10)
    assert limit.unpack(1, _record(FIRST, b"12345") + _record(LAST, b"67890")) == [b"1234567890"]
    assert limit.unpack(1, _record(FIRST, b"12345") + _record(LAST, b"678901")) == []
    assert limit.oversize == 1 and limit.buffered == 0
