"""Packing of small application messages into frames, and fragmentation of big ones.

This is corosync's ``totempg`` job done inside the engine: one Totem frame (one
sequence number, one datagram) carries as many queued application messages as fit in
the frame budget, and a message larger than a frame is split over consecutive frames
of its sender. Both happen *before* the frame gets its sequence number, so packed and
fragmented messages are delivered in the same total order as whole frames.

Frame payload = records, each ``kind (u8) | length (u16) | bytes`` with kind
``WHOLE``, ``FIRST``, ``MIDDLE`` or ``LAST``. Frames are built lazily when the token
arrives (the queue holds application messages, not frames), so a burst that queued up
while waiting for the token leaves in as few datagrams as possible.

Membership changes: a partially assembled message is dropped by every receiver on
each REGULAR configuration change, and its sender restarts it from the first fragment
on the new ring. Members that move together saw the same fragments (EVS), so they
drop or complete the same messages; a message is never half-delivered.
"""

from __future__ import annotations

import struct
from collections import deque
from typing import Final

WHOLE: Final = 0
FIRST: Final = 1
MIDDLE: Final = 2
LAST: Final = 3
_REC = struct.Struct("!BH")
REC_LEN: Final = _REC.size
_WHOLE_KIND = bytes([WHOLE])
MIN_FRAGMENT: Final = 64  # do not start a fragment in less room than this
MAX_MESSAGE: Final = 16 * 1024 * 1024


class Tagged:
    """A queued message whose sender wants to hear when it leaves (see ``SendQueue.tags``)."""

    __slots__ = ("first_seq", "index", "tag")

    def __init__(self, index: int, tag: object) -> None:
        self.index = index  # its position among all messages ever pushed
        self.tag = tag
        self.first_seq = 0  # the frame that carried its first fragment, once sent


class SendQueue:
    """Application messages waiting for the token, framed on demand."""

    __slots__ = ("_offset", "_q", "bytes_pending", "capacity", "pushed", "tags")

    def __init__(self, capacity: int) -> None:
        if not REC_LEN + MIN_FRAGMENT <= capacity <= 0xFFFF:
            raise ValueError(f"frame capacity {capacity} out of range")
        self.capacity = capacity
        self._q: deque[bytes] = deque()
        self._offset = 0  # bytes of _q[0] already framed
        self.bytes_pending = 0
        self.pushed = 0  # messages ever pushed: pushed - len(self) of them are fully framed
        # tagged messages not yet fully framed, oldest first; empty unless someone traces,
        # so untagged traffic pays one truth test per frame
        self.tags: deque[Tagged] = deque()

    def __len__(self) -> int:
        return len(self._q)

    @property
    def framed(self) -> int:
        """How many of the messages ever pushed have left completely."""
        return self.pushed - len(self._q)

    @property
    def partial(self) -> bool:
        """The head message is half framed (its later fragments wait for the token)."""
        return self._offset > 0

    def push(self, payload: bytes, tag: object = None) -> None:
        if len(payload) > MAX_MESSAGE:
            raise ValueError(f"message of {len(payload)} bytes exceeds {MAX_MESSAGE}")
        self._q.append(payload)
        self.bytes_pending += len(payload) + REC_LEN
        if tag is not None:
            self.tags.append(Tagged(self.pushed, tag))
        self.pushed += 1

    def frames_pending(self) -> int:
        """Backlog in frames, for Totem flow control (an estimate, never 0 if non-empty)."""
        if not self._q:
            return 0
        return -(-self.bytes_pending // self.capacity)

    def restart_partial(self) -> None:
        """Send the message being fragmented again from its start (new ring)."""
        if self._offset:
            self.bytes_pending += self._offset + REC_LEN
            self._offset = 0
            if self.tags and self.tags[0].index == self.framed:
                self.tags[0].first_seq = 0  # it starts over on the new ring

    def next_frame(self) -> bytes:
        """Build one frame from the head of the queue; the queue must not be empty."""
        q = self._q
        parts: list[bytes] = []
        room = self.capacity
        pack = _REC.pack
        while q:
            msg = q[0]
            off = self._offset
            remaining = len(msg) - off
            space = room - REC_LEN
            if remaining <= space:
                kind = WHOLE if off == 0 else LAST
                chunk = msg if off == 0 else msg[off:]
                q.popleft()
                self._offset = 0
            else:
                if off == 0 and len(msg) + REC_LEN <= self.capacity and parts:
                    break  # fits in a fresh frame: do not fragment it
                if space < MIN_FRAGMENT:
                    break
                kind = FIRST if off == 0 else MIDDLE
                chunk = msg[off : off + space]
                self._offset = off + space
            parts.append(pack(kind, len(chunk)))
            parts.append(chunk)
            n = len(chunk) + (REC_LEN if kind in (WHOLE, FIRST) else 0)
            self.bytes_pending -= n
            room -= len(chunk) + REC_LEN
            if kind in (FIRST, MIDDLE):
                break
        return b"".join(parts)


class Reassembler:
    """Splits delivered frames back into application messages, per origin.

    A message being reassembled is capped at ``MAX_MESSAGE`` (the send limit): a sender
    whose fragments pass it (only a buggy or hostile key holder can) has that message
    dropped, its remaining fragments skipped up to its LAST, and ``reassembly_oversize``
    counted, instead of this node buffering without bound. Every member sees the same
    frames, so every member drops the same message.

    Counters live in ``stats`` (the engine passes its own statistics dict):
    ``reassembly_dropped`` (records that could not be used: continuations without a start,
    truncated records) and ``reassembly_oversize``.
    """

    __slots__ = ("_discard", "_partial", "_size", "limit", "stats")

    def __init__(self, stats: dict[str, int] | None = None, limit: int = MAX_MESSAGE) -> None:
        self._partial: dict[int, list[bytes]] = {}
        self._size: dict[int, int] = {}
        self._discard: set[int] = set()  # origins whose current message went over the limit
        self.limit = limit
        self.stats = stats if stats is not None else {}
        self.stats.setdefault("reassembly_dropped", 0)
        self.stats.setdefault("reassembly_oversize", 0)

    @property
    def dropped(self) -> int:
        return self.stats["reassembly_dropped"]

    @property
    def oversize(self) -> int:
        return self.stats["reassembly_oversize"]

    @property
    def buffered(self) -> int:
        """Bytes held in unfinished messages (all origins)."""
        return sum(self._size.values())

    def unpack(self, origin: int, frame: bytes) -> list[bytes]:
        if (
            frame[:1] == _WHOLE_KIND
            and len(frame) >= REC_LEN
            and len(frame) == REC_LEN + _REC.unpack_from(frame)[1]
        ):
            return [frame[REC_LEN:]]  # one whole message: the common frame of big sends
        out: list[bytes] = []
        off = 0
        end = len(frame)
        unpack = _REC.unpack_from
        partial = self._partial
        stats = self.stats
        while off < end:
            if end - off < REC_LEN:
                stats["reassembly_dropped"] += 1
                break
            kind, length = unpack(frame, off)
            off += REC_LEN
            if off + length > end:
                stats["reassembly_dropped"] += 1
                break
            chunk = frame[off : off + length]
            off += length
            if kind == WHOLE:
                out.append(chunk)
            elif kind == FIRST:
                if origin in partial:
                    stats["reassembly_dropped"] += 1
                self._discard.discard(origin)
                partial[origin] = [chunk]
                self._size[origin] = length
            elif kind in (MIDDLE, LAST):
                parts = partial.get(origin)
                if parts is None:
                    if origin in self._discard:
                        if kind == LAST:
                            self._discard.discard(origin)
                    else:
                        stats["reassembly_dropped"] += 1
                    continue
                size = self._size[origin] + length
                if size > self.limit:
                    del partial[origin], self._size[origin]
                    stats["reassembly_oversize"] += 1
                    if kind == MIDDLE:
                        self._discard.add(origin)
                    continue
                parts.append(chunk)
                self._size[origin] = size
                if kind == LAST:
                    del partial[origin], self._size[origin]
                    out.append(b"".join(parts))
            else:
                stats["reassembly_dropped"] += 1
                break
        return out

    def drop_partials(self) -> None:
        self._partial.clear()
        self._size.clear()
        self._discard.clear()
