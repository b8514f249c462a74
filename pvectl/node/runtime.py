"""An embedded cluster node: binds the pure layers (Totem SRP, votequorum, the config store)
to the world (UDP, timers, the disk, a control socket). The only place with real I/O.

One asyncio loop runs the protocol. The config store's disk work runs either in that loop
(``coupled``: a slow fsync stalls token handling, so the node is declared dead, as the seed
article describes for pmxcfs+corosync) or in a worker thread with group commit
(``decoupled``: a slow disk only delays durability).
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
from pvectl.node.config import NodeConfig
from pvectl.node.corosync_conf_sync import CorosyncConfSync
from pvectl.node.qdevice import client_task as qdevice_task
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


async def _no_commands(_node: NodeRuntime, request: dict[str, Any]) -> dict[str, Any]:
    raise UsageError(f"unknown control command {request.get('cmd')!r}")


@dataclass
class NodeRuntime:
    config: NodeConfig
    state_dir: Path
    log: logging.Logger
    faults: FaultFilter = field(default_factory=FaultFilter)
    # the control commands (pvectl.node.handlers.dispatch; run_node wires it)
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
        self.ring_file = self.state_dir / f"ringid_{self.node_id}"
        self.srp = srp.Srp(
            self.node_id,
            [p.node_id for p in self.config.peers],
            codec,
            self.config.totem,
            ring_seq=self._load_ring_seq(),
        )
        self.trace = Tracer(self.node_id)
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
            multicast=self._multicast,
            run_core=self._core,
        )
        self.timers: dict[srp.TimerKind, asyncio.TimerHandle] = {}
        self.lms_timer: asyncio.TimerHandle | None = None
        self.transport: UdpTransport | None = None
        self.stopping = asyncio.Event()
        self.ring_formed = asyncio.Event()
        self.qdevice: qdevice_task.QdeviceTask | None = None
        self.last_regular: tuple[tuple[int, ...], Any] | None = None
        self.started_ns = time.monotonic_ns()
        self.conf_sync = CorosyncConfSync(self.memdb, self.state_dir, self.log)
        self.bench = bench.Recorder()
        self.burst: bench.Burst | None = None
        self.burst_done: asyncio.Future[None] | None = None
        self.pace_timer: asyncio.TimerHandle | None = None
        self.echo_wait: asyncio.Future[int] | None = None  # own delivery time, for bench_echo
        self.other_nodes = tuple(p.node_id for p in self.config.peers if p.node_id != self.node_id)
        self.pending: list[srp.Deliver | srp.ConfigChange] = []
        self.receiving = False  # inside a receive batch: deliveries wait for its end
        self.flushing = False
        # sync-trace: when the event being handled reached the machine (loop.time(), the
        # same CLOCK_MONOTONIC as monotonic_ns)
        self.event_time = 0.0
        self.delivery_errors = 0  # deliveries whose handling raised (a bug; logged once)

    # --- lifecycle -----------------------------------------------------------------------

    def _load_ring_seq(self) -> int:
        try:
            return int(self.ring_file.read_text().strip() or "0", 16)
        except FileNotFoundError:
            return 0
        except ValueError:
            self.log.warning("ignoring a corrupt ring id file %s", self.ring_file)
            return 0

    async def run(self) -> None:
        peers = {p.node_id: (p.address, p.port) for p in self.config.peers}
        me = self.config.me
        self.transport = await UdpTransport.bind(
            (me.address, me.port),
            peers,
            self._on_datagram,
            self.faults,
            on_batch_end=self._on_batch_end,
        )
        # the token before the frames that came in the same wake-up (see UdpTransport)
        self.transport.urgent = is_token
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
        timeouts = self.srp.timeouts
        self.log.info(
            "[TOTEM ] token %d ms, consensus %d ms, join %d ms",
            timeouts.token * 1000,
            timeouts.consensus * 1000,
            timeouts.join * 1000,
        )
        if not (self.state_dir / QDEVICE_DISABLED).exists():
            self.qdevice = qdevice_task.start(self, self.config, self.state_dir)
        self._execute(self.srp.handle(srp.Start(), self.loop.time()))
        await self.stopping.wait()
        if self.qdevice is not None:
            await self.qdevice.stop()
        await self._announce_leaving()
        self.log.info("[MAIN  ] leaving the ring (clean shutdown)")
        self._execute(self.srp.handle(srp.Shutdown(), self.loop.time()))
        await asyncio.sleep(0.01)
        server.close()
        self.transport.close()
        self.backing.close()
        with contextlib.suppress(FileNotFoundError):
            (self.state_dir / "control.sock").unlink()

    # --- driving the protocol ---------------------------------------------------------------

    def _on_datagram(self, _peer: int, data: bytes) -> None:
        self.receiving = True
        self.event_time = now = self.loop.time()
        self._execute(self.srp.receive(data, now))

    def _on_batch_end(self) -> None:
        """The socket is drained: now deliver what the batch brought (tokens went on)."""
        self.receiving = False
        if self.pending:
            self._flush()
        self._core(self.core.stable(*self.srp.stable))
        if self.burst is not None:
            self._refill()

    def _on_timer(self, kind: srp.TimerKind) -> None:
        self.timers.pop(kind, None)
        self.event_time = now = self.loop.time()
        if kind is srp.TimerKind.TOKEN_LOSS and self.srp.state is not srp.State.GATHER:
            self.trace.ring_event("token_lost", self.srp.members)
        self._execute(self.srp.handle(srp.TimerFired(kind), now))
        if self.burst is not None:
            self._refill()

    async def _announce_leaving(self) -> None:
        """With allow_downscale, corosync's votequorum tells the others on a clean exit that
        this node leaves (NODEINFO with LEAVING), so they lower expected votes: wait for
        that message to come back in agreed order (bounded by the token timeout)."""
        if not self.config.quorum.allow_downscale or len(self.srp.members) < 2:
            return
        self._multicast(self.services.leaving_nodeinfo())
        deadline = self.loop.time() + self.srp.timeouts.token * 2
        while self.loop.time() < deadline:
            if self.services.quorum.us.state is vq.NodeState.LEAVING:
                return
            await asyncio.sleep(0.01)
        self.log.warning("[VOTEQ ] the leaving NODEINFO was not delivered before the exit")

    def _multicast(self, payload: bytes, tag: int | None = None) -> None:
        self.event_time = now = self.loop.time()
        self._execute(self.srp.handle(srp.AppSend(payload, tag), now))

    def _execute(self, commands: list[srp.Command]) -> None:
        """Run the machine's commands: network and timers at once; deliveries and
        configuration changes (in their order) once the current receive batch is over,
        so a token is forwarded before this node works through the frames it came with."""
        transport = self.transport
        assert transport is not None
        for command in commands:
            kind = type(command)
            if kind is srp.Deliver or kind is srp.ConfigChange:
                self.pending.append(command)  # type: ignore[arg-type]
            elif kind is srp.SendAll:
                transport.send_many(self.other_nodes, command.data)  # type: ignore[union-attr]
            elif kind is srp.SendTo:
                transport.send(command.node, command.data)  # type: ignore[union-attr]
            elif kind is srp.SetTimer:
                assert isinstance(command, srp.SetTimer)
                old = self.timers.pop(command.kind, None)
                if old is not None:
                    old.cancel()
                self.timers[command.kind] = self.loop.call_at(
                    command.deadline, self._on_timer, command.kind
                )
            elif kind is srp.CancelTimer:
                assert isinstance(command, srp.CancelTimer)
                handle = self.timers.pop(command.kind, None)
                if handle is not None:
                    handle.cancel()
            elif kind is srp.PersistRingSeq:
                assert isinstance(command, srp.PersistRingSeq)
                self._persist_ring_seq(command.seq)
            elif kind is srp.Log:
                assert isinstance(command, srp.Log)
                getattr(
                    self.log,
                    command.level
                    if command.level in ("debug", "info", "warning", "error")
                    else "info",
                )("[TOTEM ] %s", command.text)
            elif kind is srp.Multicasted or kind is srp.MulticastStarted:
                self.trace.sent(command, self.event_time)  # type: ignore[arg-type]
        if self.pending and not self.receiving:
            self._flush()
        if not self.receiving:  # a token may have made own writes stable (see NodeCore)
            self._core(self.core.stable(*self.srp.stable))

    def _flush(self) -> None:
        """Hand deliveries and configuration changes to the services, in agreed order.
        Re-entrant calls (a service multicasting) only queue; the outer loop drains."""
        if self.flushing:
            return
        self.flushing = True
        try:
            pending = self.pending
            while pending:
                batch, self.pending = pending, []
                for command in batch:
                    try:
                        self._handle_delivered(command)
                    except Exception:  # one bad delivery must not lose the rest of the batch
                        self.delivery_errors += 1
                        if self.delivery_errors == 1:
                            self.log.exception("[MAIN  ] handling a delivery failed")
                pending = self.pending
        finally:
            self.flushing = False

    def _handle_delivered(self, command: srp.Deliver | srp.ConfigChange) -> None:
        if type(command) is srp.Deliver:
            payload = command.payload
            if payload and payload[0] == bench.SERVICE_BENCH:
                self._bench_delivered(command.sender, payload)
            else:
                self._core(
                    self.core.deliver(
                        command.sender,
                        payload,
                        int(time.time()),
                        time.monotonic_ns(),
                        (command.ring_id, command.seq),
                    )
                )
        else:
            assert isinstance(command, srp.ConfigChange)
            self._config_change(command)

    def _persist_ring_seq(self, seq: int) -> None:
        tmp = self.ring_file.with_suffix(".tmp")
        with open(tmp, "w") as handle:
            handle.write(f"{seq:x}\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.ring_file)

    def _config_change(self, change: srp.ConfigChange) -> None:
        self.trace.config_change(change)
        members = " ".join(str(m) for m in change.members)
        self.log.info(
            "[TOTEM ] %s configuration %s: members %s", change.kind.value, change.ring_id, members
        )
        if change.kind is not srp.ConfigKind.REGULAR:
            self._core(self.core.transitional(change.members))
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

    def _services(self, outputs: list[Any]) -> None:
        """Outputs of ``NodeServices`` called directly (QDevice), through the core."""
        self._core(self.core.route(outputs))

    def _core(self, commands: list[CoreCommand]) -> None:
        for command in commands:
            if isinstance(command, Multicast):
                self._multicast(command.payload)
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
        if change.quorate:
            self.log.info(
                "[QUORUM] This node is within the primary component and will provide service."
            )
        else:
            self.log.info(
                "[QUORUM] This node is within the non-primary component and will "
                "NOT provide any services."
            )

    # --- the control socket (commands in pvectl.node.handlers) ---------------------------

    async def _on_request(self, request: dict[str, Any]) -> dict[str, Any]:
        return await self.on_request(self, request)

    # --- the benchmark service (service 4) -------------------------------------------------

    def _bench_delivered(self, sender: int, payload: bytes) -> None:
        now_ns = time.monotonic_ns()
        self.bench.delivered(sender, payload, now_ns)
        waiter = self.echo_wait
        if waiter is not None and sender == self.node_id and not waiter.done():
            waiter.set_result(now_ns)

    def _refill(self) -> None:
        """Top the Totem send queue up to the burst's limit (called after every event);
        a paced burst only sends what its rate allows by now, and sets a timer for more."""
        burst = self.burst
        assert burst is not None
        handle = self.srp.handle
        queue_limit = burst.queue_limit
        now = self.loop.time()
        allowed = burst.allowed(time.monotonic_ns())
        pushed = False
        while burst.sent < allowed and self.srp.send_queue_bytes < queue_limit:
            commands = handle(srp.AppSend(burst.message(time.monotonic_ns())), now)
            if commands:
                self._execute(commands)
            pushed = True
        if burst.done:
            burst.finished_ns = time.monotonic_ns()
            self.burst = None
            if self.burst_done is not None and not self.burst_done.done():
                self.burst_done.set_result(None)
        elif burst.sent < allowed:
            if pushed:
                burst.waits += 1
        elif self.pace_timer is None:
            delay = (burst.due_ns(burst.sent) - time.monotonic_ns()) / 1e9
            self.pace_timer = self.loop.call_later(max(delay, 0.0), self._paced)

    def _paced(self) -> None:
        self.pace_timer = None
        if self.burst is not None:
            self._refill()


QDEVICE_DISABLED = "qdevice.disabled"  # in a node's state dir: its qdevice does not start


def configure_logging(state_dir: Path, node_id: int) -> logging.Logger:
    logger = logging.getLogger(f"pvectl.node.{node_id}")
    logger.setLevel(logging.INFO)
    handler = logging.FileHandler(state_dir / "node.log")
    handler.setFormatter(
        logging.Formatter(f"%(asctime)s.%(msecs)03d [{node_id}] %(message)s", "%b %d %H:%M:%S")
    )
    logger.addHandler(handler)
    return logger
