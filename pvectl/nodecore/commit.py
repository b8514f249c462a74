"""The config store's commit pipeline: when an applied write is durable, and when its writer
may be answered.

Every write a node applies (and every state a DFSM sync installs) goes through one ordered
queue into ``config.db``. The pipeline decides, the driver does the disk work:

* ``StartFsync(batch)``: make this batch durable, in order, as one transaction. At most
  one is in flight; what arrives meanwhile waits and goes as the next group commit.
  ``inline`` (coupled mode) means the driver does it before handling anything else, as
  pmxcfs does in corosync's thread; otherwise it runs beside the protocol.
* ``fsync_done()``: the batch is on disk. The pipeline multicasts an acknowledgement
  ("durable here up to count c of writer w") and answers local writers.

A write at level ``local`` is answered once it is durable on its own node and *stable* in
Totem (every member of its ring holds it, so a partition cannot leave it with this node
alone: agreed delivery lets a node deliver its own message before anyone else got it); at
``all``, once every member of the ring it was delivered in acknowledged it. When the ring
changes first, the write counts as stable if the members that moved on with this node hold
quorum (they all delivered it, by EVS); otherwise the writer gets EIO: the outcome is
unknown, the write may or may not stay.
Answers carry the errno a write got at its delivery position (EAGAIN when refused there).
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field

from pvectl.nodecore.services import Multicast, StoreInstalled, WriteApplied, ack_message
from pvectl.totem.ring_id import RingId

COMMIT_LEVELS = ("local", "all")

Durable = WriteApplied | StoreInstalled


@dataclass(frozen=True)
class StartFsync:
    """Write ``batch`` to the store's disk, in order, as one group commit."""

    batch: tuple[Durable, ...]
    inline: bool  # coupled: done before the next event; decoupled: beside the protocol


@dataclass(frozen=True)
class WriteDone:
    """Answer the local writer of ``count``: ``errno_code`` 0 is success."""

    count: int
    level: str
    errno_code: int


Command = StartFsync | WriteDone | Multicast


@dataclass
class _Pending:
    level: str
    durable: bool = False
    errno_code: int = 0
    members: tuple[int, ...] | None = None  # the ring it was delivered in (level all)
    position: tuple[RingId, int] | None = None  # (ring, frame seq) of its delivery


@dataclass
class CommitPipeline:
    node_id: int
    coupled: bool = False
    queue: list[Durable] = field(default_factory=list)
    inflight: tuple[Durable, ...] | None = None
    writes: dict[int, _Pending] = field(default_factory=dict)  # own writes by count
    durable_upto: dict[int, int] = field(default_factory=dict)  # writer -> count, here
    acked: dict[int, dict[int, int]] = field(default_factory=dict)  # node -> writer -> upto
    stable_mark: tuple[RingId, int] | None = None  # Totem: held by every member up to here

    def submitted(self, count: int, level: str) -> None:
        """An own write was multicast; it will be answered once committed at ``level``."""
        if level not in COMMIT_LEVELS:
            raise ValueError(f"commit level must be local or all, not {level!r}")
        self.writes[count] = _Pending(level)

    def applied(
        self,
        item: Durable,
        members: tuple[int, ...] = (),
        position: tuple[RingId, int] | None = None,
    ) -> list[Command]:
        """A write reached its delivery ``position`` in the ring of ``members`` (or a sync
        installed a state). Without a position the write counts as stable at once."""
        if isinstance(item, WriteApplied):
            applied = item.applied
            pending = self.writes.get(applied.count) if applied.sender == self.node_id else None
            if pending is not None:
                pending.members = members
                pending.position = position
            if pending is not None and not applied.result.ok:
                pending.errno_code = applied.result.errno_code
        self.queue.append(item)
        return self._start()

    def fsync_done(self, members: tuple[int, ...]) -> list[Command]:
        """The batch in flight is durable: acknowledge it, answer writers, start the next."""
        batch, self.inflight = self.inflight or (), None
        upto: dict[int, int] = {}
        for item in batch:
            if isinstance(item, StoreInstalled):
                continue
            applied = item.applied
            upto[applied.sender] = max(upto.get(applied.sender, 0), applied.count)
            self.durable_upto[applied.sender] = max(
                self.durable_upto.get(applied.sender, 0), applied.count
            )
            if applied.sender == self.node_id and applied.count in self.writes:
                self.writes[applied.count].durable = True
        out: list[Command] = [ack_message(upto)] if upto else []
        out += self.answer(members)
        return out + self._start()

    def acked_by(
        self, node: int, writer: int, upto: int, members: tuple[int, ...]
    ) -> list[Command]:
        known = self.acked.setdefault(node, {})
        known[writer] = max(upto, known.get(writer, 0))
        return self.answer(members) if writer == self.node_id else []

    def stable(self, ring: RingId, seq: int, members: tuple[int, ...]) -> list[Command]:
        """Totem's stability mark moved (the driver reports it after each event)."""
        if self.stable_mark == (ring, seq):
            return []
        self.stable_mark = (ring, seq)
        return self.answer(members)

    def ring_changed(self, ring: RingId, moved_quorate: bool) -> list[Command]:
        """A new regular ring: a local write not yet stable in its old ring never will be.

        EVS: the members that moved on with this node (the transitional configuration)
        delivered the same messages, so they all applied it; if they hold quorum it stays
        (``moved_quorate``). Otherwise the writer gets EIO: the heal may overrule it."""
        out: list[Command] = []
        for count, pending in list(self.writes.items()):
            position = pending.position
            if pending.level != "local" or position is None or position[0] == ring:
                continue
            if self._is_stable(position):
                continue
            if moved_quorate:
                pending.position = None  # as safe as a stable one
                continue
            del self.writes[count]
            out.append(WriteDone(count, pending.level, pending.errno_code or errno.EIO))
        return out

    def _is_stable(self, position: tuple[RingId, int]) -> bool:
        mark = self.stable_mark
        return mark is not None and mark[0] == position[0] and position[1] <= mark[1]

    def answer(self, members: tuple[int, ...]) -> list[Command]:
        """Writers whose level is reached (called again when the ring changes)."""
        out: list[Command] = []
        present = set(members)
        for count, pending in list(self.writes.items()):
            if not pending.durable:
                continue
            position = pending.position
            if pending.level == "local" and position is not None and not self._is_stable(position):
                continue
            needed = pending.members if pending.members is not None else members
            missing = [m for m in needed if self.acked.get(m, {}).get(self.node_id, 0) < count]
            if pending.level == "all" and missing:
                if all(m in present for m in missing):
                    continue  # still waiting for members of this ring
                # a member of the delivery ring left before acknowledging: the write may
                # be overruled when the partition heals, so it is not acknowledged
                del self.writes[count]
                out.append(WriteDone(count, pending.level, pending.errno_code or errno.EIO))
                continue
            del self.writes[count]
            out.append(WriteDone(count, pending.level, pending.errno_code))
        return out

    def _start(self) -> list[Command]:
        if self.inflight is not None or not self.queue:
            return []
        self.inflight, self.queue = tuple(self.queue), []
        return [StartFsync(self.inflight, self.coupled)]
