"""``pvectl sync-trace``: send config writes through an embedded lab and collect, from every
node, the timestamped phases each write went through."""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass

from pvectl.errors import CommandRefused, PvectlError, UsageError
from pvectl.lab import embedded_engine
from pvectl.lab import state as lab_state
from pvectl.results import from_jsonable
from pvectl.trace.spans import PHASE_ORDER, Phase, Span, WriteJourney, journey

MAX_WRITES = 10_000


@dataclass(frozen=True)
class PhaseSummary:
    """One phase over all writes and nodes: how long it took (ms)."""

    phase: Phase
    p50_ms: float
    p99_ms: float
    max_ms: float
    slowest_node: int


@dataclass(frozen=True)
class SyncTrace:
    lab: str
    sender: int
    level: str
    size: int
    coupling: str
    durability: str
    writes: tuple[WriteJourney, ...]
    phases: tuple[PhaseSummary, ...]
    commit_p50_ms: float
    commit_p99_ms: float
    verdict: str


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def summarize(journeys: list[WriteJourney], spans: list[Span]) -> tuple[PhaseSummary, ...]:
    out = []
    for phase in PHASE_ORDER:
        mine = [s for s in spans if s.phase is phase]
        if not mine:
            continue
        durations = [s.duration_ms for s in mine]
        slowest = max(mine, key=lambda s: (s.duration_ms, -s.node_id))
        out.append(
            PhaseSummary(
                phase,
                _quantile(durations, 0.5),
                _quantile(durations, 0.99),
                max(durations),
                slowest.node_id,
            )
        )
    return tuple(out)


def explain(phases: tuple[PhaseSummary, ...], commit_p50: float) -> str:
    """One sentence: where the time of a write went."""
    if not phases:
        return "no write was traced"
    top = max(phases, key=lambda p: p.p50_ms if p.phase is not Phase.acknowledged else -1)
    worst = max(phases, key=lambda p: p.max_ms if p.phase is not Phase.acknowledged else -1)
    sentence = (
        f"a write took {commit_p50:.2f} ms (p50); most of it in {top.phase.value} "
        f"({top.p50_ms:.2f} ms p50)"
    )
    if worst.max_ms > 2 * max(top.p50_ms, 0.001) and worst.max_ms > 5:
        sentence += (
            f", and the slowest step was {worst.phase.value} on node "
            f"{worst.slowest_node} ({worst.max_ms:.1f} ms)"
        )
    return sentence


def run(name: str, node: int | None, path: str, size: int, count: int, level: str) -> SyncTrace:
    if not 1 <= count <= MAX_WRITES:
        raise UsageError(f"--count must be 1..{MAX_WRITES}")
    if not 0 <= size <= 1024 * 1024:
        raise UsageError("--size must be 0..1048576 bytes (pmxcfs's 1 MiB file limit)")
    if level not in ("local", "all"):
        raise UsageError("--level must be local or all")
    state = embedded_engine.load_running(lab_state.check_lab_name(name))
    if state.engine != embedded_engine.ENGINE:
        raise UsageError("sync-trace needs an embedded lab: corosync labs have no pvectl store")
    sender = state.node(node) if node is not None else embedded_engine.first_running(state)
    payload = base64.b64encode(bytes((i * 7) % 256 for i in range(size))).decode()
    write_ids = []
    for index in range(count):
        reply = embedded_engine.control_call(
            name,
            sender.node_id,
            "write",
            timeout=60.0,
            path=f"{path}",
            data=payload,
            level=level,
            op="put",
        )
        if not reply.get("ok"):
            raise CommandRefused(f"write {index + 1} refused: {reply.get('error')}")
        write_ids.append(str(reply["write_id"]))
    time.sleep(0.05)  # let the other nodes finish their commits of the last write
    spans: list[Span] = []
    for lab_node in state.nodes:
        if embedded_engine.node_pid(lab_node) is None:
            continue
        try:
            reply = embedded_engine.control_call(
                name, lab_node.node_id, "spans", write_ids=write_ids
            )
        except PvectlError:
            continue
        spans += [from_jsonable(Span, raw) for raw in reply["spans"]]
    journeys = [journey(write_id, spans) for write_id in write_ids]
    totals = [j.total_ms for j in journeys]
    phases = summarize(journeys, spans)
    p50 = _quantile(totals, 0.5)
    return SyncTrace(
        lab=name,
        sender=sender.node_id,
        level=level,
        size=size,
        coupling=str(state.options.get("coupling", "decoupled")),
        durability=str(state.options.get("durability", "fsync")),
        writes=tuple(journeys),
        phases=phases,
        commit_p50_ms=p50,
        commit_p99_ms=_quantile(totals, 0.99),
        verdict=explain(phases, p50),
    )
