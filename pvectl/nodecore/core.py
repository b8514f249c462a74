"""One node's decisions above Totem: votequorum, the config store and its commit pipeline.

The driver (the runtime, or the simulator) feeds it Totem's configuration changes and
deliveries, local writes, fsync completions and timer expiries, each with ``now`` in float
seconds, and carries out what comes back:

* ``Multicast``: hand the payload to Totem (an own write's comes from ``write``);
* ``StartFsync`` / ``WriteDone``: the commit pipeline's disk work and answers;
* ``WriteApplied``, ``StoreInstalled``, ``QuorumChanged``, ``ServiceLog``: what happened,
  for traces and logs (the pipeline has already taken the first two).

One timer convention: ``next_deadline()`` says when ``timer_fired(now)`` is due next.
"""

from __future__ import annotations

from pvectl.cfs.memdb import MemDB, Operation
from pvectl.nodecore.commit import CommitPipeline, StartFsync, WriteDone
from pvectl.nodecore.services import (
    Acked,
    Multicast,
    NodeServices,
    Output,
    QuorumChanged,
    ServiceLog,
    StoreInstalled,
    WriteApplied,
)
from pvectl.quorum import votequorum as vq
from pvectl.results import RingId

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

    # --- Totem -------------------------------------------------------------------------------

    def transitional(self, members: tuple[int, ...]) -> list[Command]:
        return self.route(self.services.transitional_configuration(members))

    def regular(
        self, members: tuple[int, ...], ring_id: RingId, now: float, wall_s: int
    ) -> list[Command]:
        out = self.route(
            self.services.regular_configuration(members, ring_id, int(now * 1000), wall_s)
        )
        return out + self.commit.answer(self.services.members)  # fewer members to wait for

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
        return list(self.commit.fsync_done(self.services.members))

    def next_deadline(self) -> float | None:
        deadline_ms = self.services.lms_deadline()
        return None if deadline_ms is None else deadline_ms / 1000

    def timer_fired(self, now: float) -> list[Command]:
        return self.route(self.services.lms_timer(int(now * 1000)))

    # --- internals -----------------------------------------------------------------------------

    def route(self, outputs: list[Output]) -> list[Command]:
        """Services outputs (also from a driver-side caller, e.g. QDevice): the pipeline
        takes acknowledgements, applied writes and installs."""
        out: list[Command] = []
        for output in outputs:
            if isinstance(output, Acked):
                out += self.commit.acked_by(
                    output.node, output.writer, output.upto, self.services.members
                )
                continue
            out.append(output)
            if isinstance(output, WriteApplied | StoreInstalled):
                out += self.commit.applied(output, self.services.members)
        return out
