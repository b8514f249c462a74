"""h2-style sweep: any authenticated message in any state is handled without raising."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from pvectl.totem.ring_id import RingId
from pvectl.totem.srp import (
    Command,
    ConfigChange,
    Deliver,
    MessageReceived,
    PersistRingSeq,
    SetTimer,
    Srp,
    State,
    TimerFired,
    TimerKind,
)
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
from tests.helpers.totem_net import Net

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
    # a plain frame: the encapsulation fields given, or builds() draws them from the hints
    st.builds(
        Mcast, rings, st.integers(1, 40), nodes, st.binary(max_size=20), st.none(), st.just(0)
    ),
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


def _prepared(start: State) -> tuple[Srp, float]:
    """Node 2 of a formed 4-node ring, driven by a real membership change into ``start``:
    node 4 crashes and node 2 is caught as it passes through GATHER, COMMIT or RECOVERY."""
    net = Net([1, 2, 3, 4])
    net.run_until(lambda: net.one_ring([1, 2, 3, 4]), limit=5)
    if start is State.OPERATIONAL:
        return copy.deepcopy(net.srp[2]), net.now
    net.crash(4)
    net.run_until(lambda: net.srp[2].state is start, limit=10, step=0.0005)
    return copy.deepcopy(net.srp[2]), net.now


_PREPARED = {state: _prepared(state) for state in State}


def _check_commands(node: Srp, cmds: list[Command], now: float, seen: _Seen) -> None:
    """Invariants any input must keep: what a node says stays consistent with itself."""
    for cmd in cmds:
        if isinstance(cmd, SetTimer):
            assert cmd.deadline >= now, f"timer {cmd.kind} set in the past"
        elif isinstance(cmd, PersistRingSeq):
            assert cmd.seq >= seen.persisted, "persisted ring sequence went backwards"
            seen.persisted = cmd.seq
        elif isinstance(cmd, Deliver):
            key = (cmd.ring_id, cmd.seq)
            assert key not in seen.delivered, f"delivered {key} twice"
            last = seen.last_seq.get(cmd.ring_id, -1)
            assert cmd.seq > last, f"delivery order went backwards in {cmd.ring_id}"
            seen.delivered.add(key)
            seen.last_seq[cmd.ring_id] = cmd.seq
        elif isinstance(cmd, ConfigChange):
            assert node.node_id in cmd.members, "a configuration without this node"
            assert not set(cmd.left) & set(cmd.members), "a member both left and present"
            assert set(cmd.joined) <= set(cmd.members), "joined a ring it is not in"
    assert node.ring_id.seq >= seen.ring_seq, "ring sequence went backwards"
    seen.ring_seq = node.ring_id.seq
    if node.state is State.OPERATIONAL:
        assert node.node_id in node.members, "operational outside its own ring"
        assert list(node.members) == sorted(set(node.members)), "members not a sorted set"


@dataclass
class _Seen:
    persisted: int
    ring_seq: int
    delivered: set[tuple[RingId, int]] = field(default_factory=set)
    last_seq: dict[RingId, int] = field(default_factory=dict)


@settings(max_examples=150, deadline=None)
@given(steps, st.sampled_from(list(State)))
def test_any_message_sequence_is_handled(
    seq: list[tuple[str, object, object]], start: State
) -> None:
    prepared, now = _PREPARED[start]
    node = copy.deepcopy(prepared)
    assert node.state is start
    seen = _Seen(persisted=node.ring_id.seq, ring_seq=node.ring_id.seq)
    for kind, a, b in seq:
        now += 0.01
        if kind == "msg":
            assert isinstance(a, int)
            cmds = node.handle(MessageReceived(a, b), now)  # type: ignore[arg-type]
        else:
            node._timers[a] = now  # type: ignore[index]
            cmds = node.handle(TimerFired(a), now)  # type: ignore[arg-type]
        _check_commands(node, cmds, now, seen)
        assert node.node_id in node._proc
