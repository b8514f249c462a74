from __future__ import annotations

import pytest

from pvectl.trace.spans import Phase, Span, journey


def _spans(fsync_ms_on_3: float) -> list[Span]:
    ms = 1_000_000
    spans = [
        Span("1:7", 1, Phase.submit, 0, 1 * ms),
    ]
    for node in (1, 2, 3):
        fsync = int(fsync_ms_on_3 * ms) if node == 3 else 2 * ms
        spans += [
            Span("1:7", node, Phase.ordering, 1 * ms, 4 * ms + 50),
            Span("1:7", node, Phase.applied, 5 * ms, 5 * ms + 200),
            Span("1:7", node, Phase.fsync, 6 * ms, 6 * ms + fsync),
        ]
    spans.append(Span("1:7", 1, Phase.acknowledged, 8 * ms, 8 * ms))
    return spans


def test_journey_attributes_time_to_the_slow_fsync() -> None:
    result = journey("1:7", _spans(200.0))
    assert result.slowest_phase == (3, Phase.fsync, 200.0)
    assert result.total_ms == pytest.approx(8.0)
    assert all(node.causal for node in result.nodes)
    assert [p for p, _, _ in result.nodes[0].phases] == list(Phase)


def test_out_of_order_phases_are_flagged() -> None:
    spans = _spans(1.0)
    spans.append(Span("1:7", 2, Phase.submit, 9_000_000, 9_000_001))  # after its delivery
    result = journey("1:7", spans)
    assert not next(n for n in result.nodes if n.node_id == 2).causal


def test_unknown_write_is_an_error() -> None:
    with pytest.raises(ValueError, match="no spans"):
        journey("9:9", _spans(1.0))
