"""One node's decisions above Totem: votequorum, the config store and its commit pipeline.

The driver (the runtime, or the simulator) feeds it Totem's configuration changes and
deliveries, local writes, fsync completions and timer expiries, each with ``now`` in float
seconds, and carries out what comes back:

* ``Multicast``: hand the payload to Totem (an own write's comes from ``write``);
* ``StartFsync`` / ``WriteDone``: the commit pipeline's disk work and answers (a ``local``
  write once it is durable here and on members holding quorum, see ``commit``);
* ``WriteApplied``, ``StoreInstalled``, ``QuorumChanged``, ``ServiceLog``: what happened,
  for traces and logs (the pipeline has already taken the first two).

One timer convention: ``next_deadline()`` says when ``timer_fired(now)`` is due next.

QDevice vote hold (corosync-qdevice's sync): after a new ring, the node's NODEINFO waits
until the local qdevice's qnetd has answered for that ring (``qdevice_poll`` with
``answered``) or the sync timeout passes, so a vote granted for an earlier ring never
counts in this one.
"""

from __future__ import annotations

from pvectl.cfs.memdb import MemDB, Operation
from pvectl.nodecore.commit import CommitPipeline, StartFsync, Votes, WriteDone
from pvectl.nodecore.services import (
    Acked,
    Multicast,
    NodeServices,
    Output,
    QuorumChanged,
    Refused,
    ServiceLog,
    StoreInstalled,
    WriteApplied,
)
from pvectl.quorum import votequorum as vq
from pvectl.totem.ring_id import RingId

CoreOutput = Multicast | QuorumChanged | WriteApplied | StoreInstalled | ServiceLog
Command = CoreOutput | StartFsync | WriteDone


class NodeCore:
    def __init__(
        self, node_id: int, quorum: vq.VotequorumState, memdb: MemDB, *, coupled: bool = False
    ) -> None:
        self.node_id = node_id
        self.memdb = memdb
        self.services = NodeServices(node_id, quorum, memdb)
        self.commit = CommitPipeline(node_id, coupled)
        self.hold_until: float | None = None  # our NODEINFO waits for qnetd until then
        self._votes_of: vq.VotequorumState | None = None  # the state ``_votes`` was read from
        self._votes = Votes({}, 0)
        self.qdevice_wants = False  # the local qdevice client's current decision
        self.moved_on: tuple[int, ...] | None = None  # the last transitional configuration

    # --- Totem -------------------------------------------------------------------------------

    def transitional(
        self, members: tuple[int, ...], ring_id: RingId | None = None
    ) -> list[Command]:
        """``ring_id``: the ring that follows (Totem names the transitional configuration
        after it)."""
        self.moved_on = members
        ring_seq = ring_id.seq if ring_id is not None else None
        return self.route(self.services.transitional_configuration(members, ring_seq))

    def regular(
        self,
        members: tuple[int, ...],
        ring_id: RingId,
        now: float,
        wall_s: int,
        *,
        hold_nodeinfo_s: float | None = None,
    ) -> list[Command]:
        """A new regular ring. ``hold_nodeinfo_s``: the local qdevice is connected; hold our
        NODEINFO (and so its vote) at most this long for qnetd's answer for this ring."""
        moved_quorate = bool(self.services.transitional_quorate)
        moved_on = self.moved_on if self.moved_on is not None else self.services.members
        self.moved_on = None
        self.commit.joined(tuple(m for m in members if m not in moved_on))
        out: list[Command] = list(self.commit.ring_changed(moved_quorate, moved_on))
        outputs = self.services.regular_configuration(members, ring_id, now, wall_s)
        self.hold_until = None
        if hold_nodeinfo_s is not None:
            kept = [o for o in outputs if not NodeServices.is_nodeinfo(o)]
            if len(kept) != len(outputs):
                self.hold_until = now + hold_nodeinfo_s
                outputs = kept
        out += self.route(outputs)
        return out + self._answer()  # fewer members to wait for

    @property
    def holding(self) -> bool:
        return self.hold_until is not None

    def qdevice_poll(self, wanted: bool, *, answered: bool) -> list[Command]:
        """The local qdevice client's decision; ``answered``: qnetd answered for the
        current ring. While the NODEINFO is held only an answer releases it (with the vote
        wanted then); otherwise a changed vote goes out with a new NODEINFO at once."""
        self.qdevice_wants = wanted
        if self.hold_until is not None:
            return self._release("qnetd answered for the new ring") if answered else []
        if bool(self.services.quorum.us.flags & vq.NodeFlag.QDEVICE_CAST_VOTE) == wanted:
            return []
        return [
            ServiceLog(f"qdevice: cast vote {'ACK' if wanted else 'NACK'}"),
            *self.route(self.services.set_qdevice(registered=True, alive=True, cast_vote=wanted)),
        ]

    def qdevice_release(self, why: str) -> list[Command]:
        """Stop holding now and send the NODEINFO (qnetd unreachable)."""
        return self._release(why) if self.hold_until is not None else []

    def qdevice_stopped(self) -> None:
        """The client stopped: drop the hold (its unregistration sends a NODEINFO)."""
        self.hold_until = None

    def _release(self, why: str) -> list[Command]:
        self.hold_until = None
        wanted = self.qdevice_wants
        self.services.quorum = vq.set_qdevice(
            self.services.quorum, registered=True, alive=True, cast_vote=wanted
        )
        return [
            ServiceLog(f"qdevice: cast vote {'ACK' if wanted else 'NACK'} ({why})"),
            *self.route([self.services.local_nodeinfo()]),
        ]

    def deliver(self, sender: int, payload: bytes, wall_s: int, now_ns: int = 0) -> list[Command]:
        return self.route(self.services.deliver(sender, payload, wall_s, now_ns))

    # --- local requests and completions --------------------------------------------------------

    def write(
        self, op: Operation, level: str, wall_s: int, send_ns: int = 0
    ) -> tuple[int, list[Command]]:
        """Multicast a store write (raises ``StoreError`` when refused here, at once)."""
        count, outputs = self.services.write(op, wall_s, send_ns)
        self.commit.submitted(count, level)
        return count, self.route(outputs)

    def set_expected(self, votes: int) -> list[Command]:
        return self.route(self.services.set_expected(votes))

    def fsync_done(self) -> list[Command]:
        return list(self.commit.fsync_done(self.services.members, self.votes()))

    def votes(self) -> Votes:
        """Votequorum's view now: each node's votes and the quorum value (a quorum of
        durable copies for ``local``)."""
        quorum = self.services.quorum
        if quorum is not self._votes_of:  # a quorum state is never changed, only replaced
            self._votes = Votes({r.node_id: r.votes for r in quorum.nodes}, quorum.quorum)
            self._votes_of = quorum
        return self._votes

    def _answer(self) -> list[Command]:
        return list(self.commit.answer(self.services.members, self.votes()))

    def next_deadline(self) -> float | None:
        deadlines = [d for d in (self.hold_until, self.services.lms_deadline()) if d is not None]
        return min(deadlines, default=None)

    def timer_fired(self, now: float) -> list[Command]:
        out: list[Command] = []
        if self.hold_until is not None and now >= self.hold_until:
            out += self._release("sync_timeout expired")
        deadline = self.services.lms_deadline()
        if deadline is not None and now >= deadline:
            out += self.route(self.services.lms_timer(now))
        return out

    # --- internals -----------------------------------------------------------------------------

    def route(self, outputs: list[Output]) -> list[Command]:
        """Services outputs (also from a driver-side caller, e.g. QDevice): the pipeline
        takes acknowledgements, applied writes and installs."""
        out: list[Command] = []
        for output in outputs:
            if isinstance(output, Acked):
                out += self.commit.acked_by(
                    output.node, output.writer, output.upto, self.services.members, self.votes()
                )
                continue
            if isinstance(output, Refused):
                if output.writer == self.node_id:
                    out += self.commit.refused_by(
                        output.node, output.count, self.services.members, self.votes()
                    )
                continue
            out.append(output)
            if isinstance(output, WriteApplied | StoreInstalled):
                out += self.commit.applied(output, self.services.members)
            elif isinstance(output, QuorumChanged):
                out += self.commit.quorum_lost() if not output.quorate else self._answer()
        return out
