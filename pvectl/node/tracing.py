"""What ``lab sync-trace`` reads from a node: the timed phases of config writes and the
ring's membership events, kept in bounded memory (the ``spans`` control command).

The runtime and the write path report here; nothing here decides anything, so a lost
record only costs a trace, never a write.
"""

from __future__ import annotations

import time
from collections import deque

from pvectl.nodecore.services import WriteApplied
from pvectl.totem import srp
from pvectl.trace.spans import Phase, RingEvent, Span

MAX_TRACED_WRITES = 2000
MAX_RING_EVENTS = 500


class Tracer:
    """One node's spans and ring events; own writes queued in Totem are followed by
    count (the tag of their multicast) until they leave on the token."""

    def __init__(self, node_id: int) -> None:
        self.node_id = node_id
        self.spans: deque[Span] = deque(maxlen=MAX_TRACED_WRITES * 8)
        self.ring_events: deque[RingEvent] = deque(maxlen=MAX_RING_EVENTS)
        self.queued_ns: dict[int, int] = {}  # own writes handed to Totem, by count
        self.token_ns: dict[int, int] = {}  # the token visit that started their send
        self.left_last: tuple[int, ...] = ()

    def span(self, writer: int, count: int, phase: Phase, start: int, end: int) -> None:
        self.spans.append(Span(f"{writer}:{count}", self.node_id, phase, start, end))

    def submitted(self, count: int, submitted_ns: int) -> None:
        """An own write goes into Totem's send queue now (it was asked for at
        ``submitted_ns``; retries of a refused write count from the first try)."""
        queued = time.monotonic_ns()
        self.span(self.node_id, count, Phase.submit, submitted_ns, queued)
        self.queued_ns[count] = queued

    def sent(self, command: srp.Multicasted | srp.MulticastStarted, event_time: float) -> None:
        """An own write leaves on the token (its tag is the write's count): the token visit
        that started it (``event_time``, loop.time() of the event being handled) ends the
        token wait; the command comes right before the send of its last datagram."""
        count = command.tag
        if not isinstance(count, int):
            return
        token_ns = self.token_ns.setdefault(count, int(event_time * 1e9))
        if type(command) is srp.MulticastStarted:
            return
        sent_ns = time.monotonic_ns()
        del self.token_ns[count]
        queued = self.queued_ns.pop(count, None)
        if queued is None:
            return
        token_ns = max(token_ns, queued)  # loop.time() is a float: no sub-us inversions
        self.span(self.node_id, count, Phase.token_wait, queued, token_ns)
        self.span(self.node_id, count, Phase.multicast, token_ns, sent_ns)

    def applied(self, event: WriteApplied) -> None:
        applied = event.applied
        applied_ns = time.monotonic_ns()
        if event.send_ns:  # journey() starts it at the sender's multicast when it knows it
            self.span(
                applied.sender, applied.count, Phase.delivery, event.send_ns, event.delivered_ns
            )
        self.span(applied.sender, applied.count, Phase.apply, event.delivered_ns, applied_ns)

    def ring_event(
        self,
        kind: str,
        members: tuple[int, ...],
        ring_id: str = "",
        left: tuple[int, ...] = (),
        joined: tuple[int, ...] = (),
    ) -> None:
        self.ring_events.append(
            RingEvent(self.node_id, kind, time.monotonic_ns(), ring_id, members, left, joined)
        )

    def config_change(self, change: srp.ConfigChange) -> None:
        if change.kind is srp.ConfigKind.TRANSITIONAL:
            self.left_last = change.left  # EVS names who left here, who joined in REGULAR
        self.ring_event(
            change.kind.value,
            change.members,
            str(change.ring_id),
            change.left or self.left_last,
            change.joined,
        )
