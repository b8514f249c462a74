"""``pvectl sync-trace``: the journey of a config write, measured on every node.

Thin: pvectl.lab.sync_trace measures, sync_trace_text draws; both are imported when the
command runs (deferred for start-up time).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Annotated

import typer

from pvectl.cli.options import CommitLevel, LabNameOption, LabNodeOption, OutputFormatOption
from pvectl.cli.output import OutputFormat, emit
from pvectl.errors import ExitCode, PvectlError


def sync_trace_command(
    name: LabNameOption = "default",
    node: LabNodeOption = None,
    path: Annotated[
        str,
        typer.Option("--path", metavar="PATH", help="Store path to write (created if missing)."),
    ] = "sync-trace.probe",
    size: Annotated[
        int, typer.Option("--size", metavar="BYTES", help="Bytes per write (max 1 MiB).")
    ] = 4096,
    count: Annotated[
        int, typer.Option("--count", metavar="N", help="Number of writes to trace.")
    ] = 20,
    level: Annotated[
        CommitLevel,
        typer.Option(
            "--level",
            help="Commit level: local (fsync'd here, held by every member) or all "
            "(every member fsync'd).",
        ),
    ] = CommitLevel.local,
    svg: Annotated[
        Path | None,
        typer.Option(
            "--svg",
            metavar="FILE",
            help="Also save the text view (timeline bars included) as SVG.",
        ),
    ] = None,
    settle: Annotated[
        float | None,
        typer.Option(
            "--settle",
            metavar="SECONDS",
            help="Seconds to wait after the last write for every node's fsync and one "
            "operational ring (default: 8.8 x token + 5).",
            min=0,
        ),
    ] = None,
    output_format: OutputFormatOption = OutputFormat.text,
) -> None:
    """Follow config writes through the ring and the disks of every node.

    Each write is timed through the send queue, token, multicast, delivery, apply, fsync
    and commit on every node, with the ring's membership changes on the same time axis.
    Needs an embedded lab (`pvectl lab up 3`); `pvectl lab slow-disk N MS` shows where a slow
    disk puts the time, and with `lab up --coupling coupled` how it stalls the token.
    """
    from rich.console import Console

    from pvectl.cli.sync_trace_text import render
    from pvectl.lab import sync_trace

    trace = sync_trace.run(name, node, path, size, count, level.value, settle)
    emit(trace, output_format, lambda: render(trace), kind="sync-trace")
    if svg is not None:
        recorder = Console(record=True, width=140, file=io.StringIO())
        recorder.print(render(trace))
        try:
            recorder.save_svg(str(svg), title="pvectl sync-trace")
        except OSError as exc:
            raise PvectlError(f"{svg}: {exc.strerror}", ExitCode.CANT_CREATE) from exc


def register(app: typer.Typer) -> None:
    app.command("sync-trace")(sync_trace_command)
