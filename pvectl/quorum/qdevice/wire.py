"""The corosync-qnetd wire protocol (corosync-qdevice's msg.c/tlv.c), as a pure codec.

A message is a 6-byte header (u16 type, u32 length of what follows, network order)
followed by TLVs (u16 option type, u16 length, value). Integers are big-endian; a ring
id is u32 node id + u64 sequence; a node-info value is itself a TLV list. Options the
decoder does not know are skipped, as qnetd does, so newer peers stay compatible.

Every byte that comes off the network goes through :func:`decode`, which raises
:class:`WireError` and nothing else for bad input (fuzzed in tests).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field, replace
from enum import IntEnum
from typing import TypeVar

_E = TypeVar("_E", bound=IntEnum)

HEADER_SIZE = 6
TLV_HEADER_SIZE = 4
MAX_TLV_VALUE = 0xFFFF
# qnetd's default receive/send limits (QNETD_DEFAULT_MAX_CLIENT_{RECEIVE,SEND}_SIZE).
# corosync-qdevice refuses a server whose maximum request size is below 32 KiB.
DEFAULT_MAX_MESSAGE_SIZE = 1 << 15


class WireError(ValueError):
    """Bytes that are not a well-formed qnetd message.

    ``code`` is the qnetd reply error the server sends back (ERROR_DECODING_MSG or
    MESSAGE_TOO_LONG); ``seq_number`` is the message's sequence number if it could be
    read before the fault, so the error reply can carry it as qnetd's does.
    """

    def __init__(self, message: str, code: int = 9, seq_number: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.seq_number = seq_number


class MsgType(IntEnum):
    PREINIT = 0
    PREINIT_REPLY = 1
    STARTTLS = 2
    INIT = 3
    INIT_REPLY = 4
    SERVER_ERROR = 5
    SET_OPTION = 6
    SET_OPTION_REPLY = 7
    ECHO_REQUEST = 8
    ECHO_REPLY = 9
    NODE_LIST = 10
    NODE_LIST_REPLY = 11
    ASK_FOR_VOTE = 12
    ASK_FOR_VOTE_REPLY = 13
    VOTE_INFO = 14
    VOTE_INFO_REPLY = 15
    HEURISTICS_CHANGE = 16
    HEURISTICS_CHANGE_REPLY = 17


class Opt(IntEnum):
    MSG_SEQ_NUMBER = 0
    CLUSTER_NAME = 1
    TLS_SUPPORTED = 2
    TLS_CLIENT_CERT_REQUIRED = 3
    SUPPORTED_MESSAGES = 4
    SUPPORTED_OPTIONS = 5
    REPLY_ERROR_CODE = 6
    SERVER_MAXIMUM_REQUEST_SIZE = 7
    SERVER_MAXIMUM_REPLY_SIZE = 8
    NODE_ID = 9
    SUPPORTED_DECISION_ALGORITHMS = 10
    DECISION_ALGORITHM = 11
    HEARTBEAT_INTERVAL = 12
    RING_ID = 13
    CONFIG_VERSION = 14
    DATA_CENTER_ID = 15
    NODE_STATE = 16
    NODE_INFO = 17
    NODE_LIST_TYPE = 18
    VOTE = 19
    QUORATE = 20
    TIE_BREAKER = 21
    HEURISTICS = 22
    KEEP_ACTIVE_PARTITION_TIE_BREAKER = 23


class TlsSupported(IntEnum):
    UNSUPPORTED = 0
    SUPPORTED = 1
    REQUIRED = 2


class ErrorCode(IntEnum):
    NO_ERROR = 0
    UNSUPPORTED_NEEDED_MESSAGE = 1
    UNSUPPORTED_NEEDED_OPTION = 2
    TLS_REQUIRED = 3
    UNSUPPORTED_MESSAGE = 4
    MESSAGE_TOO_LONG = 5
    PREINIT_REQUIRED = 6
    DOESNT_CONTAIN_REQUIRED_OPTION = 7
    UNEXPECTED_MESSAGE = 8
    ERROR_DECODING_MSG = 9
    INTERNAL_ERROR = 10
    INIT_REQUIRED = 11
    UNSUPPORTED_DECISION_ALGORITHM = 12
    INVALID_HEARTBEAT_INTERVAL = 13
    UNSUPPORTED_DECISION_ALGORITHM_MESSAGE = 14
    TIE_BREAKER_DIFFERS_FROM_OTHER_NODES = 15
    ALGORITHM_DIFFERS_FROM_OTHER_NODES = 16
    DUPLICATE_NODE_ID = 17
    INVALID_CONFIG_NODE_LIST = 18
    INVALID_MEMBERSHIP_NODE_LIST = 19


class Algorithm(IntEnum):
    TEST = 0
    FFSPLIT = 1
    TWO_NODE_LMS = 2
    LMS = 3


class NodeState(IntEnum):
    NOT_SET = 0
    MEMBER = 1
    DEAD = 2
    LEAVING = 3


class NodeListType(IntEnum):
    INITIAL_CONFIG = 0
    CHANGED_CONFIG = 1
    MEMBERSHIP = 2
    QUORUM = 3


class Vote(IntEnum):
    UNDEFINED = 0
    ACK = 1
    NACK = 2
    ASK_LATER = 3
    WAIT_FOR_REPLY = 4
    NO_CHANGE = 5


class Quorate(IntEnum):
    INQUORATE = 0
    QUORATE = 1


class TieBreakerMode(IntEnum):
    LOWEST = 1
    HIGHEST = 2
    NODE_ID = 3


class Heuristics(IntEnum):
    UNDEFINED = 0
    PASS = 1
    FAIL = 2


@dataclass(frozen=True, order=True)
class WireRingId:
    node_id: int
    seq: int

    def __str__(self) -> str:
        return f"{self.node_id:x}.{self.seq:x}"


@dataclass(frozen=True)
class TieBreaker:
    mode: TieBreakerMode = TieBreakerMode.LOWEST
    node_id: int = 0  # only meaningful with mode NODE_ID

    def same_as(self, other: TieBreaker) -> bool:
        if self.mode is TieBreakerMode.NODE_ID and other.mode is TieBreakerMode.NODE_ID:
            return self.node_id == other.node_id
        return self.mode == other.mode


@dataclass(frozen=True)
class NodeInfo:
    node_id: int
    data_center_id: int = 0
    node_state: NodeState = NodeState.NOT_SET


@dataclass(frozen=True)
class Message:
    """One decoded message; every option is optional, as on the wire (msg_decoded)."""

    type: int
    seq_number: int | None = None
    cluster_name: str | None = None
    tls_supported: TlsSupported | None = None
    tls_client_cert_required: bool | None = None
    supported_messages: tuple[int, ...] | None = None
    supported_options: tuple[int, ...] | None = None
    reply_error_code: int | None = None
    server_maximum_request_size: int | None = None
    server_maximum_reply_size: int | None = None
    node_id: int | None = None
    supported_decision_algorithms: tuple[int, ...] | None = None
    decision_algorithm: int | None = None
    heartbeat_interval: int | None = None
    ring_id: WireRingId | None = None
    config_version: int | None = None
    data_center_id: int | None = None
    node_state: NodeState | None = None
    nodes: tuple[NodeInfo, ...] = field(default_factory=tuple)
    node_list_type: NodeListType | None = None
    vote: Vote | None = None
    quorate: Quorate | None = None
    tie_breaker: TieBreaker | None = None
    heuristics: Heuristics = Heuristics.UNDEFINED
    keep_active_partition_tie_breaker: bool | None = None

    @property
    def type_name(self) -> str:
        try:
            return MsgType(self.type).name
        except ValueError:
            return f"UNKNOWN({self.type})"


# --- encoding ------------------------------------------------------------------------


def _tlv(opt: int, value: bytes) -> bytes:
    if len(value) > MAX_TLV_VALUE:
        raise ValueError(f"TLV option {opt} value too long ({len(value)} bytes)")
    return struct.pack("!HH", opt, len(value)) + value


def _u8(opt: int, v: int) -> bytes:
    return _tlv(opt, struct.pack("!B", v))


def _u16(opt: int, v: int) -> bytes:
    return _tlv(opt, struct.pack("!H", v))


def _u32(opt: int, v: int) -> bytes:
    return _tlv(opt, struct.pack("!I", v))


def _u64(opt: int, v: int) -> bytes:
    return _tlv(opt, struct.pack("!Q", v))


def _u16_array(opt: int, values: tuple[int, ...]) -> bytes:
    return _tlv(opt, struct.pack(f"!{len(values)}H", *values))


def _ring_id(ring_id: WireRingId) -> bytes:
    return _tlv(Opt.RING_ID, struct.pack("!IQ", ring_id.node_id, ring_id.seq))


def _tie_breaker(tb: TieBreaker) -> bytes:
    node = tb.node_id if tb.mode is TieBreakerMode.NODE_ID else 0
    return _tlv(Opt.TIE_BREAKER, struct.pack("!BI", tb.mode, node))


def _node_info(info: NodeInfo) -> bytes:
    inner = _u32(Opt.NODE_ID, info.node_id)
    if info.data_center_id:
        inner += _u32(Opt.DATA_CENTER_ID, info.data_center_id)
    if info.node_state is not NodeState.NOT_SET:
        inner += _u8(Opt.NODE_STATE, info.node_state)
    return _tlv(Opt.NODE_INFO, inner)


def encode(msg: Message) -> bytes:
    """Serialize ``msg``: options in the order corosync's msg_create_* functions use,
    so captures compare byte for byte with real qnetd/qdevice traffic."""
    body = b""
    t = msg.type
    seq = b"" if msg.seq_number is None else _u32(Opt.MSG_SEQ_NUMBER, msg.seq_number)
    if t == MsgType.INIT_REPLY:
        # INIT_REPLY puts the error code and the supported lists before the sequence number
        if msg.reply_error_code is not None:
            body += _u16(Opt.REPLY_ERROR_CODE, msg.reply_error_code)
        if msg.supported_messages:
            body += _u16_array(Opt.SUPPORTED_MESSAGES, msg.supported_messages)
        if msg.supported_options:
            body += _u16_array(Opt.SUPPORTED_OPTIONS, msg.supported_options)
        body += seq
    else:
        body += seq
    if msg.node_list_type is not None:
        body += _u8(Opt.NODE_LIST_TYPE, msg.node_list_type)
    if msg.cluster_name is not None:
        body += _tlv(Opt.CLUSTER_NAME, msg.cluster_name.encode("utf-8"))
    if msg.tls_supported is not None:
        body += _u8(Opt.TLS_SUPPORTED, msg.tls_supported)
    if msg.tls_client_cert_required is not None:
        body += _u8(Opt.TLS_CLIENT_CERT_REQUIRED, int(msg.tls_client_cert_required))
    if t != MsgType.INIT_REPLY:
        if msg.supported_messages:
            body += _u16_array(Opt.SUPPORTED_MESSAGES, msg.supported_messages)
        if msg.supported_options:
            body += _u16_array(Opt.SUPPORTED_OPTIONS, msg.supported_options)
        if msg.reply_error_code is not None:
            body += _u16(Opt.REPLY_ERROR_CODE, msg.reply_error_code)
    if msg.server_maximum_request_size is not None:
        body += _u32(Opt.SERVER_MAXIMUM_REQUEST_SIZE, msg.server_maximum_request_size)
    if msg.server_maximum_reply_size is not None:
        body += _u32(Opt.SERVER_MAXIMUM_REPLY_SIZE, msg.server_maximum_reply_size)
    if msg.supported_decision_algorithms:
        body += _u16_array(Opt.SUPPORTED_DECISION_ALGORITHMS, msg.supported_decision_algorithms)
    if msg.node_id is not None:
        body += _u32(Opt.NODE_ID, msg.node_id)
    if msg.decision_algorithm is not None:
        body += _u16(Opt.DECISION_ALGORITHM, msg.decision_algorithm)
    if msg.heartbeat_interval is not None:
        body += _u32(Opt.HEARTBEAT_INTERVAL, msg.heartbeat_interval)
    if msg.tie_breaker is not None:
        body += _tie_breaker(msg.tie_breaker)
    if msg.vote is not None and t in (MsgType.NODE_LIST_REPLY,):
        # node list reply: ring id, then vote
        if msg.ring_id is not None:
            body += _ring_id(msg.ring_id)
        body += _u8(Opt.VOTE, msg.vote)
    else:
        if msg.vote is not None:
            body += _u8(Opt.VOTE, msg.vote)
        if msg.ring_id is not None:
            body += _ring_id(msg.ring_id)
    if msg.config_version is not None:
        body += _u64(Opt.CONFIG_VERSION, msg.config_version)
    if msg.quorate is not None:
        body += _u8(Opt.QUORATE, msg.quorate)
    for info in msg.nodes:
        body += _node_info(info)
    if msg.data_center_id is not None:
        body += _u32(Opt.DATA_CENTER_ID, msg.data_center_id)
    if msg.node_state is not None:
        body += _u8(Opt.NODE_STATE, msg.node_state)
    if msg.heuristics is not Heuristics.UNDEFINED:
        body += _u8(Opt.HEURISTICS, msg.heuristics)
    if msg.keep_active_partition_tie_breaker is not None:
        body += _u8(
            Opt.KEEP_ACTIVE_PARTITION_TIE_BREAKER, int(msg.keep_active_partition_tie_breaker)
        )
    return struct.pack("!HI", t, len(body)) + body


# --- decoding ------------------------------------------------------------------------


def frame_length(header: bytes) -> int:
    """Total size of the message whose first 6 bytes are ``header``."""
    if len(header) < HEADER_SIZE:
        raise WireError("short message header")
    (length,) = struct.unpack_from("!I", header, 2)
    return HEADER_SIZE + int(length)


def _iter_tlvs(data: bytes, start: int, seq: int | None) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    pos = start
    while pos < len(data):
        if pos + TLV_HEADER_SIZE > len(data):
            raise WireError("truncated TLV header", seq_number=seq)
        opt, length = struct.unpack_from("!HH", data, pos)
        end = pos + TLV_HEADER_SIZE + length
        if end > len(data):
            raise WireError(f"TLV option {opt} longer than the message", seq_number=seq)
        out.append((opt, data[pos + TLV_HEADER_SIZE : end]))
        pos = end
    return out


def _int(value: bytes, size: int, opt: int, seq: int | None) -> int:
    if len(value) != size:
        raise WireError(f"option {opt} has length {len(value)}, expected {size}", seq_number=seq)
    return int.from_bytes(value, "big")


def _enum_u8(kind: type[_E], value: bytes, opt: int, seq: int | None) -> _E:
    raw = _int(value, 1, opt, seq)
    try:
        return kind(raw)
    except ValueError:
        raise WireError(f"option {opt}: invalid {kind.__name__} {raw}", seq_number=seq) from None


def _u16_list(value: bytes, opt: int, seq: int | None) -> tuple[int, ...]:
    if len(value) % 2:
        raise WireError(f"option {opt}: odd array length {len(value)}", seq_number=seq)
    return struct.unpack(f"!{len(value) // 2}H", value)


def _decode_node_info(value: bytes, seq: int | None) -> NodeInfo:
    node_id = 0
    dc = 0
    state = NodeState.NOT_SET
    for opt, inner in _iter_tlvs(value, 0, seq):
        if opt == Opt.NODE_ID:
            node_id = _int(inner, 4, opt, seq)
        elif opt == Opt.DATA_CENTER_ID:
            dc = _int(inner, 4, opt, seq)
        elif opt == Opt.NODE_STATE:
            state = _enum_u8(NodeState, inner, opt, seq)
            if state is NodeState.NOT_SET:
                raise WireError("node state 0 is not allowed on the wire", seq_number=seq)
    if node_id == 0:
        raise WireError("node info without a node id", seq_number=seq)
    return NodeInfo(node_id, dc, state)


def decode(data: bytes, max_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> Message:
    """Decode one complete message (header included). Raises only :class:`WireError`."""
    if len(data) < HEADER_SIZE:
        raise WireError("short message header")
    if len(data) > max_size:
        raise WireError(f"message of {len(data)} bytes exceeds {max_size}", code=5)
    msg_type, length = struct.unpack_from("!HI", data, 0)
    if HEADER_SIZE + length != len(data):
        raise WireError(f"length field {length} does not match {len(data) - HEADER_SIZE} bytes")
    # read the sequence number first so that even a faulty message's error reply carries it
    seq: int | None = None
    try:
        for opt, value in _iter_tlvs(data, HEADER_SIZE, None):
            if opt == Opt.MSG_SEQ_NUMBER and len(value) == 4:
                seq = int.from_bytes(value, "big")
    except WireError:
        pass
    fields: dict[str, object] = {"seq_number": None}
    nodes: list[NodeInfo] = []
    for opt, value in _iter_tlvs(data, HEADER_SIZE, seq):
        if opt == Opt.MSG_SEQ_NUMBER:
            fields["seq_number"] = _int(value, 4, opt, seq)
        elif opt == Opt.CLUSTER_NAME:
            try:
                fields["cluster_name"] = value.decode("utf-8")
            except UnicodeDecodeError:
                raise WireError("cluster name is not UTF-8", seq_number=seq) from None
        elif opt == Opt.TLS_SUPPORTED:
            fields["tls_supported"] = _enum_u8(TlsSupported, value, opt, seq)
        elif opt == Opt.TLS_CLIENT_CERT_REQUIRED:
            fields["tls_client_cert_required"] = bool(_int(value, 1, opt, seq))
        elif opt == Opt.SUPPORTED_MESSAGES:
            fields["supported_messages"] = _u16_list(value, opt, seq)
        elif opt == Opt.SUPPORTED_OPTIONS:
            fields["supported_options"] = _u16_list(value, opt, seq)
        elif opt == Opt.REPLY_ERROR_CODE:
            fields["reply_error_code"] = _int(value, 2, opt, seq)
        elif opt == Opt.SERVER_MAXIMUM_REQUEST_SIZE:
            fields["server_maximum_request_size"] = _int(value, 4, opt, seq)
        elif opt == Opt.SERVER_MAXIMUM_REPLY_SIZE:
            fields["server_maximum_reply_size"] = _int(value, 4, opt, seq)
        elif opt == Opt.NODE_ID:
            fields["node_id"] = _int(value, 4, opt, seq)
        elif opt == Opt.SUPPORTED_DECISION_ALGORITHMS:
            fields["supported_decision_algorithms"] = _u16_list(value, opt, seq)
        elif opt == Opt.DECISION_ALGORITHM:
            fields["decision_algorithm"] = _int(value, 2, opt, seq)
        elif opt == Opt.HEARTBEAT_INTERVAL:
            fields["heartbeat_interval"] = _int(value, 4, opt, seq)
        elif opt == Opt.RING_ID:
            if len(value) != 12:
                raise WireError(f"ring id has length {len(value)}, expected 12", seq_number=seq)
            rid_node, rid_seq = struct.unpack("!IQ", value)
            fields["ring_id"] = WireRingId(rid_node, rid_seq)
        elif opt == Opt.CONFIG_VERSION:
            fields["config_version"] = _int(value, 8, opt, seq)
        elif opt == Opt.DATA_CENTER_ID:
            fields["data_center_id"] = _int(value, 4, opt, seq)
        elif opt == Opt.NODE_STATE:
            state = _enum_u8(NodeState, value, opt, seq)
            if state is NodeState.NOT_SET:
                raise WireError("node state 0 is not allowed on the wire", seq_number=seq)
            fields["node_state"] = state
        elif opt == Opt.NODE_INFO:
            nodes.append(_decode_node_info(value, seq))
        elif opt == Opt.NODE_LIST_TYPE:
            fields["node_list_type"] = _enum_u8(NodeListType, value, opt, seq)
        elif opt == Opt.VOTE:
            vote = _enum_u8(Vote, value, opt, seq)
            if vote is Vote.UNDEFINED:
                raise WireError("vote 0 is not allowed on the wire", seq_number=seq)
            fields["vote"] = vote
        elif opt == Opt.QUORATE:
            fields["quorate"] = _enum_u8(Quorate, value, opt, seq)
        elif opt == Opt.TIE_BREAKER:
            if len(value) != 5:
                raise WireError(f"tie-breaker has length {len(value)}, expected 5", seq_number=seq)
            raw_mode, tb_node = struct.unpack("!BI", value)
            try:
                mode = TieBreakerMode(raw_mode)
            except ValueError:
                raise WireError(f"invalid tie-breaker mode {raw_mode}", seq_number=seq) from None
            fields["tie_breaker"] = TieBreaker(
                mode, tb_node if mode is TieBreakerMode.NODE_ID else 0
            )
        elif opt == Opt.HEURISTICS:
            heuristics = _enum_u8(Heuristics, value, opt, seq)
            if heuristics is Heuristics.UNDEFINED:
                raise WireError("heuristics 0 is not allowed on the wire", seq_number=seq)
            fields["heuristics"] = heuristics
        elif opt == Opt.KEEP_ACTIVE_PARTITION_TIE_BREAKER:
            raw = _int(value, 1, opt, seq)
            if raw > 1:
                raise WireError(f"invalid keep-active-partition value {raw}", seq_number=seq)
            fields["keep_active_partition_tie_breaker"] = bool(raw)
        # unknown options are skipped: the protocol lets newer peers add options
    return replace(Message(type=msg_type, nodes=tuple(nodes)), **fields)  # type: ignore[arg-type]


def echo_reply_for(raw_request: bytes) -> bytes:
    """qnetd answers an echo request with the request's own bytes, retyped."""
    return struct.pack("!H", MsgType.ECHO_REPLY) + raw_request[2:]


class FrameReader:
    """Splits a byte stream into whole messages, one at a time (a STARTTLS in the middle
    of the stream turns the bytes after it into TLS records, so the caller must be able
    to stop and take the rest). Refuses a message above ``max_size`` from its header,
    before buffering it: a hostile length field must not make us allocate."""

    def __init__(self, max_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        self.max_size = max_size
        self._buf = bytearray()

    def push(self, data: bytes) -> None:
        self._buf += data

    def next_frame(self) -> bytes | None:
        if len(self._buf) < HEADER_SIZE:
            return None
        total = frame_length(bytes(self._buf[:HEADER_SIZE]))
        if total > self.max_size:
            raise WireError(f"message of {total} bytes exceeds {self.max_size}", code=5)
        if len(self._buf) < total:
            return None
        frame = bytes(self._buf[:total])
        del self._buf[:total]
        return frame

    def take_rest(self) -> bytes:
        rest = bytes(self._buf)
        self._buf.clear()
        return rest

    def feed(self, data: bytes) -> list[bytes]:
        """Push ``data`` and return every complete frame."""
        self.push(data)
        frames = []
        while (frame := self.next_frame()) is not None:
            frames.append(frame)
        return frames


# --- message constructors (what a qnetd server sends) ------------------------------------

SUPPORTED_MESSAGES: tuple[int, ...] = tuple(int(m) for m in MsgType)
SUPPORTED_OPTIONS: tuple[int, ...] = tuple(int(o) for o in Opt)
SUPPORTED_ALGORITHMS: tuple[int, ...] = (
    Algorithm.TEST,
    Algorithm.FFSPLIT,
    Algorithm.TWO_NODE_LMS,
    Algorithm.LMS,
)


def preinit_reply(seq: int | None, tls: TlsSupported, cert_required: bool) -> Message:
    return Message(
        MsgType.PREINIT_REPLY,
        seq_number=seq,
        tls_supported=tls,
        tls_client_cert_required=cert_required,
    )


def server_error(seq: int | None, code: int) -> Message:
    return Message(MsgType.SERVER_ERROR, seq_number=seq, reply_error_code=code)


def init_reply(
    seq: int | None,
    code: int,
    echo_lists: bool,
    max_request: int = DEFAULT_MAX_MESSAGE_SIZE,
    max_reply: int = DEFAULT_MAX_MESSAGE_SIZE,
) -> Message:
    return Message(
        MsgType.INIT_REPLY,
        seq_number=seq,
        reply_error_code=code,
        supported_messages=SUPPORTED_MESSAGES if echo_lists else None,
        supported_options=SUPPORTED_OPTIONS if echo_lists else None,
        server_maximum_request_size=max_request,
        server_maximum_reply_size=max_reply,
        supported_decision_algorithms=SUPPORTED_ALGORITHMS,
    )


def set_option_reply(seq: int | None, heartbeat_interval: int) -> Message:
    return Message(MsgType.SET_OPTION_REPLY, seq_number=seq, heartbeat_interval=heartbeat_interval)


def node_list_reply(seq: int, list_type: NodeListType, ring_id: WireRingId, vote: Vote) -> Message:
    return Message(
        MsgType.NODE_LIST_REPLY,
        seq_number=seq,
        node_list_type=list_type,
        ring_id=ring_id,
        vote=vote,
    )


def ask_for_vote_reply(seq: int, ring_id: WireRingId, vote: Vote) -> Message:
    return Message(MsgType.ASK_FOR_VOTE_REPLY, seq_number=seq, vote=vote, ring_id=ring_id)


def vote_info(seq: int, ring_id: WireRingId, vote: Vote) -> Message:
    return Message(MsgType.VOTE_INFO, seq_number=seq, vote=vote, ring_id=ring_id)


def heuristics_change_reply(
    seq: int, ring_id: WireRingId, heuristics: Heuristics, vote: Vote
) -> Message:
    return Message(
        MsgType.HEURISTICS_CHANGE_REPLY,
        seq_number=seq,
        vote=vote,
        ring_id=ring_id,
        heuristics=heuristics,
    )
