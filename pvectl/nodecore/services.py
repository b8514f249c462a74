"""The services an embedded node runs on the agreed stream: votequorum and the config store.

Pure: it takes Totem's ``ConfigChange``/``Deliver`` and a ``now``, and returns what to
multicast and what happened. The node core (``pvectl.nodecore.core``) adds the commit
pipeline; the runtime and the simulator both drive that core. Each Totem payload
starts with a service byte:

* ``1`` votequorum: NODEINFO (``ring seq u64, node u32, votes u32, expected u32,
  flags u32``), sent by every member after each regular configuration, and
  RECONFIGURE_EXPECTED (``value u32``) for runtime ``expected``;
* ``2`` config store: ``send_ns u64`` (sender's CLOCK_MONOTONIC, for sync-trace) then a
  pmxcfs DFSM message;
* ``3`` durability acknowledgements: ``count u32`` then ``count x (writer u32, upto u64)``:
  "I have fsync'd every write of ``writer`` up to its count ``upto``" (commit level
  ``all``).
"""

from __future__ import annotations

import errno
import struct
from dataclasses import dataclass, field

from pvectl.cfs import dfsm, messages
from pvectl.cfs.memdb import MAX_FILE_SIZE, ApplyResult, MemDB, Operation, Write
from pvectl.errors import CommandRefused
from pvectl.quorum import votequorum as vq
from pvectl.totem.ring_id import RingId

SERVICE_VOTEQUORUM = 1
SERVICE_CFS = 2
SERVICE_ACK = 3
SERVICE_REFUSED = 5  # "I refused writer w's write c at its delivery position" (4: bench)
NODE_SERVICES = frozenset({SERVICE_VOTEQUORUM, SERVICE_CFS, SERVICE_ACK, SERVICE_REFUSED})

_VQ_NODEINFO = 1
_VQ_EXPECTED = 2
_NODEINFO = struct.Struct("<BBQIIII")
_EXPECTED = struct.Struct("<BBI")
_CFS_HEAD = struct.Struct("<BQ")
_ACK_HEAD = struct.Struct("<BI")
_ACK_ITEM = struct.Struct("<IQ")
_REFUSED = struct.Struct("<BIQ")


@dataclass(frozen=True)
class Multicast:
    payload: bytes


@dataclass(frozen=True)
class QuorumChanged:
    quorate: bool
    members: tuple[int, ...]
    ring_id: RingId


@dataclass(frozen=True)
class WriteApplied:
    """A config-store write reached its delivery position on this node."""

    applied: dfsm.Applied
    send_ns: int  # the sender's clock when it multicast the write
    delivered_ns: int  # this node's clock at delivery (set by the runtime's ``now_ns``)


@dataclass(frozen=True)
class StoreInstalled:
    entries: dfsm.Installed


@dataclass(frozen=True)
class Acked:
    """Node ``node`` has made ``writer``'s writes durable up to ``upto``."""

    node: int
    writer: int
    upto: int


@dataclass(frozen=True)
class Refused:
    """Node ``node`` refused ``writer``'s write ``count`` where it was delivered: its later
    acknowledgements ("durable up to c") do not cover that write."""

    node: int
    writer: int
    count: int


@dataclass(frozen=True)
class ServiceLog:
    text: str


Output = Multicast | QuorumChanged | WriteApplied | StoreInstalled | Acked | Refused | ServiceLog


def ack_message(upto: dict[int, int]) -> Multicast:
    """ "I have made ``writer``'s writes durable up to ``upto``", for commit level ``all``."""
    items = b"".join(_ACK_ITEM.pack(writer, upto[writer]) for writer in sorted(upto))
    return Multicast(_ACK_HEAD.pack(SERVICE_ACK, len(upto)) + items)


class StoreError(CommandRefused):
    """A write the store refuses; carries the errno the FUSE layer returns."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.errno_code = code


@dataclass
class NodeServices:
    node_id: int
    quorum: vq.VotequorumState
    memdb: MemDB
    members: tuple[int, ...] = ()
    ring_id: RingId = field(default_factory=lambda: RingId(0, 0))
    pending_nodeinfo: set[int] = field(default_factory=set)
    transitional_quorate: bool | None = None  # None: not in a transitional configuration
    store: dfsm.Dfsm = field(init=False)

    def __post_init__(self) -> None:
        self.store = dfsm.Dfsm(self.node_id, self.memdb)

    # --- inputs ----------------------------------------------------------------------------

    def transitional_configuration(
        self, members: tuple[int, ...], ring_seq: int | None = None
    ) -> list[Output]:
        """Totem's transitional configuration: the members that move on together.

        Writes still delivered from now until the regular configuration reached only these
        members for sure (EVS). Where they do not hold quorum, the other side may go on
        writing, so applying them here could fork the store's history: they are refused,
        on every member of this transitional set alike, and their writers get EAGAIN.
        """
        votes = sum(record.votes for record in self.quorum.nodes if record.node_id in set(members))
        self.transitional_quorate = self.quorum.quorate and votes >= self.quorum.quorum
        if self.transitional_quorate:
            # Writes applied from here were delivered to these members only, and a member
            # cut off from them may have delivered others in the old ring before it knew:
            # stamp them with the next ring's epoch, so this quorate history outranks that
            # one at the next sync even when both reach the same version (seed 7404).
            if ring_seq is not None:
                self.store.ring_seq = max(self.store.ring_seq, ring_seq)
            return []
        return [
            ServiceLog(
                f"transitional configuration {' '.join(map(str, members))} holds "
                f"{votes} of {self.quorum.quorum} votes needed: writes still in "
                "flight are refused"
            )
        ]

    def regular_configuration(
        self, members: tuple[int, ...], ring_id: RingId, now: float, wall_s: int
    ) -> list[Output]:
        """A new ring is installed: votequorum sync, then DFSM sync, as corosync+pmxcfs."""
        self.members = tuple(sorted(members))
        self.ring_id = ring_id
        self.transitional_quorate = None
        self.quorum = vq.membership_changed(self.quorum, self.members, now)
        self.pending_nodeinfo = set(self.members)
        out: list[Output] = [Multicast(self._nodeinfo(vq.local_nodeinfo(self.quorum)))]
        # the store refuses the writes it queued during an unfinished sync (EAGAIN): alone,
        # a node is synced at once on its own older tree, and applying them there would
        # write in a configuration that may hold no quorum (seed 2329)
        changed = self.store.membership_changed(self.members, wall_s, ring_id.seq)
        out += self._from_store(changed, 0)
        return out

    def deliver(self, sender: int, payload: bytes, wall_s: int, now_ns: int) -> list[Output]:
        """``wall_s``: wall-clock seconds (store mtimes); ``now_ns``: monotonic (traces)."""
        if not payload:
            return []
        service = payload[0]
        if service == SERVICE_VOTEQUORUM:
            return self._deliver_votequorum(sender, payload)
        if service == SERVICE_CFS and len(payload) >= _CFS_HEAD.size:
            _, send_ns = _CFS_HEAD.unpack_from(payload)
            raw = payload[_CFS_HEAD.size :]
            if not self._may_apply_writes():
                refused = self._refuse_write(sender, raw, send_ns, now_ns)
                if refused is not None:
                    # Whether a write may apply is decided here from this node's quorum,
                    # and a QDevice vote is withdrawn node by node (each on its own
                    # connection): another member may have applied it. Tell the writer,
                    # so it never counts this node's copy (simulator seed 7120).
                    notice = _REFUSED.pack(SERVICE_REFUSED, sender, refused.applied.count)
                    return [refused, Multicast(notice)]
            commands = self.store.deliver(sender, raw, wall_s)
            return self._from_store(commands, send_ns, now_ns)
        if service == SERVICE_REFUSED:
            if len(payload) != _REFUSED.size:
                return [ServiceLog(f"malformed refusal notice from node {sender}")]
            _, writer, count = _REFUSED.unpack(payload)
            return [Refused(sender, writer, count)]
        if service == SERVICE_ACK and len(payload) >= _ACK_HEAD.size:
            _, count = _ACK_HEAD.unpack_from(payload)
            if len(payload) != _ACK_HEAD.size + count * _ACK_ITEM.size:
                return [ServiceLog(f"malformed acknowledgement from node {sender}")]
            return [
                Acked(sender, *_ACK_ITEM.unpack_from(payload, _ACK_HEAD.size + i * _ACK_ITEM.size))
                for i in range(count)
            ]
        return [ServiceLog(f"unknown service {service} from node {sender}")]

    def _may_apply_writes(self) -> bool:
        """Decided at a delivery position, so every member of the ring decides alike.

        A write queued in an earlier ring can be sent, and delivered, in a ring that has
        lost quorum (Totem keeps the send queue across configurations), and writes still in
        flight at a transitional configuration reach only its members: applying either
        where quorum is not held could fork the store (pmxcfs resyncs instead). Refused
        writes fail with EAGAIN for their writer.
        """
        if self.transitional_quorate is not None:
            return self.transitional_quorate
        return not self.pending_nodeinfo and self.quorum.quorate

    def _refuse_write(
        self, sender: int, raw: bytes, send_ns: int, now_ns: int
    ) -> WriteApplied | None:
        try:
            message = messages.decode(raw)
        except messages.MessageError:
            return None  # the store reports it
        if not isinstance(message, messages.NormalMessage):
            return None
        result = ApplyResult(errno.EAGAIN, self.memdb.version)
        applied = dfsm.Applied(sender, message.count, message.op, result)
        return WriteApplied(applied, send_ns, now_ns)

    def lms_deadline(self) -> float | None:
        return vq.next_deadline(self.quorum)

    def lms_timer(self, now: float) -> list[Output]:
        before = self.quorum.quorate
        self.quorum = vq.lms_timer_fired(self.quorum, now)
        return self._quorum_outputs(before, force=True)

    # --- requests from this node -----------------------------------------------------------

    def set_expected(self, requested: int) -> list[Output]:
        """Guard and apply locally (raises ``CommandRefused``), then tell the others."""
        before = self.quorum.quorate
        self.quorum = vq.set_expected(self.quorum, requested)
        payload = _EXPECTED.pack(SERVICE_VOTEQUORUM, _VQ_EXPECTED, requested)
        return [Multicast(payload), *self._quorum_outputs(before, force=True)]

    def write(self, op: Operation, wall_s: int, send_ns: int) -> tuple[int, list[Output]]:
        """Encode a store write; refused with EACCES while this partition is not quorate.

        A write that would take a file past the store's 1 MiB is refused here, with the
        EFBIG the store would give, before it is multicast: it would only travel the
        whole ring to be refused on every member."""
        if isinstance(op, Write) and op.offset + len(op.data) > MAX_FILE_SIZE:
            raise StoreError(
                errno.EFBIG,
                f"EFBIG: {op.offset + len(op.data)} bytes, the store's files are limited "
                f"to {MAX_FILE_SIZE} bytes (1 MiB)",
            )
        if self.pending_nodeinfo:
            # votequorum has not finished its sync for this ring: the quorate flag is the
            # previous ring's, and a node that just lost its peers must not write on it
            raise StoreError(errno.EAGAIN, "EAGAIN: quorum is being recomputed, retry")
        if not self.quorum.quorate:
            raise StoreError(
                errno.EACCES,
                "EACCES: this partition is not quorate, the config store is read-only",
            )
        if not self.store.synced:
            raise StoreError(errno.EAGAIN, "EAGAIN: the config store is synchronising, retry")
        count, raw = self.store.write(op, wall_s)
        return count, [Multicast(_CFS_HEAD.pack(SERVICE_CFS, send_ns) + raw)]

    def ack(self, upto: dict[int, int]) -> Multicast:
        return ack_message(upto)

    def set_qdevice(self, *, registered: bool, alive: bool, cast_vote: bool) -> list[Output]:
        """The local qdevice client's poll: new flags on our record, then our NODEINFO again
        (corosync does the same); a vote cast counts once that NODEINFO is delivered, a
        vote withdrawn stops counting at once."""
        before = self.quorum.us.flags
        quorate = self.quorum.quorate
        self.quorum = vq.set_qdevice(
            self.quorum, registered=registered, alive=alive, cast_vote=cast_vote
        )
        if self.quorum.us.flags == before:
            return []
        withdrawn = before & vq.NodeFlag.QDEVICE_CAST_VOTE and not cast_vote
        recomputed = bool(withdrawn and not self.pending_nodeinfo)
        if recomputed:
            # the client answers qnetd's NACK at once, and qnetd then gives the vote to
            # another partition: stop counting it now, not when the NODEINFO comes round
            self.quorum = vq.sync_completed(self.quorum)
        # the NODEINFO carries the decision just made: a QUORATE flag from before the
        # withdrawal would let an inquorate member adopt our expected votes and lower its
        # quorum on a claim we no longer make
        out: list[Output] = [Multicast(self._nodeinfo(vq.local_nodeinfo(self.quorum)))]
        if recomputed:
            out += self._quorum_outputs(quorate)
        return out

    def local_nodeinfo(self) -> Multicast:
        return Multicast(self._nodeinfo(vq.local_nodeinfo(self.quorum)))

    @staticmethod
    def is_nodeinfo(output: Output) -> bool:
        payload = output.payload if isinstance(output, Multicast) else b""
        return payload[:2] == bytes((SERVICE_VOTEQUORUM, _VQ_NODEINFO))

    def leaving_nodeinfo(self) -> bytes:
        return self._nodeinfo(vq.leaving(self.quorum))

    # --- internals -------------------------------------------------------------------------

    def _nodeinfo(self, info: vq.NodeInfo) -> bytes:
        return _NODEINFO.pack(
            SERVICE_VOTEQUORUM,
            _VQ_NODEINFO,
            self.ring_id.seq,
            info.node_id,
            info.votes,
            info.expected_votes,
            int(info.flags),
        )

    def _deliver_votequorum(self, sender: int, payload: bytes) -> list[Output]:
        kind = payload[1] if len(payload) > 1 else 0
        before = self.quorum.quorate
        if kind == _VQ_NODEINFO and len(payload) == _NODEINFO.size:
            _, _, ring_seq, node, votes, expected, flags = _NODEINFO.unpack(payload)
            if ring_seq != self.ring_id.seq or sender not in self.members:
                return []  # from an earlier ring: the sync of this one supersedes it
            info = vq.NodeInfo(node, votes, expected, vq.NodeFlag(flags))
            self.quorum = vq.nodeinfo_received(self.quorum, info, sender)
            self.pending_nodeinfo.discard(sender)
            if self.pending_nodeinfo:
                return []
            self.quorum = vq.sync_completed(self.quorum)
            return self._quorum_outputs(before, force=True)
        if kind == _VQ_EXPECTED and len(payload) == _EXPECTED.size:
            if sender == self.node_id:
                return []  # applied when asked
            (_, _, value) = _EXPECTED.unpack(payload)
            self.quorum = vq.expected_reconfigured(self.quorum, value)
            return self._quorum_outputs(before, force=True)
        return [ServiceLog(f"malformed votequorum message from node {sender}")]

    def _quorum_outputs(self, before: bool, force: bool = False) -> list[Output]:
        out: list[Output] = []
        if force or before != self.quorum.quorate:
            out.append(QuorumChanged(self.quorum.quorate, self.members, self.ring_id))
        return out

    def _from_store(
        self, commands: list[dfsm.Command], send_ns: int, now_ns: int = 0
    ) -> list[Output]:
        out: list[Output] = []
        for command in commands:
            if isinstance(command, dfsm.Send):
                out.append(Multicast(_CFS_HEAD.pack(SERVICE_CFS, 0) + command.payload))
            elif isinstance(command, dfsm.Applied):
                out.append(WriteApplied(command, send_ns, now_ns))
            elif isinstance(command, dfsm.Installed):
                out.append(StoreInstalled(command))
            elif isinstance(command, dfsm.Failed):
                out.append(ServiceLog(f"config store: {command.reason}"))
            elif isinstance(command, dfsm.Malformed):
                if command.count == 1:  # logged once; the rest only count (runtime stats)
                    out.append(
                        ServiceLog(
                            f"config store: dropped a malformed message from node "
                            f"{command.sender}: {command.reason} (further ones are only counted)"
                        )
                    )
            elif isinstance(command, dfsm.Log):
                out.append(ServiceLog(f"config store: {command.message}"))
            elif isinstance(command, dfsm.SyncDone):
                out.append(ServiceLog(f"config store synchronised (leader {command.leader})"))
        return out
