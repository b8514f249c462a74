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

A write at level ``local`` is answered once it is durable on its own node and on members
holding a quorum of votes (votequorum's current quorum value; the writer's own votes count),
learnt from those acknowledgements. Writes are only applied in quorate configurations and
the DFSM sync leader is the tree with the newest (epoch, version), so a write durable on a
majority survives any crash and partition: every later quorate configuration holds one of
those disks (Raft's commit rule). Durable on the writer and held in memory by the others is
not enough: a crash loses memory, and two quorate histories could diverge. At ``all``, once
every member of the ring it was delivered in acknowledged it. When the ring changes first
and the members that moved on with this node do not hold quorum, or quorum is lost, the
writer gets EIO: the outcome is unknown, the write may or may not stay.
Answers carry the errno a write got at its delivery position (EAGAIN when refused there).
"""

from __future__ import annotations

import errno
from collections.abc import Mapping
from dataclasses import dataclass, field

from pvectl.nodecore.services import Multicast, StoreInstalled, WriteApplied, ack_message

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


@dataclass(frozen=True)
class Votes:
    """What a quorum of durable copies is: votes per node and the quorum value."""

    per_node: Mapping[int, int]
    quorum: int


@dataclass
class _Pending:
    level: str
    durable: bool = False
    errno_code: int = 0
    members: tuple[int, ...] | None = None  # the ring it was delivered in (None: not yet)
    # members of that ring whose acknowledgement can no longer count: they left this
    # node's configuration before acknowledging, so they may never have delivered it (an
    # acknowledgement "durable up to c" they send later would cover a gap)
    cannot_ack: frozenset[int] = frozenset()


@dataclass
class CommitPipeline:
    node_id: int
    coupled: bool = False
    queue: list[Durable] = field(default_factory=list)
    inflight: tuple[Durable, ...] | None = None
    writes: dict[int, _Pending] = field(default_factory=dict)  # own writes by count
    durable_upto: dict[int, int] = field(default_factory=dict)  # writer -> count, here
    acked: dict[int, dict[int, int]] = field(default_factory=dict)  # node -> writer -> upto
    # A writer's counts start again at 1 when it restarts: what this node knew of a writer
    # that joined (restarted or not) belongs to an earlier generation of its counts
    generation: dict[int, int] = field(default_factory=dict)  # writer -> generation
    applied_in: dict[tuple[int, int], int] = field(default_factory=dict)  # queued -> gen

    def joined(self, nodes: tuple[int, ...]) -> None:
        """``nodes`` joined this node's ring (a new regular configuration without them in
        the transitional one): forget how far their writes are durable here, and keep the
        writes of theirs still queued or in flight from counting, or a restarted writer's
        new write 54 would pass for durable here because its write 290 of before was."""
        for node in nodes:
            self.durable_upto.pop(node, None)
            self.generation[node] = self.generation.get(node, 0) + 1

    def submitted(self, count: int, level: str) -> None:
        """An own write was multicast; it will be answered once committed at ``level``."""
        if level not in COMMIT_LEVELS:
            raise ValueError(f"commit level must be local or all, not {level!r}")
        self.writes[count] = _Pending(level)

    def applied(self, item: Durable, members: tuple[int, ...] = ()) -> list[Command]:
        """A write was delivered in the ring of ``members`` (or a sync installed a state)."""
        if isinstance(item, WriteApplied):
            applied = item.applied
            pending = self.writes.get(applied.count) if applied.sender == self.node_id else None
            if pending is not None:
                pending.members = members
            if pending is not None and not applied.result.ok:
                pending.errno_code = applied.result.errno_code
            key = (applied.sender, applied.count)
            self.applied_in[key] = self.generation.get(applied.sender, 0)
        self.queue.append(item)
        return self._start()

    def fsync_done(self, members: tuple[int, ...], votes: Votes) -> list[Command]:
        """The batch in flight is durable: acknowledge it, answer writers, start the next."""
        batch, self.inflight = self.inflight or (), None
        upto: dict[int, int] = {}
        for item in batch:
            if isinstance(item, StoreInstalled):
                continue
            applied = item.applied
            gen = self.applied_in.pop((applied.sender, applied.count), None)
            if gen != self.generation.get(applied.sender, 0):
                continue  # its writer joined again since: an earlier generation's count
            upto[applied.sender] = max(upto.get(applied.sender, 0), applied.count)
            self.durable_upto[applied.sender] = max(
                self.durable_upto.get(applied.sender, 0), applied.count
            )
            if applied.sender == self.node_id and applied.count in self.writes:
                self.writes[applied.count].durable = True
        out: list[Command] = [ack_message(upto)] if upto else []
        out += self.answer(members, votes)
        return out + self._start()

    def acked_by(
        self, node: int, writer: int, upto: int, members: tuple[int, ...], votes: Votes
    ) -> list[Command]:
        known = self.acked.setdefault(node, {})
        known[writer] = max(upto, known.get(writer, 0))
        return self.answer(members, votes) if writer == self.node_id else []

    def refused_by(
        self, node: int, count: int, members: tuple[int, ...], votes: Votes
    ) -> list[Command]:
        """``node`` refused own write ``count`` at its delivery position (its quorum view
        differed from this node's): its copy never counts, whatever it acknowledges."""
        pending = self.writes.get(count)
        if pending is None or node == self.node_id:
            return []
        pending.cannot_ack |= {node}
        return self.answer(members, votes)

    def ring_changed(self, moved_quorate: bool, moved_on: tuple[int, ...] = ()) -> list[Command]:
        """A new regular ring. The members that moved on with this node (the transitional
        configuration ``moved_on``) delivered the same writes (EVS); if they hold quorum, a
        ``local`` write still waiting for durable copies keeps waiting for them there.
        Otherwise the heal may overrule it: EIO. A member of a write's delivery ring that
        did not move on with this node and had not acknowledged it never counts for it."""
        stay = set(moved_on) | {self.node_id}
        for count, pending in self.writes.items():
            if pending.members is None:
                continue
            gone = {
                m
                for m in pending.members
                if m not in stay and self.acked.get(m, {}).get(self.node_id, 0) < count
            }
            if gone:
                pending.cannot_ack |= gone
        return [] if moved_quorate else self.quorum_lost()

    def quorum_lost(self) -> list[Command]:
        """This node's configuration is not quorate: a delivered ``local`` write that is not
        yet durable on a quorum may never be (and may be overruled): EIO."""
        out: list[Command] = []
        for count, pending in list(self.writes.items()):
            if pending.level != "local" or pending.members is None:
                continue
            del self.writes[count]
            out.append(WriteDone(count, pending.level, pending.errno_code or errno.EIO))
        return out

    def durable_votes(self, count: int, votes: Votes) -> int:
        """Votes of the nodes where own write ``count`` is known durable (this one too)."""
        pending = self.writes.get(count)
        if pending is None or pending.members is None:
            return 0
        total = votes.per_node.get(self.node_id, 0) if pending.durable else 0
        for node in pending.members:  # only its delivery ring's members delivered it
            if node == self.node_id or node in pending.cannot_ack:
                continue
            if self.acked.get(node, {}).get(self.node_id, 0) >= count:
                total += votes.per_node.get(node, 0)
        return total

    def answer(self, members: tuple[int, ...], votes: Votes) -> list[Command]:
        """Writers whose level is reached (called again when the ring changes)."""
        out: list[Command] = []
        present = set(members)
        for count, pending in list(self.writes.items()):
            if not pending.durable:
                continue
            if pending.level == "local":
                code = pending.errno_code
                have, quorum = self.durable_votes(count, votes), max(votes.quorum, 1)
                if not code and have < quorum:
                    owed = sum(
                        votes.per_node.get(m, 0)
                        for m in present - {self.node_id} - pending.cannot_ack
                        if m in (pending.members or ())
                        and self.acked.get(m, {}).get(self.node_id, 0) < count
                    )
                    if have + owed >= quorum:
                        continue  # not yet durable on a quorum; the members present can
                    # the nodes present cannot make it durable on a quorum (quorate only with
                    # a quorum device's votes, which hold no data): unknown outcome, not a hang
                    code = errno.EIO
                del self.writes[count]
                out.append(WriteDone(count, pending.level, code))
                continue
            needed = pending.members if pending.members is not None else members
            missing = [
                m
                for m in needed
                if m in pending.cannot_ack or self.acked.get(m, {}).get(self.node_id, 0) < count
            ]
            if missing:
                if all(m in present and m not in pending.cannot_ack for m in missing):
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
