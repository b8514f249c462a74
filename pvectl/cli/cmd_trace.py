"""``pvectl sync-trace``: the journey of a config write, measured on every node."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Group
from rich.table import Table
from rich.text import Text

from pvectl.cli.options import LabNameOption, LabNodeOption, OutputFormatOption
from pvectl.cli.output import OutputFormat, emit
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
    return Group(timeline, Text(""), summary, Text(""), Text(trace.verdict + "."))


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
    output_format: OutputFormatOption = OutputFormat.text,
) -> None:
    """Follow config writes through token, multicast, delivery, apply and fsync on every node.

    Needs an embedded lab (`pvectl lab up 3`); `pvectl lab slow-disk N MS` shows where a slow
    disk puts the time.
    """
    trace = sync_trace.run(name, node, path, size, count, level)
    emit(trace, output_format, lambda: _render(trace))


def register(app: typer.Typer) -> None:
    app.command("sync-trace")(sync_trace_command)
