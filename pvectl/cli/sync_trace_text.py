"""The text view of ``pvectl sync-trace``: one write's phases as bars per node, the
ring's events on the same time axis, and the per-write table."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from pvectl.lab.sync_trace import COST_WORDS, SyncTrace, TraceRingEvent
from pvectl.trace.spans import ENDS_AT, PHASE_ORDER, Cost, WriteJourney

MAX_WRITE_ROWS = 20

PHASE_HELP = {
    "submit": "accepted (ring change waited out) -> queued",
    "token_wait": "queued -> the token reached the sender",
    "multicast": "token arrived -> datagrams sent",
    "delivery": "sender's multicast -> agreed delivery here",
    "apply": "delivered -> applied to the memdb (in RAM)",
    "fsync": "group commit -> config.db durable",
    "stable": "own fsync -> durable on a quorum (local)",
    "commit": "-> level reached (all: every member's fsync ack)",
}

PHASE_STYLE = {
    "submit": "cyan",
    "token_wait": "yellow",
    "multicast": "bright_yellow",
    "delivery": "blue",
    "apply": "green",
    "fsync": "red",
    "stable": "bright_magenta",
    "commit": "magenta",
}
EVENT_STYLE = {"token_lost": "bold red", "transitional": "bright_black", "regular": "bold"}
GANTT_WIDTH = 36


def _drawn_write(trace: SyncTrace) -> WriteJourney:
    """The write whose phases reach furthest (on any node): where the trouble shows."""

    def extent(write: WriteJourney) -> float:
        return max(
            (t.start_ms + t.duration_ms for node in write.nodes for t in node.phases), default=0
        )

    return max(trace.writes, key=lambda w: (extent(w), w.write_id))


def _event_rows(trace: SyncTrace, origin_ms: float) -> list[tuple[str, str, str, float]]:
    """Ring events grouped (kind, ring) over nodes: short and long label, style key,
    offset from origin."""
    groups: dict[tuple[str, str], list[TraceRingEvent]] = {}
    for event in trace.ring_events:
        if event.kind == "transitional":
            continue
        groups.setdefault((event.kind, event.ring_id), []).append(event)
    rows = []
    for (kind, ring), events in groups.items():
        nodes = " ".join(str(n) for n in sorted({e.node_id for e in events}))
        first = min(events, key=lambda e: e.at_ms)
        if kind == "token_lost":
            short, label = f"token lost {nodes}", f"token lost on {nodes}"
        else:
            members = " ".join(map(str, first.members))
            short = f"{ring} [{members}]"
            change = []
            if first.left:
                short += f" -{','.join(map(str, first.left))}"
                change.append(f"left {' '.join(map(str, first.left))}")
            if first.joined:
                short += f" +{','.join(map(str, first.joined))}"
                change.append(f"joined {' '.join(map(str, first.joined))}")
            label = f"new ring on {nodes}" + (f": {', '.join(change)}" if change else "")
        rows.append((short, label, kind, first.at_ms - origin_ms))
    return sorted(rows, key=lambda r: r[3])


def _context(
    trace: SyncTrace, drawn: WriteJourney, first: float, end: float
) -> list[tuple[int, str, float, float]]:
    """Long phases of the other writes inside the window (a coupled fsync holding the
    loop, a refused attempt's token wait): node, label, start and duration on its axis."""
    rows = []
    window = end - first
    for write in trace.writes:
        if write is drawn:
            continue
        shift = (write.origin_ns - drawn.origin_ns) / 1e6
        for node in write.nodes:
            for t in node.phases:
                start = t.start_ms + shift
                long = t.duration_ms >= max(1.0, 0.1 * window)
                if long and start < end and start + t.duration_ms > first:
                    rows.append(
                        (node.node_id, f"{t.phase.value} {write.write_id}", start, t.duration_ms)
                    )
    return sorted(rows, key=lambda r: (r[0], r[2]))


def _gantt(trace: SyncTrace) -> Table:
    """One write as bars per node and phase, and the ring's events, on one time axis."""
    drawn = _drawn_write(trace)
    origin_ms = (drawn.origin_ns - min(w.origin_ns for w in trace.writes)) / 1e6
    events = _event_rows(trace, origin_ms)
    end = max(
        (t.start_ms + t.duration_ms for node in drawn.nodes for t in node.phases), default=0.0
    )
    first = min([0.0] + [event[3] for event in events])
    end = max([end] + [event[3] for event in events]) or 1.0
    scale = GANTT_WIDTH / (end - first)
    chart = Table(
        title=f"timeline of write {drawn.write_id}: {first:.2f} .. {end:.2f} ms "
        f"(0 = its start on node {drawn.sender})",
        title_justify="left",
    )
    chart.add_column("node", justify="right", no_wrap=True)
    chart.add_column("phase", no_wrap=True, min_width=10)
    chart.add_column("bar", no_wrap=True, min_width=GANTT_WIDTH + 1, max_width=GANTT_WIDTH + 1)
    chart.add_column("start+ms", justify="right", no_wrap=True)
    for node in drawn.nodes:
        clock = "" if node.same_clock else "*"
        for timing in node.phases:
            offset = int((timing.start_ms - first) * scale)
            width = max(1, round(timing.duration_ms * scale))
            bar = Text(" " * offset)
            bar.append(
                "█" * min(width, GANTT_WIDTH - offset + 1), style=PHASE_STYLE[timing.phase.value]
            )
            chart.add_row(
                f"{node.node_id}{clock}",
                timing.phase.value,
                bar,
                f"{timing.start_ms:.2f}+{timing.duration_ms:.2f}",
            )
    for node_id, label, start, duration in _context(trace, drawn, first, end):
        visible_start, visible_end = max(start, first), min(start + duration, end)
        offset = int((visible_start - first) * scale)
        bar = Text(" " * offset)
        width = max(1, round((visible_end - visible_start) * scale))
        bar.append("▒" * min(width, GANTT_WIDTH - offset + 1), style="dim")
        chart.add_row(str(node_id), label, bar, f"{start:.2f}+{duration:.2f}")
    for short, label, kind, at in events:
        offset = min(GANTT_WIDTH, int((at - first) * scale))
        style = EVENT_STYLE.get(kind, "")
        if offset + 2 + len(label) <= GANTT_WIDTH + 1:
            bar = Text(" " * offset)
            bar.append("▼ " + label, style=style)
        elif offset + 1 >= len(label) + 2:  # the label ends at the marker
            bar = Text(" " * (offset - 1 - len(label)))
            bar.append(label + " ▼", style=style)
        else:
            bar = Text(" " * offset)
            bar.append("▼", style=style)
        chart.add_row("ring", Text(short, style=style), bar, f"{at:.2f}")
    return chart


def _write_table(trace: SyncTrace, drawn: WriteJourney) -> Table:
    """Each event of the drawn write, per node: its offset and the phase that led to it."""
    table = Table(
        title=f"write {drawn.write_id} ({trace.size} B, level {trace.level}, {trace.coupling}, "
        f"{trace.durability}): committed after {drawn.total_ms:.2f} ms; ms at (+phase)",
        title_justify="left",
    )
    table.add_column("event")
    for node in drawn.nodes:
        mark = ("" if node.causal else " (!)") + ("" if node.same_clock else " *")
        table.add_column(f"node {node.node_id}{mark}", justify="right")
    cells = {
        (node.node_id, t.phase): f"{t.start_ms + t.duration_ms:.2f} (+{t.duration_ms:.2f})"
        for node in drawn.nodes
        for t in node.phases
    }
    for phase in PHASE_ORDER:
        table.add_row(
            f"{ENDS_AT[phase]} ({phase.value})",
            *[cells.get((node.node_id, phase), "-") for node in drawn.nodes],
        )
    return table


def _per_write(trace: SyncTrace) -> Table:
    table = Table(
        title="every write: total on the sender, and per cost the slowest node's ms",
        title_justify="left",
    )
    table.add_column("write")
    table.add_column("total ms", justify="right")
    for cost in Cost:
        table.add_column(COST_WORDS[cost], justify="right")
    for write in trace.writes[:MAX_WRITE_ROWS]:
        cells = {c.cost: f"{c.ms:.2f} (n{c.node_id})" for c in write.costs}
        name = write.write_id + (" (refused, retried)" if write.retried else "")
        table.add_row(name, f"{write.total_ms:.2f}", *[cells.get(c, "-") for c in Cost])
    if len(trace.writes) > MAX_WRITE_ROWS:
        table.caption = f"... {len(trace.writes) - MAX_WRITE_ROWS} more: --output-format json"
    return table


def render(trace: SyncTrace) -> Group:
    drawn = _drawn_write(trace)
    phases = Table(
        title=f"{len(trace.writes)} write(s): commit p50 {trace.commit_p50_ms:.2f} ms, "
        f"p99 {trace.commit_p99_ms:.2f} ms",
        title_justify="left",
    )
    for column in ("phase", "p50 ms", "p99 ms", "max ms", "slowest on", "what it is"):
        phases.add_column(column, justify="left" if column in ("phase", "what it is") else "right")
    for row in trace.phases:
        phases.add_row(
            row.phase.value,
            f"{row.p50_ms:.3f}",
            f"{row.p99_ms:.3f}",
            f"{row.max_ms:.3f}",
            f"node {row.slowest_node}",
            PHASE_HELP[row.phase.value],
        )
    costs = Table(title="where the time went (per write, the slowest node)", title_justify="left")
    for column in ("cost", "p50 ms", "p99 ms", "max ms", "slowest on"):
        costs.add_column(column, justify="left" if column == "cost" else "right")
    for cost in trace.costs:
        name = COST_WORDS[cost.cost] + (" <- dominant" if cost.cost is trace.dominant else "")
        costs.add_row(
            name,
            f"{cost.p50_ms:.3f}",
            f"{cost.p99_ms:.3f}",
            f"{cost.max_ms:.3f}",
            f"node {cost.slowest_node}",
        )
    parts: list[Table | Text] = [_gantt(trace), _write_table(trace, drawn)]
    if len(trace.writes) > 1:
        parts.append(_per_write(trace))
    parts += [phases, costs]
    notes = []
    if any(not n.same_clock for w in trace.writes for n in w.nodes):
        notes.append(
            "* another host, another clock: placed as if delivered at the sender's "
            "multicast; its network time is unknown"
        )
    if trace.unanswered:
        notes.append(f"no spans from node(s) {' '.join(map(str, trace.unanswered))}")
    if trace.refused:
        notes.append(f"the trace stopped early: {trace.refused}")
    out: list[Table | Text] = []
    for part in parts:
        out += [part, Text("")]
    out += [Text(note) for note in notes]
    out.append(Text(trace.verdict + "."))
    return Group(*out)
