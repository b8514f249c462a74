"""An embedded node's qdevice client: what corosync-qdevice (model net) does beside corosync,
as an asyncio task inside the node.

The protocol is the sans-IO ``QdeviceNetClient``; this module owns the TCP connection, the
STARTTLS upgrade (stdlib ``ssl`` only: nodes may run on hosts with nothing but python3),
the clock and the reconnects, and feeds the vote to votequorum the way
``votequorum_qdevice_poll`` does: the device is registered and alive while the node runs,
and casts its vote only while qnetd has ACKed the current ring. On each regular Totem
configuration a held vote is dropped at once, so two partitions never both count the
device, and, while connected, this node's NODEINFO for the new ring waits for qnetd's
answer for that ring id (at most ``sync_timeout``): votequorum's sync blocks on the
qdevice poll the same way in corosync, so a crash survivor is never shown inquorate
while its vote is on the way. ECHO_REQUEST every 0.8 x ``quorum.device.timeout``; no reply by the
next one, or a closed connection, loses the vote (ffsplit semantics), then reconnect after
a random 0..0.9 x cast-vote-interval delay, as corosync-qdevice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
from pathlib import Path
from typing import Any, Protocol

from pvectl.node.config import NodeConfig, QdeviceNetConfig
from pvectl.nodecore.core import NodeCore
from pvectl.nodecore.services import NodeServices, ServiceLog
from pvectl.quorum import votequorum as vq
from pvectl.quorum.qdevice.client import (
    ClientAction,
    ClientDisconnect,
    ClientSend,
    ClientStartTls,
    ClientState,
    QdeviceNetClient,
    parse_tie_breaker,
)
from pvectl.quorum.qdevice.wire import (
    Algorithm,
    FrameReader,
    TlsSupported,
    WireError,
    WireRingId,
)
from pvectl.results import RingId

SERVER_CN = "Qnetd Server"  # the name corosync-qdevice expects on qnetd's certificate
CA_FILE = "qnetd-cacert.crt"
ALGORITHMS = {
    "ffsplit": Algorithm.FFSPLIT,
    "lms": Algorithm.LMS,
    "2nodelms": Algorithm.TWO_NODE_LMS,
}
TLS_MODES = {
    "on": TlsSupported.SUPPORTED,
    "required": TlsSupported.REQUIRED,
    "off": TlsSupported.UNSUPPORTED,
}


class Node(Protocol):
    """What the task needs from the node runtime."""

    services: NodeServices
    core: NodeCore
    log: logging.Logger

    def _services(self, outputs: list[Any]) -> None: ...

    def _core(self, commands: list[Any]) -> None: ...


class _Dropped(Exception):
    """The session ended; the message says why."""


def client_files(cert_dir: Path, cluster: str) -> tuple[Path, Path, Path]:
    """(CA, client certificate, client key) inside a qdevice cert dir."""
    return (
        cert_dir / CA_FILE,
        cert_dir / f"cluster-{cluster}.crt",
        cert_dir / f"cluster-{cluster}.key",
    )


class QdeviceTask:
    def __init__(self, node: Node, config: NodeConfig, device: QdeviceNetConfig, state_dir: Path):
        self.node = node
        self.device = device
        self.cluster = config.cluster.name
        self.cert_dir = device.cert_dir or state_dir / "qdevice"
        ca, _, _ = client_files(self.cert_dir, self.cluster)
        self.client = QdeviceNetClient(
            self.cluster,
            config.node_id,
            ALGORITHMS[device.algorithm],
            parse_tie_breaker(device.tie_breaker),
            device.heartbeat_interval_ms,
            TLS_MODES[device.tls],
            certificates=ca.exists(),  # tls on with certificates: never plaintext
            keep_active_partition=device.keep_active_partition,
        )
        self.client.set_config(tuple(p.node_id for p in config.peers), 1)
        # a lab on loopback: connect from the node's own 127.x address, so qnetd's client
        # list shows the node as a separate host (elsewhere the kernel picks the source)
        loopback = device.host.startswith("127.") and config.me.address.startswith("127.")
        self.local_addr = (config.me.address, 0) if loopback else None
        self.casting = False
        self.quorum_sent: tuple[bool, tuple[int, ...]] | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.task: asyncio.Task[None] | None = None
        self.connects = 0
        self.last_error = ""
        self.ring_known = asyncio.Event()  # connect once votequorum has a membership

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Register with votequorum (flags go out with the first NODEINFO) and connect."""
        services = self.node.services
        services.quorum = vq.set_qdevice(
            services.quorum, registered=True, alive=True, cast_vote=False
        )
        self.task = asyncio.get_running_loop().create_task(self._run())
        self._log(
            f"qdevice model net: qnetd {self.device.host}:{self.device.port}, "
            f"algorithm {self.device.algorithm}, tls {self.device.tls}"
            + (
                " (required: this node has qdevice certificates)"
                if self.device.tls == "on" and self.client.tls is TlsSupported.REQUIRED
                else ""
            )
        )

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        self._close()

    # --- what the node tells us --------------------------------------------------------------

    def regular_configuration(self, members: tuple[int, ...], ring_id: RingId) -> None:
        """Call before votequorum's sync for the new ring: the held vote is void now."""
        services = self.node.services
        services.quorum = vq.set_qdevice(
            services.quorum, registered=True, alive=True, cast_vote=False
        )
        if self.casting:
            self._log(f"ring {ring_id}: vote withheld until qnetd answers for it")
        self.casting = False
        self.ring_known.set()
        self._send_now(
            self.client.set_membership(
                WireRingId(ring_id.rep_node_id, ring_id.seq), tuple(sorted(members))
            )
        )

    def hold_seconds(self) -> float | None:
        """How long the core holds this node's NODEINFO of a new ring for qnetd's answer
        (None: not connected, nothing to wait for)."""
        if self.client.state is not ClientState.CONNECTED:
            return None
        return self.device.sync_timeout_ms / 1000

    def _release(self, why: str) -> None:
        core = self.node.core
        core.qdevice_wants = self.client.casting_vote
        self._apply(core.qdevice_release(why))

    def quorum_changed(self, quorate: bool, members: tuple[int, ...]) -> None:
        if self.quorum_sent == (quorate, members):
            return
        self.quorum_sent = (quorate, members)
        self._send_now(self.client.set_quorum(quorate, members))

    def describe(self) -> dict[str, Any]:
        return {
            "host": self.device.host,
            "port": self.device.port,
            "algorithm": self.device.algorithm,
            "tls": self.device.tls,
            "tls_active": bool(self.writer and self.writer.get_extra_info("ssl_object")),
            "state": self.client.state.value,
            "vote": self.client.vote.name,
            "casting_vote": self.casting,
            "connects": self.connects,
            "last_error": self.last_error,
        }

    # --- the connection ------------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        await self.ring_known.wait()
        while True:
            reason = "session ended"
            try:
                await self._session(loop)
            except (_Dropped, OSError, ssl.SSLError, TimeoutError, WireError) as exc:
                reason = str(exc) or type(exc).__name__
            finally:
                self._close()
            if reason != self.last_error:
                self._log(f"qnetd session ended: {reason}", logging.WARNING)
            self.last_error = reason
            self.client.connection_lost(reason)
            self._release("qnetd unreachable")
            self._sync_vote()
            delay = random.uniform(0.0, 0.9 * self.device.cast_vote_interval_ms / 1000)
            await asyncio.sleep(max(0.2, delay))

    async def _session(self, loop: asyncio.AbstractEventLoop) -> None:
        reader, self.writer = await asyncio.wait_for(
            asyncio.open_connection(self.device.host, self.device.port, local_addr=self.local_addr),
            self.device.connect_timeout_ms / 1000,
        )
        self.connects += 1
        frames = FrameReader(1 << 24)
        await self._act(self.client.connect(loop.time()))
        while True:
            await self._act(self.client.tick(loop.time()))
            due = self.client.next_deadline()  # the next echo: read until then, no polling
            timeout = None if due is None else max(0.0, due - loop.time())
            try:
                data = await asyncio.wait_for(reader.read(65536), timeout)
            except TimeoutError:
                continue
            if not data:
                raise _Dropped("qnetd closed the connection")
            for frame in frames.feed(data):
                await self._act(self.client.receive(frame, loop.time()))

    async def _act(self, actions: list[ClientAction]) -> None:
        for action in actions:
            if isinstance(action, ClientSend):
                assert self.writer is not None
                self.writer.write(action.data)
            elif isinstance(action, ClientStartTls):
                await self._start_tls()
                await self._act(self.client.tls_ready())
            elif isinstance(action, ClientDisconnect):
                raise _Dropped(action.reason)
        if self.writer is not None:
            await self.writer.drain()
        if self.last_error and self.client.casting_vote:
            self._log("qnetd session established, vote ACK")
            self.last_error = ""
        self._sync_vote()

    async def _start_tls(self) -> None:
        assert self.writer is not None
        await self.writer.drain()
        await self.writer.start_tls(self._ssl_context())
        cert = self.writer.get_extra_info("peercert") or {}
        names = [
            value for rdn in cert.get("subject", ()) for key, value in rdn if key == "commonName"
        ]
        if SERVER_CN not in names:
            raise _Dropped(f"qnetd's certificate is for {names!r}, not {SERVER_CN!r}")

    def _ssl_context(self) -> ssl.SSLContext:
        ca, cert, key = client_files(self.cert_dir, self.cluster)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.check_hostname = False  # qnetd is identified by its CN, as corosync-qdevice does
        ctx.verify_mode = ssl.CERT_REQUIRED
        try:
            ctx.load_verify_locations(cafile=str(ca))
            if cert.exists():
                ctx.load_cert_chain(str(cert), str(key))
        except (OSError, ssl.SSLError) as exc:
            raise _Dropped(
                f"cannot load the qdevice certificates in {self.cert_dir}: {exc}"
            ) from exc
        return ctx

    def _send_now(self, actions: list[ClientAction]) -> None:
        for action in actions:
            if isinstance(action, ClientSend) and self.writer is not None:
                self.writer.write(action.data)

    def _close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def _sync_vote(self) -> None:
        core = self.node.core
        self._apply(
            core.qdevice_poll(self.client.casting_vote, answered=self.client.answered_current_ring)
        )

    def _apply(self, commands: list[Any]) -> None:
        """Run the core's commands; its vote decisions are logged here as [QDEVICE]."""
        rest = []
        for command in commands:
            if isinstance(command, ServiceLog) and command.text.startswith("qdevice: "):
                self._log(command.text.removeprefix("qdevice: "))
            else:
                rest.append(command)
        self.node._core(rest)
        flags = self.node.services.quorum.us.flags
        self.casting = bool(flags & vq.NodeFlag.QDEVICE_CAST_VOTE)

    def _log(self, text: str, level: int = logging.INFO) -> None:
        self.node.log.log(level, "[QDEVICE] %s", text)


def start(node: Node, config: NodeConfig, state_dir: Path) -> QdeviceTask | None:
    """A running client when corosync.conf has ``quorum.device`` with model net."""
    if config.qdevice is None:
        return None
    task = QdeviceTask(node, config, config.qdevice, state_dir)
    task.start()
    return task
