"""The sans-IO qnetd: sessions as corosync-qdevice runs them, the checks qnetd makes,
ffsplit's NACK-before-ACK ordering, dead-peer detection, and fuzzed hostile frames."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pvectl.quorum.qdevice import wire as w
from pvectl.quorum.qdevice.server import Close, QnetdCore, Send, StartTls, render_qnetd_tool

RING = w.WireRingId(1, 8)


class FakeQdevice:
    """Drives QnetdCore the way a corosync-qdevice would, collecting what it gets."""

    def __init__(self, core: QnetdCore, conn: int, node: int, cluster: str = "c1") -> None:
        self.core, self.conn, self.node, self.cluster = core, conn, node, cluster
        self.seq = 0
        core.connect(conn, f"10.0.0.{node}:4000{node}", 0.0)

    def send(self, msg_type: w.MsgType, now: float = 0.0, **fields: object) -> list[w.Message]:
        self.seq += 1
        msg = w.Message(msg_type, seq_number=self.seq, **fields)  # type: ignore[arg-type]
        return self.decode_all(self.core.receive(self.conn, w.encode(msg), now))

    @staticmethod
    def decode_all(actions: list[object]) -> list[w.Message]:
        return [w.decode(a.data) for a in actions if isinstance(a, Send)]

    def join(self, algorithm: w.Algorithm = w.Algorithm.FFSPLIT, tls: bool = False) -> None:
        reply = self.send(w.MsgType.PREINIT, cluster_name=self.cluster)
        assert reply[0].type == w.MsgType.PREINIT_REPLY
        if tls:
            return
        self.init(algorithm)

    def init(self, algorithm: w.Algorithm = w.Algorithm.FFSPLIT) -> w.Message:
        (reply,) = self.send(
            w.MsgType.INIT,
            node_id=self.node,
            decision_algorithm=algorithm,
            heartbeat_interval=8000,
            tie_breaker=w.TieBreaker(),
            ring_id=RING,
            supported_messages=w.SUPPORTED_MESSAGES,
            supported_options=w.SUPPORTED_OPTIONS,
        )
        return reply

    def config(self, nodes: tuple[int, ...]) -> list[w.Message]:
        return self.send(
            w.MsgType.NODE_LIST,
            node_list_type=w.NodeListType.INITIAL_CONFIG,
            config_version=1,
            nodes=tuple(w.NodeInfo(n) for n in nodes),
        )

    def membership(self, nodes: tuple[int, ...], ring: w.WireRingId) -> list[w.Message]:
        return self.send(
            w.MsgType.NODE_LIST,
            node_list_type=w.NodeListType.MEMBERSHIP,
            ring_id=ring,
            nodes=tuple(w.NodeInfo(n) for n in nodes),
        )

    def vote_info_reply(self, seq: int) -> list[w.Message]:
        msg = w.Message(w.MsgType.VOTE_INFO_REPLY, seq_number=seq)
        return self.decode_all(self.core.receive(self.conn, w.encode(msg), 0.0))


def test_session_init_reply_has_what_corosync_qdevice_requires() -> None:
    core = QnetdCore(w.TlsSupported.UNSUPPORTED)
    q = FakeQdevice(core, 1, 1)
    q.send(w.MsgType.PREINIT, cluster_name="c1")
    reply = q.init()
    assert reply.type == w.MsgType.INIT_REPLY
    assert reply.reply_error_code == w.ErrorCode.NO_ERROR
    assert reply.seq_number == 2
    assert reply.server_maximum_request_size == 32768  # qdevice refuses < 32 KiB
    assert reply.supported_messages and reply.supported_options
    assert w.Algorithm.FFSPLIT in (reply.supported_decision_algorithms or ())


def test_two_nodes_together_get_ack_through_vote_info() -> None:
    core = QnetdCore(w.TlsSupported.UNSUPPORTED)
    a, b = FakeQdevice(core, 1, 1), FakeQdevice(core, 2, 2)
    for q in (a, b):
        q.join()
        assert q.config((1, 2))[-1].vote is w.Vote.ASK_LATER
    first = a.membership((1, 2), RING)
    assert [m.type for m in first] == [w.MsgType.NODE_LIST_REPLY]
    assert first[0].vote is w.Vote.WAIT_FOR_REPLY  # b has not reported yet: not stable
    out = b.membership((1, 2), RING)
    # ACKs go to both clients (no NACKs to wait for), then b's node list reply
    acks = [m for m in out if m.type == w.MsgType.VOTE_INFO]
    assert [m.vote for m in acks] == [w.Vote.ACK, w.Vote.ACK]
    assert out[-1].type == w.MsgType.NODE_LIST_REPLY and out[-1].vote is w.Vote.NO_CHANGE
    listing = render_qnetd_tool(core.status())
    assert 'Cluster "c1":' in listing and "Vote:\t\t\tNo change (ACK)" in listing


def test_split_sends_nacks_and_waits_for_their_replies_before_acks() -> None:
    core = QnetdCore(w.TlsSupported.UNSUPPORTED)
    a, b = FakeQdevice(core, 1, 1), FakeQdevice(core, 2, 2)
    for q in (a, b):
        q.join()
        q.config((1, 2))
    a.membership((1, 2), RING)
    b.membership((1, 2), RING)
    # the link between them breaks: node2 reports first, then node1
    out_b = b.membership((2,), w.WireRingId(2, 12))
    assert all(m.type != w.MsgType.VOTE_INFO for m in out_b)  # unstable: wait
    actions = core.receive(
        a.conn,
        w.encode(
            w.Message(
                w.MsgType.NODE_LIST,
                seq_number=99,
                node_list_type=w.NodeListType.MEMBERSHIP,
                ring_id=w.WireRingId(1, 12),
                nodes=(w.NodeInfo(1),),
            )
        ),
        0.0,
    )
    votes = [(a_.conn_id, w.decode(a_.data)) for a_ in actions if isinstance(a_, Send)]
    vote_infos = [(conn, m.vote) for conn, m in votes if m.type == w.MsgType.VOTE_INFO]
    assert vote_infos == [(2, w.Vote.NACK)]  # only the NACK goes out first
    nack_seq = next(m.seq_number for c, m in votes if m.type == w.MsgType.VOTE_INFO)
    assert nack_seq is not None
    released = core.receive(
        b.conn, w.encode(w.Message(w.MsgType.VOTE_INFO_REPLY, seq_number=nack_seq)), 0.0
    )
    after = [(x.conn_id, w.decode(x.data).vote) for x in released if isinstance(x, Send)]
    assert after == [(1, w.Vote.ACK)]


def test_old_vote_info_reply_is_ignored() -> None:
    core = QnetdCore(w.TlsSupported.UNSUPPORTED)
    a, b = FakeQdevice(core, 1, 1), FakeQdevice(core, 2, 2)
    for q in (a, b):
        q.join()
        q.config((1, 2))
    a.membership((1,), w.WireRingId(1, 3))
    b.membership((2,), w.WireRingId(2, 3))
    assert b.vote_info_reply(12345) == []


def test_disconnect_of_the_loser_reaches_the_winner() -> None:
    core = QnetdCore(w.TlsSupported.UNSUPPORTED)
    a, b = FakeQdevice(core, 1, 1), FakeQdevice(core, 2, 2)
    for q in (a, b):
        q.join()
        q.config((1, 2))
    a.membership((1,), w.WireRingId(1, 3))
    b.membership((2,), w.WireRingId(2, 3))
    out = FakeQdevice.decode_all(core.disconnect(a.conn, 1.0))
    assert [m.vote for m in out] == [w.Vote.ACK]  # node2 alone now gets the vote


def test_tls_required_refuses_plain_init() -> None:
    core = QnetdCore(w.TlsSupported.REQUIRED)
    q = FakeQdevice(core, 1, 1)
    q.send(w.MsgType.PREINIT, cluster_name="c1")
    reply = q.init()
    assert reply.type == w.MsgType.SERVER_ERROR
    assert reply.reply_error_code == w.ErrorCode.TLS_REQUIRED


def test_starttls_then_certificate_must_name_the_cluster() -> None:
    core = QnetdCore(w.TlsSupported.SUPPORTED, client_cert_required=True)
    q = FakeQdevice(core, 1, 1, cluster="prod")
    q.send(w.MsgType.PREINIT, cluster_name="prod")
    actions = core.receive(1, w.encode(w.Message(w.MsgType.STARTTLS, seq_number=9)), 0.0)
    assert actions == [StartTls(1)]
    core.tls_established(1, ("other-cluster",))
    msg = w.Message(
        w.MsgType.INIT,
        seq_number=10,
        node_id=1,
        decision_algorithm=1,
        heartbeat_interval=8000,
        tie_breaker=w.TieBreaker(),
        ring_id=RING,
    )
    result = core.receive(1, w.encode(msg), 0.0)
    assert len(result) == 1 and isinstance(result[0], Close)
    assert "not cluster 'prod'" in result[0].reason
    # with the right name it is accepted and shown as verified
    core2 = QnetdCore(w.TlsSupported.SUPPORTED, client_cert_required=True)
    q2 = FakeQdevice(core2, 1, 1, cluster="prod")
    q2.send(w.MsgType.PREINIT, cluster_name="prod")
    core2.receive(1, w.encode(w.Message(w.MsgType.STARTTLS, seq_number=9)), 0.0)
    core2.tls_established(1, ("prod",))
    assert q2.init().reply_error_code == w.ErrorCode.NO_ERROR
    assert core2.status().clusters[0].clients[0].client_certificate_verified


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"node_id": 1}, w.ErrorCode.DUPLICATE_NODE_ID),
        ({"decision_algorithm": w.Algorithm.LMS}, w.ErrorCode.ALGORITHM_DIFFERS_FROM_OTHER_NODES),
        (
            {"tie_breaker": w.TieBreaker(w.TieBreakerMode.HIGHEST)},
            w.ErrorCode.TIE_BREAKER_DIFFERS_FROM_OTHER_NODES,
        ),
        ({"heartbeat_interval": 10}, w.ErrorCode.INVALID_HEARTBEAT_INTERVAL),
        ({"decision_algorithm": 77}, w.ErrorCode.UNSUPPORTED_DECISION_ALGORITHM),
    ],
)
def test_init_checks_against_the_rest_of_the_cluster(change: dict[str, object], code: int) -> None:
    core = QnetdCore(w.TlsSupported.UNSUPPORTED)
    FakeQdevice(core, 1, 1).join()
    q = FakeQdevice(core, 2, 2)
    q.send(w.MsgType.PREINIT, cluster_name="c1")
    fields: dict[str, object] = {
        "node_id": 2,
        "decision_algorithm": w.Algorithm.FFSPLIT,
        "heartbeat_interval": 8000,
        "tie_breaker": w.TieBreaker(),
        "ring_id": RING,
        **change,
    }
    (reply,) = q.send(w.MsgType.INIT, **fields)
    assert reply.type == w.MsgType.INIT_REPLY and reply.reply_error_code == code


def test_messages_out_of_order_get_qnetd_errors() -> None:
    core = QnetdCore(w.TlsSupported.UNSUPPORTED)
    q = FakeQdevice(core, 1, 1)
    (r,) = q.send(w.MsgType.NODE_LIST, node_list_type=w.NodeListType.INITIAL_CONFIG)
    assert r.reply_error_code == w.ErrorCode.INIT_REQUIRED
    (r,) = q.send(w.MsgType.STARTTLS)
    assert r.reply_error_code == w.ErrorCode.PREINIT_REQUIRED
    (r,) = q.send(w.MsgType.VOTE_INFO)
    assert r.reply_error_code == w.ErrorCode.UNEXPECTED_MESSAGE
    actions = core.receive(1, w.encode(w.Message(200, seq_number=5)), 0.0)
    r = w.decode(actions[0].data)  # type: ignore[union-attr]
    assert r.reply_error_code == w.ErrorCode.UNSUPPORTED_MESSAGE and r.seq_number == 5


def test_dead_peer_detection_after_one_and_a_half_heartbeats() -> None:
    core = QnetdCore(w.TlsSupported.UNSUPPORTED)
    q = FakeQdevice(core, 1, 1)
    q.join()
    assert core.tick(11.9) == []  # 8 s heartbeat x 1.5 = 12 s
    q.send(w.MsgType.ECHO_REQUEST, now=11.0)
    assert core.tick(22.9) == []
    (close,) = core.tick(23.1)
    assert isinstance(close, Close) and "dead peer" in close.reason


def test_connection_that_never_inits_is_dropped() -> None:
    core = QnetdCore(w.TlsSupported.UNSUPPORTED)
    core.connect(7, "idle", 0.0)
    assert core.tick(29.0) == []
    (close,) = core.tick(31.0)
    assert isinstance(close, Close) and close.conn_id == 7


def test_lms_session_acks_single_partition() -> None:
    core = QnetdCore(w.TlsSupported.UNSUPPORTED)
    qs = [FakeQdevice(core, n, n) for n in (1, 2, 3)]
    for q in qs:
        q.join(w.Algorithm.LMS)
        assert q.config((1, 2, 3))[-1].vote is w.Vote.NO_CHANGE
    replies = [q.membership((1, 2, 3), RING)[-1].vote for q in qs]
    assert replies == [w.Vote.ACK, w.Vote.ACK, w.Vote.ACK]
    (ask,) = qs[0].send(w.MsgType.ASK_FOR_VOTE)
    assert ask.type == w.MsgType.ASK_FOR_VOTE_REPLY and ask.vote is w.Vote.ACK


@settings(max_examples=300)
@given(st.lists(st.binary(max_size=80), max_size=10), st.integers(0, 2**32 - 1))
def test_hostile_frames_never_crash_the_core(frames: list[bytes], seed: int) -> None:
    rng = random.Random(seed)
    core = QnetdCore(w.TlsSupported.SUPPORTED)
    FakeQdevice(core, 1, 1).join()
    core.connect(2, "attacker", 0.0)
    for raw in frames:
        # half the time wrap the garbage in a correct header so it reaches the TLV parser
        data = raw if rng.random() < 0.5 else w.encode(w.Message(rng.randrange(20))) + raw
        if rng.random() < 0.5 and len(raw) >= 2:
            data = data[:2] + len(data[6:]).to_bytes(4, "big") + data[6:]
        for action in core.receive(2, data, 1.0):
            if isinstance(action, Send):
                w.decode(action.data)  # whatever we send back is well formed
    core.tick(100.0)
    core.disconnect(2, 101.0)


def _init_msg(seq: int, node: int = 1, heartbeat: int = 8000) -> bytes:
    return w.encode(
        w.Message(
            w.MsgType.INIT,
            seq_number=seq,
            node_id=node,
            decision_algorithm=w.Algorithm.FFSPLIT,
            heartbeat_interval=heartbeat,
            tie_breaker=w.TieBreaker(),
            ring_id=RING,
        )
    )


def _replies(actions: list[object]) -> list[w.Message]:
    return FakeQdevice.decode_all(actions)


def test_certificate_for_one_cluster_cannot_join_another() -> None:
    """The review's sequence: PREINIT(other), STARTTLS, a rejected INIT (its certificate
    for "other" is checked and accepted), PREINIT(prod), INIT. Before the fix the second
    PREINIT moved the connection into "prod", still shown as certificate-verified."""
    core = QnetdCore(w.TlsSupported.REQUIRED, client_cert_required=True)
    core.connect(1, "10.0.0.66:4000", 0.0)
    pre = w.encode(w.Message(w.MsgType.PREINIT, seq_number=1, cluster_name="other"))
    assert _replies(core.receive(1, pre, 0.0))[0].type == w.MsgType.PREINIT_REPLY
    starttls = w.encode(w.Message(w.MsgType.STARTTLS, seq_number=2))
    assert core.receive(1, starttls, 0.0) == [StartTls(1)]
    core.tls_established(1, ("other",))
    (rejected,) = _replies(core.receive(1, _init_msg(3, heartbeat=10), 0.0))
    assert rejected.reply_error_code == w.ErrorCode.INVALID_HEARTBEAT_INTERVAL
    prod = w.encode(w.Message(w.MsgType.PREINIT, seq_number=4, cluster_name="prod"))
    refused = core.receive(1, prod, 0.0)
    if any(isinstance(a, Close) for a in refused):
        core.disconnect(1, 0.0)  # what the server does with a Close
    core.receive(1, _init_msg(5), 0.0)
    joined = [
        (cl.name, c.client_certificate_verified)
        for cl in core.status().clusters
        for c in cl.clients
    ]
    assert joined == [], f"a certificate for 'other' joined {joined}"
    assert any(isinstance(a, Close) for a in refused)
    assert _replies(refused)[0].reply_error_code == w.ErrorCode.UNEXPECTED_MESSAGE


def test_second_preinit_is_refused_even_without_tls() -> None:
    core = QnetdCore(w.TlsSupported.UNSUPPORTED)
    q = FakeQdevice(core, 1, 1, cluster="a")
    q.send(w.MsgType.PREINIT, cluster_name="a")
    (err,) = q.send(w.MsgType.PREINIT, cluster_name="b")
    assert err.reply_error_code == w.ErrorCode.UNEXPECTED_MESSAGE


def test_verification_is_bound_to_the_cluster_it_was_made_for() -> None:
    """Even if the cluster name changed some other way after the check, the certificate is
    checked again (and refused) for the new name: no verified flag outlives its cluster."""
    core = QnetdCore(w.TlsSupported.REQUIRED, client_cert_required=True)
    q = FakeQdevice(core, 1, 1, cluster="other")
    q.send(w.MsgType.PREINIT, cluster_name="other")
    core.receive(1, w.encode(w.Message(w.MsgType.STARTTLS, seq_number=9)), 0.0)
    core.tls_established(1, ("other",))
    core.receive(1, _init_msg(10, heartbeat=10), 0.0)  # verified for "other", INIT refused
    core._clients[1].cluster_name = "prod"  # what the old second PREINIT did
    result = core.receive(1, _init_msg(11), 0.0)
    assert len(result) == 1 and isinstance(result[0], Close)
    assert "not cluster 'prod'" in result[0].reason
    assert core.status().clusters == ()


def test_next_deadline_says_when_tick_has_work() -> None:
    """One timer convention: the core names its next deadline; a tick there acts, a tick
    just before does nothing, so a caller never has to poll."""
    core = QnetdCore(w.TlsSupported.UNSUPPORTED)
    assert core.next_deadline() is None
    core.connect(7, "idle", 5.0)
    due = core.next_deadline()
    assert due == 35.0  # an INIT is due 30 s after the connection
    assert core.tick(due - 0.001) == []
    (close,) = core.tick(due)
    assert isinstance(close, Close) and close.conn_id == 7
    q = FakeQdevice(core, 1, 1)
    q.join()
    heartbeat_due = core.next_deadline()
    assert heartbeat_due is not None
    assert core.tick(heartbeat_due - 0.001) == []
    assert any(isinstance(a, Close) for a in core.tick(heartbeat_due))
