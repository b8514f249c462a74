"""The config store under the deterministic simulator: same Totem, votequorum and store code
as the embedded nodes, with a simulated disk that is slow and loses what was not committed
when its node crashes.

Each node runs ``NodeServices`` (votequorum + DFSM + memdb) on top of its simulated Totem
node. Writes are creations of unique files, issued only where the node's partition is
quorate (as pmxcfs refuses writes otherwise). A write is *acknowledged* when its sender
has committed it to its simulated ``config.db`` (commit level ``local``). Disk commits
complete after a per-node delay drawn from the seed (some nodes have a slow disk); a crash
loses the memdb and every commit still in flight, and a restart loads the memdb from what
was committed.

Invariants checked at the end of a run, once the Totem invariants have passed: every live
node's store is identical (same checksum), and every acknowledged write is present on
every node: nothing acknowledged is lost.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from pvectl.cfs.memdb import Create, Entry, MemDB
from pvectl.nodecore.services import (
    Multicast,
    NodeServices,
    StoreError,
    StoreInstalled,
    WriteApplied,
)
from pvectl.quorum import votequorum as vq
from pvectl.sim.checker import InvariantViolation
from pvectl.sim.world import _ACTION, Options, SimNode, SimResult, Simulator
from pvectl.totem.srp import AppSend, Command, ConfigChange, ConfigKind, Deliver

_SEP = b"|"


@dataclass(frozen=True)
class StoreResult:
    totem: SimResult
    acknowledged: int
    store_writes: int
    checksum: str


class StoreSimulator(Simulator):
    def __init__(
        self,
        seed: int,
        options: Options | None = None,
        *,
        nodes: int | None = None,
        trace: bool = False,
    ) -> None:
        super().__init__(seed, options, nodes=nodes, trace=trace)
        self.store_rng = random.Random(f"store-{seed}")
        self.disk_delay = {i: self.store_rng.choice([0.0005, 0.002, 0.01, 0.3]) for i in self.ids}
        self.disk: dict[int, dict[int, Entry]] = {i: {} for i in self.ids}
        self.services: dict[int, NodeServices] = {}
        self.pending: dict[tuple[int, int, int], str] = {}  # (node, incarnation, count)
        self.disk_queue: dict[int, list[WriteApplied | StoreInstalled]] = {i: [] for i in self.ids}
        self.disk_busy: dict[int, bool] = {}
        self.acknowledged: list[str] = []
        self.store_writes = 0
        options_q = vq.QuorumOptions.build([(i, 1) for i in self.ids])
        self.quorum_options = options_q

    # --- node lifecycle ----------------------------------------------------------------

    def _start_node(self, n: SimNode) -> None:
        memdb = MemDB()
        memdb.load(sorted(self.disk[n.node_id].values(), key=lambda e: e.inode))
        state = vq.initial_state(self.quorum_options, n.node_id)
        self.services[n.node_id] = NodeServices(n.node_id, state, memdb)
        super()._start_node(n)

    def _crash(self, n: SimNode, *, clean: bool) -> None:
        if n.alive:
            self.services.pop(n.node_id, None)
            self.disk_queue[n.node_id] = []
            self.disk_busy[n.node_id] = False
        super()._crash(n, clean=clean)

    # --- traffic -----------------------------------------------------------------------

    def _wrap(self, n: SimNode, payload: bytes) -> bytes:
        tagged = b"%d.%d.%d" % (n.node_id, n.incarnation, n.sent) + _SEP + payload
        n.sent += 1
        return tagged

    def _multicast(self, n: SimNode, payload: bytes) -> None:
        if n.srp is not None:
            self._execute(n, n.srp.handle(AppSend(self._wrap(n, payload)), self.now))

    def _send_app(self, n: SimNode) -> None:
        services = self.services.get(n.node_id)
        if (
            services is None
            or not n.alive
            or n.paused_until > self.now
            or self.work_rng.random() < 0.5
        ):
            super()._send_app(n)
            return
        path = f"f{n.node_id}.{n.incarnation}.{self.store_writes}"
        try:
            count, outputs = services.write(Create(path), int(self.now), 0)
        except StoreError:
            super()._send_app(n)  # not quorate or syncing: pmxcfs would refuse too
            return
        self.store_writes += 1
        self.pending[(n.node_id, n.incarnation, count)] = path
        self._outputs(n, outputs)

    def _execute(self, n: SimNode, cmds: list[Command]) -> None:
        super()._execute(n, cmds)
        services = self.services.get(n.node_id)
        if services is None or not n.alive:
            return
        for command in cmds:
            if self.services.get(n.node_id) is not services:
                return  # crashed while handling this batch
            if isinstance(command, Deliver):
                _, _, payload = command.payload.partition(_SEP)
                self._outputs(n, services.deliver(command.sender, payload, int(self.now), 0))
            elif isinstance(command, ConfigChange) and command.kind is ConfigKind.REGULAR:
                self._outputs(
                    n,
                    services.regular_configuration(
                        command.members, command.ring_id, int(self.now * 1000), int(self.now)
                    ),
                )
            elif isinstance(command, ConfigChange):
                self._outputs(n, services.transitional_configuration(command.members))

    def _outputs(self, n: SimNode, outputs: list[Any]) -> None:
        for output in outputs:
            if isinstance(output, Multicast):
                self._multicast(n, output.payload)
            elif isinstance(output, WriteApplied | StoreInstalled):
                # the disk is a log: commits complete in order, a group at a time
                self.disk_queue[n.node_id].append(output)
                self._flush(n)

    def _flush(self, n: SimNode) -> None:
        node = n.node_id
        if self.disk_busy.get(node) or not self.disk_queue[node]:
            return
        batch, self.disk_queue[node] = self.disk_queue[node], []
        self.disk_busy[node] = True
        self._push(
            self.now + self.disk_delay[node],
            _ACTION,
            node,
            n.incarnation,
            ("flush", n.incarnation, batch),
        )

    def _action(self, node: int, action: tuple[Any, ...]) -> None:
        if action[0] != "flush":
            super()._action(node, action)
            return
        _, incarnation, batch = action
        n = self.nodes[node]
        if not n.alive or incarnation != n.incarnation:
            return  # the disk write died with its node
        disk = self.disk[node]
        for item in batch:
            if isinstance(item, StoreInstalled):
                self.disk[node] = disk = {e.inode: e for e in item.entries.entries}
                continue
            applied = item.applied
            if applied.result.ok:
                for inode in applied.result.deletes:
                    disk.pop(inode, None)
                for entry in applied.result.upserts:
                    disk[entry.inode] = entry
            if applied.sender == node:
                path = self.pending.pop((node, n.incarnation, applied.count), None)
                if path is not None and applied.result.ok:
                    self.acknowledged.append(path)
        self.disk_busy[node] = False
        self._flush(n)

    # --- the run -----------------------------------------------------------------------

    def run_store(self) -> StoreResult:
        totem = self.run()
        # let the last disk commits and a sync round finish
        self._run_until(self.now + max(self.disk_delay.values()) + 1.0)
        checksums = {}
        for i in self.ids:
            services = self.services.get(i)
            if services is None:
                raise InvariantViolation(f"seed {self.seed}: node {i} has no store after heal")
            if not services.store.synced:
                raise InvariantViolation(
                    f"seed {self.seed}: node {i}'s store is not synced "
                    f"(mode {services.store.mode.name})"
                )
            checksums[i] = services.memdb.checksum()
        if len(set(checksums.values())) != 1:
            raise InvariantViolation(f"seed {self.seed}: stores diverged: {checksums}")
        for i in self.ids:
            memdb = self.services[i].memdb
            for path in self.acknowledged:
                if memdb.lookup(path) is None:
                    raise InvariantViolation(
                        f"seed {self.seed}: acknowledged write {path} lost on node {i}"
                    )
        return StoreResult(
            totem, len(self.acknowledged), self.store_writes, next(iter(checksums.values()))
        )


def main(argv: list[str] | None = None) -> int:
    """``python -m pvectl.sim.store --seeds 100 [--seed-start S] [--nodes N] | --seed N``."""
    import argparse
    import time

    parser = argparse.ArgumentParser(prog="python -m pvectl.sim.store")
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--seed-start", type=int, default=1)
    parser.add_argument("--seed", type=int, help="replay one seed with its trace")
    parser.add_argument("--nodes", type=int)
    args = parser.parse_args(argv)
    seeds = (
        [args.seed]
        if args.seed is not None
        else list(range(args.seed_start, args.seed_start + args.seeds))
    )
    started = time.monotonic()
    acknowledged = 0
    for seed in seeds:
        try:
            result = StoreSimulator(seed, nodes=args.nodes, trace=args.seed is not None).run_store()
        except InvariantViolation as exc:
            print(f"VIOLATION {exc}")
            print(f"replay: python -m pvectl.sim.store --seed {seed}")
            return 1
        acknowledged += result.acknowledged
    elapsed = time.monotonic() - started
    print(
        f"{len(seeds)} seeds ok, {acknowledged} acknowledged writes checked, "
        f"{len(seeds) / elapsed * 60:.0f} seeds/minute"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
