"""A tiny in-memory network for driving Srp instances in tests (h11 ConnectionPair style).

Fixed one-way delay, no randomness; a test-supplied ``drop(src, dst, message)``
predicate removes chosen packets, ``down`` nodes neither send nor receive.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any

from pvectl.totem.srp import (
    AppSend,
    CancelTimer,
    Command,
    ConfigChange,
    Deliver,
    PacketReceived,
    PersistRingSeq,
    SendAll,
    SendTo,
    SetTimer,
    Shutdown,
    Srp,
    Start,
    State,
    TimerFired,
    TotemConfig,
)
from pvectl.totem.wire import Codec, Message

KEY = b"0123456789abcdef0123456789abcdef"
FAST = TotemConfig(token=200, token_coefficient=0)


def codec(node: int) -> Codec:
    return Codec(node, "test", KEY)


class Net:
    def __init__(
        self,
        ids: list[int],
        config: TotemConfig = FAST,
        delay: float = 0.001,
        start: list[int] | None = None,
    ) -> None:
        self.ids = ids
        self.config = config
        self.delay = delay
        self.now = 0.0
        self.srp: dict[int, Srp] = {}
        self.timers: dict[int, dict[Any, float]] = {}
        self.delivered: dict[int, list[Deliver]] = {i: [] for i in ids}
        self.changes: dict[int, list[ConfigChange]] = {i: [] for i in ids}
        self.persisted: dict[int, int] = {i: 0 for i in ids}
        self.down: set[int] = set()
        self.blocked: set[tuple[int, int]] = set()
        self.drop: Callable[[int, int, Message], bool] | None = None
        self.sent_messages: list[tuple[int, int, Message]] = []
        self._heap: list[tuple[float, int, int, Any]] = []
        self._ctr = 0
        for i in start if start is not None else ids:
            self.boot(i)

    def boot(self, i: int) -> None:
        self.down.discard(i)
        self.srp[i] = Srp(i, self.ids, codec(i), self.config, ring_seq=self.persisted[i])
        self.timers[i] = {}
        self.execute(i, self.srp[i].handle(Start(), self.now))

    def crash(self, i: int) -> None:
        self.down.add(i)
        self.timers[i] = {}

    def shutdown(self, i: int) -> None:
        self.execute(i, self.srp[i].handle(Shutdown(), self.now))
        self.crash(i)

    def send(self, i: int, payload: bytes) -> list[Command]:
        cmds = self.srp[i].handle(AppSend(payload), self.now)
        self.execute(i, cmds)
        return cmds

    def _push(self, t: float, node: int, item: Any) -> None:
        self._ctr += 1
        heapq.heappush(self._heap, (t, self._ctr, node, item))

    def _transmit(self, src: int, dst: int, data: bytes) -> None:
        if src in self.down or dst in self.down or (src, dst) in self.blocked:
            return
        msg = codec(dst).decode(data)[1]
        self.sent_messages.append((src, dst, msg))
        if self.drop is not None and self.drop(src, dst, msg):
            return
        self._push(self.now + self.delay, dst, ("pkt", data))

    def execute(self, i: int, cmds: list[Command]) -> None:
        for c in cmds:
            if isinstance(c, SendAll):
                for dst in self.ids:
                    if dst != i:
                        self._transmit(i, dst, c.data)
            elif isinstance(c, SendTo):
                self._transmit(i, c.node, c.data)
            elif isinstance(c, SetTimer):
                self.timers[i][c.kind] = c.deadline
                self._push(c.deadline, i, ("timer", c.kind, c.deadline))
            elif isinstance(c, CancelTimer):
                self.timers[i].pop(c.kind, None)
            elif isinstance(c, Deliver):
                self.delivered[i].append(c)
            elif isinstance(c, ConfigChange):
                self.changes[i].append(c)
            elif isinstance(c, PersistRingSeq):
                self.persisted[i] = c.seq

    def run(self, duration: float) -> None:
        end = self.now + duration
        while self._heap and self._heap[0][0] <= end:
            t, _, node, item = heapq.heappop(self._heap)
            if node in self.down or node not in self.srp:
                continue
            self.now = t
            if item[0] == "pkt":
                cmds = self.srp[node].handle(PacketReceived(item[1]), t)
            else:
                _, kind, deadline = item
                if self.timers[node].get(kind) != deadline:
                    continue
                del self.timers[node][kind]
                cmds = self.srp[node].handle(TimerFired(kind), t)
            self.execute(node, cmds)
        self.now = end

    def run_until(self, cond: Callable[[], bool], limit: float, step: float = 0.01) -> float:
        start = self.now
        while not cond():
            if self.now - start > limit:
                raise AssertionError(f"condition not met within {limit}s")
            self.run(step)
        return self.now - start

    def one_ring(self, ids: list[int]) -> bool:
        rings = {self.srp[i].ring_id for i in ids}
        return len(rings) == 1 and all(
            self.srp[i].state is State.OPERATIONAL and list(self.srp[i].members) == sorted(ids)
            for i in ids
        )

    def payloads(self, i: int) -> list[bytes]:
        return [d.payload for d in self.delivered[i]]
