"""QDevice in the whole-node simulator: one qnetd host and a qdevice client on every node.

The qnetd host runs the real server core (``QnetdCore``) and every node the real client
core (``QdeviceNetClient``); this module drives them the way the runtime does
(``pvectl.node.qdevice.qnetd`` and ``pvectl.node.qdevice.client_task``), so no decision is
made here: sessions, reconnects after a random delay, the vote handed to ``NodeCore``
(``qdevice_poll``/``qdevice_release``, the NODEINFO hold of a new ring), the quorum list.

The channel is TCP-like: one connection per client session, reliable and ordered in each
direction, with a delay per direction. A cut between a node and the qnetd host stalls its
bytes (TCP retransmits them after the heal, in order); a connect while cut fails after
the connect timeout. Every message goes through the real wire encoding and a
``FrameReader`` (chunks are sometimes split, so framing is exercised). TLS is off on both
sides (the simulator has no TLS records to move).

Faults (each has an id, so ``--shrink`` and ``--skip-faults`` can drop it):

* qnetd down: the server core dies (as a process, its kernel closing every connection;
  or as a host, silently) and comes back later with empty state;
* qnetd cuts: a set of nodes loses its path to the qnetd host, independently of the
  Totem partitions.

Checkers (on every step where a node's vote or quorum changes):

* the device's vote is held by at most one partition at a time: two nodes whose Totem
  memberships are disjoint never both count it;
* no two partitions with disjoint memberships are both quorate (acting on quorum: quorate
  and done with votequorum's sync for their ring);
* after the heal every client is connected again and every node counts the vote.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

from pvectl.nodecore.core import NodeCore
from pvectl.nodecore.services import ServiceLog
from pvectl.quorum import votequorum as vq
from pvectl.quorum.qdevice.client import (
    ClientAction,
    ClientDisconnect,
    ClientSend,
    ClientStartTls,
    ClientState,
    QdeviceNetClient,
    cast_vote_interval_ms,
    heartbeat_interval_ms,
    parse_tie_breaker,
)
from pvectl.quorum.qdevice.server import Action as ServerAction
from pvectl.quorum.qdevice.server import Close, QnetdCore, Send, StartTls
from pvectl.quorum.qdevice.wire import (
    Algorithm,
    FrameReader,
    TlsSupported,
    WireError,
    WireRingId,
    encode,
    server_error,
)
from pvectl.sim.checker import InvariantViolation
from pvectl.sim.world import _ACTION, SimNode
from pvectl.totem.ring_id import RingId


class NodeSimulator(Protocol):
    """What the QDevice part uses of the whole-node simulator that owns it (a protocol, so
    this module does not import ``store`` back)."""

    seed: int
    now: float
    ids: list[int]
    nodes: dict[int, SimNode]
    trace_on: bool
    skip_faults: frozenset[int]
    expected_applied: int

    def _push(self, t: float, kind: int, node: int, inc: int, payload: Any) -> None: ...

    def _log(self, text: str) -> None: ...

    def _fault(self, what: str) -> int: ...

    def _core(self, n: SimNode, core: NodeCore, commands: list[Any]) -> None: ...


CLUSTER = "sim"
ALGORITHMS = {"ffsplit": Algorithm.FFSPLIT, "lms": Algorithm.LMS}
CAST = vq.NodeFlag.QDEVICE_CAST_VOTE
QDEVICE_FLAGS = vq.NodeFlag.QDEVICE_REGISTERED | vq.NodeFlag.QDEVICE_ALIVE | CAST
_TO_SERVER = 0
_TO_CLIENT = 1


class _Dropped(Exception):
    """The client's session ended; the message says why (client_task's ``_Dropped``)."""


@dataclass(frozen=True)
class QdeviceSetup:
    """What one seed's quorum.device looks like (drawn from the seed)."""

    algorithm: str
    timeout_ms: int  # quorum.device.timeout: heartbeat 0.8 x, reconnect within 0.45 x
    sync_timeout_ms: int
    connect_timeout_ms: int
    tie_breaker: str  # lowest | highest | a node id
    delay_s: float  # one-way delay between a node and the qnetd host
    jitter_s: float
    # keep_active_partition_tie_breaker (not drawn: corosync's default, off)
    keep_active: bool = False

    @property
    def heartbeat_interval_ms(self) -> int:
        return heartbeat_interval_ms(self.timeout_ms)

    @property
    def cast_vote_interval_ms(self) -> int:
        return cast_vote_interval_ms(self.timeout_ms)

    @classmethod
    def draw(cls, r: random.Random, algorithm: str, nodes: int) -> QdeviceSetup:
        timeout = r.choice([2000, 4000, 10_000])
        return cls(
            algorithm=algorithm,
            timeout_ms=timeout,
            sync_timeout_ms=r.choice([timeout, 30_000]),
            connect_timeout_ms=r.choice([1000, 8000]),
            tie_breaker=r.choice(["lowest", "lowest", "highest", str(r.randint(1, nodes))]),
            delay_s=r.choice([0.0002, 0.001, 0.005]),
            jitter_s=r.choice([0.0, 0.001]),
        )


@dataclass
class _Pipe:
    """One direction of a connection: bytes in order, each with its arrival time."""

    queue: deque[tuple[float, bytes | None]] = field(default_factory=deque)  # None: FIN
    last: float = 0.0
    armed: bool = False  # an event for the head is on the heap


@dataclass
class _Conn:
    conn_id: int
    node: int
    session: int  # the client session (node's epoch) it belongs to
    server_epoch: int  # the qnetd incarnation that accepted it (0: not yet)
    pipes: tuple[_Pipe, _Pipe] = field(default_factory=lambda: (_Pipe(), _Pipe()))
    client_open: bool = True
    server_open: bool = False
    server_reader: FrameReader = field(default_factory=lambda: FrameReader(1 << 16))
    client_reader: FrameReader = field(default_factory=lambda: FrameReader(1 << 24))


@dataclass
class _Client:
    """One node's qdevice (client_task.QdeviceTask's state)."""

    node: int
    core: NodeCore
    client: QdeviceNetClient
    session: int
    conn: _Conn | None = None
    ring_known: bool = False
    connecting: bool = False
    casting: bool = False
    quorum_sent: tuple[bool, tuple[int, ...]] | None = None
    timer_at: float | None = None  # the client core's deadline on the heap
    last_error: str = ""
    connects: int = 0


class SimQdevice:
    """The qnetd host and the nodes' qdevice clients of one ``NodeSimulator`` run."""

    def __init__(self, sim: NodeSimulator, setup: QdeviceSetup) -> None:
        self.sim = sim
        self.setup = setup
        self.rng = random.Random(f"qdevice-{sim.seed}")
        self.server: QnetdCore | None = None
        self.server_epoch = 0
        self.server_timer_at: float | None = None
        self.conns: dict[int, _Conn] = {}
        self.next_conn = 1
        self.clients: dict[int, _Client] = {}
        self.sessions = 0
        self.cut: frozenset[int] = frozenset()  # nodes without a path to the qnetd host
        self.down_silent = False  # qnetd is down with its host: nothing answers at all
        # checker state: per node (counts the vote, members) and (acts quorate, members)
        self.holding: dict[int, tuple[int, ...]] = {}
        self.quorate: dict[int, tuple[int, ...]] = {}
        self._start_server()

    # --- configuration ---------------------------------------------------------------------

    @staticmethod
    def quorum_options(ids: list[int], algorithm: str) -> vq.QuorumOptions:
        """quorum.device as ``pvecm qdevice setup`` writes it: ffsplit ``votes: 1``, lms
        votes unset (N - 1)."""
        return vq.QuorumOptions.build(
            [(i, 1) for i in ids],
            qdevice_model="net",
            qdevice_votes=1 if algorithm == "ffsplit" else None,
            qdevice_algorithm=algorithm,
        )

    # --- the qnetd host ----------------------------------------------------------------------

    def _start_server(self) -> None:
        self.server_epoch += 1
        self.server = QnetdCore(TlsSupported.UNSUPPORTED, client_cert_required=False)
        self.server_timer_at = None
        self.sim._log(f"qnetd start (incarnation {self.server_epoch})")
        self._rearm_pipes()  # retransmissions reach the new process (unknown connections: RST)

    def _server_apply(self, actions: list[ServerAction]) -> None:
        """qnetd.QnetdServer.apply: sends, closes (each close runs the core's disconnect)."""
        for action in actions:
            conn = self.conns.get(action.conn_id)
            if conn is None or not conn.server_open:
                continue
            if isinstance(action, Send):
                self._send(conn, _TO_CLIENT, action.data)
            elif isinstance(action, StartTls):
                self._server_close(conn, "STARTTLS but TLS is off")
            elif isinstance(action, Close):
                self._server_close(conn, action.reason)
        self._arm_server()

    def _server_close(self, conn: _Conn, reason: str) -> None:
        conn.server_open = False
        self._send(conn, _TO_CLIENT, None, force=True)
        self._forget(conn)
        if self.sim.trace_on:
            self.sim._log(f"qnetd closes n{conn.node}'s connection: {reason}")
        if self.server is not None:
            self._server_apply(self.server.disconnect(conn.conn_id, self.sim.now))

    def _arm_server(self) -> None:
        if self.server is None:
            return
        due = self.server.next_deadline()
        if due is None:
            return
        # a deadline the tick just missed by float rounding (last + limit - last < limit):
        # the runtime's clock moves on and ticks again, so does ours (a microsecond later)
        due = max(due, self.sim.now + 1e-6)
        if self.server_timer_at is None or due < self.server_timer_at:
            self.server_timer_at = due
            self._push(due, 0, ("stick", self.server_epoch))

    def _server_received(self, conn: _Conn, data: bytes | None) -> None:
        server = self.server
        if server is None or not conn.server_open or conn.server_epoch != self.server_epoch:
            if data is not None:
                self._send(conn, _TO_CLIENT, None, force=True)  # the host's kernel: RST
            return
        if data is None:  # the client closed: connection_gone
            conn.server_open = False
            self._forget(conn)
            self._server_apply(server.disconnect(conn.conn_id, self.sim.now))
            return
        conn.server_reader.push(data)
        while conn.server_open:
            try:
                frame = conn.server_reader.next_frame()
            except WireError as err:
                self._send(conn, _TO_CLIENT, encode(server_error(None, err.code)))
                self._server_close(conn, str(err))
                return
            if frame is None:
                break
            self._server_apply(server.receive(conn.conn_id, frame, self.sim.now))

    # --- the channel -------------------------------------------------------------------------

    def _push(self, t: float, node: int, payload: tuple[Any, ...]) -> None:
        self.sim._push(t, _ACTION, node, 0, ("qdevice", *payload))

    def _send(self, conn: _Conn, way: int, data: bytes | None, *, force: bool = False) -> None:
        """Queue bytes (None: FIN) on one direction; ``force``: also from a closed side."""
        if way == _TO_SERVER and not conn.client_open and not force:
            return
        pipe = conn.pipes[way]
        s = self.setup
        delay = s.delay_s + (self.rng.expovariate(1 / s.jitter_s) if s.jitter_s else 0.0)
        if data and len(data) > 8 and self.rng.random() < 0.1:  # a segment boundary mid-frame
            cut = self.rng.randint(1, len(data) - 1)
            self._enqueue(conn, way, pipe, self.sim.now + delay, data[:cut])
            data = data[cut:]
        self._enqueue(conn, way, pipe, self.sim.now + delay, data)

    def _enqueue(self, conn: _Conn, way: int, pipe: _Pipe, t: float, data: bytes | None) -> None:
        pipe.last = max(pipe.last, t)
        pipe.queue.append((pipe.last, data))
        if not pipe.armed:
            pipe.armed = True
            self._push(pipe.last, conn.node, ("pipe", conn.conn_id, way))

    def _pipe_event(self, conn_id: int, way: int) -> None:
        conn = self.conns.get(conn_id)
        if conn is None:
            return
        pipe = conn.pipes[way]
        pipe.armed = False
        now = self.sim.now
        while pipe.queue and pipe.queue[0][0] <= now:
            if conn.node in self.cut or (
                way == _TO_SERVER and self.server is None and self.down_silent
            ):
                return  # stalled: TCP retransmits it after the heal, or to the host's new kernel
            if way == _TO_CLIENT:
                paused = self.sim.nodes[conn.node].paused_until
                if paused > now:
                    pipe.armed = True
                    self._push(paused, conn.node, ("pipe", conn_id, way))
                    return
            _, data = pipe.queue.popleft()
            if way == _TO_SERVER:
                self._server_received(conn, data)
            else:
                self._client_received(conn, data)
            if self.conns.get(conn_id) is not conn:
                return
        if pipe.queue and not pipe.armed:
            pipe.armed = True
            self._push(pipe.queue[0][0], conn.node, ("pipe", conn_id, way))

    def _forget(self, conn: _Conn) -> None:
        if not conn.client_open and not conn.server_open:
            self.conns.pop(conn.conn_id, None)

    # --- a node's client (client_task.QdeviceTask) ---------------------------------------

    def node_started(self, node: int, core: NodeCore) -> None:
        """``QdeviceTask.start``: registered with votequorum; connects once a ring is known."""
        s = self.setup
        self.sessions += 1
        client = QdeviceNetClient(
            CLUSTER,
            node,
            ALGORITHMS[s.algorithm],
            parse_tie_breaker(s.tie_breaker),
            s.heartbeat_interval_ms,
            TlsSupported.UNSUPPORTED,
            keep_active_partition=s.keep_active,
        )
        client.set_config(tuple(self.sim.ids), 1)
        self.clients[node] = _Client(node, core, client, self.sessions)
        core.services.quorum = vq.set_qdevice(
            core.services.quorum, registered=True, alive=True, cast_vote=False
        )

    def node_stopped(self, node: int, *, clean: bool) -> None:
        """A crash or a clean leave: the process's kernel closes its connection (FIN),
        except when the machine itself dies (drawn), then qnetd finds out by itself."""
        found = self.clients.pop(node, None)
        self.holding.pop(node, None)
        self.quorate.pop(node, None)
        if found is None or found.conn is None:
            return
        conn = found.conn
        if clean or self.rng.random() < 0.5:
            self._send(conn, _TO_SERVER, None)
        conn.client_open = False
        self._forget(conn)

    def regular_configuration(self, node: int, members: tuple[int, ...], ring_id: RingId) -> None:
        """``QdeviceTask.regular_configuration``: the held vote is void now."""
        c = self.clients.get(node)
        if c is None:
            return
        services = c.core.services
        services.quorum = vq.set_qdevice(
            services.quorum, registered=True, alive=True, cast_vote=False
        )
        c.casting = False
        self._send_now(
            c, c.client.set_membership(WireRingId(ring_id.rep_node_id, ring_id.seq), members)
        )
        if not c.ring_known:
            c.ring_known = True
            self._connect(c)

    def hold_seconds(self, node: int) -> float | None:
        c = self.clients.get(node)
        if c is None or c.client.state is not ClientState.CONNECTED:
            return None
        return self.setup.sync_timeout_ms / 1000

    def quorum_changed(self, node: int, quorate: bool, members: tuple[int, ...]) -> None:
        c = self.clients.get(node)
        if c is None or c.quorum_sent == (quorate, members):
            return
        c.quorum_sent = (quorate, members)
        self._send_now(c, c.client.set_quorum(quorate, members))

    def _send_now(self, c: _Client, actions: list[ClientAction]) -> None:
        for action in actions:
            if isinstance(action, ClientSend) and c.conn is not None and c.conn.client_open:
                self._send(c.conn, _TO_SERVER, action.data)

    def _connect(self, c: _Client) -> None:
        """``asyncio.open_connection`` with the connect timeout."""
        c.connecting = True
        now = self.sim.now
        s = self.setup
        if c.node in self.cut:
            self._push(now + s.connect_timeout_ms / 1000, c.node, ("fail", c.session, "timeout"))
            return
        self._push(now + s.delay_s, c.node, ("syn", c.session))

    def _syn(self, c: _Client) -> None:
        """The SYN reaches the qnetd host: accepted, refused (no server) or lost (cut)."""
        now = self.sim.now
        s = self.setup
        if c.node in self.cut:
            self._push(now + s.connect_timeout_ms / 1000, c.node, ("fail", c.session, "timeout"))
            return
        if self.server is None:
            if self.down_silent:
                timeout = s.connect_timeout_ms / 1000
                self._push(now + timeout, c.node, ("fail", c.session, "timeout"))
            else:
                self._push(now + s.delay_s, c.node, ("fail", c.session, "connection refused"))
            return
        conn = _Conn(self.next_conn, c.node, c.session, self.server_epoch)
        self.next_conn += 1
        conn.server_open = True
        conn.pipes[_TO_CLIENT].last = now + s.delay_s
        self.conns[conn.conn_id] = conn
        self.server.connect(conn.conn_id, f"10.0.0.{c.node}:{40000 + conn.conn_id}", now)
        self._arm_server()
        self._push(now + s.delay_s, c.node, ("established", c.session, conn.conn_id))

    def _established(self, c: _Client, conn: _Conn) -> None:
        """``_session``: connected; PREINIT goes out, the echo timer runs."""
        c.connecting = False
        c.conn = conn
        c.connects += 1
        self._act(c, c.client.connect(self.sim.now))

    def _client_received(self, conn: _Conn, data: bytes | None) -> None:
        c = self.clients.get(conn.node)
        if c is None or c.conn is not conn or not conn.client_open:
            return
        if data is None:
            self._session_ended(c, "qnetd closed the connection")
            return
        try:
            for frame in conn.client_reader.feed(data):
                self._act(c, c.client.receive(frame, self.sim.now))
                if c.conn is not conn:
                    return
        except WireError as exc:
            self._session_ended(c, str(exc))

    def _client_tick(self, c: _Client) -> None:
        c.timer_at = None
        due = c.client.next_deadline()
        if due is None or c.conn is None:
            return
        if due > self.sim.now:
            self._arm_client(c)
            return
        self._act(c, c.client.tick(self.sim.now))

    def _arm_client(self, c: _Client) -> None:
        due = c.client.next_deadline()
        if due is not None and c.conn is not None and (c.timer_at is None or due < c.timer_at):
            c.timer_at = due
            self._push(due, c.node, ("ctick", c.session))

    def _act(self, c: _Client, actions: list[ClientAction]) -> None:
        """``QdeviceTask._act``: carry out the client core's actions, then poll the vote."""
        conn = c.conn
        for action in actions:
            if isinstance(action, ClientSend):
                assert conn is not None
                self._send(conn, _TO_SERVER, action.data)
            elif isinstance(action, ClientStartTls):
                self._session_ended(c, "TLS is off in the simulator")
                return
            elif isinstance(action, ClientDisconnect):
                self._session_ended(c, action.reason)
                return
        if c.last_error and c.client.casting_vote:
            c.last_error = ""
        self._sync_vote(c)
        self._arm_client(c)

    def _session_ended(self, c: _Client, reason: str) -> None:
        """``QdeviceTask._run`` after a session: close, lose the vote, reconnect later."""
        conn = c.conn
        if conn is not None:
            self._send(conn, _TO_SERVER, None)  # writer.close()
            conn.client_open = False
            self._forget(conn)
        c.conn = None
        c.connecting = False
        if self.sim.trace_on and reason != c.last_error:
            self.sim._log(f"n{c.node} qnetd session ended: {reason}")
        c.last_error = reason
        c.client.connection_lost(reason)
        c.core.qdevice_wants = c.client.casting_vote
        self._apply(c, c.core.qdevice_release("qnetd unreachable"))
        self._sync_vote(c)
        delay = self.rng.uniform(0.0, 0.9 * self.setup.cast_vote_interval_ms / 1000)
        self._push(self.sim.now + max(0.2, delay), c.node, ("reconnect", c.session))

    def _sync_vote(self, c: _Client) -> None:
        self._apply(
            c,
            c.core.qdevice_poll(c.client.casting_vote, answered=c.client.answered_current_ring),
        )

    def _apply(self, c: _Client, commands: list[Any]) -> None:
        rest = []
        for command in commands:
            if isinstance(command, ServiceLog) and command.text.startswith("qdevice: "):
                if self.sim.trace_on:
                    self.sim._log(f"n{c.node} [QDEVICE] {command.text.removeprefix('qdevice: ')}")
            else:
                rest.append(command)
        if rest:
            self.sim._core(self.sim.nodes[c.node], c.core, rest)
        if self.clients.get(c.node) is c:
            c.casting = bool(c.core.services.quorum.us.flags & CAST)
            self.observe(c.node, c.core)

    # --- heap events ---------------------------------------------------------------------

    def action(self, node: int, action: tuple[Any, ...]) -> None:
        kind = action[1]
        if kind == "pipe":
            self._pipe_event(action[2], action[3])
            return
        if kind == "stick":
            if action[2] == self.server_epoch and self.server is not None:
                self.server_timer_at = None
                due = self.server.next_deadline()
                if due is not None and due <= self.sim.now:
                    self._server_apply(self.server.tick(self.sim.now))
                else:
                    self._arm_server()
            return
        if kind in ("down", "up", "cut", "uncut"):
            self._fault_action(action)
            return
        c = self.clients.get(node)
        if c is None or action[2] != c.session:
            return  # the session's node crashed or restarted meanwhile
        paused = self.sim.nodes[node].paused_until
        if paused > self.sim.now:
            self._push(paused, node, action[1:])  # the process is stalled
            return
        if kind == "ctick":
            self._client_tick(c)
        elif kind == "syn":
            self._syn(c)
        elif kind == "established":
            conn = self.conns.get(action[3])
            if conn is not None and conn.client_open:
                self._established(c, conn)
            else:
                self._session_ended(c, "connection reset")
        elif kind == "fail":
            self._session_ended(c, action[3])
        elif kind == "reconnect":
            self._connect(c)

    # --- faults -------------------------------------------------------------------------------

    def schedule_faults(self, safety_s: float) -> None:
        """qnetd down and qnetd cuts, each healed by the end of the safety phase."""
        r = random.Random(f"qdevice-faults-{self.sim.seed}")
        ids = self.sim.ids
        if r.random() < 0.6:
            t = r.uniform(0.3, 2.0)
            while t < safety_s:
                end = min(t + r.uniform(0.5, 3.0), safety_s)
                host = r.random() < 0.5  # the host dies (silent) or only the process (FIN)
                fid = self.sim._fault(
                    f"qnetd {'host' if host else 'process'} down {t:.3f}-{end:.3f}s"
                )
                self._push(t, 0, ("down", host, fid))
                self._push(end, 0, ("up", fid))
                t = end + r.uniform(0.5, 3.0)
        if r.random() < 0.7:
            t = r.uniform(0.3, 2.0)
            while t < safety_s:
                end = min(t + r.uniform(0.5, 4.0), safety_s)
                cut = sorted(r.sample(ids, r.randint(1, len(ids))))
                fid = self.sim._fault(
                    f"qnetd cut from {','.join(map(str, cut))} {t:.3f}-{end:.3f}s"
                )
                self._push(t, 0, ("cut", tuple(cut), fid))
                self._push(end, 0, ("uncut", fid))
                t = end + r.uniform(0.3, 2.0)

    def _fault_action(self, action: tuple[Any, ...]) -> None:
        kind = action[1]
        if action[-1] in self.sim.skip_faults:
            return
        if kind == "down":
            self._server_down(silent=action[2])
        elif kind == "up":
            if self.server is None:
                self._start_server()
        elif kind == "cut":
            self.cut = frozenset(action[2])
            self.sim._log(f"qnetd cut from nodes {list(action[2])}")
        else:
            self.heal_cut()

    def _server_down(self, *, silent: bool) -> None:
        if self.server is None:
            return
        self.sim._log(f"qnetd {'host' if silent else 'process'} down")
        self.server = None
        self.down_silent = silent
        for conn in list(self.conns.values()):
            if conn.server_open:
                conn.server_open = False
                if not silent:
                    self._send(conn, _TO_CLIENT, None, force=True)
                self._forget(conn)

    def heal_cut(self) -> None:
        if not self.cut:
            return
        self.cut = frozenset()
        self.sim._log("qnetd cuts healed")
        self._rearm_pipes()

    def _rearm_pipes(self) -> None:
        for conn in list(self.conns.values()):
            for way in (_TO_SERVER, _TO_CLIENT):
                pipe = conn.pipes[way]
                if pipe.queue and not pipe.armed:
                    pipe.armed = True
                    self._push(
                        self.sim.now + self.setup.delay_s, conn.node, ("pipe", conn.conn_id, way)
                    )

    def heal(self) -> None:
        """All faults off (the end of the safety phase)."""
        if self.server is None:
            self._start_server()
        self.heal_cut()

    # --- checkers --------------------------------------------------------------------------------

    def observe(self, node: int, core: NodeCore) -> None:
        """After every core call: does the node count the vote, does it act quorate?"""
        services = core.services
        members = services.members
        if services.quorum.us.flags & CAST:
            if self.holding.get(node) != members:
                self.holding[node] = members
                self.check_holders(node)
        else:
            self.holding.pop(node, None)
        if services.quorum.quorate and not services.pending_nodeinfo:
            if self.quorate.get(node) != members:
                self.quorate[node] = members
                self.check_quorate(node)
        else:
            self.quorate.pop(node, None)

    def check_holders(self, node: int) -> None:
        """The vote is with one partition at a time (ffsplit's NACK-before-ACK; lms fails
        it, which is why the swarm draws no lms, see docs/simulator.md)."""
        self._check_disjoint(node, self.holding, "counts the qdevice vote")

    def check_quorate(self, node: int) -> None:
        """Unless a user lowered the expected votes (``pvecm expected``): then disjoint
        quorate partitions are the split brain that command warns of, and the store
        simulator reports it (``split_brain``) instead of failing the seed."""
        if not self.sim.expected_applied:
            self._check_disjoint(node, self.quorate, "is quorate")

    def _check_disjoint(self, node: int, table: dict[int, tuple[int, ...]], what: str) -> None:
        members = table[node]
        mine = set(members)
        for other in sorted(table):
            theirs = table[other]
            if other != node and mine.isdisjoint(theirs):
                raise InvariantViolation(
                    f"two partitions at once: node {node} {what} in {list(members)} and node "
                    f"{other} {what} in {list(theirs)} ({self.setup.algorithm})"
                )

    def check_healed(self) -> str | None:
        """None when every client is connected and every node counts the vote."""
        for node in self.sim.ids:
            c = self.clients.get(node)
            if c is None:
                return f"node {node} has no qdevice"
            if c.client.state is not ClientState.CONNECTED:
                return f"node {node}'s qdevice is {c.client.state.value} ({c.last_error})"
            if c.conn is None or c.conn.server_epoch != self.server_epoch:
                # a connection to a qnetd that died with its host looks connected until
                # the client next sends and gets the restarted qnetd's reset
                return f"node {node}'s qdevice still talks to a qnetd that restarted"
            if not c.casting:
                return f"node {node} does not count the qdevice vote ({c.client.vote.name})"
        return None

    def heal_bound(self) -> float:
        """Reconnect delay, connect timeout, an echo round and a vote round, with margin."""
        s = self.setup
        return (
            s.cast_vote_interval_ms / 1000
            + s.connect_timeout_ms / 1000
            + 2 * s.heartbeat_interval_ms / 1000
            + 2.0
        )
