"""An embedded cluster node: binds the pure layers (Totem SRP, votequorum, the config store)
to the world (UDP, timers, the disk, a control socket). The only place with real I/O.

One asyncio loop runs the protocol. The config store's disk work runs either in that loop
(``coupled``: a slow fsync stalls token handling, so the node is declared dead, as the seed
article describes for pmxcfs+corosync) or in a worker thread with group commit
(``decoupled``: a slow disk only delays durability).

This module wires the parts and routes the node core's commands; the parts live beside it:
``totem_binding`` (Totem's commands on the loop), ``write_path`` (own writes and the group
commit), ``tracing`` (sync-trace's records), ``bench_driver`` (the benchmark service),
``corosync_conf_sync``, and ``handlers`` (the control commands).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pvectl.cfs import memdb as mdb
from pvectl.errors import UsageError
from pvectl.node import bench, control_socket
from pvectl.node.backing_store import BackingStore
from pvectl.node.bench_driver import BenchDriver
from pvectl.node.config import NodeConfig
from pvectl.node.corosync_conf_sync import CorosyncConfSync
from pvectl.node.qdevice import client_task as qdevice_task
from pvectl.node.totem_binding import TotemBinding, load_ring_seq
from pvectl.node.tracing import Tracer
from pvectl.node.transport import FaultFilter, UdpTransport
from pvectl.node.write_path import WritePath
from pvectl.nodecore.commit import StartFsync, WriteDone
from pvectl.nodecore.core import Command as CoreCommand
from pvectl.nodecore.core import NodeCore
from pvectl.nodecore.services import (
    Multicast,
    QuorumChanged,
    ServiceLog,
    StoreInstalled,
    WriteApplied,
)
from pvectl.quorum import votequorum as vq
from pvectl.totem import srp
from pvectl.totem.wire import Codec, is_token

QDEVICE_DISABLED = "qdevice.disabled"  # in a node's state dir: its qdevice does not start


async def _no_commands(_node: NodeRuntime, request: dict[str, Any]) -> dict[str, Any]:
    raise UsageError(f"unknown control command {request.get('cmd')!r}")


@dataclass
class NodeRuntime:
    config: NodeConfig
    state_dir: Path
    log: logging.Logger
    faults: FaultFilter = field(default_factory=FaultFilter)
    # the control commands (pvectl.node.handlers.dispatch; __main__.run_node wires it)
    on_request: Callable[[NodeRuntime, dict[str, Any]], Awaitable[dict[str, Any]]] = field(
        default=_no_commands
    )

    def __post_init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.node_id = self.config.node_id
        key = self.config.authkey.read_bytes()
        codec = Codec(
            self.node_id,
            self.config.cluster.name,
            key,
            encrypt=self.config.encrypt,
            nonce_source=os.urandom,
        )
        ring_file = self.state_dir / f"ringid_{self.node_id}"
        machine = srp.Srp(
            self.node_id,
            [p.node_id for p in self.config.peers],
            codec,
            self.config.totem,
            ring_seq=load_ring_seq(ring_file, self.log),
        )
        self.trace = Tracer(self.node_id)
        self.totem = TotemBinding(
            machine,
            self.loop,
            self.log,
            ring_file,
            tuple(p.node_id for p in self.config.peers if p.node_id != self.node_id),
            self.trace,
            deliver=self._handle_delivered,
            drained=self._drained,
        )
        self.memdb = mdb.MemDB()
        self.backing = BackingStore(self.state_dir / "config.db", self.config.durability)
        self.memdb.load(self.backing.load())
        # expected_votes_tracking's barrier is not carried over a restart: corosync 3.1
        # closes its ev_tracking file after reading it at start, so every later update
        # fails ("Unable to update ev_tracking_barrier on disk data") and a node always
        # starts from the value first written, 0
        self.core = NodeCore(
            self.node_id,
            vq.initial_state(self.config.quorum, self.node_id),
            self.memdb,
            coupled=self.config.coupling == "coupled",
        )
        self.services = self.core.services
        self.write_path = WritePath(
            self.node_id,
            self.loop,
            self.core,
            self.backing,
            self.trace,
            multicast=self.totem.multicast,
            run_core=self._core,
        )
        self.conf_sync = CorosyncConfSync(self.memdb, self.state_dir, self.log)
        self.bench = BenchDriver(self.totem, self.node_id)
        self.lms_timer: asyncio.TimerHandle | None = None
        self.stopping = asyncio.Event()
        self.ring_formed = asyncio.Event()
        self.qdevice: qdevice_task.QdeviceTask | None = None
        self.last_regular: tuple[tuple[int, ...], Any] | None = None
        self.started_ns = time.monotonic_ns()

    # --- lifecycle -----------------------------------------------------------------------

    async def run(self) -> None:
        peers = {p.node_id: (p.address, p.port) for p in self.config.peers}
        me = self.config.me
        totem = self.totem
        transport = totem.transport = await UdpTransport.bind(
            (me.address, me.port),
            peers,
            totem.on_datagram,
            self.faults,
            on_batch_end=totem.on_batch_end,
        )
        # the token before the frames that came in the same wake-up (see UdpTransport)
        transport.urgent = is_token
        server = await control_socket.serve(self.state_dir / "control.sock", self._on_request)
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, self.stopping.set)
        self.log.info(
            "[MAIN  ] pvectl node %d (%s) of cluster %s started on %s:%d",
            self.node_id,
            me.name,
            self.config.cluster.name,
            me.address,
            me.port,
        )
        timeouts = totem.srp.timeouts
        self.log.info(
            "[TOTEM ] token %d ms, consensus %d ms, join %d ms",
            timeouts.token * 1000,
            timeouts.consensus * 1000,
            timeouts.join * 1000,
        )
        if not (self.state_dir / QDEVICE_DISABLED).exists():
            self.qdevice = qdevice_task.start(self, self.config, self.state_dir)
        totem.execute(totem.srp.handle(srp.Start(), self.loop.time()))
        await self.stopping.wait()
        if self.qdevice is not None:
            await self.qdevice.stop()
        await self._announce_leaving()
        self.log.info("[MAIN  ] leaving the ring (clean shutdown)")
        totem.execute(totem.srp.handle(srp.Shutdown(), self.loop.time()))
        await asyncio.sleep(0.01)
        server.close()
        transport.close()
        self.backing.close()
        with contextlib.suppress(FileNotFoundError):
            (self.state_dir / "control.sock").unlink()

    async def _announce_leaving(self) -> None:
        """With allow_downscale, corosync's votequorum tells the others on a clean exit that
        this node leaves (NODEINFO with LEAVING), so they lower expected votes: wait for
        that message to come back in agreed order (bounded by the token timeout)."""
        if not self.config.quorum.allow_downscale or len(self.totem.srp.members) < 2:
            return
        self.totem.multicast(self.services.leaving_nodeinfo())
        deadline = self.loop.time() + self.totem.srp.timeouts.token * 2
        while self.loop.time() < deadline:
            if self.services.quorum.us.state is vq.NodeState.LEAVING:
                return
            await asyncio.sleep(0.01)
        self.log.warning("[VOTEQ ] the leaving NODEINFO was not delivered before the exit")

    async def _on_request(self, request: dict[str, Any]) -> dict[str, Any]:
        return await self.on_request(self, request)

    # --- what Totem delivers, to the node core ------------------------------------------

    def _drained(self) -> None:
        """After a receive batch or a timer: a running benchmark burst tops Totem up."""
        if self.bench.burst is not None:
            self.bench.refill()

    def _handle_delivered(self, command: srp.Deliver | srp.ConfigChange) -> None:
        if type(command) is srp.Deliver:
            payload = command.payload
            if payload and payload[0] == bench.SERVICE_BENCH:
                self.bench.delivered(command.sender, payload)
            else:
                self._core(
                    self.core.deliver(
                        command.sender,
                        payload,
                        int(time.time()),
                        time.monotonic_ns(),
                    )
                )
        else:
            assert isinstance(command, srp.ConfigChange)
            self._config_change(command)

    def _config_change(self, change: srp.ConfigChange) -> None:
        self.trace.config_change(change)
        members = " ".join(str(m) for m in change.members)
        self.log.info(
            "[TOTEM ] %s configuration %s: members %s", change.kind.value, change.ring_id, members
        )
        if change.kind is not srp.ConfigKind.REGULAR:
            self._core(self.core.transitional(change.members, change.ring_id))
            return
        self.ring_formed.set()
        self.last_regular = (change.members, change.ring_id)
        if self.qdevice is not None:
            self.qdevice.regular_configuration(change.members, change.ring_id)
        hold = self.qdevice.hold_seconds() if self.qdevice is not None else None
        outputs = self.core.regular(
            change.members, change.ring_id, self.loop.time(), int(time.time()), hold_nodeinfo_s=hold
        )
        self._core(outputs)
        self._arm_lms_timer()

    def _arm_lms_timer(self) -> None:
        if self.lms_timer is not None:
            self.lms_timer.cancel()
            self.lms_timer = None
        deadline = self.core.next_deadline()
        if deadline is not None:
            self.lms_timer = self.loop.call_at(deadline, self._on_lms_timer)

    def _on_lms_timer(self) -> None:
        self.lms_timer = None
        self._core(self.core.timer_fired(self.loop.time()))
        self._arm_lms_timer()

    # --- the node core's commands ---------------------------------------------------------

    def _services(self, outputs: list[Any]) -> None:
        """Outputs of ``NodeServices`` called directly (QDevice), through the core."""
        self._core(self.core.route(outputs))

    def _core(self, commands: list[CoreCommand]) -> None:
        for command in commands:
            if isinstance(command, Multicast):
                self.totem.multicast(command.payload)
            elif isinstance(command, QuorumChanged):
                self._log_quorum(command)
            elif isinstance(command, WriteApplied):
                self.trace.applied(command)
                self.conf_sync.sync()
            elif isinstance(command, StoreInstalled):
                self.loop.call_soon(self.conf_sync.sync)
            elif isinstance(command, StartFsync):
                self.write_path.start_fsync(command)
            elif isinstance(command, WriteDone):
                self.write_path.finish(command)
            elif isinstance(command, ServiceLog):
                self.log.info("[PVECFS] %s", command.text)

    def _log_quorum(self, change: QuorumChanged) -> None:
        if self.qdevice is not None:
            self.qdevice.quorum_changed(change.quorate, change.members)
        members = " ".join(str(m) for m in change.members)
        self.log.info("[QUORUM] Members[%d]: %s", len(change.members), members)
        self.log.info(
            "[QUORUM] This node is within the %s",
            "primary component and will provide service."
            if change.quorate
            else "non-primary component and will NOT provide any services.",
        )
