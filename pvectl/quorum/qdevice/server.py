"""A qnetd server without I/O: bytes and times in, bytes to send and connections to
close out.

It follows corosync-qnetd 3.0.x message handling (qnetd-client-msg-received.c): the
PREINIT -> [STARTTLS] -> INIT -> NODE_LIST ... session, the TLS and certificate checks
before every post-init message, per-cluster algorithm state, VOTE_INFO pushes (ffsplit
sends every NACK and waits for its VOTE_INFO_REPLY before any ACK), dead-peer detection
(no message for 1.5 x the client's heartbeat interval) and the lms re-check timer. The
asyncio server in ``pvectl.node.qdevice.qnetd`` only moves bytes and reports TLS results.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from pvectl.quorum.qdevice import wire
from pvectl.quorum.qdevice.algorithms import (
    ClientView,
    LmsResult,
    UnsupportedCluster,
    developer_test_vote,
    ffsplit_decide,
    lms_decide,
    two_node_lms_decide,
)
from pvectl.quorum.qdevice.wire import (
    Algorithm,
    ErrorCode,
    Heuristics,
    Message,
    MsgType,
    NodeListType,
    TieBreaker,
    TlsSupported,
    Vote,
    WireError,
    WireRingId,
)

HEARTBEAT_MIN_MS = 1000
HEARTBEAT_MAX_MS = 120_000
DPD_COEFFICIENT = 1.5
ALGO_TIMER_S = 5.0  # lms/2nodelms re-check while a client waits for a reply
# A connection that has not completed INIT by then is dropped (qnetd has no heartbeat
# for it yet; without this an idle or slow-loris peer would hold a slot forever).
INIT_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Send:
    conn_id: int
    data: bytes


@dataclass(frozen=True)
class StartTls:
    """Begin the server side of a TLS handshake on this connection now."""

    conn_id: int


@dataclass(frozen=True)
class Close:
    conn_id: int
    reason: str


Action = Send | StartTls | Close


class _FfState(Enum):
    WAITING = "waiting"
    SENDING_NACK = "nack"
    SENDING_ACK = "ack"


@dataclass
class _Client:
    conn_id: int
    addr: str
    connected_at: float
    last_message_at: float
    cluster_name: str | None = None
    preinit: bool = False
    tls_started: bool = False
    tls_peer_names: tuple[str, ...] | None = None  # subject CN + SANs once TLS is up
    # the cluster the certificate was checked against: verification holds for that one
    # cluster only (a cluster certificate names the cluster, not a node: corosync's CN)
    cert_verified_for: str | None = None
    init: bool = False
    node_id: int = 0
    algorithm: int = Algorithm.FFSPLIT
    tie_breaker: TieBreaker = field(default_factory=TieBreaker)
    heartbeat_interval: int = 0
    keep_active_partition: bool = False
    config_nodes: tuple[int, ...] = ()
    config_version: int | None = None
    membership: tuple[int, ...] = ()
    ring_id: WireRingId = field(default_factory=lambda: WireRingId(0, 0))
    membership_heuristics: Heuristics = Heuristics.UNDEFINED
    regular_heuristics: Heuristics = Heuristics.UNDEFINED
    heuristics: Heuristics = Heuristics.UNDEFINED
    quorum_nodes: tuple[int, ...] = ()
    last_sent_vote: Vote = Vote.UNDEFINED
    last_ack_nack: Vote = Vote.UNDEFINED
    ff_state: _FfState = _FfState.WAITING
    vote_info_seq: int = 0
    lms_last: Vote | None = None
    algo_timer_due: float | None = None

    def view(self) -> ClientView:
        return ClientView(
            node_id=self.node_id,
            config_nodes=self.config_nodes,
            membership=self.membership,
            ring_id=self.ring_id,
            heuristics=self.heuristics,
            keep_active_partition=self.keep_active_partition,
        )


class _ClusterPhase(Enum):
    WAITING_FOR_CHANGE = "waiting for change"
    WAITING_FOR_STABLE = "waiting for stable membership"
    SENDING_NACKS = "sending NACKs"
    SENDING_ACKS = "sending ACKs"


@dataclass
class _Cluster:
    name: str
    clients: list[_Client] = field(default_factory=list)
    phase: _ClusterPhase = _ClusterPhase.WAITING_FOR_CHANGE
    quorate_partition: frozenset[int] = frozenset()


# --- what `pvectl qdevice clients` shows (like corosync-qnetd-tool -lv) ---------------


@dataclass(frozen=True)
class QnetdClientStatus:
    node_id: int
    client_address: str
    heartbeat_interval_ms: int
    config_version: int | None
    configured_nodes: tuple[int, ...]
    ring_id: str
    membership_nodes: tuple[int, ...]
    heuristics: str
    membership_heuristics: str
    regular_heuristics: str
    tls_active: bool
    client_certificate_verified: bool
    vote: str | None
    last_ack_nack: str | None


@dataclass(frozen=True)
class QnetdClusterStatus:
    name: str
    algorithm: str
    keep_active_partition_tie_breaker: bool
    tie_breaker: str
    clients: tuple[QnetdClientStatus, ...]


@dataclass(frozen=True)
class QnetdStatus:
    listen_address: str
    port: int
    tls: str
    client_certificate_required: bool
    connected_clients: int
    connected_clusters: int
    max_send_size: int
    max_receive_size: int
    clusters: tuple[QnetdClusterStatus, ...]


ALGORITHM_NAMES = {
    Algorithm.TEST: "Test",
    Algorithm.FFSPLIT: "Fifty-Fifty split",
    Algorithm.TWO_NODE_LMS: "2 Node LMS",
    Algorithm.LMS: "LMS",
}
VOTE_NAMES = {
    Vote.ACK: "ACK",
    Vote.NACK: "NACK",
    Vote.ASK_LATER: "Ask later",
    Vote.WAIT_FOR_REPLY: "Wait for reply",
    Vote.NO_CHANGE: "No change",
}
HEURISTICS_NAMES = {
    Heuristics.UNDEFINED: "Undefined",
    Heuristics.PASS: "Pass",
    Heuristics.FAIL: "Fail",
}
TLS_NAMES = {
    TlsSupported.UNSUPPORTED: "Unsupported",
    TlsSupported.SUPPORTED: "Supported",
    TlsSupported.REQUIRED: "Required",
}


def _verified(client: _Client) -> bool:
    """The client's certificate was checked for the cluster it is in now."""
    return client.cert_verified_for is not None and client.cert_verified_for == client.cluster_name


def _tie_breaker_text(tb: TieBreaker) -> str:
    if tb.mode is wire.TieBreakerMode.HIGHEST:
        return "Node with highest node ID"
    if tb.mode is wire.TieBreakerMode.NODE_ID:
        return f"Node with node ID {tb.node_id}"
    return "Node with lowest node ID"


class QnetdCore:
    """All clients and clusters of one qnetd instance."""

    def __init__(
        self,
        tls: TlsSupported = TlsSupported.SUPPORTED,
        client_cert_required: bool = True,
        max_message_size: int = wire.DEFAULT_MAX_MESSAGE_SIZE,
        listen_address: str = "*",
        port: int = 5403,
    ) -> None:
        self.tls = tls
        self.client_cert_required = client_cert_required
        self.max_message_size = max_message_size
        self.listen_address = listen_address
        self.port = port
        self._clients: dict[int, _Client] = {}
        self._clusters: dict[str, _Cluster] = {}

    # --- connection events ---------------------------------------------------------

    def connect(self, conn_id: int, addr: str, now: float) -> None:
        self._clients[conn_id] = _Client(conn_id, addr, now, now)

    def tls_established(self, conn_id: int, peer_names: tuple[str, ...] | None) -> None:
        """The handshake finished; ``peer_names`` are the verified client certificate's
        subject CN and DNS names (None: no certificate was presented)."""
        client = self._clients.get(conn_id)
        if client is not None:
            client.tls_started = True
            client.tls_peer_names = peer_names
            client.cert_verified_for = None

    def disconnect(self, conn_id: int, now: float, server_going_down: bool = False) -> list[Action]:
        client = self._clients.pop(conn_id, None)
        if client is None or client.cluster_name is None or not client.init:
            return []
        cluster = self._clusters.get(client.cluster_name)
        if cluster is None:
            return []
        actions: list[Action] = []
        if client.algorithm == Algorithm.FFSPLIT and not server_going_down:
            actions, _ = self._ffsplit_run(cluster, client, leaving=True)
        cluster.clients = [c for c in cluster.clients if c is not client]
        if not cluster.clients:
            del self._clusters[cluster.name]
        return actions

    def receive(self, conn_id: int, frame: bytes, now: float) -> list[Action]:
        """Handle one complete frame (see ``wire.FrameReader``) from ``conn_id``."""
        client = self._clients.get(conn_id)
        if client is None:
            return []
        client.last_message_at = now
        try:
            msg = wire.decode(frame, self.max_message_size)
        except WireError as err:
            return [self._error(client, err.seq_number, err.code)]
        handler = {
            MsgType.PREINIT: self._on_preinit,
            MsgType.STARTTLS: self._on_starttls,
            MsgType.INIT: self._on_init,
            MsgType.SET_OPTION: self._on_set_option,
            MsgType.ECHO_REQUEST: None,
            MsgType.NODE_LIST: self._on_node_list,
            MsgType.ASK_FOR_VOTE: self._on_ask_for_vote,
            MsgType.VOTE_INFO_REPLY: self._on_vote_info_reply,
            MsgType.HEURISTICS_CHANGE: self._on_heuristics_change,
        }
        try:
            kind = MsgType(msg.type)
        except ValueError:
            return [self._error(client, msg.seq_number, ErrorCode.UNSUPPORTED_MESSAGE)]
        if kind is MsgType.ECHO_REQUEST:
            return self._on_echo(client, msg, frame)
        method = handler.get(kind)
        if method is None:
            return [self._error(client, msg.seq_number, ErrorCode.UNEXPECTED_MESSAGE)]
        return method(client, msg, now)

    def next_deadline(self) -> float | None:
        """When ``tick`` next has work, in the caller's clock (None: nothing pending): an
        INIT that is due, a peer's dead-peer limit, an algorithm timer. The caller sleeps
        until then, or until its next event."""
        due: list[float] = []
        for client in self._clients.values():
            if not client.init:
                due.append(client.connected_at + INIT_TIMEOUT_S)
            elif client.heartbeat_interval:
                limit = client.heartbeat_interval / 1000.0 * DPD_COEFFICIENT
                due.append(client.last_message_at + limit)
            if client.algo_timer_due is not None:
                due.append(client.algo_timer_due)
        return min(due, default=None)

    def tick(self, now: float) -> list[Action]:
        """Dead-peer detection and algorithm timers, due at ``next_deadline()``."""
        actions: list[Action] = []
        for client in list(self._clients.values()):
            if not client.init and now - client.connected_at >= INIT_TIMEOUT_S:
                actions.append(
                    Close(client.conn_id, f"client {client.addr} did not complete INIT in time")
                )
                continue
            if client.init and client.heartbeat_interval:
                limit = client.heartbeat_interval / 1000.0 * DPD_COEFFICIENT
                if now - client.last_message_at >= limit:
                    actions.append(
                        Close(
                            client.conn_id,
                            f"client {client.addr} (node {client.node_id}) sent nothing "
                            f"for {limit:g} s: dead peer",
                        )
                    )
                    continue
            if client.algo_timer_due is not None and now >= client.algo_timer_due:
                client.algo_timer_due = None
                actions += self._algo_timer(client, now)
        return actions

    # --- status ---------------------------------------------------------------------

    def status(self) -> QnetdStatus:
        clusters = []
        for cluster in self._clusters.values():
            first = cluster.clients[0] if cluster.clients else None
            kap = bool(cluster.clients) and all(
                c.algorithm == Algorithm.FFSPLIT and c.keep_active_partition
                for c in cluster.clients
            )
            clusters.append(
                QnetdClusterStatus(
                    name=cluster.name,
                    algorithm=ALGORITHM_NAMES.get(
                        Algorithm(first.algorithm) if first else Algorithm.FFSPLIT, "?"
                    ),
                    keep_active_partition_tie_breaker=kap,
                    tie_breaker=_tie_breaker_text(first.tie_breaker if first else TieBreaker()),
                    clients=tuple(self._client_status(c) for c in cluster.clients),
                )
            )
        return QnetdStatus(
            listen_address=self.listen_address,
            port=self.port,
            tls=TLS_NAMES[self.tls],
            client_certificate_required=self.tls is not TlsSupported.UNSUPPORTED
            and self.client_cert_required,
            connected_clients=len(self._clients),
            connected_clusters=len(self._clusters),
            max_send_size=self.max_message_size,
            max_receive_size=self.max_message_size,
            clusters=tuple(clusters),
        )

    @staticmethod
    def _client_status(c: _Client) -> QnetdClientStatus:
        return QnetdClientStatus(
            node_id=c.node_id,
            client_address=c.addr,
            heartbeat_interval_ms=c.heartbeat_interval,
            config_version=c.config_version,
            configured_nodes=c.config_nodes,
            ring_id=str(c.ring_id),
            membership_nodes=c.membership,
            heuristics=HEURISTICS_NAMES[c.heuristics],
            membership_heuristics=HEURISTICS_NAMES[c.membership_heuristics],
            regular_heuristics=HEURISTICS_NAMES[c.regular_heuristics],
            tls_active=c.tls_started,
            client_certificate_verified=c.tls_started and _verified(c),
            vote=VOTE_NAMES.get(c.last_sent_vote),
            last_ack_nack=VOTE_NAMES.get(c.last_ack_nack),
        )

    # --- helpers --------------------------------------------------------------------

    @staticmethod
    def _send(client: _Client, msg: Message) -> Send:
        return Send(client.conn_id, wire.encode(msg))

    def _error(self, client: _Client, seq: int | None, code: int) -> Send:
        return self._send(client, wire.server_error(seq, code))

    def _check_tls(self, client: _Client, msg: Message) -> list[Action] | None:
        """None when the message may proceed; otherwise what to do instead."""
        if self.tls is TlsSupported.REQUIRED and not client.tls_started:
            return [self._error(client, msg.seq_number, ErrorCode.TLS_REQUIRED)]
        must_check = (
            self.tls is not TlsSupported.UNSUPPORTED
            and client.tls_started
            and self.client_cert_required
            and not _verified(client)
        )
        if must_check:
            if not client.tls_peer_names:
                return [Close(client.conn_id, f"client {client.addr} sent no valid certificate")]
            if client.cluster_name not in client.tls_peer_names:
                return [
                    Close(
                        client.conn_id,
                        f"client {client.addr}: certificate is for "
                        f"{', '.join(client.tls_peer_names)!r}, not cluster "
                        f"{client.cluster_name!r}",
                    )
                ]
            client.cert_verified_for = client.cluster_name
        return None

    def _cluster_of(self, client: _Client) -> _Cluster:
        assert client.cluster_name is not None
        return self._clusters[client.cluster_name]

    # --- message handlers -----------------------------------------------------------

    def _on_preinit(self, client: _Client, msg: Message, now: float) -> list[Action]:
        if msg.cluster_name is None:
            return [self._error(client, msg.seq_number, ErrorCode.DOESNT_CONTAIN_REQUIRED_OPTION)]
        if client.preinit or client.tls_started or client.init:
            # the cluster is fixed once named: a second PREINIT could otherwise move a
            # connection whose certificate was checked for one cluster into another
            return [
                self._error(client, msg.seq_number, ErrorCode.UNEXPECTED_MESSAGE),
                Close(client.conn_id, f"client {client.addr}: PREINIT repeated"),
            ]
        client.cluster_name = msg.cluster_name
        client.preinit = True
        return [
            self._send(
                client,
                wire.preinit_reply(msg.seq_number, self.tls, self.client_cert_required),
            )
        ]

    def _on_starttls(self, client: _Client, msg: Message, now: float) -> list[Action]:
        if not client.preinit:
            return [self._error(client, msg.seq_number, ErrorCode.PREINIT_REQUIRED)]
        if self.tls is TlsSupported.UNSUPPORTED or client.tls_started:
            return [Close(client.conn_id, f"client {client.addr}: cannot start TLS")]
        return [StartTls(client.conn_id)]

    def _on_init(self, client: _Client, msg: Message, now: float) -> list[Action]:
        blocked = self._check_tls(client, msg)
        if blocked is not None:
            return blocked
        code: int = ErrorCode.NO_ERROR
        if client.init:
            return [self._error(client, msg.seq_number, ErrorCode.UNEXPECTED_MESSAGE)]
        if not client.preinit:
            code = ErrorCode.PREINIT_REQUIRED
        elif (
            msg.node_id is None
            or msg.ring_id is None
            or msg.heartbeat_interval is None
            or msg.tie_breaker is None
            or msg.decision_algorithm is None
        ):
            code = ErrorCode.DOESNT_CONTAIN_REQUIRED_OPTION
        elif not HEARTBEAT_MIN_MS <= msg.heartbeat_interval <= HEARTBEAT_MAX_MS:
            code = ErrorCode.INVALID_HEARTBEAT_INTERVAL
        elif msg.decision_algorithm not in wire.SUPPORTED_ALGORITHMS:
            code = ErrorCode.UNSUPPORTED_DECISION_ALGORITHM
        else:
            cluster = self._clusters.get(client.cluster_name or "")
            for other in cluster.clients if cluster else []:
                if not msg.tie_breaker.same_as(other.tie_breaker):
                    code = ErrorCode.TIE_BREAKER_DIFFERS_FROM_OTHER_NODES
                elif msg.decision_algorithm != other.algorithm:
                    code = ErrorCode.ALGORITHM_DIFFERS_FROM_OTHER_NODES
                elif msg.node_id == other.node_id:
                    code = ErrorCode.DUPLICATE_NODE_ID
                if code != ErrorCode.NO_ERROR:
                    break
        if code == ErrorCode.NO_ERROR:
            assert msg.node_id is not None and msg.ring_id is not None
            assert msg.heartbeat_interval is not None and msg.tie_breaker is not None
            assert msg.decision_algorithm is not None and client.cluster_name is not None
            client.node_id = msg.node_id
            client.ring_id = msg.ring_id
            client.heartbeat_interval = msg.heartbeat_interval
            client.tie_breaker = msg.tie_breaker
            client.algorithm = msg.decision_algorithm
            client.init = True
            cluster = self._clusters.setdefault(client.cluster_name, _Cluster(client.cluster_name))
            cluster.clients.append(client)
        echo = msg.supported_messages is not None or msg.supported_options is not None
        return [
            self._send(
                client,
                wire.init_reply(
                    msg.seq_number, code, echo, self.max_message_size, self.max_message_size
                ),
            )
        ]

    def _require_init(self, client: _Client, msg: Message) -> list[Action] | None:
        blocked = self._check_tls(client, msg)
        if blocked is not None:
            return blocked
        if not client.init:
            return [self._error(client, msg.seq_number, ErrorCode.INIT_REQUIRED)]
        return None

    def _on_set_option(self, client: _Client, msg: Message, now: float) -> list[Action]:
        blocked = self._require_init(client, msg)
        if blocked is not None:
            return blocked
        if msg.heartbeat_interval is not None:
            if not HEARTBEAT_MIN_MS <= msg.heartbeat_interval <= HEARTBEAT_MAX_MS:
                return [self._error(client, msg.seq_number, ErrorCode.INVALID_HEARTBEAT_INTERVAL)]
            client.heartbeat_interval = msg.heartbeat_interval
        if msg.keep_active_partition_tie_breaker is not None:
            client.keep_active_partition = msg.keep_active_partition_tie_breaker
        return [
            self._send(client, wire.set_option_reply(msg.seq_number, client.heartbeat_interval))
        ]

    def _on_echo(self, client: _Client, msg: Message, frame: bytes) -> list[Action]:
        blocked = self._require_init(client, msg)
        if blocked is not None:
            return blocked
        return [Send(client.conn_id, wire.echo_reply_for(frame))]

    def _on_node_list(self, client: _Client, msg: Message, now: float) -> list[Action]:
        blocked = self._require_init(client, msg)
        if blocked is not None:
            return blocked
        if msg.node_list_type is None or msg.seq_number is None:
            return [self._error(client, msg.seq_number, ErrorCode.DOESNT_CONTAIN_REQUIRED_OPTION)]
        nodes = tuple(n.node_id for n in msg.nodes)
        kind = msg.node_list_type
        is_ffsplit = client.algorithm == Algorithm.FFSPLIT
        if kind is NodeListType.MEMBERSHIP and msg.ring_id is None:
            return [self._error(client, msg.seq_number, ErrorCode.DOESNT_CONTAIN_REQUIRED_OPTION)]
        if kind is NodeListType.QUORUM and msg.quorate is None:
            return [self._error(client, msg.seq_number, ErrorCode.DOESNT_CONTAIN_REQUIRED_OPTION)]
        bad_list = not nodes or client.node_id not in nodes
        if is_ffsplit and kind is not NodeListType.QUORUM and bad_list:
            code = (
                ErrorCode.INVALID_MEMBERSHIP_NODE_LIST
                if kind is NodeListType.MEMBERSHIP
                else ErrorCode.INVALID_CONFIG_NODE_LIST
            )
            return [self._error(client, msg.seq_number, code)]
        actions: list[Action] = []
        vote = Vote.NO_CHANGE
        if kind in (NodeListType.INITIAL_CONFIG, NodeListType.CHANGED_CONFIG):
            had_membership = bool(client.membership)
            client.config_nodes = nodes
            client.config_version = msg.config_version
            if is_ffsplit:
                if kind is NodeListType.INITIAL_CONFIG or not had_membership:
                    vote = Vote.ASK_LATER
                else:
                    actions, vote = self._ffsplit_run(self._cluster_of(client), client)
            elif client.algorithm == Algorithm.TEST:
                vote = developer_test_vote()
        elif kind is NodeListType.MEMBERSHIP:
            assert msg.ring_id is not None
            client.membership = nodes
            client.ring_id = msg.ring_id
            client.membership_heuristics = msg.heuristics
            client.heuristics = msg.heuristics
            if is_ffsplit:
                if not client.config_nodes:
                    vote = Vote.ASK_LATER
                else:
                    actions, vote = self._ffsplit_run(self._cluster_of(client), client)
            else:
                try:
                    vote = self._lms_run(client, now)
                except UnsupportedCluster:
                    return [
                        self._error(
                            client, msg.seq_number, ErrorCode.UNSUPPORTED_DECISION_ALGORITHM
                        )
                    ]
        else:
            client.quorum_nodes = nodes
            if client.algorithm in (Algorithm.LMS, Algorithm.TWO_NODE_LMS):
                try:
                    vote = self._lms_run(client, now)
                except UnsupportedCluster:
                    return [
                        self._error(
                            client, msg.seq_number, ErrorCode.UNSUPPORTED_DECISION_ALGORITHM
                        )
                    ]
        self._record_vote(client, vote)
        actions.append(
            self._send(client, wire.node_list_reply(msg.seq_number, kind, client.ring_id, vote))
        )
        return actions

    def _on_ask_for_vote(self, client: _Client, msg: Message, now: float) -> list[Action]:
        blocked = self._require_init(client, msg)
        if blocked is not None:
            return blocked
        if msg.seq_number is None:
            return [self._error(client, None, ErrorCode.DOESNT_CONTAIN_REQUIRED_OPTION)]
        if client.algorithm == Algorithm.FFSPLIT:
            return [
                self._error(
                    client, msg.seq_number, ErrorCode.UNSUPPORTED_DECISION_ALGORITHM_MESSAGE
                )
            ]
        if client.algorithm == Algorithm.TEST:
            vote = developer_test_vote()
        else:
            try:
                vote = self._lms_run(client, now)
            except UnsupportedCluster:
                return [
                    self._error(client, msg.seq_number, ErrorCode.UNSUPPORTED_DECISION_ALGORITHM)
                ]
        self._record_vote(client, vote)
        return [self._send(client, wire.ask_for_vote_reply(msg.seq_number, client.ring_id, vote))]

    def _on_vote_info_reply(self, client: _Client, msg: Message, now: float) -> list[Action]:
        blocked = self._require_init(client, msg)
        if blocked is not None:
            return blocked
        if msg.seq_number is None:
            return [self._error(client, None, ErrorCode.DOESNT_CONTAIN_REQUIRED_OPTION)]
        if client.algorithm != Algorithm.FFSPLIT or msg.seq_number != client.vote_info_seq:
            return []  # lms keeps no state here; an old reply is ignored
        client.ff_state = _FfState.WAITING
        cluster = self._cluster_of(client)
        if cluster.phase is _ClusterPhase.SENDING_NACKS:
            if not any(c.ff_state is _FfState.SENDING_NACK for c in cluster.clients):
                cluster.phase = _ClusterPhase.SENDING_ACKS
                sends = self._send_votes(cluster, Vote.ACK, None)
                if not sends:
                    cluster.phase = _ClusterPhase.WAITING_FOR_CHANGE
                return list(sends)
        elif cluster.phase is _ClusterPhase.SENDING_ACKS and not any(
            c.ff_state is _FfState.SENDING_ACK for c in cluster.clients
        ):
            cluster.phase = _ClusterPhase.WAITING_FOR_CHANGE
        return []

    def _on_heuristics_change(self, client: _Client, msg: Message, now: float) -> list[Action]:
        blocked = self._require_init(client, msg)
        if blocked is not None:
            return blocked
        if msg.seq_number is None or msg.heuristics is Heuristics.UNDEFINED:
            return [self._error(client, msg.seq_number, ErrorCode.DOESNT_CONTAIN_REQUIRED_OPTION)]
        actions: list[Action] = []
        vote = Vote.NO_CHANGE
        client.regular_heuristics = msg.heuristics
        client.heuristics = msg.heuristics
        if client.algorithm == Algorithm.FFSPLIT:
            if not client.config_nodes or not client.membership:
                vote = Vote.ASK_LATER
            else:
                actions, vote = self._ffsplit_run(self._cluster_of(client), client)
        self._record_vote(client, vote)
        actions.append(
            self._send(
                client,
                wire.heuristics_change_reply(msg.seq_number, client.ring_id, msg.heuristics, vote),
            )
        )
        return actions

    # --- algorithms -----------------------------------------------------------------

    @staticmethod
    def _record_vote(client: _Client, vote: Vote) -> None:
        client.last_sent_vote = vote
        if vote in (Vote.ACK, Vote.NACK):
            client.last_ack_nack = vote

    def _send_votes(self, cluster: _Cluster, vote: Vote, leaving: _Client | None) -> list[Action]:
        wanted = _FfState.SENDING_ACK if vote is Vote.ACK else _FfState.SENDING_NACK
        sends: list[Action] = []
        for c in cluster.clients:
            if c is leaving or c.ff_state is not wanted:
                continue
            c.vote_info_seq += 1
            self._record_vote(c, vote)
            sends.append(self._send(c, wire.vote_info(c.vote_info_seq, c.ring_id, vote)))
        return sends

    def _ffsplit_run(
        self, cluster: _Cluster, caller: _Client, leaving: bool = False
    ) -> tuple[list[Action], Vote]:
        active = [c for c in cluster.clients if not (leaving and c is caller)]
        cluster.phase = _ClusterPhase.WAITING_FOR_STABLE
        tie_breaker = caller.tie_breaker
        decision = ffsplit_decide(
            [c.view() for c in active], tie_breaker, cluster.quorate_partition
        )
        if decision is None:
            return [], Vote.WAIT_FOR_REPLY
        cluster.quorate_partition = decision.quorate_partition or frozenset()
        if leaving:
            caller.ff_state = _FfState.WAITING
        for c in active:
            c.ff_state = (
                _FfState.SENDING_ACK if c.node_id in decision.acks else _FfState.SENDING_NACK
            )
        cluster.phase = _ClusterPhase.SENDING_NACKS
        leaver = caller if leaving else None
        sends = self._send_votes(cluster, Vote.NACK, leaver)
        if not sends:
            cluster.phase = _ClusterPhase.SENDING_ACKS
            sends = self._send_votes(cluster, Vote.ACK, leaver)
            if not sends:
                cluster.phase = _ClusterPhase.WAITING_FOR_CHANGE
        return sends, Vote.NO_CHANGE

    def _lms_run(self, client: _Client, now: float) -> Vote:
        cluster = self._cluster_of(client)
        views = [c.view() for c in cluster.clients]
        last = {c.node_id: c.lms_last for c in cluster.clients if c.lms_last is not None}
        me = client.view()
        client.algo_timer_due = None
        result: LmsResult
        if client.algorithm == Algorithm.TWO_NODE_LMS:
            result = two_node_lms_decide(me, views, client.tie_breaker, last)
        else:
            result = lms_decide(me, views, client.tie_breaker, last)
        if result.vote is Vote.WAIT_FOR_REPLY:
            client.algo_timer_due = now + ALGO_TIMER_S
        if result.remember:
            client.lms_last = result.vote
        return result.vote

    def _algo_timer(self, client: _Client, now: float) -> list[Action]:
        if client.algorithm not in (Algorithm.LMS, Algorithm.TWO_NODE_LMS) or not client.init:
            return []
        try:
            vote = self._lms_run(client, now)
        except UnsupportedCluster:
            return []
        if vote not in (Vote.ACK, Vote.NACK):
            return []
        client.vote_info_seq += 1
        self._record_vote(client, vote)
        return [self._send(client, wire.vote_info(client.vote_info_seq, client.ring_id, vote))]


def render_qnetd_tool(status: QnetdStatus, verbose: bool = True) -> str:
    """``corosync-qnetd-tool -s`` followed by ``-l`` (``-v``: the verbose fields)."""
    lines = [
        f"QNetd address:\t\t\t{status.listen_address}:{status.port}",
        "TLS:\t\t\t\t"
        + status.tls
        + (" (client certificate required)" if status.client_certificate_required else ""),
        f"Connected clients:\t\t{status.connected_clients}",
        f"Connected clusters:\t\t{status.connected_clusters}",
    ]
    if verbose:
        lines.append(
            f"Maximum send/receive size:\t{status.max_send_size}/{status.max_receive_size} bytes"
        )
    for cluster in status.clusters:
        lines.append(f'Cluster "{cluster.name}":')
        kap = " (KAP Tie-breaker)" if cluster.keep_active_partition_tie_breaker else ""
        lines.append(f"    Algorithm:\t\t{cluster.algorithm}{kap}")
        lines.append(f"    Tie-breaker:\t{cluster.tie_breaker}")
        for c in cluster.clients:
            lines.append(f"    Node ID {c.node_id}:")
            lines.append(f"        Client address:\t\t{c.client_address}")
            if verbose:
                lines.append(f"        HB interval:\t\t{c.heartbeat_interval_ms}ms")
            if c.config_version is not None:
                lines.append(f"        Configuration version:\t{c.config_version}")
            if c.configured_nodes:
                lines.append(
                    "        Configured node list:\t" + ", ".join(map(str, c.configured_nodes))
                )
            if verbose:
                lines.append(f"        Ring ID:\t\t{c.ring_id}")
            if c.membership_nodes:
                lines.append(
                    "        Membership node list:\t" + ", ".join(map(str, c.membership_nodes))
                )
            if verbose or c.heuristics != "Undefined":
                extra = (
                    f" (membership: {c.membership_heuristics}, regular: {c.regular_heuristics})"
                    if verbose
                    else ""
                )
                lines.append(f"        Heuristics:\t\t{c.heuristics}{extra}")
            if verbose:
                tls = "Yes" if c.tls_active else "No"
                if c.client_certificate_verified:
                    tls += " (client certificate verified)"
                lines.append(f"        TLS active:\t\t{tls}")
            if c.vote is not None:
                extra = f" ({c.last_ack_nack})" if c.last_ack_nack else ""
                lines.append(f"        Vote:\t\t\t{c.vote}{extra}")
    return "\n".join(lines) + "\n"
