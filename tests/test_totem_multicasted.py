"""The tagged-send hook: ``Multicasted`` says when (on which token visit, in which frames) a
traced application message actually left, without any clock inside the machine."""

from __future__ import annotations

from pvectl.totem.srp import (
    AppSend,
    Deliver,
    MessageReceived,
    Multicasted,
    MulticastStarted,
    SendAll,
    Srp,
    Start,
)
from pvectl.totem.wire import Mcast, Token
from tests.helpers.totem_net import FAST, Net, codec


def formed(ids: list[int]) -> Net:
    net = Net(ids)
    net.run_until(lambda: net.one_ring(ids), limit=5)
    net.run(0.2)
    return net


def visit(node: Srp, now: float) -> list[object]:
    """Hand node the token once, as its predecessor would."""
    ring = node.ring_id
    tok = Token(ring, node._my_token_seq + 10, node._reg.high_seq, node._reg.aru, 0, 0, 0,
                False, ())  # fmt: skip
    return list(node.handle(MessageReceived(1, tok), now))


def test_nothing_is_reported_on_send_only_on_the_token_visit_that_carries_it() -> None:
    net = formed([1, 2, 3])
    node = net.srp[2]
    queued = node.handle(AppSend(b"traced", tag=("w", 7)), net.now)
    assert not [c for c in queued if isinstance(c, Multicasted)]
    cmds = visit(node, net.now)
    reports = [c for c in cmds if isinstance(c, Multicasted)]
    assert len(reports) == 1
    report = reports[0]
    assert report.tag == ("w", 7) and report.first_seq == report.last_seq
    # the report comes right before the datagram that carries the message
    sent = cmds[cmds.index(report) + 1]
    assert isinstance(sent, SendAll)
    frame = codec(3).decode(sent.data)[1]
    assert isinstance(frame, Mcast) and frame.seq == report.last_seq
    assert b"traced" in frame.payload
    assert not [c for c in visit(node, net.now) if isinstance(c, Multicasted)]  # once only


def test_untagged_sends_report_nothing_and_tags_keep_their_order() -> None:
    net = formed([1, 2, 3])
    node = net.srp[2]
    node.handle(AppSend(b"a"), net.now)
    node.handle(AppSend(b"b", tag=1), net.now)
    node.handle(AppSend(b"c" * 1300), net.now)  # fills the first frame
    node.handle(AppSend(b"d" * 1300, tag=2), net.now)  # so this one needs a second
    cmds = visit(node, net.now)
    reports = [c for c in cmds if isinstance(c, Multicasted)]
    assert [r.tag for r in reports] == [1, 2]
    assert reports[0].last_seq < reports[1].last_seq


def test_a_fragmented_message_reports_its_start_and_its_end_across_token_visits() -> None:
    net = formed([1, 2, 3])
    node = net.srp[2]
    size = 40 * 1400  # more frames than max_messages (17) lets out on one visit
    node.handle(AppSend(b"x" * size, tag="big"), net.now)
    first = visit(node, net.now)
    started = [c for c in first if isinstance(c, MulticastStarted)]
    assert [s.tag for s in started] == ["big"]
    assert not [c for c in first if isinstance(c, Multicasted)]
    done: list[Multicasted] = []
    for _ in range(5):
        cmds = visit(node, net.now)
        assert not [c for c in cmds if isinstance(c, MulticastStarted)]
        done += [c for c in cmds if isinstance(c, Multicasted)]
        if done:
            break
    assert len(done) == 1
    assert done[0].first_seq == started[0].seq < done[0].last_seq
    assert done[0].last_seq - done[0].first_seq + 1 >= size // 1400


def test_tagged_message_reported_once_and_delivered_everywhere_on_a_ring() -> None:
    net = formed([1, 2, 3])
    reports: list[Multicasted] = []
    original = net.execute

    def execute(i: int, cmds: list[object]) -> None:
        reports.extend(c for c in cmds if isinstance(c, Multicasted) and i == 1)
        original(i, cmds)  # type: ignore[arg-type]

    net.execute = execute  # type: ignore[method-assign]
    net.execute(1, net.srp[1].handle(AppSend(b"hello", tag="t1"), net.now))
    net.run(1.0)
    assert [r.tag for r in reports] == ["t1"]
    for i in (1, 2, 3):
        delivered = [d for d in net.delivered[i] if d.payload == b"hello"]
        assert len(delivered) == 1 and delivered[0].seq == reports[0].last_seq


def test_a_singleton_ring_reports_the_send_too() -> None:
    srp = Srp(1, [1], codec(1), FAST)
    srp.handle(Start(), 0.0)
    out = srp.handle(AppSend(b"solo", tag=5), 0.01)
    reports = [c for c in out if isinstance(c, Multicasted)]
    delivered = [c for c in out if isinstance(c, Deliver)]
    assert [r.tag for r in reports] == [5] and [d.payload for d in delivered] == [b"solo"]
    assert out.index(reports[0]) < out.index(delivered[0])  # no SendAll: nobody to send to


def test_a_message_cut_by_a_ring_change_is_reported_once_when_it_finally_leaves() -> None:
    net = formed([1, 2, 3])
    started: list[MulticastStarted] = []
    done: list[Multicasted] = []
    original = net.execute

    def execute(i: int, cmds: list[object]) -> None:
        if i == 1:
            started.extend(c for c in cmds if isinstance(c, MulticastStarted))
            done.extend(c for c in cmds if isinstance(c, Multicasted))
            if started and not done and 3 not in net.down:
                net.crash(3)  # mid-message: the ring re-forms before the rest is sent
        original(i, cmds)  # type: ignore[arg-type]

    net.execute = execute  # type: ignore[method-assign]
    big = bytes(range(256)) * 300  # ~77 KB: several token visits of fragments
    net.execute(1, net.srp[1].handle(AppSend(big, tag="cut"), net.now))
    net.run_until(lambda: net.one_ring([1, 2]) and bool(done), limit=10)
    net.run(0.5)
    assert 3 in net.down and [d.tag for d in done] == ["cut"]
    assert len(started) == 2 and all(s.tag == "cut" for s in started)  # one per ring
    assert done[0].first_seq == started[-1].seq < done[0].last_seq  # restarted on the new ring
    for i in (1, 2):
        assert [d.payload for d in net.delivered[i] if len(d.payload) > 1000] == [big]
