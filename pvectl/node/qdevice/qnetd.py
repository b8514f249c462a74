"""``pvectl qdevice serve``: the qnetd server's I/O (asyncio TCP, TLS, control socket).

Protocol decisions live in :class:`pvectl.quorum.qdevice.server.QnetdCore`; this module
moves bytes. TLS runs through ``ssl.MemoryBIO`` rather than ``start_tls`` because the
protocol switches to TLS in the middle of a stream (STARTTLS): bytes of the client's
TLS handshake that arrive together with the STARTTLS message must go to TLS, not be
lost in a stream buffer.

A Unix control socket (mode 0600) answers ``status`` with the JSON of
``QnetdStatus``: ``pvectl qdevice clients`` reads it, like corosync-qnetd-tool.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import json
import os
import signal
import ssl
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pvectl.errors import ExitCode, PvectlError
from pvectl.node.control_socket import addressable
from pvectl.node.qdevice.certs import CertDir, init_cert_dir, peer_names, server_ssl_context
from pvectl.private_dir import check_private_dir, ensure_private_dir, user_runtime_dir
from pvectl.quorum.qdevice import wire
from pvectl.quorum.qdevice.server import Action, Close, QnetdCore, QnetdStatus, Send, StartTls

DEFAULT_PORT = 5403
# Connections held at once (corosync-qnetd's -m, which is unlimited there): each costs a
# descriptor and buffers, and one not yet through INIT may idle 30 s; beyond the cap a new
# connection is closed at once. Below the usual 1024 descriptor limit.
DEFAULT_MAX_CLIENTS = 1000


def default_control_socket(port: int) -> Path:
    """This user's own socket path: a shared directory would let another local user
    answer ``qdevice clients`` in our server's place, or squat the name ``serve`` needs."""
    return user_runtime_dir() / f"qnetd-{port}.sock"


def _log(text: str) -> None:
    stamp = time.strftime("%b %d %H:%M:%S")
    print(f"{stamp} pvectl-qnetd: {text}", file=sys.stderr, flush=True)


class _Connection(asyncio.Protocol):
    def __init__(self, server: QnetdServer, conn_id: int) -> None:
        self.server = server
        self.conn_id = conn_id
        self.transport: asyncio.Transport | None = None
        self.reader = wire.FrameReader(server.core.max_message_size)
        self.tls: ssl.SSLObject | None = None
        self.tls_in = ssl.MemoryBIO()
        self.tls_out = ssl.MemoryBIO()
        self.handshaking = False
        self.closed = False
        self.addr = "?"
        self.refused = False

    # --- asyncio callbacks ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.addr = f"{peer[0]}:{peer[1]}"
        if not self.server.admit(self):
            self.refused = self.closed = True
            transport.abort()
            return
        self.server.core.connect(self.conn_id, self.addr, self.server.now())
        self.server.core_changed()
        _log(f"new client connected from {self.addr}")

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        if self.tls is not None:
            self._tls_received(data)
        else:
            self._plain_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.connection_gone(self)

    # --- plaintext and TLS layers ---

    def _plain_received(self, data: bytes) -> None:
        self.reader.push(data)
        self._drain_frames()

    def _drain_frames(self) -> None:
        while not self.closed:
            try:
                frame = self.reader.next_frame()
            except wire.WireError as err:
                # a length field beyond our limit: say so, then drop the client (the
                # stream cannot be resynchronised without reading the whole message)
                self.write(wire.encode(wire.server_error(None, err.code)))
                self.close(f"client {self.addr}: {err}")
                return
            if frame is None:
                return
            self.server.apply(self.server.core.receive(self.conn_id, frame, self.server.now()))
            if self.tls is not None and self.handshaking:
                rest = self.reader.take_rest()
                if rest:
                    self._tls_received(rest)
                return

    def start_tls(self, context: ssl.SSLContext) -> None:
        self.tls = context.wrap_bio(self.tls_in, self.tls_out, server_side=True)
        self.handshaking = True

    def _tls_received(self, data: bytes) -> None:
        assert self.tls is not None
        self.tls_in.write(data)
        if self.handshaking:
            try:
                self.tls.do_handshake()
            except ssl.SSLWantReadError:
                self._flush_tls()
                return
            except (ssl.SSLError, OSError) as exc:
                self._flush_tls()
                self.close(f"client {self.addr}: TLS handshake failed: {exc}")
                return
            self.handshaking = False
            self._flush_tls()
            names = peer_names(self.tls.getpeercert())  # type: ignore[arg-type]
            self.server.core.tls_established(self.conn_id, names)
            _log(f"client {self.addr}: TLS up, certificate for {', '.join(names or ('-',))}")
        plain = bytearray()
        while True:
            try:
                chunk = self.tls.read(65536)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                self.close(f"client {self.addr} closed TLS")
                return
            except (ssl.SSLError, OSError) as exc:
                self.close(f"client {self.addr}: TLS error: {exc}")
                return
            if not chunk:
                break
            plain += chunk
        self._flush_tls()
        if plain:
            self.reader.push(bytes(plain))
            self._drain_frames()

    def _flush_tls(self) -> None:
        data = self.tls_out.read()
        if data and self.transport is not None:
            self.transport.write(data)

    def write(self, data: bytes) -> None:
        if self.closed or self.transport is None:
            return
        if self.tls is not None and not self.handshaking:
            try:
                self.tls.write(data)
            except (ssl.SSLError, OSError) as exc:
                self.close(f"client {self.addr}: TLS write failed: {exc}")
                return
            self._flush_tls()
        else:
            self.transport.write(data)

    def shutdown(self) -> None:
        """Server going down: end TLS with close_notify (as NSS's PR_Close does), then
        close, without running the algorithms for a leaving client."""
        if self.closed:
            return
        self.closed = True
        if self.tls is not None and not self.handshaking:
            with contextlib.suppress(ssl.SSLError, OSError):
                self.tls.unwrap()
            self._flush_tls()
        if self.transport is not None:
            self.transport.close()

    def close(self, reason: str) -> None:
        if self.closed:
            return
        _log(reason)
        self.closed = True
        if self.transport is not None:
            self.transport.close()
        self.server.connection_gone(self)


class QnetdServer:
    """One listening qnetd: TCP clients, a control socket, and the core's timers, run when
    the core says they are due (``next_deadline``), not on a polling tick."""

    def __init__(
        self,
        core: QnetdCore,
        ssl_context: ssl.SSLContext | None,
        control_socket: Path | None,
        max_clients: int = DEFAULT_MAX_CLIENTS,
    ) -> None:
        self.core = core
        self.ssl_context = ssl_context
        self.control_socket = control_socket
        self.max_clients = max_clients
        self._refusals = 0  # refused since the last log line
        self._refusal_logged = -1.0
        self._conns: dict[int, _Connection] = {}
        self._next_id = 1
        self._loop = asyncio.get_event_loop()
        self._gone: set[int] = set()
        self._timers_changed = asyncio.Event()  # the core took an event: re-read its deadline

    def now(self) -> float:
        return self._loop.time()

    def _new_connection(self) -> _Connection:
        conn = _Connection(self, self._next_id)
        self._conns[self._next_id] = conn
        self._next_id += 1
        return conn

    def admit(self, conn: _Connection) -> bool:
        """Whether a new connection fits under ``max_clients``; a refusal is logged, at
        most once a second (a flood must not flood the log too)."""
        if len(self._conns) <= self.max_clients:  # this one is counted already
            return True
        self._refusals += 1
        now = self.now()
        if now - self._refusal_logged >= 1.0:
            more = (
                f" (and {self._refusals - 1} more since the last such line)"
                if self._refusals > 1
                else ""
            )
            _log(
                f"refusing client {conn.addr}: {self.max_clients} clients connected, the "
                f"limit (--max-clients){more}"
            )
            self._refusal_logged, self._refusals = now, 0
        return False

    def core_changed(self) -> None:
        """The core took an event, so its next deadline may have moved: wake the ticker."""
        self._timers_changed.set()

    def apply(self, actions: list[Action]) -> None:
        self.core_changed()
        for action in actions:
            conn = self._conns.get(action.conn_id)
            if conn is None:
                continue
            if isinstance(action, Send):
                conn.write(action.data)
            elif isinstance(action, StartTls):
                if self.ssl_context is None:
                    conn.close(f"client {conn.addr}: STARTTLS but TLS is off")
                else:
                    conn.start_tls(self.ssl_context)
            elif isinstance(action, Close):
                conn.close(action.reason)

    def connection_gone(self, conn: _Connection) -> None:
        if conn.conn_id in self._gone:
            return
        self._gone.add(conn.conn_id)
        self._conns.pop(conn.conn_id, None)
        if conn.refused:
            return
        _log(f"client {conn.addr} disconnected")
        self.apply(self.core.disconnect(conn.conn_id, self.now()))

    async def _ticker(self) -> None:
        """Sleep until the core's next deadline, or until an event may have moved it."""
        while True:
            due = self.core.next_deadline()
            timeout = None if due is None else max(0.0, due - self.now())
            self._timers_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._timers_changed.wait(), timeout)
            if due is not None and self.now() >= due:
                self.apply(self.core.tick(self.now()))

    async def _control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5)
            request = line.decode("utf-8", "replace").strip()
            if request == "status":
                body = json.dumps(dataclasses.asdict(self.core.status()))
            else:
                body = json.dumps({"error": f"unknown request {request[:40]!r}"})
            writer.write(body.encode() + b"\n")
            await writer.drain()
        except (TimeoutError, OSError, ValueError, asyncio.IncompleteReadError):
            pass  # a slow, oversized or broken request gets no answer
        finally:
            writer.close()

    async def run(self, hosts: list[str] | None, port: int, ready: Callable[[], None]) -> None:
        try:
            server = await self._loop.create_server(
                self._new_connection, host=hosts, port=port, reuse_address=True
            )
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PvectlError(
                    f"TCP port {port} is already in use (is corosync-qnetd or another "
                    "'pvectl qdevice serve' running? stop it or pick --port)",
                    ExitCode.UNAVAILABLE,
                ) from exc
            if exc.errno == errno.EACCES:
                raise PvectlError(
                    f"no permission to listen on port {port}", ExitCode.NO_PERMISSION
                ) from exc
            raise PvectlError(f"cannot listen on port {port}: {exc}", ExitCode.UNAVAILABLE) from exc
        control = None
        if self.control_socket is not None:
            try:
                control = await self._start_control(self.control_socket)
            except OSError as exc:
                server.close()
                raise PvectlError(
                    f"control socket {self.control_socket}: {exc.strerror or exc}",
                    ExitCode.CANT_CREATE,
                ) from exc
        ticker = asyncio.ensure_future(self._ticker())
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._loop.add_signal_handler(sig, stop.set)
        ready()
        try:
            await stop.wait()
        finally:
            _log("shutting down")
            ticker.cancel()
            server.close()
            for conn in list(self._conns.values()):
                conn.shutdown()
            await asyncio.sleep(0.05)  # let the transports really close their sockets
            if control is not None:
                control.close()
                assert self.control_socket is not None
                self.control_socket.unlink(missing_ok=True)

    async def _start_control(self, path: Path) -> asyncio.AbstractServer:
        ensure_private_dir(path.parent)
        if path.exists():
            if await _control_alive(path):
                raise PvectlError(
                    f"{path}: another pvectl qnetd is serving there", ExitCode.UNAVAILABLE
                )
            path.unlink()
        old = os.umask(0o177)
        try:
            with addressable(path) as name:
                server = await asyncio.start_unix_server(self._control, path=name)
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        return server


async def _control_alive(path: Path) -> bool:
    try:
        with addressable(path) as name:
            _, writer = await asyncio.wait_for(asyncio.open_unix_connection(name), 1)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True


def serve(
    port: int = DEFAULT_PORT,
    listen: list[str] | None = None,
    cert_dir: str | None = None,
    tls: str | None = None,
    require_client_cert: bool = True,
    control_socket: Path | None = None,
    max_clients: int = DEFAULT_MAX_CLIENTS,
) -> None:
    """Run until SIGINT/SIGTERM. ``tls``: required (the default: a server with
    certificates takes no plaintext client), on (offered but optional, corosync-qnetd's
    default), off."""
    sock = control_socket or default_control_socket(port)
    ensure_private_dir(sock.parent)  # before anything else: refuse a planted directory
    tls = tls or "required"
    mode = {
        "on": wire.TlsSupported.SUPPORTED,
        "required": wire.TlsSupported.REQUIRED,
        "off": wire.TlsSupported.UNSUPPORTED,
    }[tls]
    context = None
    if mode is not wire.TlsSupported.UNSUPPORTED:
        if cert_dir is None:
            raise PvectlError("--cert-dir is needed unless --tls off", ExitCode.USAGE)
        certs = CertDir(Path(cert_dir))
        if not certs.exists():
            init_cert_dir(certs.path)
            _log(f"created CA and server certificate in {certs.path}")
        context = server_ssl_context(certs, require_client_cert)
    shown = ",".join(listen) if listen else "*"
    core = QnetdCore(mode, require_client_cert, listen_address=shown, port=port)

    async def main() -> None:
        server = QnetdServer(core, context, sock, max_clients)

        def ready() -> None:
            _log(
                f"listening on {shown}:{port}, TLS {tls}"
                + (", client certificate required" if context and require_client_cert else "")
                + f", at most {max_clients} clients; control socket {sock}"
            )

        await server.run(listen or None, port, ready)

    asyncio.run(main())


def query_status(port: int = DEFAULT_PORT, control_socket: Path | None = None) -> QnetdStatus:
    """Ask a running ``pvectl qdevice serve`` for its clusters and clients."""
    path = control_socket or default_control_socket(port)
    if os.path.lexists(path.parent):  # missing: nothing serves there ("cannot reach" below)
        check_private_dir(path.parent)  # a socket in a directory others control proves nothing

    async def ask() -> dict[str, Any]:
        try:
            with addressable(path) as name:
                reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(name), 3)
        except (OSError, TimeoutError) as exc:
            raise PvectlError(
                f"cannot reach a running 'pvectl qdevice serve' at {path} "
                f"({getattr(exc, 'strerror', None) or exc.__class__.__name__})",
                ExitCode.UNAVAILABLE,
            ) from exc
        writer.write(b"status\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 5)
        writer.close()
        try:
            data = json.loads(line)
        except ValueError as exc:
            raise PvectlError(f"{path}: not a pvectl qnetd control socket", ExitCode.ERROR) from exc
        if not isinstance(data, dict) or "error" in data:
            raise PvectlError(f"control socket error: {data}", ExitCode.ERROR)
        return data

    return status_from_dict(asyncio.run(ask()))


def status_from_dict(data: dict[str, Any]) -> QnetdStatus:
    from pvectl.quorum.qdevice.server import QnetdClientStatus, QnetdClusterStatus

    clusters = []
    for c in data.get("clusters", []):
        clients = tuple(
            QnetdClientStatus(
                **{
                    **cl,
                    "configured_nodes": tuple(cl["configured_nodes"]),
                    "membership_nodes": tuple(cl["membership_nodes"]),
                }
            )
            for cl in c["clients"]
        )
        clusters.append(QnetdClusterStatus(**{**c, "clients": clients}))
    return QnetdStatus(**{**data, "clusters": tuple(clusters)})
