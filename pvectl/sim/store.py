"""Whole nodes under the deterministic simulator: Totem, votequorum, the config store and its
commit pipeline, all through ``pvectl.nodecore.NodeCore``, the code the runtime drives.

On top of the Totem world (partitions, loss, duplication, reordering, crashes, clean
leaves, pauses), each node has a simulated ``config.db``:

* the core's ``StartFsync(batch)`` completes after the node's disk delay (drawn per node
  from the seed: some disks are slow); in coupled mode the node is stalled meanwhile, as
  pmxcfs is when it commits in corosync's thread;
* a crash loses the memdb and the fsync in flight (the lost fsync window); a restart loads
  the store from what was durable, and Totem from the persisted ring seq.

The workload: every node writes (unique creations) while it may, at commit levels
``local`` and ``all`` mixed per seed. A write is *acknowledged* when the core answers its
writer (``WriteDone`` without errno).

Checkers (``InvariantViolation`` at the first bad step, or after heal):

* an inquorate partition accepts no write: a node accepts a write, and applies one, only
  within a configuration that holds a majority of the votes;
* each node's quorum decision equals the pure votequorum model fed the same membership
  history;
* after heal: the stores are identical (tree rows), each node's ``config.db`` holds what its
  memdb holds, and no acknowledged write is lost: every node has every write acknowledged
  at ``local`` (every simulated node keeps its disk) or ``all``.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from typing import Any

from pvectl.cfs.memdb import Create, Entry, MemDB
from pvectl.errors import CommandRefused
from pvectl.nodecore.commit import StartFsync, WriteDone
from pvectl.nodecore.core import Command as CoreCommand
from pvectl.nodecore.core import NodeCore
from pvectl.nodecore.services import (
    NODE_SERVICES,
    SERVICE_VOTEQUORUM,
    Multicast,
    QuorumChanged,
    ServiceLog,
    StoreError,
    StoreInstalled,
    WriteApplied,
)
from pvectl.quorum.votequorum import (
    NodeFlag,
    NodeInfo,
    QuorumOptions,
    VotequorumState,
    expected_reconfigured,
    initial_state,
    local_nodeinfo,
    membership_changed,
    nodeinfo_received,
    set_expected,
    set_qdevice,
    sync_completed,
)
from pvectl.sim.checker import InvariantViolation
from pvectl.sim.qdevice import CAST, QDEVICE_FLAGS, QdeviceSetup, SimQdevice
from pvectl.sim.world import _ACTION, Options, SimNode, SimResult, Simulator
from pvectl.totem.srp import AppSend, Command, ConfigChange, ConfigKind, Deliver

_SEP = b"|"
# votequorum's two messages (``pvectl.nodecore.services``): what the model reads of them
_NODEINFO_HEAD = bytes((SERVICE_VOTEQUORUM, 1))  # then ring seq u64 (little endian), ...
_NODEINFO_SIZE = 26
_EXPECTED_HEAD = bytes((SERVICE_VOTEQUORUM, 2))  # then the value u32
_EXPECTED_SIZE = 6

Row = tuple[int, int, int, int, int, int, str, bytes | None]


def _rows(entries: list[Entry]) -> list[Row]:
    return sorted(
        (e.inode, e.parent, e.version, e.writer, e.mtime, e.type, e.name, e.data) for e in entries
    )


@dataclass(frozen=True)
class StoreResult:
    totem: SimResult
    acknowledged: int
    acknowledged_all: int
    store_writes: int
    checksum: str
    # set when a lowered expected let a configuration be quorate without any node of an
    # earlier quorate one: then acknowledged writes may legitimately be lost (counted), as
    # ``pvecm expected`` warns
    split_brain: str | None = None
    lost_to_split_brain: int = 0


@dataclass(frozen=True)
class Acknowledged:
    path: str
    level: str
    node: int


class NodeSimulator(Simulator):
    """``Simulator`` whose nodes are whole nodes (see the module docstring)."""

    def __init__(
        self,
        seed: int,
        options: Options | None = None,
        *,
        nodes: int | None = None,
        trace: bool = False,
        trace_len: int = 60,
        skip_faults: frozenset[int] = frozenset(),
    ) -> None:
        super().__init__(
            seed, options, nodes=nodes, trace=trace, trace_len=trace_len, skip_faults=skip_faults
        )
        r = random.Random(f"store-{seed}")
        # coupled: every commit stalls the node, once per delivered write, so its disk must
        # keep up with the write rate; a slower one gets the node declared dead (the failure
        # the lab demonstrates), which would only fail the liveness check here
        self.coupled = r.random() < 0.3
        delays = [0.0002, 0.0005, 0.001] if self.coupled else [0.0005, 0.002, 0.01, 0.3]
        self.disk_delay = {i: r.choice(delays) for i in self.ids}
        self.all_share = r.choice([0.0, 0.3, 0.7])  # writes at level "all"
        # the share of workload messages that are store writes (the rest is plain Totem
        # traffic): memdb applies dominate the run time, so most seeds write moderately
        self.write_share = r.choice([0.05, 0.1, 0.3])
        self.disk: dict[int, dict[int, Entry]] = {i: {} for i in self.ids}
        self.cores: dict[int, NodeCore] = {}
        self.quorum_options = QuorumOptions.build([(i, 1) for i in self.ids])
        self.pending: dict[tuple[int, int, int], tuple[str, str]] = {}
        self.acknowledged: list[Acknowledged] = []
        self.store_writes = 0
        # per node: the configuration its deliveries happen in, and the model's decision
        self.config_members: dict[int, tuple[int, ...]] = {}
        self.model: dict[int, VotequorumState] = {}
        self._init_node_faults(seed)
        self.qdevice: SimQdevice | None = None  # a qnetd and a qdevice per node (some seeds)
        if self.opt.qdevice:
            self.quorum_options = SimQdevice.quorum_options(self.ids, self.opt.qdevice)
            setup = QdeviceSetup.draw(
                random.Random(f"qdevice-setup-{seed}"), self.opt.qdevice, len(self.ids)
            )
            setup = dataclasses.replace(setup, keep_active=self.opt.qdevice_keep_active)
            self.qdevice = SimQdevice(self, setup)

    # --- node lifecycle ----------------------------------------------------------------

    def _start_node(self, n: SimNode) -> None:
        memdb = MemDB()
        memdb.load(sorted(self.disk[n.node_id].values(), key=lambda e: e.inode))
        state = initial_state(self.quorum_options, n.node_id)
        self.cores[n.node_id] = NodeCore(n.node_id, state, memdb, coupled=self.coupled)
        if self.qdevice is not None:
            self.qdevice.node_started(n.node_id, self.cores[n.node_id])
        self.model[n.node_id] = initial_state(self.quorum_options, n.node_id)
        self.model_pending[n.node_id] = set()
        # runtime-only: a restart resets it
        self.lowest_expected[n.node_id] = self.quorum_options.configured_expected_votes
        self.config_members[n.node_id] = ()
        super()._start_node(n)

    def _crash(self, n: SimNode, *, clean: bool) -> None:
        if n.alive:
            self.cores.pop(n.node_id, None)  # the fsync in flight dies with it (incarnation)
            if self.qdevice is not None:
                self.qdevice.node_stopped(n.node_id, clean=clean)
        super()._crash(n, clean=clean)

    # --- faults of whole nodes: stalled disks, ``pvecm expected`` -----------------------

    def _init_node_faults(self, seed: int) -> None:
        self.stall_rng = random.Random(f"stall-{seed}")
        self.expected_rng = random.Random(f"expected-{seed}")
        self.stalled_until: dict[int, float] = {}
        # the model's side of votequorum, per node: its ring (seq, members), the NODEINFOs
        # still awaited, and what it predicts each NODEINFO sent carries (by message tag)
        self.model_ring: dict[int, tuple[int, tuple[int, ...]]] = {}
        self.model_pending: dict[int, set[int]] = {}
        self.predicted: dict[tuple[int, int, int], tuple[NodeInfo, int]] = {}
        # the lowest expected votes that can have reached each node (see _check_majority)
        self.lowest_expected: dict[int, int] = {}
        self.expected_applied = 0
        self.expected_refused = 0
        self.split_brain: str | None = None
        # every quorate configuration seen, in order (a dict: no set iteration)
        self.quorate_sets: dict[frozenset[int], None] = {}
        self.latest_quorate: frozenset[int] | None = None  # the last one a node reported

    def _schedule_faults(self) -> None:
        super()._schedule_faults()
        o = self.opt
        if self.qdevice is not None:
            self.qdevice.schedule_faults(o.safety_s)
        if o.disk_stalls:
            r = self.stall_rng
            t = r.uniform(0.3, 2.0)
            while t < o.safety_s:
                victim = r.choice(self.ids)
                end = min(t + r.uniform(1.5, 4.0) * self.timeouts.token, o.safety_s)
                fid = self._fault(f"disk stall n{victim} {t:.3f}-{end:.3f}s")
                self._push(t, _ACTION, victim, 0, ("stall", end, fid))
                t = end + r.uniform(0.5, 2.5)
        if o.expected_requests:
            r = self.expected_rng
            t = r.uniform(0.3, 1.5)
            while t < o.safety_s:
                victim = r.choice(self.ids)
                fid = self._fault(f"pvecm expected on n{victim} at {t:.3f}s")
                self._push(t, _ACTION, victim, 0, ("expected", r.random(), fid))
                t += r.uniform(0.2, 1.0)

    def _node_fault(self, node: int, action: tuple[Any, ...]) -> None:
        if action[-1] in self.skip_faults:
            return
        if action[0] == "stall":
            # every fsync of this node due before the end completes only after it; coupled,
            # the node stalls with it (longer than the token timeout: Totem evicts it)
            self.stalled_until[node] = max(self.stalled_until.get(node, 0.0), action[1])
            self._log(f"n{node} disk stalls until {action[1]:.4f}")
            return
        n = self.nodes[node]
        core = self.cores.get(node)
        if core is None or not n.alive or n.paused_until > self.now:
            return  # down or hung: the command does not run
        # what an operator would ask where votes are missing: from the votes present up to
        # all of them (with all present, only all: nothing to ask)
        present = max(1, core.services.quorum.total_votes)
        configured = self.quorum_options.configured_expected_votes  # the device's included
        if present >= configured:
            return
        value = min(configured, present + int(action[1] * (configured - present + 1)))
        try:
            out = core.set_expected(value)
        except CommandRefused as exc:
            self.expected_refused += 1
            try:
                set_expected(self.model[node], value)
            except CommandRefused:
                self._log(f"n{node} pvecm expected {value} refused: {exc}")
                return
            raise InvariantViolation(
                f"node {node} refused expected {value} ({exc}); the votequorum model accepts it"
            ) from None
        try:
            self.model[node] = set_expected(self.model[node], value)
        except CommandRefused as exc:
            raise InvariantViolation(
                f"node {node} accepted expected {value}; the votequorum model refuses: {exc}"
            ) from None
        self.expected_applied += 1
        self.lowest_expected[node] = min(self.lowest_expected[node], value)
        self._log(f"n{node} pvecm expected {value} (votes present {present})")
        self._core(n, core, out)

    # --- traffic -----------------------------------------------------------------------

    def _multicast(self, n: SimNode, payload: bytes) -> None:
        if n.srp is not None:
            if payload[:2] == _NODEINFO_HEAD:
                self._model_sent(n)
            tagged = b"%d.%d.%d" % (n.node_id, n.incarnation, n.sent) + _SEP + payload
            n.sent += 1
            self._execute(n, n.srp.handle(AppSend(tagged), self._local(n, self.now)))

    def _send_app(self, n: SimNode) -> None:
        core = self.cores.get(n.node_id)
        r = self.work_rng
        if (
            core is None
            or not n.alive
            or n.paused_until > self.now
            or r.random() > self.write_share
        ):
            super()._send_app(n)
            return
        level = "all" if r.random() < self.all_share else "local"
        path = f"f{n.node_id}.{n.incarnation}.{self.store_writes}"
        try:
            count, outputs = core.write(Create(path), level, self._wall_s(n))
        except StoreError:
            super()._send_app(n)  # not quorate or syncing: pmxcfs would refuse too
            return
        self._check_majority(n.node_id, core.services.members, f"accepted write {path}")
        self.store_writes += 1
        self.pending[(n.node_id, n.incarnation, count)] = (path, level)
        if self.trace_on:
            self._log(f"n{n.node_id} write {path} as {n.node_id}:{count} level {level}")
        self._core(n, core, outputs)

    def _execute(self, n: SimNode, cmds: list[Command]) -> None:
        super()._execute(n, cmds)
        core = self.cores.get(n.node_id)
        if core is None or not n.alive:
            return
        nid = n.node_id
        cores = self.cores
        for command in cmds:
            if type(command) is Deliver:
                tagged = command.payload
                head = tagged.find(_SEP)  # the tag is short: no copy of plain workload
                if 0 <= head < len(tagged) - 1 and tagged[head + 1] in NODE_SERVICES:
                    payload = tagged[head + 1 :]
                    if payload[0] == SERVICE_VOTEQUORUM:
                        self._model_deliver(nid, command.sender, command.payload, payload)
                    out = core.deliver(command.sender, payload, self._wall_s(n))
                    self._core(n, core, out)
                    if cores.get(nid) is not core:
                        return  # crashed while handling this batch
                    if payload[0] == SERVICE_VOTEQUORUM:
                        self._check_model_state(nid, core)
            elif type(command) is ConfigChange:
                self.config_members[nid] = command.members
                if command.kind is ConfigKind.REGULAR:
                    local = self._local(n, self.now)
                    self._model_regular(nid, command, local)
                    hold = None
                    if self.qdevice is not None:  # as the runtime: withdraw the vote, then hold
                        self.qdevice.regular_configuration(nid, command.members, command.ring_id)
                        hold = self.qdevice.hold_seconds(nid)
                    out = core.regular(
                        command.members,
                        command.ring_id,
                        local,
                        self._wall_s(n),
                        hold_nodeinfo_s=hold,
                    )
                    self._core(n, core, out)
                    self._arm_lms(n, core)
                else:
                    self._core(n, core, core.transitional(command.members, command.ring_id))
                if cores.get(nid) is not core:
                    return  # crashed while handling this batch

    def _core(self, n: SimNode, core: NodeCore, commands: list[CoreCommand]) -> None:
        nid = n.node_id
        for command in commands:
            kind = type(command)
            if kind is Multicast:
                self._multicast(n, command.payload)  # type: ignore[union-attr]
            elif kind is WriteApplied:
                assert isinstance(command, WriteApplied)
                if command.applied.result.ok:
                    applied = command.applied
                    self._check_majority(
                        nid, self.config_members[nid], f"applied {applied.sender}:{applied.count}"
                    )
            elif kind is StartFsync:
                assert isinstance(command, StartFsync)
                done = max(self.now, self.stalled_until.get(nid, 0.0)) + self.disk_delay[nid]
                if command.inline:  # coupled: the node does nothing else meanwhile
                    n.paused_until = max(n.paused_until, done)
                self._push(done, _ACTION, nid, n.incarnation, ("fsync", n.incarnation, command))
            elif kind is WriteDone:
                assert isinstance(command, WriteDone)
                found = self.pending.pop((nid, n.incarnation, command.count), None)
                if found is not None and not command.errno_code:
                    self.acknowledged.append(Acknowledged(found[0], found[1], nid))
                if found is not None and self.trace_on:
                    self._log(f"n{nid} answer {found[0]}: errno {command.errno_code}")
            elif kind is QuorumChanged:
                assert isinstance(command, QuorumChanged)
                self._model_qdevice(nid)
                self._check_model(nid, core, command)
                if command.quorate:
                    self._note_split_brain(nid, command.members)
                if self.qdevice is not None:
                    self.qdevice.quorum_changed(nid, command.quorate, command.members)
            elif kind is ServiceLog and self.trace_on:
                self._log(f"n{nid} {command.text}")  # type: ignore[union-attr]
            elif kind is StoreInstalled and self.trace_on:
                self._log(f"n{nid} store installed from the sync leader")
            if self.cores.get(nid) is not core:
                return
        if self.qdevice is not None:
            self._model_qdevice(nid)
            self.qdevice.observe(nid, core)

    def _arm_lms(self, n: SimNode, core: NodeCore) -> None:
        deadline = core.next_deadline()
        if deadline is not None:
            at = self._global(n, deadline)  # the core's deadline is on the node's clock
            self._push(at, _ACTION, n.node_id, n.incarnation, ("lms", n.incarnation))

    def _action(self, node: int, action: tuple[Any, ...]) -> None:
        kind = action[0]
        if kind == "qdevice":
            assert self.qdevice is not None
            self.qdevice.action(node, action)
            return
        if kind == "stall" or kind == "expected":
            self._node_fault(node, action)
            return
        if kind != "fsync" and kind != "lms":
            super()._action(node, action)
            return
        n = self.nodes[node]
        core = self.cores.get(node)
        if core is None or not n.alive or action[1] != n.incarnation:
            return  # the disk write (or timer) died with its node
        if kind == "lms":
            self._core(n, core, core.timer_fired(self._local(n, self.now)))
            self._arm_lms(n, core)
            return
        command: StartFsync = action[2]
        if self.stalled_until.get(node, 0.0) > self.now:  # the disk stalled meanwhile
            done = self.stalled_until[node] + self.disk_delay[node]
            if command.inline:
                n.paused_until = max(n.paused_until, done)
            self._push(done, _ACTION, node, n.incarnation, action)
            return
        disk = self.disk[node]
        for item in command.batch:
            if isinstance(item, StoreInstalled):
                self.disk[node] = disk = {e.inode: e for e in item.entries.entries}
                continue
            result = item.applied.result
            if result.ok:
                for inode in result.deletes:
                    disk.pop(inode, None)
                for entry in result.upserts:
                    disk[entry.inode] = entry
        self._core(n, core, core.fsync_done())

    # --- checkers on every step ------------------------------------------------------------

    def _check_majority(self, node: int, members: tuple[int, ...], what: str) -> None:
        """Every node has one vote and expects all: a majority of all nodes is quorum.

        Unless a user lowered the expected votes (``pvecm expected E``): that is what the
        command is for, so a majority of E is quorum then, on the node asked, the nodes
        the request is delivered to, and the nodes that adopt E from a quorate member's
        NODEINFO (votequorum does). Votequorum never goes below the lowest E that reached a
        node, so that is the bound; a node that restarts has the configured expected again.
        """
        configured = self.quorum_options.configured_expected_votes
        expected = min(self.lowest_expected.get(node, configured), configured)
        votes = len(members)
        core = self.cores.get(node)
        if self.qdevice is not None and core is not None and core.services.quorum.us.flags & CAST:
            votes += self.quorum_options.qdevice_votes  # where this node counts the device
        if votes < expected // 2 + 1:
            lowered = f" (expected lowered to {expected})" if expected < configured else ""
            raise InvariantViolation(
                f"node {node} {what} in configuration {list(members)}: "
                f"{votes} of {configured} votes is no quorum{lowered}"
            )

    def _model_regular(self, node: int, change: ConfigChange, now: float) -> None:
        """The pure votequorum model, fed this node's membership history; the NODEINFO
        sync that follows is fed in ``_model_deliver``."""
        self.model[node] = membership_changed(self.model[node], change.members, now)
        self.model_ring[node] = (change.ring_id.seq, tuple(sorted(change.members)))
        self.model_pending[node] = set(change.members)

    def _model_sent(self, n: SimNode) -> None:
        """The node multicasts its NODEINFO: the model predicts what it carries (its own
        state, not the bytes sent), and the lowest expected that may travel with it."""
        nid = n.node_id
        self._model_qdevice(nid)
        info = local_nodeinfo(self.model[nid])
        self.predicted[(nid, n.incarnation, n.sent)] = (info, self.lowest_expected[nid])

    def _model_deliver(self, node: int, sender: int, tagged: bytes, payload: bytes) -> None:
        """A votequorum message delivered to ``node``, in agreed order: the model takes the
        NODEINFO it predicted for that message, or the expected votes requested."""
        model = self.model[node]
        if payload[:2] == _EXPECTED_HEAD and len(payload) == _EXPECTED_SIZE:
            if sender != node:  # the sender applied its own when asked
                value = int.from_bytes(payload[2:6], "little")
                self.model[node] = expected_reconfigured(model, value)
                self.lowest_expected[node] = min(self.lowest_expected[node], value)
            return
        if payload[:2] != _NODEINFO_HEAD or len(payload) != _NODEINFO_SIZE:
            return
        ring_seq, members = self.model_ring.get(node, (0, ()))
        if int.from_bytes(payload[2:10], "little") != ring_seq or sender not in members:
            return  # from an earlier ring
        head = tagged.partition(_SEP)[0].split(b".")
        info, lowest = self.predicted[(int(head[0]), int(head[1]), int(head[2]))]
        model = nodeinfo_received(model, info, sender)
        pending = self.model_pending[node]
        pending.discard(sender)
        self.lowest_expected[node] = min(self.lowest_expected[node], lowest)
        self.model[node] = model if pending else sync_completed(model)

    def _model_qdevice(self, node: int) -> None:
        """The local qdevice's poll as the node took it (the cast-vote flag is this node's
        own input to votequorum): the model takes the same flags, and a withdrawn vote
        stops counting at once, outside a sync (``NodeServices.set_qdevice``)."""
        core = self.cores.get(node)
        if self.qdevice is None or core is None:
            return
        flags = core.services.quorum.us.flags & QDEVICE_FLAGS
        model = self.model[node]
        if model.us.flags & QDEVICE_FLAGS == flags:
            return
        casting = bool(model.us.flags & CAST)
        model = set_qdevice(
            model,
            registered=bool(flags & NodeFlag.QDEVICE_REGISTERED),
            alive=bool(flags & NodeFlag.QDEVICE_ALIVE),
            cast_vote=bool(flags & CAST),
        )
        if casting and not flags & CAST and not self.model_pending[node]:
            model = sync_completed(model)
        self.model[node] = model

    def _note_split_brain(self, node: int, members: tuple[int, ...]) -> None:
        """Was this configuration's quorum reached without any node of an earlier (or
        concurrent) quorate configuration? Majorities of the same votes always share a
        node. Two ways around that, both corosync's own behaviour:

        * a lowered expected (``pvecm expected``): a majority of it need not share a node
          with a majority of all votes; each side may then write on its own tree (also
          when the other side is already down, e.g. an isolated node with a stale tree
          told ``expected 1``): the split brain that command warns of;
        * a quorum device's vote that moves: ffsplit gives it to one partition at a time
          (checked), but on a tie it goes to the tie-breaker's partition when that one
          forms, even from a quorate partition that has written meanwhile
          (``keep_active_partition_tie_breaker: off``, corosync's default). The device
          keeps no data, so the new holder writes on a tree without the old one's writes
          (checked against the configuration quorate just before: the vote moves, it is
          never in two places at once).

        The sync at the heal keeps one of the trees, so acknowledged writes of the other
        are overruled: counted, not a violation."""
        mine = frozenset(members)
        latest, self.latest_quorate = self.latest_quorate, mine
        seen = mine in self.quorate_sets
        self.quorate_sets[mine] = None
        if self.split_brain is None:
            earlier: frozenset[int] | None = None
            if self.expected_applied and not seen:  # any earlier or concurrent one
                earlier = next((q for q in self.quorate_sets if not mine & q), None)
                how = "after pvecm expected"
            elif self.qdevice is not None and latest is not None and not mine & latest:
                earlier = latest  # the vote moves one partition at a time: the one before
                how = "after the quorum device's vote moved"
            if earlier is not None:
                self.split_brain = (
                    f"{how}: at {self.now:.3f}s node {node} is quorate in "
                    f"{sorted(mine)}, disjoint from the quorate configuration "
                    f"{sorted(earlier)}"
                )
                self._log(f"split history {self.split_brain}")

    def _check_model(self, node: int, core: NodeCore, change: QuorumChanged) -> None:
        model = self.model[node]
        if change.ring_id != core.services.ring_id:
            return
        if change.quorate != model.quorate or core.services.quorum.quorate != model.quorate:
            raise InvariantViolation(
                f"node {node} decided quorate={change.quorate} in ring {change.ring_id} "
                f"with members {list(change.members)}; the votequorum model says "
                f"{model.quorate} (quorum {model.quorum}, total votes {model.total_votes})"
            )

    def _check_model_state(self, node: int, core: NodeCore) -> None:
        """After each votequorum message (a sync step or an expected request) the node's
        quorum, expected votes and decision equal the model's, even mid-sync."""
        model = self.model[node]
        quorum = core.services.quorum
        mine = (quorum.quorate, quorum.quorum, quorum.us.expected_votes)
        if mine != (model.quorate, model.quorum, model.us.expected_votes):
            raise InvariantViolation(
                f"node {node} has quorate={mine[0]}, quorum {mine[1]}, expected votes "
                f"{mine[2]} in ring {core.services.ring_id}; the votequorum model says "
                f"{model.quorate}, quorum {model.quorum}, expected votes "
                f"{model.us.expected_votes}"
            )

    # --- the run -----------------------------------------------------------------------

    def _drained(self) -> bool:
        """Also wait for the group commits: each one multicasts an acknowledgement."""
        for core in self.cores.values():
            if core.commit.inflight is not None or core.commit.queue:
                return False
        return super()._drained()

    def _check_drained(self) -> None:
        if self.qdevice is not None:  # the vote's NODEINFOs go out before the last drain
            self._check_qdevice_healed()
        deadline = self.now + self.drain_bound()
        while not self._drained() and self.now < deadline:
            self._run_until(self.now + 0.05)
        self._run_until(self.now + 2 * self.timeouts.token_retransmit)
        super()._check_drained()

    def run_store(self) -> StoreResult:
        try:
            totem = self.run()
            # let the last group commits, acknowledgements and a sync round finish
            self._run_until(self.now + max(self.disk_delay.values()) * 3 + 1.0)
            return self._check_healed(totem)
        except InvariantViolation as exc:
            if not exc.args[0].startswith(f"seed {self.seed}:"):
                exc.args = (
                    f"seed {self.seed}: {exc.args[0]}\noptions: {self.opt}\n"
                    f"last events (t in seconds):\n" + "\n".join(self.trace),
                )
            raise

    def _check_qdevice_healed(self) -> None:
        """Every qdevice reconnects and every node counts the vote again."""
        assert self.qdevice is not None
        self.qdevice.heal()
        deadline = self.now + self.qdevice.heal_bound()
        while (why := self.qdevice.check_healed()) is not None:
            if self.now >= deadline:
                raise InvariantViolation(f"qdevice liveness after the heal: {why}")
            self._run_until(self.now + 0.1)

    def _check_healed(self, totem: SimResult) -> StoreResult:
        reference: list[Row] | None = None
        for i in self.ids:
            core = self.cores.get(i)
            if core is None:
                raise InvariantViolation(f"node {i} has no store after heal")
            if not core.services.store.synced:
                raise InvariantViolation(
                    f"node {i}'s store is not synced (mode {core.services.store.mode.name})"
                )
            rows = _rows(core.memdb.entries())
            if reference is None:
                reference = rows
            elif rows != reference:
                diff = sorted(set(rows) ^ set(reference))[:3]
                raise InvariantViolation(
                    f"stores differ after heal: node {i} vs node {self.ids[0]}: {diff}"
                )
            restarted = MemDB()  # what a restart from this config.db would load
            restarted.load(sorted(self.disk[i].values(), key=lambda e: e.inode))
            on_disk = _rows(restarted.entries())
            if on_disk != rows:
                diff = sorted(set(rows) ^ set(on_disk))[:3]
                raise InvariantViolation(f"node {i}'s config.db differs from its memdb: {diff}")
        lost = 0
        for ack in self.acknowledged:  # every node kept its disk: nothing may be missing
            missing = [i for i in self.ids if self.cores[i].memdb.lookup(ack.path) is None]
            if missing and self.split_brain is not None:
                lost += 1  # the other side's tree won the sync (see _note_split_brain)
            elif missing:
                raise InvariantViolation(
                    f"acknowledged write {ack.path} (level {ack.level}, on node {ack.node}) "
                    f"lost on nodes {missing}"
                )
        first = self.cores[self.ids[0]].memdb
        return StoreResult(
            totem,
            len(self.acknowledged),
            sum(a.level == "all" for a in self.acknowledged),
            self.store_writes,
            first.checksum(),
            self.split_brain,
            lost,
        )
