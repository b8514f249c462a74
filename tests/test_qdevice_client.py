"""pvectl's qdevice client (the embedded nodes' side, issue 8 part 3) against pvectl's
qnetd core in memory, and over TCP against the real corosync-qnetd and against
``pvectl qdevice serve``: the same votes from both servers."""

from __future__ import annotations

import logging
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest

from pvectl.quorum.qdevice import wire as w
from pvectl.quorum.qdevice.client import (
    ClientDisconnect,
    ClientSend,
    ClientState,
    QdeviceNetClient,
)
from pvectl.quorum.qdevice.server import QnetdCore, Send

REPO = Path(__file__).resolve().parent.parent


# --- in memory ------------------------------------------------------------------------


class MemoryLink:
    """Client <-> QnetdCore, delivering every message at once."""

    def __init__(self, core: QnetdCore, client: QdeviceNetClient, conn: int) -> None:
        self.core, self.client, self.conn = core, client, conn
        core.connect(conn, f"mem:{conn}", 0.0)

    def to_server(self, actions: list[object], links: dict[int, MemoryLink]) -> None:
        for action in actions:
            if isinstance(action, ClientSend):
                for out in self.core.receive(self.conn, action.data, 0.0):
                    if isinstance(out, Send):
                        target = links[out.conn_id]
                        target.to_server(target.client.receive(out.data, 0.0), links)


def test_clients_get_votes_from_the_core_and_lose_them_on_split() -> None:
    core = QnetdCore(w.TlsSupported.UNSUPPORTED)
    clients = {n: QdeviceNetClient("c1", n) for n in (1, 2)}
    links = {n: MemoryLink(core, clients[n], n) for n in (1, 2)}
    ring = w.WireRingId(1, 4)
    for n, c in clients.items():
        c.set_config((1, 2), 1)
        c.set_membership(ring, (1, 2))
        c.set_quorum(True, (1, 2))
        links[n].to_server(c.connect(0.0), links)
    assert all(c.state is ClientState.CONNECTED for c in clients.values())
    assert [c.casting_vote for c in clients.values()] == [True, True]
    # membership change: the held ACK becomes NACK until qnetd answers for the new ring
    links[2].to_server(clients[2].set_membership(w.WireRingId(2, 8), (2,)), links)
    assert not clients[2].casting_vote
    links[1].to_server(clients[1].set_membership(w.WireRingId(1, 8), (1,)), links)
    assert clients[1].casting_vote and not clients[2].casting_vote


@pytest.mark.parametrize("keep", [False, True])
def test_keep_active_partition_keeps_the_vote_on_a_tie(keep: bool) -> None:
    """A 50:50 split: node 2's partition holds the vote when node 1's forms. By default the
    tie-breaker (lowest node id) moves it to node 1; with keep_active_partition_tie_breaker
    the holder keeps it (qnetd learns the option from the client's SET_OPTION)."""
    core = QnetdCore(w.TlsSupported.UNSUPPORTED)
    clients = {n: QdeviceNetClient("c1", n, keep_active_partition=keep) for n in (1, 2)}
    links = {n: MemoryLink(core, clients[n], n) for n in (1, 2)}
    for n, c in clients.items():
        c.set_config((1, 2), 1)
        c.set_membership(w.WireRingId(n, 8), (n,))
        c.set_quorum(False, (n,))
    links[2].to_server(clients[2].connect(0.0), links)
    assert clients[2].casting_vote
    links[1].to_server(clients[1].connect(0.0), links)
    assert clients[1].casting_vote is not keep
    assert clients[2].casting_vote is keep


def test_client_drops_a_silent_server() -> None:
    client = QdeviceNetClient("c1", 1, heartbeat_interval_ms=1000)
    core = QnetdCore(w.TlsSupported.UNSUPPORTED)
    links = {1: MemoryLink(core, client, 1)}
    links[1].to_server(client.connect(0.0), links)
    assert client.state is ClientState.CONNECTED
    assert isinstance(client.tick(1.0)[0], ClientSend)  # echo request, unanswered
    (drop,) = client.tick(2.0)
    assert isinstance(drop, ClientDisconnect) and not client.casting_vote


def test_client_refuses_garbage_and_errors() -> None:
    client = QdeviceNetClient("c1", 1)
    client.connect(0.0)
    (drop,) = client.receive(b"\x00\x01\x00\x00\x00\x02\x00", 0.0)
    assert isinstance(drop, ClientDisconnect) and client.state is ClientState.DISCONNECTED
    client.connect(0.0)
    error = w.encode(w.server_error(1, w.ErrorCode.TLS_REQUIRED))
    assert isinstance(client.receive(error, 0.0)[0], ClientDisconnect)


# --- over TCP: real corosync-qnetd and pvectl qdevice serve ------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TcpNode:
    def __init__(self, port: int, client: QdeviceNetClient, sel: selectors.BaseSelector) -> None:
        self.client = client
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.reader = w.FrameReader(1 << 24)
        sel.register(self.sock, selectors.EVENT_READ, self)

    def act(self, actions: list[object]) -> None:
        for action in actions:
            if isinstance(action, ClientSend):
                self.sock.sendall(action.data)


def _pump(sel: selectors.BaseSelector, until: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not until():
        for key in list(sel.get_map().values()):  # heartbeats, as a node's qdevice sends
            node = key.data
            node.act(node.client.tick(time.monotonic()))
        for key, _ in sel.select(0.1):
            node: TcpNode = key.data
            data = node.sock.recv(65536)
            if not data:
                node.client.connection_lost()
                sel.unregister(node.sock)
                continue
            for frame in node.reader.feed(data):
                node.act(node.client.receive(frame, time.monotonic()))
    assert until(), "condition not reached: " + "; ".join(
        f"node {n.client.node_id} {n.client.state.name} vote {n.client.vote.name}"
        for n in (key.data for key in sel.get_map().values())
    )


def _scenario(port: int) -> list[tuple[bool, bool]]:
    sel = selectors.DefaultSelector()
    clients = {n: QdeviceNetClient("pvtcl", n) for n in (1, 2)}
    nodes = {}
    ring = w.WireRingId(1, 4)
    for n, c in clients.items():
        c.set_config((1, 2), 1)
        c.set_membership(ring, (1, 2))
        c.set_quorum(True, (1, 2))
        nodes[n] = TcpNode(port, c, sel)
        nodes[n].act(c.connect(time.monotonic()))
    seen = []
    _pump(sel, lambda: all(c.casting_vote for c in clients.values()))
    seen.append((clients[1].casting_vote, clients[2].casting_vote))
    nodes[2].act(clients[2].set_membership(w.WireRingId(2, 8), (2,)))
    nodes[1].act(clients[1].set_membership(w.WireRingId(1, 8), (1,)))
    _pump(sel, lambda: clients[1].casting_vote and not clients[2].casting_vote)
    time.sleep(0.5)
    _pump(sel, lambda: True, 0.5)
    seen.append((clients[1].casting_vote, clients[2].casting_vote))
    for node in nodes.values():
        node.sock.close()
    return seen


@pytest.fixture
def real_qnetd() -> Iterator[tuple[int, Path]]:
    if os.geteuid() != 0 or shutil.which("corosync-qnetd") is None:
        pytest.skip("needs root and corosync-qnetd (private mount namespace for its /run)")
    state = Path(tempfile.mkdtemp(prefix="pvt-qd-cl-"))
    (state / "run" / "corosync-qnetd").mkdir(parents=True)
    (state / "etc").mkdir()
    port = _free_port()
    script = (
        'mount --bind "$1/run" /run && mount --bind "$1/etc" /etc/corosync && '
        f"exec corosync-qnetd -f -d -s off -l 127.0.0.1 -p {port} 2>$1/qnetd.log"
    )
    proc = subprocess.Popen(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            script,
            "sh",
            str(state),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "qnetd did not start"
                time.sleep(0.1)
        yield port, state / "qnetd.log"
    finally:  # also when it did not start: no qnetd left behind
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture
def pvectl_qnetd(tmp_path: Path) -> Iterator[int]:
    port = _free_port()
    argv = [
        sys.executable,
        "-m",
        "pvectl",
        "qdevice",
        "serve",
        "--tls",
        "off",
        "--listen",
        "127.0.0.1",
        "--port",
        str(port),
        "--control-socket",
        str(tmp_path / "ctl.sock"),
    ]
    proc = subprocess.Popen(argv, cwd=REPO, stderr=subprocess.DEVNULL)
    while not (tmp_path / "ctl.sock").exists():
        assert proc.poll() is None
        time.sleep(0.05)
    yield port
    proc.send_signal(signal.SIGTERM)
    proc.wait(10)


def test_client_against_pvectl_serve(pvectl_qnetd: int) -> None:
    assert _scenario(pvectl_qnetd) == [(True, True), (True, False)]


@pytest.mark.root
@pytest.mark.corosync
def test_client_against_real_corosync_qnetd(real_qnetd: tuple[int, Path]) -> None:
    port, log = real_qnetd
    try:
        seen = _scenario(port)
    except AssertionError as exc:  # qnetd's own debug log says why it decided so
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-60:])
        raise AssertionError(f"{exc}\n--- corosync-qnetd -d log (tail) ---\n{tail}") from None
    assert seen == [(True, True), (True, False)]


# --- TLS: a node with certificates never talks plaintext (review finding 3) -------------


def test_tls_on_with_certificates_refuses_a_plaintext_server() -> None:
    core = QnetdCore(w.TlsSupported.UNSUPPORTED)
    client = QdeviceNetClient("c1", 1, tls=w.TlsSupported.SUPPORTED, certificates=True)
    link = MemoryLink(core, client, 1)
    link.to_server(client.connect(0.0), {1: link})
    assert client.state is ClientState.DISCONNECTED
    assert client.disconnect_reason is not None and "plaintext" in client.disconnect_reason
    assert core.status().connected_clusters == 0  # no INIT reached qnetd
    # without certificates, tls on stays upstream's optional TLS
    core2 = QnetdCore(w.TlsSupported.UNSUPPORTED)
    plain = QdeviceNetClient("c1", 1, tls=w.TlsSupported.SUPPORTED)
    link2 = MemoryLink(core2, plain, 1)
    link2.to_server(plain.connect(0.0), {1: link2})
    assert plain.state is ClientState.CONNECTED


class _LogOnlyNode:
    """The node runtime around the task: only its log and vote changes are reached."""

    log = logging.getLogger("test-qdevice-task")

    def __init__(self) -> None:
        no_flags = SimpleNamespace(us=SimpleNamespace(flags=0))
        self.services = SimpleNamespace(set_qdevice=lambda **_: [], quorum=no_flags)
        self.core = SimpleNamespace(
            qdevice_poll=lambda *_, **__: [], qdevice_release=lambda *_: [], qdevice_wants=False
        )

    def _services(self, outputs: list[object]) -> None:
        pass

    def _core(self, commands: list[object]) -> None:
        pass


def test_node_with_certificates_refuses_a_plaintext_qnetd(
    pvectl_qnetd: int, tmp_path: Path
) -> None:
    """A node's qdevice task (corosync.conf tls: on, the qdevice cert dir holds the qnetd's
    CA) against a real ``pvectl qdevice serve --tls off``: the session ends before INIT,
    with the reason reported, and the server never lists the cluster. Before the fix the
    node went on in plaintext."""
    import asyncio

    from pvectl.node.qdevice.client_task import Node, QdeviceTask
    from tests.test_qdevice_embedded import _load

    conf_dir = tmp_path / "conf"
    conf_dir.mkdir()
    config = _load(conf_dir, f"      host: 127.0.0.1\n      port: {pvectl_qnetd}\n      tls: on")
    assert config.qdevice is not None
    state = tmp_path / "state"
    (state / "qdevice").mkdir(parents=True)
    (state / "qdevice" / "qnetd-cacert.crt").write_text("a CA is configured\n")
    task = QdeviceTask(cast(Node, _LogOnlyNode()), config, config.qdevice, state)
    task.client.set_membership(w.WireRingId(1, 4), (1, 2))

    async def session() -> str:
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(task._session(loop), 10)
        except Exception as exc:  # the session's end, whatever its type
            return f"{type(exc).__name__}: {exc}"
        finally:
            task._close()
        return "session returned"

    ended = asyncio.run(session())
    assert "plaintext" in ended, ended
    ctl = tmp_path / "ctl.sock"
    listing = subprocess.run(
        [sys.executable, "-m", "pvectl", "qdevice", "clients", "--control-socket", str(ctl)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "Connected clusters:\t\t0" in listing, listing


def test_client_next_deadline_is_its_next_echo() -> None:
    client = QdeviceNetClient("c1", 1, heartbeat_interval_ms=1000)
    assert client.next_deadline() is None  # not connected: nothing timed
    core = QnetdCore(w.TlsSupported.UNSUPPORTED)
    links = {1: MemoryLink(core, client, 1)}
    links[1].to_server(client.connect(0.0), links)
    due = client.next_deadline()
    assert due is not None and due > 0.0
    assert client.tick(due - 0.001) == []
    assert isinstance(client.tick(due)[0], ClientSend)
    assert client.next_deadline() == due + 1.0
