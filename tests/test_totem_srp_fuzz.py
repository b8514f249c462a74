"""h2-style sweep: any authenticated message in any state is handled without raising."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pvectl.results import RingId
from pvectl.totem.srp import MessageReceived, State, TimerFired, TimerKind
from pvectl.totem.wire import (
    CommitEntry,
    CommitToken,
    Join,
    Leave,
    Mcast,
    MergeDetect,
    Message,
    Token,
    TokenHoldCancel,
)
from tests.totem_net import Net

nodes = st.integers(1, 4)
small = st.integers(0, 40)
rings = st.builds(RingId, nodes, st.integers(0, 40))
ids = st.lists(nodes, max_size=4, unique=True).map(lambda x: tuple(sorted(x)))
messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(
        Token,
        rings,
        small,
        small,
        small,
        st.integers(0, 4),
        small,
        small,
        st.booleans(),
        st.lists(st.integers(1, 40), max_size=5).map(tuple),
    ),
    st.builds(Mcast, rings, st.integers(1, 40), nodes, st.binary(max_size=20)),
    st.builds(Mcast, rings, st.integers(1, 40), nodes, st.binary(max_size=20), rings, small),
    st.builds(MergeDetect, rings),
    st.builds(Join, ids, ids, small),
    st.builds(Leave, ids, ids, small),
    st.builds(
        CommitToken,
        rings,
        small,
        ids.filter(bool),
        st.lists(st.builds(CommitEntry, rings, small, small, st.booleans()), max_size=4).map(tuple),
    ),
    st.builds(TokenHoldCancel, rings),
)
steps = st.lists(
    st.one_of(
        st.tuples(st.just("msg"), nodes, messages),
        st.tuples(st.just("timer"), st.sampled_from(list(TimerKind)), st.none()),
    ),
    max_size=25,
)


@settings(max_examples=150, deadline=None)
@given(steps, st.sampled_from(["operational", "gather"]))
def test_any_message_sequence_is_handled(seq: list[tuple[str, object, object]], start: str) -> None:
    net = Net([1, 2, 3, 4])
    net.run_until(lambda: net.one_ring([1, 2, 3, 4]), limit=5)
    node = net.srp[2]
    now = net.now
    if start == "gather":
        node.handle(TimerFired(TimerKind.TOKEN_LOSS), now)
    for kind, a, b in seq:
        now += 0.01
        if kind == "msg":
            assert isinstance(a, int)
            cmds = node.handle(MessageReceived(a, b), now)  # type: ignore[arg-type]
        else:
            node._timers[a] = now  # type: ignore[index]
            cmds = node.handle(TimerFired(a), now)  # type: ignore[arg-type]
        assert isinstance(cmds, list)
        assert node.state in State
        assert node.node_id in node._proc
