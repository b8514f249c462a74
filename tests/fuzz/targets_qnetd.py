"""Fuzz targets for the qnetd protocol: the TLV decoder, the frame reader, the qnetd
server core fed a client's byte stream, and the qdevice client core fed a server's.

Stream targets split their input the way the peer's bytes arrive (a ``FrameReader`` over
the whole input), so seeds are whole valid sessions and mutations reach every state. The
first byte of a core target chooses the configuration (TLS mode, certificates, how the
TLS handshake ends). Besides "no exception", each target checks what must hold for any
input: what a core sends decodes, and a decoded message re-encodes.
"""

from __future__ import annotations

from pvectl.quorum.qdevice import wire as w
from pvectl.quorum.qdevice.client import (
    ClientSend,
    ClientStartTls,
    ClientState,
    QdeviceNetClient,
)
from pvectl.quorum.qdevice.server import QnetdCore, Send, StartTls
from tests.fuzz.harness import FuzzTarget

MAX = 4096  # the readers' message limit here: big enough for every seed, small for speed
RING = w.WireRingId(1, 8)
TLS_MODES = (w.TlsSupported.UNSUPPORTED, w.TlsSupported.SUPPORTED, w.TlsSupported.REQUIRED)


def _enc(*messages: w.Message) -> bytes:
    return b"".join(w.encode(m) for m in messages)


# --- TLV decoder ----------------------------------------------------------------------------


def _run_decode(data: bytes) -> None:
    try:
        msg = w.decode(data, MAX)
    except w.WireError:
        return
    w.decode(w.encode(msg), 1 << 20)  # what we read, we can write and read back


# --- frame reader -----------------------------------------------------------------------------


def _run_frames(data: bytes) -> None:
    """The first byte sets the chunk size the stream arrives in; every frame out must
    be exactly what its header announced."""
    if not data:
        return
    step = data[0] % 17 + 1
    reader = w.FrameReader(MAX)
    stream = data[1:]
    for i in range(0, len(stream), step):
        try:
            frames = reader.feed(stream[i : i + step])
        except w.WireError:
            return
        for frame in frames:
            assert len(frame) == w.frame_length(frame[: w.HEADER_SIZE]) <= MAX
    reader.take_rest()


# --- the qnetd server core --------------------------------------------------------------------


def _client_session(
    cluster: str = "c1",
    node: int = 1,
    tls: bool = False,
    algorithm: w.Algorithm = w.Algorithm.FFSPLIT,
) -> list[w.Message]:
    """What corosync-qdevice sends in one session (seq numbers as it counts them)."""
    out = [w.Message(w.MsgType.PREINIT, seq_number=1, cluster_name=cluster)]
    if tls:
        out.append(w.Message(w.MsgType.STARTTLS, seq_number=2))
    out += [
        w.Message(
            w.MsgType.INIT,
            seq_number=3,
            node_id=node,
            decision_algorithm=algorithm,
            heartbeat_interval=8000,
            tie_breaker=w.TieBreaker(),
            ring_id=RING,
            supported_messages=w.SUPPORTED_MESSAGES,
            supported_options=w.SUPPORTED_OPTIONS,
        ),
        w.Message(w.MsgType.SET_OPTION, seq_number=4, heartbeat_interval=8000),
        w.Message(
            w.MsgType.NODE_LIST,
            seq_number=5,
            node_list_type=w.NodeListType.INITIAL_CONFIG,
            config_version=1,
            nodes=(w.NodeInfo(1), w.NodeInfo(2)),
        ),
        w.Message(
            w.MsgType.NODE_LIST,
            seq_number=6,
            node_list_type=w.NodeListType.MEMBERSHIP,
            ring_id=RING,
            nodes=(w.NodeInfo(node),),
            heuristics=w.Heuristics.PASS,
        ),
        w.Message(
            w.MsgType.NODE_LIST,
            seq_number=7,
            node_list_type=w.NodeListType.QUORUM,
            quorate=w.Quorate.QUORATE,
            nodes=(w.NodeInfo(node, 1, w.NodeState.MEMBER),),
        ),
        w.Message(w.MsgType.VOTE_INFO_REPLY, seq_number=1),
        w.Message(w.MsgType.ASK_FOR_VOTE, seq_number=8),
        w.Message(w.MsgType.HEURISTICS_CHANGE, seq_number=9, heuristics=w.Heuristics.FAIL),
        w.Message(w.MsgType.ECHO_REQUEST, seq_number=10),
    ]
    return out


def _run_server(data: bytes) -> None:
    """Config byte: bits 0-1 TLS mode, bit 2 client certificate required, bits 3-4 the
    certificate the handshake shows (the cluster's, another's, none), bit 5 every PREINIT
    opens the next connection (up to three), bit 6 the peer already joined runs lms."""
    if not data:
        return
    cfg = data[0]
    core = QnetdCore(TLS_MODES[(cfg & 3) % 3], client_cert_required=bool(cfg & 4))
    names = (("c1",), ("other",), None, ("c1", "x"))[(cfg >> 3) & 3]
    peer_algo = w.Algorithm.LMS if cfg & 64 else w.Algorithm.FFSPLIT
    # a peer already in cluster c1, so the fuzzed client meets a real cluster state
    core.connect(9, "peer", 0.0)
    for msg in _client_session(node=2, algorithm=peer_algo)[:2]:
        core.receive(9, w.encode(msg), 0.0)
    conns = (1, 2, 3) if cfg & 32 else (1,)
    for conn in conns:
        core.connect(conn, f"fuzz{conn}", 0.0)
    reader = w.FrameReader(MAX)
    now = 0.0
    try:
        frames = reader.feed(data[1:])
    except w.WireError:
        frames = []
    conn = 1
    for i, frame in enumerate(frames):
        is_preinit = frame[:2] == w.MsgType.PREINIT.to_bytes(2, "big")
        if cfg & 32 and is_preinit and i > 0:
            conn = min(conn + 1, len(conns))
        now += 0.5
        actions = core.receive(conn, frame, now)
        if i % 4 == 3:
            actions += core.tick(now)
        for action in actions:
            if isinstance(action, Send):
                w.decode(action.data, 1 << 20)  # the server only sends well-formed messages
            elif isinstance(action, StartTls):
                core.tls_established(action.conn_id, names)
    for cluster in core.status().clusters:  # a certificate counts for its own cluster only
        for client in cluster.clients:
            if client.client_certificate_verified:
                assert names is not None and cluster.name in names, (cluster.name, names)
    core.tick(now + 100.0)  # dead-peer and INIT timeouts over everything left
    for conn in (*conns, 9):
        core.disconnect(conn, now + 101.0)
    assert core.status().connected_clients == 0


# --- the qdevice client core ---------------------------------------------------------------


def _server_session(tls: w.TlsSupported, starttls: bool) -> list[w.Message]:
    """What a qnetd answers in one session (INIT_REPLY echoes the client's seq)."""
    init_seq = 2 if starttls else 1
    return [
        w.preinit_reply(None, tls, True),
        w.init_reply(init_seq, w.ErrorCode.NO_ERROR, True),
        w.node_list_reply(init_seq + 1, w.NodeListType.INITIAL_CONFIG, RING, w.Vote.ASK_LATER),
        w.node_list_reply(init_seq + 2, w.NodeListType.MEMBERSHIP, RING, w.Vote.WAIT_FOR_REPLY),
        w.vote_info(1, RING, w.Vote.ACK),
        w.node_list_reply(init_seq + 3, w.NodeListType.QUORUM, RING, w.Vote.NO_CHANGE),
        w.Message(w.MsgType.ECHO_REPLY, seq_number=1),
        w.set_option_reply(init_seq + 4, 8000),
        w.ask_for_vote_reply(init_seq + 5, RING, w.Vote.NACK),
        w.heuristics_change_reply(init_seq + 6, RING, w.Heuristics.PASS, w.Vote.ACK),
        w.vote_info(2, w.WireRingId(2, 9), w.Vote.NACK),
        w.server_error(9, w.ErrorCode.INTERNAL_ERROR),
    ]


def _run_client(data: bytes) -> None:
    """Config byte: bits 0-1 the client's TLS mode, bit 2 it has certificates, bit 3 lms.
    A dropped session is reconnected, as the node's task does."""
    if not data:
        return
    cfg = data[0]
    client = QdeviceNetClient(
        "c1",
        1,
        w.Algorithm.LMS if cfg & 8 else w.Algorithm.FFSPLIT,
        tls=TLS_MODES[(cfg & 3) % 3],
        certificates=bool(cfg & 4),
        heartbeat_interval_ms=4000,  # an echo every 10 frames: long inputs meet the timeout
    )
    client.set_config((1, 2), 1)
    client.set_membership(RING, (1, 2))
    client.set_quorum(True, (1, 2))
    now = 0.0
    actions = client.connect(now)
    reader = w.FrameReader(1 << 20)
    try:
        frames = reader.feed(data[1:])
    except w.WireError:
        frames = []
    for i, frame in enumerate(frames):
        now += 0.4
        actions = client.receive(frame, now)
        if any(isinstance(a, ClientStartTls) for a in actions):
            actions += client.tls_ready()
        if i % 3 == 2:
            actions += client.tick(now)
        if i % 9 == 8:  # a membership change voids a held vote
            actions += client.set_membership(w.WireRingId(1, 8 + i), (1,))
        for action in actions:
            if isinstance(action, ClientSend):
                w.decode(action.data, 1 << 20)  # the client only sends well-formed messages
        if client.state is ClientState.DISCONNECTED:
            assert not client.casting_vote
            client.connect(now)
    if client.casting_vote:
        assert client.state is ClientState.CONNECTED


def _client_seeds() -> list[bytes]:
    seeds = []
    for cfg, tls, starttls in (
        (0, w.TlsSupported.UNSUPPORTED, False),
        (1, w.TlsSupported.SUPPORTED, True),
        (2, w.TlsSupported.REQUIRED, True),
        (5, w.TlsSupported.UNSUPPORTED, False),  # tls on + certificates vs a plaintext qnetd
        (8, w.TlsSupported.UNSUPPORTED, False),
    ):
        seeds.append(bytes([cfg]) + _enc(*_server_session(tls, starttls)))
    return seeds


def _server_seeds() -> list[bytes]:
    return [
        bytes([0]) + _enc(*_client_session()),
        bytes([0]) + _enc(*_client_session(node=1, cluster="c1")[:3], *_client_session()[5:]),
        bytes([1 | 4]) + _enc(*_client_session(tls=True)),
        bytes([2 | 4]) + _enc(*_client_session(tls=True)),
        bytes([2 | 4 | 8]) + _enc(*_client_session(tls=True)),  # another cluster's certificate
        bytes([32]) + _enc(*_client_session(node=1)) + _enc(*_client_session(node=3)),
        bytes([64]) + _enc(*_client_session(algorithm=w.Algorithm.LMS)),
        # the review's sequence: PREINIT(other), STARTTLS, a rejected INIT, PREINIT(prod), INIT
        bytes([2 | 4 | 8])
        + _enc(
            w.Message(w.MsgType.PREINIT, seq_number=1, cluster_name="other"),
            w.Message(w.MsgType.STARTTLS, seq_number=2),
            w.Message(
                w.MsgType.INIT,
                seq_number=3,
                node_id=1,
                decision_algorithm=w.Algorithm.FFSPLIT,
                heartbeat_interval=10,
                tie_breaker=w.TieBreaker(),
                ring_id=RING,
            ),
            w.Message(w.MsgType.PREINIT, seq_number=4, cluster_name="c1"),
            *_client_session()[1:2],
        ),
    ]


def _message_seeds() -> list[bytes]:
    messages = [*_client_session(tls=True), *_server_session(w.TlsSupported.REQUIRED, True)]
    return [w.encode(m) for m in messages]


TARGETS = [
    FuzzTarget("qnetd_wire_decode", _run_decode, seeds=_message_seeds(), max_size=1024),
    FuzzTarget(
        "qnetd_frame_reader",
        _run_frames,
        seeds=[bytes([n]) + _enc(*_client_session(tls=True)) for n in (0, 3, 16)],
        max_size=2048,
    ),
    FuzzTarget("qnetd_server_core", _run_server, seeds=_server_seeds(), max_size=2048),
    FuzzTarget("qdevice_client_core", _run_client, seeds=_client_seeds(), max_size=2048),
]
