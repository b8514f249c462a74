"""Drive the Totem SRP state machine event by event (h11-style) and over a tiny network."""

from __future__ import annotations

import dataclasses

from pvectl.totem.ring_id import RingId
from pvectl.totem.srp import (
    AppSend,
    ConfigChange,
    ConfigKind,
    Deliver,
    MessageReceived,
    PacketReceived,
    PersistRingSeq,
    SendAll,
    SendTo,
    SetTimer,
    Srp,
    Start,
    State,
    TimerKind,
    TotemConfig,
)
from pvectl.totem.wire import Join, Leave, Mcast, Token
from tests.helpers.totem_net import FAST, Net, codec


def formed(ids: list[int]) -> Net:
    net = Net(ids)
    net.run_until(lambda: net.one_ring(ids), limit=5)
    net.run(0.2)
    return net


def test_corosync_default_timeouts() -> None:
    t2 = TotemConfig().timeouts(2)
    assert (t2.token, t2.token_retransmit, t2.hold, t2.consensus, t2.join, t2.merge) == (
        3.0,
        0.714,
        0.561,
        3.6,
        0.05,
        0.2,
    )
    t3 = TotemConfig().timeouts(3)
    assert (t3.token, t3.token_retransmit, t3.hold, t3.consensus) == (3.65, 0.869, 0.685, 4.38)
    t5 = TotemConfig().timeouts(5)
    assert (t5.token, t5.consensus) == (4.95, 5.94)
    assert TotemConfig(token=1000, token_coefficient=0).timeouts(5).token == 1.0


def test_lone_node_forms_singleton_ring_and_persists_ring_seq() -> None:
    srp = Srp(1, [1], codec(1), FAST, ring_seq=41)
    cmds = srp.handle(Start(), 0.0)
    persisted = [c.seq for c in cmds if isinstance(c, PersistRingSeq)]
    changes = [c for c in cmds if isinstance(c, ConfigChange)]
    # loaded 41 -> +1 at start (corosync >= 3.0.3) -> new ring = highest seen + 4
    assert persisted == [46]
    assert [c.kind for c in changes] == [ConfigKind.TRANSITIONAL, ConfigKind.REGULAR]
    assert changes[1].ring_id == RingId(1, 46) and changes[1].members == (1,)
    assert srp.state is State.OPERATIONAL
    out = srp.handle(AppSend(b"hello"), 0.01)
    assert [d.payload for d in out if isinstance(d, Deliver)] == [b"hello"]


def test_token_processing_order_retransmit_then_new_then_forward_then_deliver() -> None:
    net = formed([1, 2, 3])
    node = net.srp[2]
    ring = node.ring_id
    high = node._reg.high_seq
    # a frame from node 1 arrives: stored and delivered at once (agreed, contiguous)
    frame = Mcast(ring, high + 1, 1, b"\x00\x00\x05from1")
    got = node.handle(MessageReceived(1, frame), net.now)
    assert [d.payload for d in got if isinstance(d, Deliver)] == [b"from1"]
    node.handle(AppSend(b"mine"), net.now)
    token = Token(ring, node._my_token_seq + 10, high + 1, high, 3, 0, 0, False, (high + 1,))
    cmds = node.handle(MessageReceived(1, token), net.now)
    kinds = [type(c).__name__ for c in cmds]
    sends = [i for i, c in enumerate(cmds) if isinstance(c, SendAll)]
    fwd = [i for i, c in enumerate(cmds) if isinstance(c, SendTo)]
    delivered = [i for i, c in enumerate(cmds) if isinstance(c, Deliver)]
    assert len(sends) == 2 and len(fwd) == 1 and len(delivered) == 1, kinds
    # 1. retransmission served first, 2. new message multicast, 3. token forwarded,
    # 4. own message delivered after forwarding
    assert sends[0] < sends[1] < fwd[0] < delivered[0]
    retrans = codec(3).decode(cmds[sends[0]].data)[1]  # type: ignore[union-attr]
    new = codec(3).decode(cmds[sends[1]].data)[1]  # type: ignore[union-attr]
    assert isinstance(retrans, Mcast) and retrans.seq == high + 1 and retrans.origin == 1
    assert isinstance(new, Mcast) and new.seq == high + 2 and new.origin == 2
    forwarded = codec(3).decode(cmds[fwd[0]].data)[1]  # type: ignore[union-attr]
    assert cmds[fwd[0]].node == 3  # type: ignore[union-attr]
    assert isinstance(forwarded, Token)
    assert forwarded.seq == high + 2
    assert forwarded.token_seq == token.token_seq + 1
    assert forwarded.rtr == ()  # the request was served
    # aru lowered by node 3 stays until node 3 raises it
    assert (forwarded.aru, forwarded.aru_addr) == (high, 3)
    assert forwarded.fcc == 2  # one retransmission + one new frame this visit
    assert cmds[delivered[0]].payload == b"mine"  # type: ignore[union-attr]
    timers = {c.kind for c in cmds if isinstance(c, SetTimer)}
    assert {TimerKind.TOKEN_LOSS, TimerKind.TOKEN_RETRANSMIT} <= timers


def _visit_with_backlog(config: TotemConfig) -> tuple[list[object], int]:
    """Node 2 of a formed ring holds three queued messages and gets a token asking for a
    retransmission: the commands of that one visit, and the ring's seq before it."""
    from pvectl.totem.packing import MIN_FRAGMENT

    net = Net([1, 2, 3], dataclasses.replace(config, netmtu=200))
    net.run_until(lambda: net.one_ring([1, 2, 3]), limit=5)
    net.run(0.2)
    node = net.srp[2]
    ring = node.ring_id
    high = node._reg.high_seq
    node.handle(MessageReceived(1, Mcast(ring, high + 1, 1, b"\x00\x00\x05from1")), net.now)
    for i in range(3):  # one frame each at netmtu 200
        node.handle(AppSend(bytes([i]) * (MIN_FRAGMENT + 40)), net.now)
    token = Token(ring, node._my_token_seq + 10, high + 1, high, 3, 0, 0, False, (high + 1,))
    return list(node.handle(MessageReceived(1, token), net.now)), high


def test_accelerated_ring_passes_the_token_before_its_new_frames() -> None:
    """Accelerated Ring: retransmission, token, then the visit's new frames; the token
    already counts them (seq, fcc), exactly as the standard ring's token does."""
    standard, high = _visit_with_backlog(FAST)
    accelerated, high_a = _visit_with_backlog(dataclasses.replace(FAST, accelerated=True))
    assert high == high_a

    def shape(cmds: list[object]) -> list[str]:
        out = []
        for c in cmds:
            if isinstance(c, SendAll):
                m = codec(3).decode(c.data)[1]
                assert isinstance(m, Mcast)
                out.append(f"frame {m.seq - high}")
            elif isinstance(c, SendTo):
                t = codec(3).decode(c.data)[1]
                assert isinstance(t, Token)
                out.append(f"token seq {t.seq - high} fcc {t.fcc}")
        return out

    assert shape(standard) == ["frame 1", "frame 2", "frame 3", "frame 4", "token seq 4 fcc 4"]
    assert shape(accelerated) == ["frame 1", "token seq 4 fcc 4", "frame 2", "frame 3", "frame 4"]
    # same frames, byte for byte: only their order around the token differs
    frames = sorted(c.data for c in standard if isinstance(c, SendAll))
    assert frames == sorted(c.data for c in accelerated if isinstance(c, SendAll))


def test_accelerated_ring_three_senders_deliver_everything_in_one_order() -> None:
    ids = [1, 2, 3]
    net = Net(ids, dataclasses.replace(FAST, accelerated=True))
    net.run_until(lambda: net.one_ring(ids), limit=5)
    for k in range(60):
        for i in ids:
            net.send(i, f"{i}:{k}".encode())
        net.run(0.002)
    net.run(1.0)
    orders = {i: [d.payload for d in net.delivered[i]] for i in ids}
    assert len(orders[1]) == 180
    assert orders[1] == orders[2] == orders[3]


def test_aru_raised_when_lowered_by_me_or_nobody() -> None:
    net = formed([1, 2, 3])
    node = net.srp[2]
    ring = node.ring_id
    high = node._reg.high_seq
    tok = Token(ring, node._my_token_seq + 10, high + 3, high, 0, 0, 0, False, ())
    cmds = node.handle(MessageReceived(1, tok), net.now)
    fwd = next(codec(3).decode(c.data)[1] for c in cmds if isinstance(c, SendTo))
    assert isinstance(fwd, Token)
    # node 2 lacks high+1..high+3: it lowers aru to its own and names itself
    assert (fwd.aru, fwd.aru_addr) == (high, 2)


def test_flow_control_max_messages_window_and_backlog_share() -> None:
    net = formed([1, 2, 3])
    node = net.srp[2]
    ring = node.ring_id
    for i in range(40):
        node.handle(AppSend(bytes([i]) * 1300), net.now)  # one frame each

    def visit(fcc: int, backlog: int) -> int:
        tok = Token(ring, node._my_token_seq + 10, node._reg.high_seq, node._reg.aru, 0, fcc,
                    backlog, False, ())  # fmt: skip
        cmds = node.handle(MessageReceived(1, tok), net.now)
        return sum(1 for c in cmds if isinstance(c, SendAll))

    assert visit(fcc=0, backlog=0) == 17  # max_messages
    assert visit(fcc=45, backlog=0) == 5  # window_size 50 - fcc
    # backlog share: 50 * my previous backlog (23) / (100 + 18 - 23) = 12
    assert visit(fcc=0, backlog=100) == 12
    assert node.send_queue_len == 40 - 17 - 5 - 12


def test_lost_mcast_is_requested_on_the_token_and_retransmitted() -> None:
    net = formed([1, 2, 3])
    lost: list[int] = []

    def drop(src: int, dst: int, msg: object) -> bool:
        if isinstance(msg, Mcast) and src == 1 and dst == 3 and not lost:
            lost.append(msg.seq)
            return True
        return False

    net.drop = drop
    for i in range(5):
        net.send(1, b"m%d" % i)
    net.run(2.0)
    assert lost
    requested = [m for s, d, m in net.sent_messages if isinstance(m, Token) and lost[0] in m.rtr]
    assert requested, "node 3 never put the lost seq on the token"
    resent = [
        m for s, d, m in net.sent_messages if isinstance(m, Mcast) and m.seq == lost[0] and d == 3
    ]
    assert len(resent) >= 2  # the original (dropped) and the retransmission
    expected = [b"m%d" % i for i in range(5)]
    for i in (1, 2, 3):
        assert net.payloads(i) == expected


def test_node_joining_gets_transitional_then_regular_configuration() -> None:
    net = Net([1, 2, 3], start=[1, 2])
    net.crash(3)
    net.run_until(lambda: net.one_ring([1, 2]), limit=5)
    net.send(1, b"before")
    net.run(0.5)
    net.boot(3)
    net.run_until(lambda: net.one_ring([1, 2, 3]), limit=5)
    c3 = net.changes[3][-2:]
    assert [c.kind for c in c3] == [ConfigKind.TRANSITIONAL, ConfigKind.REGULAR]
    assert c3[0].members == (3,) and c3[1].members == (1, 2, 3) and c3[1].joined == (1, 2)
    c1 = net.changes[1][-2:]
    assert c1[0].members == (1, 2) and c1[1].joined == (3,) and c1[1].left == ()
    net.send(3, b"after")
    net.run(0.5)
    assert net.payloads(1) == [b"before", b"after"]
    assert net.payloads(3) == [b"after"]  # joined after "before" was delivered


def test_node_failure_detected_after_token_and_consensus_timeouts() -> None:
    net = formed([1, 2, 3])
    t = net.srp[1].timeouts
    net.crash(3)
    took = net.run_until(lambda: net.one_ring([1, 2]), limit=10)
    assert t.token <= took <= t.token + t.consensus + 1.0
    trans, reg = net.changes[1][-2:]
    assert trans.kind is ConfigKind.TRANSITIONAL and trans.members == (1, 2)
    assert trans.left == (3,) and reg.members == (1, 2)


def test_clean_leave_reforms_without_waiting_for_the_token_timeout() -> None:
    net = formed([1, 2, 3])
    net.shutdown(3)
    took = net.run_until(lambda: net.one_ring([1, 2]), limit=10)
    assert took < net.srp[1].timeouts.token / 2


def test_two_rings_merge_into_one_with_evs_transitional_configurations() -> None:
    ids = [1, 2, 3, 4]
    net = Net(ids)
    net.blocked = {(a, b) for a in (1, 2) for b in (3, 4)} | {
        (b, a) for a in (1, 2) for b in (3, 4)
    }
    net.run_until(lambda: net.one_ring([1, 2]) and net.one_ring([3, 4]), limit=10)
    net.send(1, b"left side")
    net.send(4, b"right side")
    net.run(0.5)
    net.blocked = set()
    net.run_until(lambda: net.one_ring(ids), limit=20)
    assert net.changes[1][-2].members == (1, 2)
    assert net.changes[3][-2].members == (3, 4)
    assert net.changes[1][-1].ring_id == net.changes[4][-1].ring_id
    net.send(2, b"merged")
    net.run(0.5)
    assert net.payloads(1) == [b"left side", b"merged"]
    assert net.payloads(3) == [b"right side", b"merged"]


def test_restart_uses_persisted_ring_seq_for_a_newer_ring() -> None:
    net = formed([1, 2, 3])
    before = net.srp[3].ring_id.seq
    assert net.persisted[3] == before
    net.crash(3)
    net.run(0.05)
    net.boot(3)
    net.run_until(lambda: net.one_ring([1, 2, 3]), limit=10)
    assert net.srp[3].ring_id.seq > before


def test_idle_ring_holds_token_and_hold_cancel_resumes_it() -> None:
    net = formed([1, 2, 3])
    net.run(1.0)
    tokens_before = net.srp[2].stats["tokens"]
    net.run(1.0)
    idle_tokens = net.srp[2].stats["tokens"] - tokens_before
    # without hold a 3-hop ring of 1 ms hops sees ~330 visits per second; held, the
    # representative releases the token once per `hold` interval
    hold = net.srp[1].timeouts.hold
    assert idle_tokens <= 1.0 / hold + 3
    assert idle_tokens < 100
    t0 = net.now
    net.send(3, b"wake up")
    net.run_until(lambda: net.payloads(1) == [b"wake up"], limit=1)
    assert net.now - t0 < net.srp[1].timeouts.hold


def test_packing_and_one_mebibyte_fragmented_message_in_total_order() -> None:
    net = formed([1, 2, 3])
    big = bytes(range(256)) * 4096  # 1 MiB
    net.send(2, b"a")
    net.send(2, big)
    net.send(3, b"b")
    for i in range(100):
        net.send(1, b"small%d" % i)
    net.run_until(lambda: all(len(net.delivered[i]) == 103 for i in (1, 2, 3)), limit=30)
    ref = net.payloads(1)
    assert ref.index(b"a") < ref.index(big)
    assert net.payloads(2) == ref and net.payloads(3) == ref
    frames = [m for s, d, m in net.sent_messages if isinstance(m, Mcast) and s == 1 and d == 2]
    assert len(frames) < 20  # 100 small messages packed into a few frames


def test_failed_to_receive_node_leaves_by_forming_a_singleton() -> None:
    cfg = TotemConfig(token=200, token_coefficient=0, fail_recv_const=20)
    net = Net([1, 2, 3], config=cfg)
    net.run_until(lambda: net.one_ring([1, 2, 3]), limit=5)
    # node 3 hears tokens and joins but no message frame ever reaches it
    net.drop = lambda src, dst, msg: dst == 3 and isinstance(msg, Mcast)
    logs: list[str] = []
    original = net.execute

    def spy(i: int, cmds: list) -> None:  # type: ignore[type-arg]
        logs.extend(f"{i}:{c.text}" for c in cmds if type(c).__name__ == "Log")
        original(i, cmds)

    net.execute = spy  # type: ignore[method-assign]
    net.send(1, b"unreachable for 3")
    net.run_until(lambda: "3:FAILED TO RECEIVE" in logs, limit=20)
    net.run_until(lambda: net.one_ring([1, 2]) and net.srp[3].members == (3,), limit=10)
    assert net.payloads(1) == net.payloads(2) == [b"unreachable for 3"]
    assert b"unreachable for 3" not in net.payloads(3)


def test_packets_from_outside_the_nodelist_or_garbage_are_counted_not_processed() -> None:
    net = formed([1, 2, 3])
    node = net.srp[1]
    stranger = codec(9).encode(Join((1, 2, 3, 9), (), 10_000))
    assert node.handle(PacketReceived(stranger), net.now) == []
    assert node.stats["unknown_sender"] == 1 and node.state is State.OPERATIONAL
    assert node.handle(PacketReceived(b"\x00" * 60), net.now) == []
    assert node.stats["bad_packets"] == 1 and node.codec.rejected["magic"] == 1


def _last_sent(net: Net, src: int, kind: type) -> object:
    found = [m for s, _, m in net.sent_messages if s == src and isinstance(m, kind)]
    assert found, f"node {src} sent no {kind.__name__}"
    return found[-1]


def _replay_every(net: Net, data: bytes, targets: list[int], every: float, total: float) -> None:
    """An attacker on the LAN re-sends a captured datagram (it still passes the MAC)."""
    end = net.now + total
    while net.now < end:
        for node in targets:
            net._push(net.now, node, ("pkt", data))
        net.run(every)


def test_replayed_join_of_a_crashed_node_does_not_reform_the_ring() -> None:
    """Finding 2: a JOIN captured from node 3, replayed every 3 token timeouts after node 3
    crashed, re-formed the ring on each replay; now it is dropped and counted."""
    net = formed([1, 2, 3])
    join = _last_sent(net, 3, Join)
    assert isinstance(join, Join)
    captured = codec(3).encode(join)  # the codec is deterministic: the same bytes as sent
    net.crash(3)
    net.run_until(lambda: net.one_ring([1, 2]), limit=10)
    net.run(0.5)
    rings = {i: net.srp[i].stats["rings_formed"] for i in (1, 2)}
    changes = {i: len(net.changes[i]) for i in (1, 2)}
    _replay_every(net, captured, [1, 2], every=0.6, total=6.0)
    assert {i: net.srp[i].stats["rings_formed"] for i in (1, 2)} == rings
    assert {i: len(net.changes[i]) for i in (1, 2)} == changes
    assert net.one_ring([1, 2])
    assert all(net.srp[i].stats["stale_joins"] >= 10 for i in (1, 2))
    # the crashed node restarts from its ring-id file: its JOIN is newer, it gets back in
    net.boot(3)
    net.run_until(lambda: net.one_ring([1, 2, 3]), limit=10)


def test_replayed_leave_does_not_reform_and_the_node_still_rejoins() -> None:
    net = formed([1, 2, 3])
    net.shutdown(3)
    leave = _last_sent(net, 3, Leave)
    assert isinstance(leave, Leave)
    captured = codec(3).encode(leave)
    net.run_until(lambda: net.one_ring([1, 2]), limit=10)
    net.run(0.5)
    rings = net.srp[1].stats["rings_formed"]
    _replay_every(net, captured, [1, 2], every=0.6, total=3.0)
    assert net.srp[1].stats["rings_formed"] == rings and net.one_ring([1, 2])
    net.boot(3)
    net.run_until(lambda: net.one_ring([1, 2, 3]), limit=10)


def test_gather_ignores_a_failure_verdict_older_than_our_ring() -> None:
    """A JOIN calling us failed counts only if its sender knew our latest ring: the stale
    one kept two nodes forming one-node rings forever (simulator seed 532, two nodes)."""

    def gathering() -> Srp:
        node = Srp(1, [1, 2], codec(1), FAST)
        node.handle(Start(), 0.0)  # alone: a one-node ring at once
        seq = node.ring_id.seq
        node.handle(MessageReceived(2, Join((1, 2), (), seq - 4)), 0.01)
        assert node.state is State.GATHER
        return node

    node = gathering()
    seq = node.ring_id.seq
    node.handle(MessageReceived(2, Join((1, 2), (1,), seq - 4)), 0.02)  # stale verdict
    assert node.state is State.GATHER and node._failed == set()
    assert node.stats["stale_verdicts"] == 1
    cmds = node.handle(MessageReceived(2, Join((1, 2), (), seq)), 0.03)
    assert node.state is State.COMMIT and any(
        isinstance(c, SendTo) and c.node == 2 for c in cmds
    )  # consensus with node 2: the commit token goes round both

    node = gathering()
    node.handle(MessageReceived(2, Join((1, 2), (1,), node.ring_id.seq)), 0.02)  # knew it
    assert (node.state, node.members) == (State.OPERATIONAL, (1,))  # without node 2
    assert node.stats["stale_verdicts"] == 0


def test_node_that_lost_its_ring_id_file_still_rejoins() -> None:
    """Its first JOINs carry seq 1, below the floor the others keep for it; it learns the
    ring's seq from what it hears (MERGE_DETECT, mcasts) and its next JOIN is accepted."""
    net = formed([1, 2, 3])
    net.crash(3)
    net.run_until(lambda: net.one_ring([1, 2]), limit=10)
    net.persisted[3] = 0
    net.boot(3)
    net.run_until(lambda: net.one_ring([1, 2, 3]), limit=15)


def test_partitioned_node_rejoins_after_the_others_reformed_without_it() -> None:
    net = formed([1, 2, 3])
    net.blocked = {(a, b) for a in (1, 2) for b in (3,)} | {(3, a) for a in (1, 2)}
    net.run_until(lambda: net.one_ring([1, 2]) and net.one_ring([3]), limit=10)
    net.run(1.0)
    net.blocked = set()
    net.run_until(lambda: net.one_ring([1, 2, 3]), limit=10)
