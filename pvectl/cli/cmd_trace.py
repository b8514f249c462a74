"""``pvectl sync-trace``: the journey of a config write, measured on every node."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from pvectl.cli.options import LabNameOption, LabNodeOption, OutputFormatOption
from pvectl.cli.output import OutputFormat, emit
from pvectl.errors import ExitCode, PvectlError
from pvectl.lab import sync_trace
from pvectl.lab.sync_trace import SyncTrace
from pvectl.trace.spans import PHASE_ORDER

PHASE_HELP = {
    "submit": "the client's write accepted and encoded by the sender",
    "ordering": "wait for the token, multicast, agreed delivery (token + network)",
    "applied": "applied to the in-memory SQLite memdb",
    "fsync": "backing config.db committed (fsync'd in fsync mode)",
    "acknowledged": "commit level reached: the writer returns",
}


PHASE_STYLE = {
    "submit": "cyan",
    "ordering": "yellow",
    "applied": "green",
    "fsync": "red",
    "acknowledged": "magenta",
}
GANTT_WIDTH = 40


def _gantt(trace: SyncTrace) -> Table:
    """The last write as bars: one row per node and phase on one time axis."""
    last = trace.writes[-1]
    span = (
        max(
            (start + duration for node in last.nodes for _, start, duration in node.phases),
            default=0.0,
        )
        or 1.0
    )
    scale = GANTT_WIDTH / span
    chart = Table(
        title=f"timeline of write {last.write_id}: 0 .. {span:.2f} ms", title_justify="left"
    )
    chart.add_column("node", justify="right", no_wrap=True)
    chart.add_column("phase", no_wrap=True, min_width=12)
    chart.add_column("bar", no_wrap=True, min_width=GANTT_WIDTH + 1)
    chart.add_column("start+ms", justify="right", no_wrap=True)
    for node in last.nodes:
        for phase, start, duration in node.phases:
            offset = int(start * scale)
            width = max(1, round(duration * scale))
            bar = Text(" " * offset)
            bar.append("█" * min(width, GANTT_WIDTH - offset + 1), style=PHASE_STYLE[phase.value])
            chart.add_row(str(node.node_id), phase.value, bar, f"{start:.2f}+{duration:.2f}")
    return chart


def _render(trace: SyncTrace) -> Group:
    last = trace.writes[-1]
    timeline = Table(
        title=f"write {last.write_id} ({trace.size} B, level {trace.level}, "
        f"{trace.coupling}, {trace.durability}): {last.total_ms:.2f} ms",
        title_justify="left",
    )
    timeline.add_column("node", justify="right")
    for phase in PHASE_ORDER:
        timeline.add_column(f"{phase.value}\nstart+ms", justify="right")
    for node in last.nodes:
        cells = {p: f"{start:.2f}+{dur:.2f}" for p, start, dur in node.phases}
        mark = "" if node.causal else " (!)"
        timeline.add_row(f"{node.node_id}{mark}", *[cells.get(p, "-") for p in PHASE_ORDER])
    summary = Table(
        title=f"{len(trace.writes)} write(s): commit p50 {trace.commit_p50_ms:.2f} ms, "
        f"p99 {trace.commit_p99_ms:.2f} ms",
        title_justify="left",
    )
    for column in ("phase", "p50 ms", "p99 ms", "max ms", "slowest on", "what it is"):
        summary.add_column(column, justify="left" if column in ("phase", "what it is") else "right")
    for row in trace.phases:
        summary.add_row(
            row.phase.value,
            f"{row.p50_ms:.3f}",
            f"{row.p99_ms:.3f}",
            f"{row.max_ms:.3f}",
            f"node {row.slowest_node}",
            PHASE_HELP[row.phase.value],
        )
    return Group(
        _gantt(trace), Text(""), timeline, Text(""), summary, Text(""), Text(trace.verdict + ".")
    )


def sync_trace_command(
    name: LabNameOption = "default",
    node: LabNodeOption = None,
    path: Annotated[
        str, typer.Option("--path", help="Store path to write (created if missing).")
    ] = "sync-trace.probe",
    size: Annotated[int, typer.Option("--size", help="Bytes per write (max 1 MiB).")] = 4096,
    count: Annotated[int, typer.Option("--count", help="Number of writes to trace.")] = 20,
    level: Annotated[
        str,
        typer.Option(
            "--level",
            help="Commit level: local (this node applied and fsync'd, like pmxcfs) or all "
            "(every member fsync'd).",
        ),
    ] = "local",
    svg: Annotated[
        Path | None,
        typer.Option("--svg", help="Also save the text view (timeline bars included) as SVG."),
    ] = None,
    output_format: OutputFormatOption = OutputFormat.text,
) -> None:
    """Follow config writes through token, multicast, delivery, apply and fsync on every node.

    Needs an embedded lab (`pvectl lab up 3`); `pvectl lab slow-disk N MS` shows where a slow
    disk puts the time.
    """
    trace = sync_trace.run(name, node, path, size, count, level)
    emit(trace, output_format, lambda: _render(trace))
    if svg is not None:
        recorder = Console(record=True, width=140, file=io.StringIO())
        recorder.print(_render(trace))
        try:
            recorder.save_svg(str(svg), title="pvectl sync-trace")
        except OSError as exc:
            raise PvectlError(f"{svg}: {exc.strerror}", ExitCode.CANT_CREATE) from exc


def register(app: typer.Typer) -> None:
    app.command("sync-trace")(sync_trace_command)
