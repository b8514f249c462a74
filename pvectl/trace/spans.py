"""Timestamped phases of one config write, on every node, and where its time went.

Every layer records a ``Span`` keyed by the write id (``"<sender>:<count>"``). Nodes of a lab
on one machine share CLOCK_MONOTONIC, so their spans line up on one time axis; nodes on
other hosts are reported relative to their own first span only.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Phase(StrEnum):
    """The write path of the seed article, in causal order."""

    submit = "submit"  # the client's write accepted and encoded by the sender's store
    ordering = "ordering"  # wait for the token, multicast, agreed delivery on this node
    applied = "applied"  # applied to the in-memory SQLite memdb
    fsync = "fsync"  # backing config.db committed (fsync'd in fsync mode)
    acknowledged = "acknowledged"  # the commit level was reached; the writer returns


PHASE_ORDER = tuple(Phase)


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
class NodeJourney:
    """One node's phases for one write, in causal order, relative to the write's start."""

    node_id: int
    phases: tuple[tuple[Phase, float, float], ...]  # phase, start ms, duration ms
    causal: bool  # phases start in causal order (a check the tests rely on)


@dataclass(frozen=True)
class WriteJourney:
    write_id: str
    sender: int
    total_ms: float  # submit start to acknowledgement end on the sender
    nodes: tuple[NodeJourney, ...]
    slowest_phase: tuple[int, Phase, float]  # node, phase, ms: where the time went


def journey(write_id: str, spans: list[Span]) -> WriteJourney:
    mine = [s for s in spans if s.write_id == write_id]
    if not mine:
        raise ValueError(f"no spans for write {write_id}")
    sender = int(write_id.split(":", 1)[0])
    origin = min(s.start_ns for s in mine)
    nodes: list[NodeJourney] = []
    for node_id in sorted({s.node_id for s in mine}):
        own = sorted(
            (s for s in mine if s.node_id == node_id), key=lambda s: PHASE_ORDER.index(s.phase)
        )
        starts = [s.start_ns for s in own]
        nodes.append(
            NodeJourney(
                node_id,
                tuple((s.phase, (s.start_ns - origin) / 1e6, s.duration_ms) for s in own),
                causal=starts == sorted(starts),
            )
        )
    acknowledged = [s for s in mine if s.node_id == sender and s.phase is Phase.acknowledged]
    end = max(s.end_ns for s in acknowledged) if acknowledged else max(s.end_ns for s in mine)
    slowest = max(mine, key=lambda s: (s.duration_ms, -s.node_id))
    return WriteJourney(
        write_id,
        sender,
        (end - origin) / 1e6,
        tuple(nodes),
        (slowest.node_id, slowest.phase, slowest.duration_ms),
    )
