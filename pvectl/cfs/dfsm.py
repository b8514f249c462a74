"""DFSM: keeps every member's memdb identical across membership changes (pmxcfs's dfsm.c).

A pure state machine over the CPG stream: ``membership_changed`` and ``deliver`` take what
CPG delivered (in agreed order) and return commands for the runtime. Because every member
sees the same messages in the same order, every member takes the same decisions:

1. On a membership change every member enters START_SYNC; the lowest node id sends
   SYNC_START carrying its epoch; everyone answers STATE = its memdb index.
2. When all STATEs are in, the leader is the member with the highest (epoch, version), then
   the latest mtime, then the lowest node id. The epoch is the ring seq of the configuration
   a tree's last write was applied in (persisted with the tree, see ``memdb``): writes are
   only applied in quorate configurations, so a higher epoch is a newer quorate history,
   whatever its version (a node that restarted on an older disk may have written fewer
   versions in a newer quorate ring; by version alone its acknowledged writes would lose).
   Members whose index equals the leader's are synced;
   the leader sends UPDATE for every entry some unsynced member lacks, then UPDATE_COMPLETE.
3. An unsynced member installs the leader's tree at UPDATE_COMPLETE and checks that its new
   index equals the leader's (byte for byte); a mismatch is an error, never silent.
4. Writes (normal messages) delivered while not synced are queued and applied after sync,
   in delivery order, so the leader's snapshot plus the queue gives the same tree everywhere.

A delivered message that cannot be decoded (a bad header, a VERIFY_REQUEST or VERIFY of the
wrong size) is dropped and reported as ``Malformed``; ``deliver`` never raises. Decoding
is deterministic, so every member drops the same message and the stores stay identical.
A sync message whose *content* is bad (a STATE index, an UPDATE entry) still ends in
``Failed``: the sync round cannot complete without it.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import struct
from dataclasses import dataclass, field
from enum import IntEnum

from pvectl.cfs import messages
from pvectl.cfs.memdb import (
    DT_REG,
    INDEX_HEAD,
    ApplyResult,
    Entry,
    MemDB,
    MemdbIndex,
    Operation,
    encode_epoch,
)
from pvectl.cfs.messages import Epoch, MessageError, NormalMessage, StateMessage


class Mode(IntEnum):
    START = 0
    START_SYNC = 1
    SYNCED = 2
    UPDATE = 3
    LEAVE = 253
    ERROR = 255


@dataclass(frozen=True)
class Send:
    """Multicast these bytes to the group (agreed order)."""

    payload: bytes


@dataclass(frozen=True)
class Applied:
    """An operation was applied (or refused with an errno) at its delivery position."""

    sender: int
    count: int
    op: Operation
    result: ApplyResult


@dataclass(frozen=True)
class Installed:
    """The tree was replaced by the leader's: persist every row anew."""

    entries: tuple[Entry, ...]


@dataclass(frozen=True)
class SyncDone:
    leader: int
    updated: bool  # True when this node received the leader's tree


@dataclass(frozen=True)
class Failed:
    """The store diverged (index mismatch, verify mismatch): leave and resync."""

    reason: str


@dataclass(frozen=True)
class Malformed:
    """A delivered message could not be decoded and was dropped (on every member alike).

    ``count`` is this node's running total, so a runtime logs the first and counts the
    rest instead of letting one noisy member flood the log."""

    sender: int
    reason: str
    count: int


@dataclass(frozen=True)
class Log:
    message: str


Command = Send | Applied | Installed | SyncDone | Failed | Malformed | Log


_INDEX_ENTRY = struct.Struct("<Q32s")


@functools.lru_cache(maxsize=16)
def _decode_index(raw: bytes) -> MemdbIndex:
    """Every member decodes every member's state: a node process decodes each once, the
    simulator's nodes share the (immutable) result."""
    head = INDEX_HEAD
    if len(raw) < head.size:
        raise MessageError("state index too short")
    epoch, version, last_inode, writer, mtime, size = head.unpack_from(raw)
    if len(raw) != head.size + size * 40:
        raise MessageError("state index length does not match its entry count")
    entries = tuple(_INDEX_ENTRY.iter_unpack(raw[head.size :]))  # (inode, digest) pairs
    return MemdbIndex(version, last_inode, writer, mtime, entries, epoch)


def _leader_rank(state: tuple[int, MemdbIndex]) -> tuple[int, int, int, int]:
    """Sort key of (node, index): the newest quorate history first (see step 2 above)."""
    node, index = state
    return (-index.epoch, -index.version, -index.mtime, node)


@dataclass
class Dfsm:
    node_id: int
    memdb: MemDB
    pid: int = 0
    mode: Mode = Mode.START
    members: tuple[int, ...] = ()
    epoch: Epoch = field(default_factory=lambda: Epoch(0, 0, 0, 0))
    epoch_counter: int = 0
    send_count: int = 0
    queue: list[tuple[int, NormalMessage]] = field(default_factory=list)
    states: dict[int, MemdbIndex] = field(default_factory=dict)
    leader: int | None = None
    leader_index: MemdbIndex | None = None
    updates: list[Entry] = field(default_factory=list)
    verify_checksums: dict[int, str] = field(default_factory=dict)
    verify_counter: int = 0
    malformed: int = 0  # messages dropped because they could not be decoded
    ring_seq: int = 0  # the configuration's Totem ring seq: the epoch writes stamp

    @property
    def synced(self) -> bool:
        return self.mode == Mode.SYNCED

    def write(self, op: Operation, now_s: int) -> tuple[int, bytes]:
        """Encode a write for multicast; returns its count (to match the ``Applied``)."""
        self.send_count += 1
        return self.send_count, messages.encode_op(op, self.send_count, now_s)

    def membership_changed(
        self, members: tuple[int, ...], now_s: int, ring_seq: int | None = None
    ) -> list[Command]:
        """``ring_seq``: the new configuration's Totem ring seq (``None``: keep the last)."""
        if self.mode >= Mode.LEAVE:
            return []
        if ring_seq is not None:
            self.ring_seq = ring_seq
        # Writes queued while the last configuration synchronised were delivered to its
        # members only; a new configuration's members come from elsewhere with other
        # queues, so applying them after its sync would split the trees. Every member of
        # the old configuration refuses them here alike (EAGAIN: applied nowhere).
        refused: list[Command] = [
            Applied(s, m.count, m.op, ApplyResult(errno.EAGAIN, self.memdb.version))
            for s, m in self.queue
        ]
        self.queue = []
        self.members = tuple(sorted(members))
        self.epoch_counter += 1
        self.epoch = Epoch(self.epoch_counter, now_s, self.node_id, self.pid)
        self.states.clear()
        self.updates.clear()
        self.leader = None
        self.leader_index = None
        if self.node_id not in self.members:
            self.mode = Mode.LEAVE
            return [*refused, Log("this node is no longer a member: leaving")]
        if len(self.members) == 1:
            self.mode = Mode.SYNCED
            return [*refused, SyncDone(self.node_id, False)]
        self.mode = Mode.START_SYNC
        out: list[Command] = [
            *refused,
            Log(f"starting data synchronisation with {len(self.members)} members"),
        ]
        if self.node_id == self.members[0]:
            out.append(Send(messages.encode_state(messages.SYNC_START, self.epoch, now_s)))
        return out

    def deliver(self, sender: int, raw: bytes, now_s: int) -> list[Command]:
        if self.mode >= Mode.LEAVE or sender not in self.members:
            return []
        try:
            message = messages.decode(raw)
            if isinstance(message, NormalMessage):
                if self.mode != Mode.SYNCED:
                    self.queue.append((sender, message))
                    return []
                return [self._apply(sender, message)]
            return self._deliver_state(sender, message, now_s)
        except MessageError as exc:
            self.malformed += 1
            return [Malformed(sender, str(exc), self.malformed)]

    def _apply(self, sender: int, message: NormalMessage) -> Applied:
        result = self.memdb.apply(message.op, sender, message.time, self.ring_seq)
        return Applied(sender, message.count, message.op, result)

    def _drain_queue(self) -> list[Command]:
        queued, self.queue = self.queue, []
        return [self._apply(sender, message) for sender, message in queued]

    def _deliver_state(self, sender: int, message: StateMessage, now_s: int) -> list[Command]:
        kind = message.kind
        if kind == messages.SYNC_START:
            if self.mode != Mode.START_SYNC or sender != self.members[0]:
                return []
            self.epoch = message.epoch
            index = self.memdb.index().encode()
            return [Send(messages.encode_state(messages.STATE, self.epoch, now_s, index))]
        if message.epoch != self.epoch:
            return []  # a message of an earlier sync round
        if kind == messages.STATE and self.mode == Mode.START_SYNC:
            try:
                self.states[sender] = _decode_index(message.payload)
            except MessageError as exc:
                self.mode = Mode.ERROR
                return [Failed(f"bad state from node {sender}: {exc}")]
            if len(self.states) == len(self.members):
                return self._all_states_received(now_s)
            return []
        if kind == messages.UPDATE and self.mode == Mode.UPDATE and sender == self.leader:
            try:
                self.updates.append(messages.decode_entry(message.payload))
            except MessageError as exc:
                self.mode = Mode.ERROR
                return [Failed(f"bad update from leader {sender}: {exc}")]
            return []
        if kind == messages.UPDATE_COMPLETE and self.mode == Mode.UPDATE and sender == self.leader:
            return self._install_update()
        if kind == messages.VERIFY_REQUEST:
            counter, _ = messages.decode_verify(message.payload)
            self.verify_checksums[counter] = self.memdb.checksum()
            if sender == self.node_id:
                payload = messages.encode_verify(counter, self.verify_checksums[counter])
                return [Send(messages.encode_state(messages.VERIFY, self.epoch, now_s, payload))]
            return []
        if kind == messages.VERIFY and sender != self.node_id:
            counter, checksum = messages.decode_verify(message.payload)
            mine = self.verify_checksums.pop(counter, None)
            if mine is None:
                return []
            if mine != checksum:
                self.mode = Mode.ERROR
                return [Failed(f"wrong checksum {mine[:16]} != {checksum[:16]} - restarting")]
            return [Log("data verification successful")]
        return []

    def request_verify(self, now_s: int) -> list[Command]:
        """Only the lowest member, and only while synced, asks for a verification."""
        if self.mode != Mode.SYNCED or not self.members or self.members[0] != self.node_id:
            return []
        self.verify_counter += 1
        payload = messages.encode_verify(self.verify_counter)
        return [Send(messages.encode_state(messages.VERIFY_REQUEST, self.epoch, now_s, payload))]

    def _all_states_received(self, now_s: int) -> list[Command]:
        ranked = sorted(self.states.items(), key=_leader_rank)
        leader, leader_index = ranked[0]
        self.leader, self.leader_index = leader, leader_index
        encoded = leader_index.encode()
        unsynced = [n for n, idx in sorted(self.states.items()) if idx.encode() != encoded]
        out: list[Command] = [
            Log(
                f"leader is {leader}, synced members: "
                + " ".join(str(n) for n in sorted(self.states) if n not in unsynced)
            )
        ]
        if self.node_id == leader and unsynced:
            out.extend(self._send_updates(unsynced, now_s))
        if self.node_id in unsynced:
            self.mode = Mode.UPDATE
            self.updates.clear()
            out.append(Log("waiting for updates from leader"))
            return out
        self.mode = Mode.SYNCED
        out.append(SyncDone(leader, False))
        out.extend(self._drain_queue())
        return out

    def _send_updates(self, unsynced: list[int], now_s: int) -> list[Command]:
        have = [set(self.states[node].entries) for node in unsynced]
        out: list[Command] = []
        for entry in self.memdb.entries():
            if entry.inode == 0:
                continue
            key = (entry.inode, entry.digest())
            if any(key not in entries for entries in have):
                payload = messages.encode_entry(entry)
                out.append(Send(messages.encode_state(messages.UPDATE, self.epoch, now_s, payload)))
        out.append(Send(messages.encode_state(messages.UPDATE_COMPLETE, self.epoch, now_s)))
        return out

    def _install_update(self) -> list[Command]:
        assert self.leader_index is not None and self.leader is not None
        wanted = {inode for inode, _ in self.leader_index.entries}
        rows = {e.inode: e for e in self.memdb.entries() if e.inode in wanted}
        for entry in self.updates:
            rows[entry.inode] = entry
        root = Entry(
            0,
            0,
            self.leader_index.version,
            self.leader_index.writer,
            self.leader_index.mtime,
            DT_REG,
            "__version__",
            encode_epoch(self.leader_index.epoch),
        )
        new_rows = [root, *(rows[inode] for inode in sorted(rows))]
        previous = self.memdb.entries()
        self.memdb.replace_all(new_rows)
        if self.memdb.index().encode() != self.leader_index.encode():
            self.memdb.replace_all(previous)
            self.mode = Mode.ERROR
            return [Failed("new index does not match master index")]
        self.mode = Mode.SYNCED
        self.updates.clear()
        return [
            Log("all data is up to date"),
            Installed(tuple(new_rows)),
            SyncDone(self.leader, True),
            *self._drain_queue(),
        ]


def tree_hash(memdb: MemDB) -> str:
    """A short hash users compare across nodes (``lab ls``, sync-trace)."""
    return hashlib.sha256(memdb.checksum().encode()).hexdigest()[:16]
