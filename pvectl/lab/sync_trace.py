"""``pvectl sync-trace``: send config writes through an embedded lab and collect, from every
node, the timestamped phases each write went through and the ring changes around them."""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from typing import Any

from pvectl.errors import CommandRefused, PvectlError, UsageError
from pvectl.lab import embedded_engine
from pvectl.lab import state as lab_state
from pvectl.lab.state import LabNode, LabState
from pvectl.results import from_jsonable
from pvectl.trace.spans import (
    PHASE_ORDER,
    Cost,
    Phase,
    RingEvent,
    Span,
    WriteJourney,
    journey,
)

MAX_WRITES = 10_000
POLL_S = 0.2
COST_WORDS = {
    Cost.token_wait: "token wait",
    Cost.network: "network",
    Cost.apply: "apply",
    Cost.fsync: "fsync",
}


@dataclass(frozen=True)
class PhaseSummary:
    """One phase over all writes and nodes: how long it took (ms)."""

    phase: Phase
    p50_ms: float
    p99_ms: float
    max_ms: float
    slowest_node: int


@dataclass(frozen=True)
class CostSummary:
    """One cost (token wait, network, apply, fsync) over all writes: per write the slowest
    node's time in it (ms)."""

    cost: Cost
    p50_ms: float
    p99_ms: float
    max_ms: float
    slowest_node: int


@dataclass(frozen=True)
class TraceRingEvent:
    """A membership event seen by one node, on the trace's time axis (ms from the first
    write's start)."""

    node_id: int
    kind: str  # token_lost | transitional | regular
    at_ms: float
    ring_id: str
    members: tuple[int, ...]
    left: tuple[int, ...]
    joined: tuple[int, ...]


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
    costs: tuple[CostSummary, ...]
    dominant: Cost | None
    ring_events: tuple[TraceRingEvent, ...]
    commit_p50_ms: float
    commit_p99_ms: float
    refused: str  # why the trace stopped early ("" when every write went through)
    unanswered: tuple[int, ...]  # nodes whose spans could not be fetched
    verdict: str


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def _spread(rows: list[tuple[float, int]]) -> tuple[float, float, float, int]:
    """p50, p99, max of ``(ms, node id)`` rows, and the node of the max (lowest id on ties)."""
    values = [ms for ms, _ in rows]
    slowest = max(rows, key=lambda row: (row[0], -row[1]))[1]
    return _quantile(values, 0.5), _quantile(values, 0.99), max(values), slowest


def summarize(journeys: list[WriteJourney]) -> tuple[PhaseSummary, ...]:
    out = []
    for phase in PHASE_ORDER:
        rows = [
            (timing.duration_ms, node.node_id)
            for write in journeys
            for node in write.nodes
            for timing in node.phases
            if timing.phase is phase
        ]
        if rows:
            out.append(PhaseSummary(phase, *_spread(rows)))
    return tuple(out)


def summarize_costs(journeys: list[WriteJourney]) -> tuple[CostSummary, ...]:
    out = []
    for cost in Cost:
        rows = [(c.ms, c.node_id) for write in journeys for c in write.costs if c.cost is cost]
        if rows:
            out.append(CostSummary(cost, *_spread(rows)))
    return tuple(out)


def dominant_cost(costs: tuple[CostSummary, ...]) -> CostSummary | None:
    return max(costs, key=lambda c: (c.p50_ms, c.max_ms), default=None)


def membership_changes(events: tuple[TraceRingEvent, ...]) -> list[TraceRingEvent]:
    """The first node's view of each new regular ring that someone left or joined."""
    seen: dict[str, TraceRingEvent] = {}
    for event in sorted(events, key=lambda e: e.at_ms):
        if event.kind == "regular" and (event.left or event.joined):
            seen.setdefault(event.ring_id, event)
    return list(seen.values())


def explain(
    phases: tuple[PhaseSummary, ...],
    costs: tuple[CostSummary, ...],
    commit_p50: float,
    events: tuple[TraceRingEvent, ...] = (),
    coupling: str = "decoupled",
) -> str:
    """Sentences: where the time of a write went, and what the ring did meanwhile."""
    top = dominant_cost(costs)
    if top is None:
        return "no write was traced"
    sentence = (
        f"a write took {commit_p50:.2f} ms to commit (p50); most of the time went to "
        f"{COST_WORDS[top.cost]} on node {top.slowest_node} ({top.p50_ms:.2f} ms p50 over "
        f"the slowest nodes, {top.max_ms:.1f} ms max)"
    )
    steps = [p for p in phases if p.phase is not Phase.commit]
    worst = max(steps, key=lambda p: p.max_ms, default=None)
    if worst is not None and worst.max_ms > 2 * max(top.p50_ms, 0.001) and worst.max_ms > 5:
        sentence += (
            f", and the slowest step was {worst.phase.value} on node "
            f"{worst.slowest_node} ({worst.max_ms:.1f} ms)"
        )
    changes = membership_changes(events)
    for change in changes:
        who = []
        if change.left:
            who.append(f"node(s) {' '.join(map(str, change.left))} left")
        if change.joined:
            who.append(f"node(s) {' '.join(map(str, change.joined))} joined")
        sentence += (
            f"; at +{change.at_ms:.0f} ms ring {change.ring_id} formed with "
            f"{' '.join(map(str, change.members))} ({', '.join(who)})"
        )
    lost = sorted({e.node_id for e in events if e.kind == "token_lost"})
    if lost:
        first = min(e.at_ms for e in events if e.kind == "token_lost")
        sentence += f"; the token was lost on node(s) {' '.join(map(str, lost))} (+{first:.0f} ms)"
    fsync = next((p for p in phases if p.phase is Phase.fsync), None)
    wait = next((c for c in costs if c.cost is Cost.token_wait), None)
    if coupling != "coupled" or fsync is None or wait is None or wait.max_ms <= 5:
        return sentence
    reformed = bool(lost or changes)
    if reformed or wait.max_ms >= 0.5 * fsync.max_ms:  # the token waited on a slow fsync
        sentence += (
            f"{':' if lost else ';'} in coupled mode node {fsync.slowest_node}'s fsync "
            f"({fsync.max_ms:.0f} ms) ran in its protocol loop and held the token, writes "
            f"waited up to {wait.max_ms:.0f} ms for it"
            + (", and the ring re-formed: the seed's domino effect" if reformed else "")
        )
    return sentence


def _fetch(
    name: str, node: LabNode, write_ids: list[str], since_ns: int, timeout: float
) -> dict[str, Any] | None:
    if embedded_engine.node_pid(node) is None:
        return None
    try:
        return embedded_engine.control_call(
            name,
            node.node_id,
            "spans",
            timeout=max(timeout, 1.0),
            write_ids=write_ids,
            since_ns=since_ns,
        )
    except PvectlError:
        return None


def _collect(
    name: str, state: LabState, write_ids: list[str], since_ns: int, settle_s: float
) -> dict[int, dict[str, Any]]:
    """Every node's spans, once each node that applied the last write has made it durable
    and the answering nodes are operational on one ring; at most ``settle_s``. A node
    stuck in a coupled fsync answers once its protocol loop is free again."""
    deadline = time.monotonic() + settle_s
    last = write_ids[-1]
    time.sleep(0.05)  # the others' apply and commit of the last write (level local)
    while True:
        replies: dict[int, dict[str, Any]] = {}
        for node in state.nodes:
            reply = _fetch(name, node, write_ids, since_ns, deadline - time.monotonic())
            if reply is not None and reply.get("ok"):
                replies[node.node_id] = reply
        rings = {(str(r.get("ring_id")), str(r.get("state"))) for r in replies.values()}
        durable = all(
            {s["phase"] for s in r["spans"] if s["write_id"] == last} & {"apply", "fsync"}
            in (set(), {"apply", "fsync"})
            for r in replies.values()
        )
        settled = len(rings) <= 1 and all(state == "OPERATIONAL" for _, state in rings)
        if (settled and durable) or time.monotonic() >= deadline:
            return replies
        time.sleep(POLL_S)


def run(
    name: str,
    node: int | None,
    path: str,
    size: int,
    count: int,
    level: str,
    settle_s: float | None = None,
) -> SyncTrace:
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
    since_ns = time.monotonic_ns()  # this machine's clock: ring events of local nodes only
    write_ids: list[str] = []
    retried: set[str] = set()
    refused = ""
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
            refused = f"write {index + 1} refused: {reply.get('error')}"
            if not write_ids:
                raise CommandRefused(refused)
            break
        write_ids += [str(w) for w in reply.get("write_ids", [reply["write_id"]])]
        retried |= {str(w) for w in reply.get("retried", [])}
    token_ms = float(state.options.get("token") or 3000)
    settle = settle_s if settle_s is not None else 4 * 2.2 * token_ms / 1000 + 5
    replies = _collect(name, state, write_ids, since_ns, settle)
    other_clock = frozenset(n.node_id for n in state.nodes if n.host != sender.host)
    spans: list[Span] = []
    raw_events: list[RingEvent] = []
    for node_id, reply in replies.items():
        spans += [from_jsonable(Span, raw) for raw in reply["spans"]]
        if node_id not in other_clock and not sender.host:
            raw_events += [from_jsonable(RingEvent, raw) for raw in reply.get("ring_events", [])]
    seen = {s.write_id for s in spans}
    journeys = [journey(w, spans, other_clock, w in retried) for w in write_ids if w in seen]
    if not journeys:
        raise PvectlError("no node returned spans for the traced writes")
    origin = min(j.origin_ns for j in journeys)
    events = tuple(
        TraceRingEvent(
            e.node_id,
            e.kind,
            (e.at_ns - origin) / 1e6,
            e.ring_id,
            e.members,
            e.left,
            e.joined,
        )
        for e in sorted(raw_events, key=lambda e: (e.at_ns, e.node_id))
    )
    totals = [j.total_ms for j in journeys if not j.retried]
    phases = summarize(journeys)
    costs = summarize_costs(journeys)
    top = dominant_cost(costs)
    p50 = _quantile(totals, 0.5)
    coupling = str(state.options.get("coupling", "decoupled"))
    return SyncTrace(
        lab=name,
        sender=sender.node_id,
        level=level,
        size=size,
        coupling=coupling,
        durability=str(state.options.get("durability", "fsync")),
        writes=tuple(journeys),
        phases=phases,
        costs=costs,
        dominant=top.cost if top is not None else None,
        ring_events=events,
        commit_p50_ms=p50,
        commit_p99_ms=_quantile(totals, 0.99),
        refused=refused,
        unanswered=tuple(n.node_id for n in state.nodes if n.node_id not in replies),
        verdict=explain(phases, costs, p50, events, coupling),
    )
