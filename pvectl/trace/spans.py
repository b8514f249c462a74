"""Timestamped phases of one config write, on every node, and where its time went.

Every layer records a ``Span`` keyed by the write id (``"<sender>:<count>"``). Nodes of a lab
on one machine share CLOCK_MONOTONIC, so their spans line up on one time axis with the
sender's; a node on another host keeps its own clock: its spans are placed as if the write
had reached it the moment the sender multicast it, and its network time stays unknown.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from itertools import pairwise


class Phase(StrEnum):
    """The write path of the seed article, in causal order; each ends at an event."""

    submit = "submit"  # client write accepted (and any ring change waited out) -> queued
    token_wait = "token_wait"  # queued in Totem's send queue -> the token arrived (sender)
    multicast = "multicast"  # token arrived -> the write's last datagram sent (sender)
    delivery = "delivery"  # sender's multicast -> agreed delivery on this node (network)
    apply = "apply"  # delivered -> applied to the in-RAM memdb
    fsync = "fsync"  # (group commit starts) -> backing config.db committed, fsync'd
    stable = "stable"  # own fsync done -> durable on a quorum of votes (level local, sender)
    commit = "commit"  # own fsync done -> commit level reached, the writer returns (sender)


PHASE_ORDER = tuple(Phase)

ENDS_AT = {
    Phase.submit: "queued",
    Phase.token_wait: "token arrived",
    Phase.multicast: "multicast",
    Phase.delivery: "delivered",
    Phase.apply: "applied",
    Phase.fsync: "fsync done",
    Phase.stable: "stable",
    Phase.commit: "committed",
}


class Cost(StrEnum):
    """Where the time of a write goes, as the summary groups the phases."""

    token_wait = "token_wait"
    network = "network"
    apply = "apply"
    fsync = "fsync"


COST_OF = {
    Phase.token_wait: Cost.token_wait,
    Phase.multicast: Cost.network,
    Phase.delivery: Cost.network,
    Phase.apply: Cost.apply,
    Phase.fsync: Cost.fsync,
    Phase.stable: Cost.token_wait,  # the others' acknowledgements ride the token's next visits
}


@dataclass(frozen=True)
class Span:
    write_id: str
    node_id: int
    phase: Phase
    start_ns: int
    end_ns: int

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6


@dataclass(frozen=True)
class RingEvent:
    """A membership event on one node: ``token_lost`` (its token timer fired), then the
    ``transitional`` and ``regular`` configurations of the ring that follows."""

    node_id: int
    kind: str
    at_ns: int
    ring_id: str
    members: tuple[int, ...]
    left: tuple[int, ...]
    joined: tuple[int, ...]


@dataclass(frozen=True)
class PhaseTiming:
    phase: Phase
    ends_at: str  # the event this phase ends with ("token arrived", "fsync done", ...)
    start_ms: float  # from the write's origin (its first span on the sender)
    duration_ms: float


@dataclass(frozen=True)
class NodeJourney:
    """One node's phases for one write, in causal order, relative to the write's start."""

    node_id: int
    same_clock: bool  # False: another host; its network time is unknown (left out)
    phases: tuple[PhaseTiming, ...]
    causal: bool  # every phase ends no later than the next one starts


@dataclass(frozen=True)
class CostTiming:
    """One cost of one write: the slowest node's time in it."""

    cost: Cost
    ms: float
    node_id: int


@dataclass(frozen=True)
class WriteJourney:
    write_id: str
    sender: int
    origin_ns: int  # the write's first span, on the sender's clock
    total_ms: float  # submit start to commit end on the sender
    nodes: tuple[NodeJourney, ...]
    slowest_phase: tuple[int, Phase, float]  # node, phase, ms: the longest step but commit
    costs: tuple[CostTiming, ...]  # token wait, network, apply, fsync
    retried: bool = False  # refused (EAGAIN: caught in a ring change), sent again as the next


def node_spans(mine: list[Span], node_id: int, sender: int, same_clock: bool) -> list[Span]:
    """A node's spans, the delivery span starting at the sender's multicast when both
    clocks agree (each receiver only knows when the sender encoded the write)."""
    own = sorted(
        (s for s in mine if s.node_id == node_id), key=lambda s: PHASE_ORDER.index(s.phase)
    )
    sent = [s.end_ns for s in mine if s.node_id == sender and s.phase is Phase.multicast]
    out = []
    for span in own:
        if span.phase is Phase.delivery:
            if not same_clock:
                continue
            if sent:
                span = Span(
                    span.write_id, node_id, span.phase, min(sent[0], span.end_ns), span.end_ns
                )
        out.append(span)
    return out


def journey(
    write_id: str,
    spans: list[Span],
    other_clock: frozenset[int] = frozenset(),
    retried: bool = False,
) -> WriteJourney:
    """One write's timeline; ``other_clock`` are nodes whose CLOCK_MONOTONIC is not the
    sender's (another host)."""
    mine = [s for s in spans if s.write_id == write_id]
    if not mine:
        raise ValueError(f"no spans for write {write_id}")
    sender = int(write_id.split(":", 1)[0])
    on_sender = [s for s in mine if s.node_id == sender] or mine
    origin = min(s.start_ns for s in on_sender)
    multicast_end = max((s.end_ns for s in on_sender if s.phase is Phase.multicast), default=origin)
    nodes: list[NodeJourney] = []
    kept: list[Span] = []
    for node_id in sorted({s.node_id for s in mine}):
        same = node_id not in other_clock
        own = node_spans(mine, node_id, sender, same)
        if not same and own:  # its own clock: line its first span up with the multicast
            shift = multicast_end - own[0].start_ns
            own = [
                Span(s.write_id, node_id, s.phase, s.start_ns + shift, s.end_ns + shift)
                for s in own
            ]
        kept += own
        causal = all(a.end_ns <= b.start_ns for a, b in pairwise(own))
        nodes.append(
            NodeJourney(
                node_id,
                same,
                tuple(
                    PhaseTiming(
                        s.phase, ENDS_AT[s.phase], (s.start_ns - origin) / 1e6, s.duration_ms
                    )
                    for s in own
                ),
                causal=causal,
            )
        )
    committed = [s for s in on_sender if s.phase is Phase.commit]
    end = max(s.end_ns for s in committed) if committed else max(s.end_ns for s in on_sender)
    # commit is the writer waiting for others' work, already counted where it happened
    steps = [s for s in kept if s.phase is not Phase.commit] or kept
    slowest = max(steps, key=lambda s: (s.duration_ms, -s.node_id))
    return WriteJourney(
        write_id,
        sender,
        origin,
        (end - origin) / 1e6,
        tuple(nodes),
        (slowest.node_id, slowest.phase, slowest.duration_ms),
        _costs(kept),
        retried,
    )


def _costs(spans: list[Span]) -> tuple[CostTiming, ...]:
    per_node: dict[tuple[Cost, int], float] = {}
    for span in spans:
        cost = COST_OF.get(span.phase)
        if cost is not None:
            key = (cost, span.node_id)
            per_node[key] = per_node.get(key, 0.0) + span.duration_ms
    out = []
    for cost in Cost:
        mine = [(ms, -node) for (c, node), ms in per_node.items() if c is cost]
        if mine:
            ms, negative_node = max(mine)
            out.append(CostTiming(cost, ms, -negative_node))
    return tuple(out)
