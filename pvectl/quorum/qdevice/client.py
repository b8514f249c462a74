"""The qdevice side of the qnetd protocol (what corosync-qdevice's model "net" does),
without I/O: the piece an embedded pvectl node needs to get its vote from a qnetd
(``pvectl qdevice serve`` or the real corosync-qnetd).

Session: PREINIT -> [STARTTLS] -> INIT -> config, membership and quorum node lists ->
votes arrive in NODE_LIST_REPLY / ASK_FOR_VOTE_REPLY or pushed as VOTE_INFO (answered
with VOTE_INFO_REPLY). A vote counts only for the ring id it was given for; a
membership change turns a held ACK into NACK until qnetd answers for the new ring
(corosync-qdevice does the same so two partitions never both count the device).
ECHO_REQUEST every heartbeat interval; no reply by the next tick means the server is
gone. The caller owns the clock (``now`` arguments) and the socket.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from pvectl.quorum.qdevice import wire
from pvectl.quorum.qdevice.wire import (
    Algorithm,
    Heuristics,
    Message,
    MsgType,
    NodeInfo,
    NodeListType,
    Quorate,
    TieBreaker,
    TieBreakerMode,
    TlsSupported,
    Vote,
    WireError,
    WireRingId,
)

# --- corosync.conf's quorum.device settings, as corosync-qdevice reads them ---------------


def heartbeat_interval_ms(timeout_ms: int) -> int:
    """0.8 x ``quorum.device.timeout``, clamped to 1-120 s."""
    return min(120_000, max(1_000, timeout_ms * 8 // 10))


def cast_vote_interval_ms(timeout_ms: int) -> int:
    """How often the client re-confirms its vote to votequorum: half the timeout."""
    return timeout_ms // 2


def parse_tie_breaker(text: str) -> TieBreaker:
    """``quorum.device.net.tie_breaker``: lowest (default), highest or a node id."""
    if text == "highest":
        return TieBreaker(TieBreakerMode.HIGHEST)
    if text.isdigit():
        return TieBreaker(TieBreakerMode.NODE_ID, int(text))
    return TieBreaker(TieBreakerMode.LOWEST)


@dataclass(frozen=True)
class ClientSend:
    data: bytes


@dataclass(frozen=True)
class ClientStartTls:
    """Start the TLS handshake (client side) now; call ``tls_ready`` when it is done."""


@dataclass(frozen=True)
class ClientDisconnect:
    reason: str


ClientAction = ClientSend | ClientStartTls | ClientDisconnect


class ClientState(Enum):
    DISCONNECTED = "Disconnected"
    WAITING_PREINIT_REPLY = "Waiting for preinit reply"
    WAITING_STARTTLS = "Waiting for TLS"
    WAITING_INIT_REPLY = "Waiting for init reply"
    CONNECTED = "Connected"


class QdeviceNetClient:
    def __init__(
        self,
        cluster_name: str,
        node_id: int,
        algorithm: Algorithm = Algorithm.FFSPLIT,
        tie_breaker: TieBreaker | None = None,
        heartbeat_interval_ms: int = 8000,
        tls: TlsSupported = TlsSupported.UNSUPPORTED,
        certificates: bool = False,
        keep_active_partition: bool = False,
    ) -> None:
        """``certificates``: this node has qdevice certificates. Then ``tls`` on means
        required: a qnetd answering "TLS unsupported" is refused, never talked to in
        plaintext (corosync-qdevice would carry on without TLS). ``keep_active_partition``:
        ``keep_active_partition_tie_breaker`` (ffsplit: on a tie, the partition that holds
        the vote keeps it instead of the tie-breaker's)."""
        self.cluster_name = cluster_name
        self.node_id = node_id
        self.algorithm = algorithm
        self.tie_breaker = tie_breaker or TieBreaker()
        self.keep_active_partition = keep_active_partition
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.tls = tls
        if certificates and tls is TlsSupported.SUPPORTED:
            self.tls = TlsSupported.REQUIRED
        self.state = ClientState.DISCONNECTED
        self.vote = Vote.NACK
        self.disconnect_reason: str | None = None
        self._seq = 0
        self._echo_seq = 0
        self._echo_answered = True
        self._next_echo = 0.0
        self._config: tuple[int, ...] = ()
        self._config_version: int | None = None
        self._ring_id = WireRingId(node_id, 0)
        self._membership: tuple[int, ...] = (node_id,)
        self._quorate = False
        self._quorum_nodes: tuple[NodeInfo, ...] = ()
        self._last_sent_ring: WireRingId | None = None
        self.answered_ring: WireRingId | None = None  # last ring qnetd gave ACK/NACK for

    @property
    def casting_vote(self) -> bool:
        """What to pass to votequorum's qdevice poll."""
        return self.state is ClientState.CONNECTED and self.vote is Vote.ACK

    # --- what the node tells us -----------------------------------------------------

    def set_config(self, nodes: tuple[int, ...], version: int | None = None) -> list[ClientAction]:
        initial = not self._config
        self._config, self._config_version = nodes, version
        if self.state is not ClientState.CONNECTED:
            return []
        kind = NodeListType.INITIAL_CONFIG if initial else NodeListType.CHANGED_CONFIG
        return [self._send(self._config_list(kind))]

    def set_membership(self, ring_id: WireRingId, members: tuple[int, ...]) -> list[ClientAction]:
        self._ring_id, self._membership = ring_id, members
        if self.vote is Vote.ACK:
            self.vote = Vote.NACK  # until qnetd answers for this ring
        if self.state is not ClientState.CONNECTED:
            return []
        return [self._send(self._membership_list())]

    def set_quorum(self, quorate: bool, members: tuple[int, ...]) -> list[ClientAction]:
        self._quorate = quorate
        self._quorum_nodes = tuple(NodeInfo(n, 0, wire.NodeState.MEMBER) for n in members)
        if self.state is not ClientState.CONNECTED:
            return []
        return [self._send(self._quorum_list())]

    # --- connection ---------------------------------------------------------------------

    def connect(self, now: float) -> list[ClientAction]:
        self.state = ClientState.WAITING_PREINIT_REPLY
        self.disconnect_reason = None
        self._next_echo = now + self.heartbeat_interval_ms / 1000.0
        self._echo_answered = True
        return [self._send(Message(MsgType.PREINIT, cluster_name=self.cluster_name))]

    def connection_lost(self, reason: str = "connection closed") -> None:
        self.state = ClientState.DISCONNECTED
        self.disconnect_reason = reason
        self.vote = Vote.NACK  # ffsplit: without qnetd, never keep the vote

    def tls_ready(self) -> list[ClientAction]:
        if self.state is not ClientState.WAITING_STARTTLS:
            return []
        return [self._send(self._init())]

    def next_deadline(self) -> float | None:
        """When ``tick`` next has work (the next echo request), in the caller's clock; None
        while not connected. The one timer convention of the pure cores."""
        return self._next_echo if self.state is ClientState.CONNECTED else None

    def tick(self, now: float) -> list[ClientAction]:
        if self.state is not ClientState.CONNECTED or now < self._next_echo:
            return []
        if not self._echo_answered:
            return self._drop("qnetd did not answer the last echo request")
        self._next_echo = now + self.heartbeat_interval_ms / 1000.0
        self._echo_seq += 1
        self._echo_answered = False
        return [ClientSend(wire.encode(Message(MsgType.ECHO_REQUEST, seq_number=self._echo_seq)))]

    def receive(self, frame: bytes, now: float) -> list[ClientAction]:
        try:
            msg = wire.decode(frame, 1 << 24)
        except WireError as err:
            return self._drop(f"undecodable message from qnetd: {err}")
        kind = msg.type
        if kind == MsgType.PREINIT_REPLY and self.state is ClientState.WAITING_PREINIT_REPLY:
            return self._on_preinit_reply(msg)
        if kind == MsgType.INIT_REPLY and self.state is ClientState.WAITING_INIT_REPLY:
            return self._on_init_reply(msg)
        if kind == MsgType.SERVER_ERROR:
            return self._drop(f"qnetd sent error {msg.reply_error_code}")
        if self.state is not ClientState.CONNECTED:
            return self._drop(f"unexpected {msg.type_name} in state {self.state.value}")
        if kind == MsgType.ECHO_REPLY:
            if msg.seq_number == self._echo_seq:
                self._echo_answered = True
            return []
        if kind in (MsgType.NODE_LIST_REPLY, MsgType.ASK_FOR_VOTE_REPLY):
            self._apply_vote(msg)
            return []
        if kind == MsgType.VOTE_INFO:
            self._apply_vote(msg)
            return [
                ClientSend(wire.encode(Message(MsgType.VOTE_INFO_REPLY, seq_number=msg.seq_number)))
            ]
        if kind in (MsgType.SET_OPTION_REPLY, MsgType.HEURISTICS_CHANGE_REPLY):
            if kind == MsgType.HEURISTICS_CHANGE_REPLY:
                self._apply_vote(msg)
            return []
        return self._drop(f"unexpected {msg.type_name}")

    # --- internals ----------------------------------------------------------------------

    def _drop(self, reason: str) -> list[ClientAction]:
        self.connection_lost(reason)
        return [ClientDisconnect(reason)]

    def _send(self, msg: Message) -> ClientSend:
        return ClientSend(wire.encode(msg))

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _on_preinit_reply(self, msg: Message) -> list[ClientAction]:
        server = msg.tls_supported
        if server is None or msg.tls_client_cert_required is None:
            return self._drop("preinit reply without TLS options")
        use_tls = server is not TlsSupported.UNSUPPORTED and self.tls is not (
            TlsSupported.UNSUPPORTED
        )
        if self.tls is TlsSupported.REQUIRED and server is TlsSupported.UNSUPPORTED:
            return self._drop(
                "qnetd does not offer TLS but this node requires it (it has qdevice "
                "certificates, or tls: required): refusing to go on in plaintext"
            )
        if server is TlsSupported.REQUIRED and self.tls is TlsSupported.UNSUPPORTED:
            return self._drop("qnetd requires TLS but this node has tls: off")
        if use_tls:
            self.state = ClientState.WAITING_STARTTLS
            return [
                self._send(Message(MsgType.STARTTLS, seq_number=self._next_seq())),
                ClientStartTls(),
            ]
        return [self._send(self._init())]

    def _init(self) -> Message:
        self.state = ClientState.WAITING_INIT_REPLY
        self._last_sent_ring = self._ring_id
        return Message(
            MsgType.INIT,
            seq_number=self._next_seq(),
            supported_messages=wire.SUPPORTED_MESSAGES,
            supported_options=wire.SUPPORTED_OPTIONS,
            node_id=self.node_id,
            decision_algorithm=self.algorithm,
            heartbeat_interval=self.heartbeat_interval_ms,
            tie_breaker=self.tie_breaker,
            ring_id=self._ring_id,
        )

    def _on_init_reply(self, msg: Message) -> list[ClientAction]:
        if msg.seq_number != self._seq:
            return self._drop("init reply with an unexpected sequence number")
        if msg.reply_error_code != wire.ErrorCode.NO_ERROR:
            return self._drop(f"qnetd refused init (error {msg.reply_error_code})")
        if self.algorithm not in (msg.supported_decision_algorithms or ()):
            return self._drop("qnetd does not support our algorithm")
        self.state = ClientState.CONNECTED
        out: list[ClientAction] = []
        if self.keep_active_partition:  # an option, set before qnetd sees any membership
            option = Message(
                MsgType.SET_OPTION,
                seq_number=self._next_seq(),
                keep_active_partition_tie_breaker=True,
            )
            out.append(self._send(option))
        if self._config:
            out.append(self._send(self._config_list(NodeListType.INITIAL_CONFIG)))
        out.append(self._send(self._membership_list()))
        out.append(self._send(self._quorum_list()))
        return out

    def _config_list(self, kind: NodeListType) -> Message:
        return Message(
            MsgType.NODE_LIST,
            seq_number=self._next_seq(),
            node_list_type=kind,
            config_version=self._config_version,
            nodes=tuple(NodeInfo(n) for n in self._config),
        )

    def _membership_list(self) -> Message:
        self._last_sent_ring = self._ring_id
        return Message(
            MsgType.NODE_LIST,
            seq_number=self._next_seq(),
            node_list_type=NodeListType.MEMBERSHIP,
            ring_id=self._ring_id,
            nodes=tuple(NodeInfo(n) for n in self._membership),
            heuristics=Heuristics.UNDEFINED,
        )

    def _quorum_list(self) -> Message:
        return Message(
            MsgType.NODE_LIST,
            seq_number=self._next_seq(),
            node_list_type=NodeListType.QUORUM,
            quorate=Quorate.QUORATE if self._quorate else Quorate.INQUORATE,
            nodes=self._quorum_nodes,
        )

    def _apply_vote(self, msg: Message) -> None:
        if msg.vote not in (Vote.ACK, Vote.NACK):
            return  # ASK_LATER / WAIT_FOR_REPLY / NO_CHANGE keep what we have
        if msg.ring_id is not None and msg.ring_id != self._last_sent_ring:
            return  # a vote for an old membership
        self.vote = msg.vote
        if msg.ring_id is not None:
            self.answered_ring = msg.ring_id

    @property
    def answered_current_ring(self) -> bool:
        """qnetd has decided (ACK or NACK) for the membership we last told it."""
        return self.answered_ring is not None and self.answered_ring == self._ring_id
