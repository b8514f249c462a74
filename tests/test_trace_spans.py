from __future__ import annotations

import json

import pytest

from pvectl.lab.sync_trace import (
    SyncTrace,
    TraceRingEvent,
    dominant_cost,
    explain,
    summarize,
    summarize_costs,
)
from pvectl.results import from_jsonable, to_jsonable
from pvectl.trace.spans import PHASE_ORDER, Cost, Phase, Span, journey

MS = 1_000_000


def _spans(
    fsync_ms_on_3: float, write_id: str = "1:7", base: int = 0, token_wait_ms: int = 0
) -> list[Span]:
    """Sender 1: queued at 1, token at 3, multicast until 4; delivered 4.5 (own), 5 (2, 3);
    ``token_wait_ms`` starts the queue wait earlier."""
    b = base
    if token_wait_ms:
        return [
            Span(write_id, 1, Phase.submit, b - token_wait_ms * MS, b - token_wait_ms * MS + 1),
            Span(write_id, 1, Phase.token_wait, b - token_wait_ms * MS + 1, b + 3 * MS),
            *[
                s
                for s in _spans(fsync_ms_on_3, write_id, base)
                if s.phase not in (Phase.submit, Phase.token_wait)
            ],
        ]
    spans = [
        Span(write_id, 1, Phase.submit, b, b + 1 * MS),
        Span(write_id, 1, Phase.token_wait, b + 1 * MS, b + 3 * MS),
        Span(write_id, 1, Phase.multicast, b + 3 * MS, b + 4 * MS),
    ]
    for node in (1, 2, 3):
        delivered = b + (4 * MS + MS // 2 if node == 1 else 5 * MS)
        fsync = int(fsync_ms_on_3 * MS) if node == 3 else 2 * MS
        spans += [
            # receivers stamp delivery from the sender's encode time (its submit)
            Span(write_id, node, Phase.delivery, b + MS // 2, delivered),
            Span(write_id, node, Phase.apply, delivered, delivered + MS // 5),
            Span(write_id, node, Phase.fsync, b + 6 * MS, b + 6 * MS + fsync),
        ]
    spans.append(Span(write_id, 1, Phase.stable, b + 8 * MS, b + 8 * MS))
    spans.append(Span(write_id, 1, Phase.commit, b + 8 * MS, b + 8 * MS + MS // 10))
    return spans


def test_phases_in_causal_order_and_delivery_starts_at_the_multicast() -> None:
    result = journey("1:7", _spans(1.0))
    assert all(node.causal for node in result.nodes)
    assert [t.phase for t in result.nodes[0].phases] == list(PHASE_ORDER)
    for node in result.nodes:
        delivery = next(t for t in node.phases if t.phase is Phase.delivery)
        assert delivery.start_ms == pytest.approx(4.0)  # the sender's multicast end
    receiver = next(n for n in result.nodes if n.node_id == 2)
    assert [t.ends_at for t in receiver.phases] == ["delivered", "applied", "fsync done"]
    assert result.total_ms == pytest.approx(8.1)


def test_journey_attributes_time_to_the_slow_fsync() -> None:
    result = journey("1:7", _spans(200.0))
    assert result.slowest_phase == (3, Phase.fsync, 200.0)
    costs = {c.cost: c for c in result.costs}
    assert (costs[Cost.fsync].node_id, costs[Cost.fsync].ms) == (3, 200.0)
    assert costs[Cost.token_wait].ms == pytest.approx(2.0)
    # network on the sender: multicast (1 ms) + its own delivery (0.5 ms); on 2 and 3: 1 ms
    assert (costs[Cost.network].node_id, costs[Cost.network].ms) == (1, pytest.approx(1.5))


def test_out_of_order_phases_are_flagged() -> None:
    spans = _spans(1.0)
    spans.append(Span("1:7", 2, Phase.submit, 9 * MS, 9 * MS + 1))  # after its delivery
    result = journey("1:7", spans)
    assert not next(n for n in result.nodes if n.node_id == 2).causal


def test_a_node_on_another_clock_loses_its_network_time_and_is_lined_up() -> None:
    spans = [s for s in _spans(1.0) if s.node_id != 3]
    far = 10_000 * MS  # another host's CLOCK_MONOTONIC
    spans += [
        Span("1:7", 3, Phase.delivery, MS // 2, far + 5 * MS),
        Span("1:7", 3, Phase.apply, far + 5 * MS, far + 6 * MS),
        Span("1:7", 3, Phase.fsync, far + 6 * MS, far + 9 * MS),
    ]
    result = journey("1:7", spans, other_clock=frozenset({3}))
    node3 = next(n for n in result.nodes if n.node_id == 3)
    assert not node3.same_clock and node3.causal
    assert [t.phase for t in node3.phases] == [Phase.apply, Phase.fsync]
    assert node3.phases[0].start_ms == pytest.approx(4.0)  # placed at the multicast
    assert node3.phases[1].duration_ms == pytest.approx(3.0)


def test_unknown_write_is_an_error() -> None:
    with pytest.raises(ValueError, match="no spans"):
        journey("9:9", _spans(1.0))


def _trace(
    events: tuple[TraceRingEvent, ...], coupling: str, token_wait_ms: int = 150
) -> SyncTrace:
    spans = _spans(200.0) + _spans(180.0, "1:8", 400 * MS, token_wait_ms)
    journeys = [journey("1:7", spans), journey("1:8", spans, retried=True)]
    phases, costs = summarize(journeys), summarize_costs(journeys)
    top = dominant_cost(costs)
    return SyncTrace(
        lab="t",
        sender=1,
        level="local",
        size=4096,
        coupling=coupling,
        durability="fsync",
        writes=tuple(journeys),
        phases=phases,
        costs=costs,
        dominant=top.cost if top else None,
        ring_events=events,
        commit_p50_ms=8.1,
        commit_p99_ms=8.1,
        refused="",
        unanswered=(),
        verdict=explain(phases, costs, 8.1, events, coupling),
    )


EVENTS = (
    TraceRingEvent(1, "token_lost", 120.0, "", (1, 2, 3), (), ()),
    TraceRingEvent(1, "transitional", 150.0, "1.c", (1, 2), (3,), ()),
    TraceRingEvent(1, "regular", 150.1, "1.c", (1, 2), (3,), ()),
    TraceRingEvent(2, "regular", 150.3, "1.c", (1, 2), (3,), ()),
)


def test_summary_names_the_dominant_cost_and_the_slow_node() -> None:
    trace = _trace((), "decoupled")
    assert trace.dominant is Cost.fsync
    fsync = next(c for c in trace.costs if c.cost is Cost.fsync)
    assert (fsync.slowest_node, fsync.max_ms) == (3, 200.0)
    assert "most of the time went to fsync" in trace.verdict
    assert "fsync on node 3" in trace.verdict and "ring" not in trace.verdict


def test_verdict_tells_the_membership_change_and_the_coupled_domino() -> None:
    trace = _trace(EVENTS, "coupled")
    assert "ring 1.c formed with 1 2 (node(s) 3 left)" in trace.verdict
    assert "token was lost on node(s) 1" in trace.verdict
    assert "coupled mode node 3's fsync (200 ms)" in trace.verdict
    assert "writes waited up to 15" in trace.verdict and "domino" in trace.verdict
    assert "coupled mode" not in _trace(EVENTS, "decoupled").verdict


def test_verdict_tells_a_held_token_without_a_ring_change() -> None:
    trace = _trace((), "coupled")
    retried = trace.writes[1]
    assert [t.phase for t in retried.nodes[0].phases] == list(PHASE_ORDER)
    assert retried.nodes[0].phases[1].duration_ms == pytest.approx(153.0, abs=0.01)
    held = trace.verdict
    assert "held the token" in held and "domino" not in held and "ring" not in held
    assert "held the token" not in _trace((), "coupled", token_wait_ms=0).verdict


def test_a_local_write_waiting_for_stability_is_token_time() -> None:
    """Coupled mode, the slow node holds the token after the write went out: the write is
    durable on the sender but not yet held by every member; that wait is the token's."""
    spans = [s for s in _spans(200.0) if s.phase not in (Phase.stable, Phase.commit)]
    spans += [
        Span("1:7", 1, Phase.stable, 8 * MS, 2400 * MS),
        Span("1:7", 1, Phase.commit, 2400 * MS, 2400 * MS),
    ]
    result = journey("1:7", spans)
    costs = {c.cost: c for c in result.costs}
    assert costs[Cost.token_wait].ms == pytest.approx(2392 + 2)  # stable wait + queue wait
    assert result.slowest_phase == (1, Phase.stable, pytest.approx(2392.0))
    phases = summarize([result])
    verdict = explain(phases, summarize_costs([result]), result.total_ms, EVENTS, "coupled")
    assert "held the token, writes waited up to 2394 ms" in verdict, verdict


def test_json_schema_round_trips() -> None:
    trace = _trace(EVENTS, "coupled")
    text = json.dumps(to_jsonable(trace))
    back = from_jsonable(SyncTrace, json.loads(text))
    assert back == trace
    raw = json.loads(text)
    assert raw["writes"][1]["retried"] is True
    assert raw["writes"][0]["nodes"][0]["phases"][1] == {
        "phase": "token_wait",
        "ends_at": "token arrived",
        "start_ms": 1.0,
        "duration_ms": 2.0,
    }
    assert raw["ring_events"][2]["left"] == [3] and raw["dominant"] == "fsync"
