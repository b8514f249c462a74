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

import random
from dataclasses import dataclass
from typing import Any

from pvectl.cfs.memdb import Create, Entry, MemDB
from pvectl.nodecore.commit import StartFsync, WriteDone
from pvectl.nodecore.core import Command as CoreCommand
from pvectl.nodecore.core import NodeCore
from pvectl.nodecore.services import (
    SERVICE_ACK,
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
    initial_state,
    membership_changed,
    nodeinfo_received,
    set_qdevice,
    sync_completed,
)
from pvectl.sim.checker import InvariantViolation
from pvectl.sim.qdevice import CAST, QdeviceSetup, SimQdevice
from pvectl.sim.world import _ACTION, Options, SimNode, SimResult, Simulator
from pvectl.totem.srp import AppSend, Command, ConfigChange, ConfigKind, Deliver

_SEP = b"|"

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
        self.qdevice: SimQdevice | None = None  # a qnetd and a qdevice per node (some seeds)
        if self.opt.qdevice:
            self.quorum_options = SimQdevice.quorum_options(self.ids, self.opt.qdevice)
            setup = QdeviceSetup.draw(
                random.Random(f"qdevice-setup-{seed}"), self.opt.qdevice, len(self.ids)
            )
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
        self.config_members[n.node_id] = ()
        super()._start_node(n)

    def _crash(self, n: SimNode, *, clean: bool) -> None:
        if n.alive:
            self.cores.pop(n.node_id, None)  # the fsync in flight dies with it (incarnation)
            if self.qdevice is not None:
                self.qdevice.node_stopped(n.node_id, clean=clean)
        super()._crash(n, clean=clean)

    # --- traffic -----------------------------------------------------------------------

    def _multicast(self, n: SimNode, payload: bytes) -> None:
        if n.srp is not None:
            tagged = b"%d.%d.%d" % (n.node_id, n.incarnation, n.sent) + _SEP + payload
            n.sent += 1
            self._execute(n, n.srp.handle(AppSend(tagged), self.now))

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
            count, outputs = core.write(Create(path), level, int(self.now))
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
        for command in cmds:
            if self.cores.get(nid) is not core:
                return  # crashed while handling this batch
            if type(command) is Deliver:
                _, _, payload = command.payload.partition(_SEP)
                if payload and payload[0] <= SERVICE_ACK:  # not plain Totem workload
                    position = (command.ring_id, command.seq)
                    out = core.deliver(command.sender, payload, int(self.now), 0, position)
                    self._core(n, core, out)
            elif type(command) is ConfigChange:
                self.config_members[nid] = command.members
                if command.kind is ConfigKind.REGULAR:
                    self._model_regular(nid, command)
                    hold = None
                    if self.qdevice is not None:  # as the runtime: withdraw the vote, then hold
                        self.qdevice.regular_configuration(nid, command.members, command.ring_id)
                        hold = self.qdevice.hold_seconds(nid)
                    out = core.regular(
                        command.members,
                        command.ring_id,
                        self.now,
                        int(self.now),
                        hold_nodeinfo_s=hold,
                    )
                    self._core(n, core, out)
                    self._arm_lms(n, core)
                else:
                    self._core(n, core, core.transitional(command.members))
        if self.cores.get(nid) is core and n.srp is not None:
            self._core(n, core, core.stable(*n.srp.stable))

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
                done = self.now + self.disk_delay[nid]
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
                self._check_model(nid, core, command)
                if self.qdevice is not None:
                    self.qdevice.quorum_changed(nid, command.quorate, command.members)
            elif kind is ServiceLog and self.trace_on:
                self._log(f"n{nid} {command.text}")  # type: ignore[union-attr]
            elif kind is StoreInstalled and self.trace_on:
                self._log(f"n{nid} store installed from the sync leader")
            if self.cores.get(nid) is not core:
                return
        if self.qdevice is not None:
            self.qdevice.observe(nid, core)

    def _arm_lms(self, n: SimNode, core: NodeCore) -> None:
        deadline = core.next_deadline()
        if deadline is not None:
            self._push(deadline, _ACTION, n.node_id, n.incarnation, ("lms", n.incarnation))

    def _action(self, node: int, action: tuple[Any, ...]) -> None:
        kind = action[0]
        if kind == "qdevice":
            assert self.qdevice is not None
            self.qdevice.action(node, action)
            return
        if kind != "fsync" and kind != "lms":
            super()._action(node, action)
            return
        n = self.nodes[node]
        core = self.cores.get(node)
        if core is None or not n.alive or action[1] != n.incarnation:
            return  # the disk write (or timer) died with its node
        if kind == "lms":
            self._core(n, core, core.timer_fired(self.now))
            self._arm_lms(n, core)
            return
        command: StartFsync = action[2]
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
        """Every node has one vote and expects all: a majority of all votes is quorum (the
        qdevice's votes count where this node counts them)."""
        votes = len(members)
        total = self.quorum_options.configured_expected_votes
        core = self.cores.get(node)
        if self.qdevice is not None and core is not None and core.services.quorum.us.flags & CAST:
            votes += self.quorum_options.qdevice_votes
        if 2 * votes <= total:
            raise InvariantViolation(
                f"node {node} {what} in configuration {list(members)}: "
                f"{votes} of {total} votes is no quorum"
            )

    def _model_regular(self, node: int, change: ConfigChange) -> None:
        """The pure votequorum model, fed this node's membership history."""
        state = membership_changed(self.model[node], change.members, self.now)
        expected = self.quorum_options.configured_expected_votes
        for member in change.members:
            state = nodeinfo_received(state, NodeInfo(member, 1, expected, NodeFlag.NONE), member)
        self.model[node] = sync_completed(state)

    def _check_model(self, node: int, core: NodeCore, change: QuorumChanged) -> None:
        model = self.model[node]
        if change.ring_id != core.services.ring_id:
            return
        if self.qdevice is not None:  # the vote as the local qdevice gave it to votequorum
            cast = bool(core.services.quorum.us.flags & CAST)
            model = sync_completed(set_qdevice(model, registered=True, alive=True, cast_vote=cast))
        if change.quorate != model.quorate or core.services.quorum.quorate != model.quorate:
            raise InvariantViolation(
                f"node {node} decided quorate={change.quorate} in ring {change.ring_id} "
                f"with members {list(change.members)}; the votequorum model says "
                f"{model.quorate} (quorum {model.quorum}, total votes {model.total_votes})"
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

    def _schedule_faults(self) -> None:
        super()._schedule_faults()
        if self.qdevice is not None:
            self.qdevice.schedule_faults(self.opt.safety_s)

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
        for ack in self.acknowledged:  # every node kept its disk: nothing may be missing
            missing = [i for i in self.ids if self.cores[i].memdb.lookup(ack.path) is None]
            if missing:
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
        )
