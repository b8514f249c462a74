"""Closed process groups (corosync CPG) over the Totem agreed stream; sans-IO.

A group member is a process ``(node, pid)`` in a named group. Joins, leaves and
messages are Totem messages, so every node sees them in one total order and computes
the same membership; node-level changes come from Totem configuration changes:

* ``join``/``leave``/``mcast`` return the bytes to multicast (the runtime passes them
  to ``Srp`` as ``AppSend``); nothing changes locally until that message is delivered;
* ``on_deliver(sender, payload)`` for every ``Deliver`` returns events:
  ``CpgConfChg`` (members, joined and left with corosync's reason codes) and
  ``CpgDeliver`` (a message for the local processes of the group);
* ``on_config_change(change)`` for every Totem ``ConfigChange`` returns events and
  the messages to send: on a REGULAR change, processes of nodes that did not come
  through the transitional configuration leave with reason NODEDOWN, and every node
  multicasts a JOINLIST of its local members, from which the others learn the
  processes of merged partitions or restarted nodes (reason NODEUP).

As in corosync, a message is delivered only to local processes that have completed
their join, and dropped if its sender is not a member in this node's view. CPG
traffic for all groups is one agreed stream (CPG_TYPE_AGREED semantics).
Differences from corosync's service sync: JOINLISTs are sent on each REGULAR
configuration change without a barrier round, so for a moment after a merge a node
may not yet know the other side's processes; everyone learns them in the same order.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from pvectl.totem.ring_id import RingId
from pvectl.totem.srp import ConfigChange, ConfigKind

MAX_GROUP_NAME: Final = 128  # CPG_MAX_NAME_LENGTH
_PROCJOIN: Final = 0
_PROCLEAVE: Final = 1
_JOINLIST: Final = 2
_MCAST: Final = 3
_MAGIC: Final = 0xC9
_HDR = struct.Struct("!BBB")  # magic, type, group name length
_PID = struct.Struct("!I")
_COUNT = struct.Struct("!H")


class CpgReason(IntEnum):
    JOIN = 1
    LEAVE = 2
    NODEDOWN = 3
    NODEUP = 4
    PROCDOWN = 5


class CpgError(Exception):
    """A local request that CPG refuses (corosync: CS_ERR_EXIST / NOT_EXIST / BUSY)."""


@dataclass(frozen=True, order=True, slots=True)
class Process:
    node: int
    pid: int


@dataclass(frozen=True, slots=True)
class CpgConfChg:
    group: str
    members: tuple[Process, ...]
    left: tuple[tuple[Process, CpgReason], ...]
    joined: tuple[tuple[Process, CpgReason], ...]
    local_pids: tuple[int, ...]  # local processes this callback goes to


@dataclass(frozen=True, slots=True)
class CpgDeliver:
    group: str
    sender: Process
    payload: bytes
    local_pids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class CpgTotemConfChg:
    ring_id: RingId
    members: tuple[int, ...]


CpgEvent = CpgConfChg | CpgDeliver | CpgTotemConfChg


class _Local(IntEnum):
    JOIN_STARTED = 1
    JOIN_COMPLETED = 2
    LEAVE_STARTED = 3


def _encode(kind: int, group: str, body: bytes) -> bytes:
    name = group.encode()
    if not name or len(name) > MAX_GROUP_NAME:
        raise CpgError(f"group name must be 1..{MAX_GROUP_NAME} bytes")
    return _HDR.pack(_MAGIC, kind, len(name)) + name + body


class Cpg:
    """The CPG service of one node."""

    def __init__(self, node_id: int) -> None:
        self.node_id = node_id
        self.groups: dict[str, set[Process]] = {}
        self._local: dict[tuple[str, int], _Local] = {}
        self._trans: tuple[int, ...] = ()
        self.dropped = 0  # malformed or unknown-sender messages

    # ---- local requests ------------------------------------------------------------------

    def join(self, group: str, pid: int) -> bytes:
        state = self._local.get((group, pid))
        if state is _Local.LEAVE_STARTED:
            raise CpgError("leave in progress (CS_ERR_BUSY)")
        if state is not None:
            raise CpgError("already joined (CS_ERR_EXIST)")
        msg = _encode(_PROCJOIN, group, _PID.pack(pid))
        self._local[(group, pid)] = _Local.JOIN_STARTED
        return msg

    def leave(self, group: str, pid: int) -> bytes:
        if self._local.get((group, pid)) is not _Local.JOIN_COMPLETED:
            raise CpgError("not joined (CS_ERR_NOT_EXIST)")
        self._local[(group, pid)] = _Local.LEAVE_STARTED
        return _encode(_PROCLEAVE, group, _PID.pack(pid))

    def mcast(self, group: str, pid: int, payload: bytes) -> bytes:
        if self._local.get((group, pid)) not in (_Local.JOIN_STARTED, _Local.JOIN_COMPLETED):
            raise CpgError("not joined (CS_ERR_NOT_EXIST)")
        return _encode(_MCAST, group, _PID.pack(pid) + payload)

    def members(self, group: str) -> tuple[Process, ...]:
        return tuple(sorted(self.groups.get(group, ())))

    # ---- delivered stream -----------------------------------------------------------------

    def _receivers(self, group: str) -> tuple[int, ...]:
        return tuple(
            sorted(
                pid
                for (g, pid), st in self._local.items()
                if g == group and st in (_Local.JOIN_COMPLETED, _Local.LEAVE_STARTED)
            )
        )

    def on_deliver(self, sender: int, payload: bytes) -> list[CpgEvent]:
        try:
            magic, kind, nlen = _HDR.unpack_from(payload)
            if magic != _MAGIC:
                raise ValueError("not a CPG message")
            off = _HDR.size
            group = payload[off : off + nlen].decode()
            if len(group.encode()) != nlen:
                raise ValueError("short group name")
            off += nlen
            if kind == _JOINLIST:
                return self._on_joinlist(sender, payload, off)
            (pid,) = _PID.unpack_from(payload, off)
            off += _PID.size
        except (struct.error, ValueError, UnicodeDecodeError):
            self.dropped += 1
            return []
        proc = Process(sender, pid)
        if kind == _MCAST:
            if proc not in self.groups.get(group, ()):
                self.dropped += 1  # "Unknown node -> we will not deliver message"
                return []
            to = self._receivers(group)
            return [CpgDeliver(group, proc, payload[off:], to)] if to else []
        if kind == _PROCJOIN:
            return self._proc_join(group, proc)
        if kind == _PROCLEAVE:
            return self._proc_leave(group, proc, CpgReason.LEAVE)
        self.dropped += 1
        return []

    def _confchg(
        self,
        group: str,
        left: list[tuple[Process, CpgReason]],
        joined: list[tuple[Process, CpgReason]],
        extra: tuple[int, ...] = (),
    ) -> list[CpgEvent]:
        to = tuple(sorted(set(self._receivers(group)) | set(extra)))
        if not to:
            return []
        return [CpgConfChg(group, self.members(group), tuple(left), tuple(joined), to)]

    def _proc_join(self, group: str, proc: Process) -> list[CpgEvent]:
        members = self.groups.setdefault(group, set())
        if proc in members:
            return []
        members.add(proc)
        if proc.node == self.node_id and self._local.get((group, proc.pid)) is _Local.JOIN_STARTED:
            self._local[(group, proc.pid)] = _Local.JOIN_COMPLETED
        return self._confchg(group, [], [(proc, CpgReason.JOIN)])

    def _proc_leave(self, group: str, proc: Process, reason: CpgReason) -> list[CpgEvent]:
        members = self.groups.get(group)
        if not members or proc not in members:
            return []
        extra: tuple[int, ...] = ()
        if proc.node == self.node_id:
            extra = (proc.pid,)  # the leaver hears its own leave, then is UNJOINED
        members.discard(proc)
        events = self._confchg(group, [(proc, reason)], [], extra)
        if proc.node == self.node_id:
            self._local.pop((group, proc.pid), None)
        if not members:
            del self.groups[group]
        return events

    def _on_joinlist(self, sender: int, payload: bytes, off: int) -> list[CpgEvent]:
        (count,) = _COUNT.unpack_from(payload, off)
        off += _COUNT.size
        learned: dict[str, list[Process]] = {}
        for _ in range(count):
            (nlen,) = struct.unpack_from("!B", payload, off)
            off += 1
            group = payload[off : off + nlen].decode()
            off += nlen
            (pid,) = _PID.unpack_from(payload, off)
            off += _PID.size
            proc = Process(sender, pid)
            if proc not in self.groups.get(group, ()):
                learned.setdefault(group, []).append(proc)
        events: list[CpgEvent] = []
        for group in sorted(learned):
            procs = sorted(set(learned[group]))
            self.groups.setdefault(group, set()).update(procs)
            events += self._confchg(group, [], [(p, CpgReason.NODEUP) for p in procs])
        return events

    # ---- Totem configuration changes ------------------------------------------------------

    def on_config_change(self, change: ConfigChange) -> tuple[list[CpgEvent], list[bytes]]:
        """Events for local processes, and the messages to multicast (a JOINLIST)."""
        if change.kind is ConfigKind.TRANSITIONAL:
            self._trans = change.members
            return [], []
        alive = set(self._trans) | {self.node_id}
        events: list[CpgEvent] = []
        for group in sorted(self.groups):
            gone = sorted(p for p in self.groups[group] if p.node not in alive)
            if not gone:
                continue
            self.groups[group].difference_update(gone)
            events += self._confchg(group, [(p, CpgReason.NODEDOWN) for p in gone], [])
            if not self.groups[group]:
                del self.groups[group]
        events.append(CpgTotemConfChg(change.ring_id, change.members))
        return events, [self._joinlist()]

    def _joinlist(self) -> bytes:
        mine = sorted(
            (g, pid)
            for (g, pid), st in self._local.items()
            if st in (_Local.JOIN_COMPLETED, _Local.LEAVE_STARTED)
        )
        parts = [_HDR.pack(_MAGIC, _JOINLIST, 0), _COUNT.pack(len(mine))]
        for g, pid in mine:
            name = g.encode()
            parts.append(struct.pack("!B", len(name)) + name + _PID.pack(pid))
        return b"".join(parts)
