"""The config store's write path on one node, the I/O half of ``nodecore.commit``: a
client's write waits here for its answer, and the group commits the core asks for
(``StartFsync``) run either in the loop (``coupled``: a slow disk stalls Totem) or in a
worker thread (``decoupled``: a slow disk only delays durability).
"""

from __future__ import annotations

import asyncio
import errno
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pvectl.cfs import memdb as mdb
from pvectl.errors import UsageError
from pvectl.node.backing_store import BackingStore
from pvectl.node.tracing import Tracer
from pvectl.nodecore.commit import COMMIT_LEVELS, StartFsync, WriteDone
from pvectl.nodecore.core import Command as CoreCommand
from pvectl.nodecore.core import NodeCore
from pvectl.nodecore.services import Multicast, StoreError, StoreInstalled, WriteApplied
from pvectl.trace.spans import Phase

# pmxcfs queues a write while the store synchronises instead of failing it; a write here
# waits out a ring change or a DFSM sync this long before its writer sees EAGAIN
TRANSIENT_WAIT_S = 10.0
TRANSIENT_RETRY_S = 0.05


@dataclass
class PendingWrite:
    """An own write's waiting client (the core decides when it is answered)."""

    count: int
    future: asyncio.Future[dict[str, Any]]
    durable_ns: int | None = None  # when its group commit ended here (None: not yet)


class WritePath:
    """Own writes from submission to answer. ``multicast`` hands a payload to Totem
    (tagged with the write's count, for sync-trace), ``run_core`` carries out the core's
    commands (the runtime's dispatch)."""

    def __init__(
        self,
        node_id: int,
        loop: asyncio.AbstractEventLoop,
        core: NodeCore,
        backing: BackingStore,
        tracer: Tracer,
        *,
        multicast: Callable[[bytes, int | None], None],
        run_core: Callable[[list[CoreCommand]], None],
    ) -> None:
        self.node_id = node_id
        self.loop = loop
        self.core = core
        self.backing = backing
        self.tracer = tracer
        self.multicast = multicast
        self.run_core = run_core
        self.writes: dict[int, PendingWrite] = {}
        self.fsync_started_ns = 0

    async def store_write(self, op: mdb.Operation, level: str) -> dict[str, Any]:
        """One store write; EAGAIN (ring re-forming, store syncing, write caught in a
        transitional configuration) is retried, which is safe since a refused write was
        applied nowhere."""
        if level not in COMMIT_LEVELS:
            raise UsageError(f"commit level must be local or all, not {level!r}")
        deadline = self.loop.time() + TRANSIENT_WAIT_S
        first_try_ns = time.monotonic_ns()
        retried: list[str] = []  # attempts refused after they were sent, for sync-trace
        while True:
            reply = await self._store_write_once(op, level, first_try_ns)
            if reply.get("errno") != errno.EAGAIN or self.loop.time() >= deadline:
                if reply.get("ok"):
                    reply["write_ids"] = [*retried, reply["write_id"]]
                    reply["retried"] = retried
                return reply
            if "write_id" in reply:
                retried.append(reply["write_id"])
            await asyncio.sleep(TRANSIENT_RETRY_S)

    async def _store_write_once(
        self, op: mdb.Operation, level: str, submitted: int
    ) -> dict[str, Any]:
        try:
            count, outputs = self.core.write(op, level, int(time.time()), time.monotonic_ns())
        except StoreError as exc:
            return {"ok": False, "error": str(exc), "errno": exc.errno_code}
        future: asyncio.Future[dict[str, Any]] = self.loop.create_future()
        self.writes[count] = PendingWrite(count, future)
        for output in outputs:  # the write itself, tagged with its count for sync-trace
            if isinstance(output, Multicast):
                self.tracer.submitted(count, submitted)
                self.multicast(output.payload, count)
            else:
                self.run_core([output])
        return await future

    def _persist(self, batch: tuple[WriteApplied | StoreInstalled, ...]) -> None:
        """One group commit, in order; an install starts a transaction of its own."""
        pending: list[mdb.ApplyResult] = []
        for item in batch:
            if isinstance(item, StoreInstalled):
                if pending:
                    self.backing.commit(pending)
                    pending = []
                self.backing.replace_all(item.entries.entries)
            elif item.applied.result.ok:
                pending.append(item.applied.result)
        if pending or not batch:
            self.backing.commit(pending)

    def start_fsync(self, command: StartFsync) -> None:
        """Coupled: in this loop, now (a slow disk stalls Totem); else in a worker thread."""
        self.fsync_started_ns = time.monotonic_ns()
        if command.inline:
            self._persist(command.batch)
            self._fsync_done(command.batch)
        else:
            self.loop.create_task(self._fsync_in_background(command.batch))

    async def _fsync_in_background(self, batch: tuple[WriteApplied | StoreInstalled, ...]) -> None:
        await asyncio.to_thread(self._persist, batch)
        self._fsync_done(batch)

    def _fsync_done(self, batch: tuple[WriteApplied | StoreInstalled, ...]) -> None:
        start, end = self.fsync_started_ns, time.monotonic_ns()
        for event in batch:
            if isinstance(event, StoreInstalled):
                continue
            applied = event.applied
            self.tracer.span(applied.sender, applied.count, Phase.fsync, start, end)
            if applied.sender == self.node_id and applied.count in self.writes:
                self.writes[applied.count].durable_ns = end
        self.run_core(self.core.fsync_done())

    def finish(self, done: WriteDone) -> None:
        """The core says an own write is answered (``level`` reached, or refused)."""
        count = done.count
        pending = self.writes.pop(count, None)
        if pending is None or pending.future.done():
            return
        now = time.monotonic_ns()
        durable = now if pending.durable_ns is None else min(pending.durable_ns, now)
        if done.level == "local":  # durable here, then waited until durable on a quorum
            self.tracer.span(self.node_id, count, Phase.stable, durable, now)
            durable = now
        self.tracer.span(self.node_id, count, Phase.commit, durable, now)
        if done.errno_code:
            code = done.errno_code
            pending.future.set_result(
                {
                    "ok": False,
                    "error": f"{errno.errorcode.get(code, code)}: {os.strerror(code)}",
                    "errno": code,
                    "write_id": f"{self.node_id}:{count}",
                }
            )
        else:
            pending.future.set_result(
                {"ok": True, "write_id": f"{self.node_id}:{count}", "level": done.level}
            )
