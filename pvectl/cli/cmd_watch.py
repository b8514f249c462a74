"""``pvectl watch``: the cluster over time, on a live terminal dashboard.

Thin: ``pvectl.monitor`` collects and derives; this runs the loop, draws the frame and
reads the ``q`` key. rich.live is imported only here, when the command runs.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated

import typer

from pvectl.cli.monitor_options import FsyncIntervalOption, FsyncProbeOption, open_collector
from pvectl.cli.options import (
    AcceptNewHostKeyOption,
    ClusterNameOption,
    ConnectTimeoutOption,
    HostsOption,
    LabNameOption,
    OutputFormatOption,
    TargetKind,
    TargetOption,
)
from pvectl.cli.output import OutputFormat, emit, stdout_console
from pvectl.cli.remote import DEFAULT_CONNECT_TIMEOUT

if TYPE_CHECKING:
    from pvectl.monitor.collect import Collector


@contextlib.contextmanager
def _keys() -> Iterator[int | None]:
    """stdin in cbreak mode (keys arrive one by one, unechoed), or None when not a TTY."""
    if not sys.stdin.isatty():
        yield None
        return
    import termios
    import tty

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        yield fd
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _wait_for_quit(fd: int | None, seconds: float) -> bool:
    """Sleep up to ``seconds``; True when ``q`` was pressed."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if fd is None:
            time.sleep(left)
            return False
        ready, _, _ = select.select([fd], [], [], left)
        if ready and os.read(fd, 1) in (b"q", b"Q"):
            return True
    return False


def _live(collector: Collector, interval: float) -> None:
    from rich.live import Live

    from pvectl.cli import watch_text  # deferred for start-up time, as rich.live below

    console = stdout_console()
    with _keys() as fd:
        first = collector.poll()
        with Live(
            watch_text.render(first, console.size.height),
            console=console,
            screen=True,
            auto_refresh=False,
        ) as live:
            while not _wait_for_quit(fd, interval):
                snap = collector.poll()
                live.update(watch_text.render(snap, console.size.height), refresh=True)


def watch(
    target: TargetOption = TargetKind.auto,
    name: LabNameOption = "default",
    host: HostsOption = None,
    cluster: ClusterNameOption = None,
    interval: Annotated[
        float,
        typer.Option("--interval", metavar="S", min=0.2, help="Seconds between frames."),
    ] = 2.0,
    once: Annotated[
        bool,
        typer.Option("--once", help="Print one frame and exit with status's exit codes (0, 1, 2)."),
    ] = False,
    output_format: OutputFormatOption = OutputFormat.text,
    fsync_probe: FsyncProbeOption = None,
    fsync_interval: FsyncIntervalOption = 10.0,
    accept_new_host_key: AcceptNewHostKeyOption = False,
    connect_timeout: ConnectTimeoutOption = DEFAULT_CONNECT_TIMEOUT,
) -> None:
    """Watch the cluster live: one row per node, the verdict, and an event log.

    Rows: ring id, members, quorate, votes/expected/quorum, qdevice votes,
    token rotation, retransmits per second, worst link latency (or links down).

    A node that stops answering keeps its last values, marked STALE.

    Press q to quit.

    With --once: one frame (text, json or yaml) and the exit codes of status:

    0 every node answers, is quorate and in agreement; 2 not quorate or
    partitioned; 1 a node did not answer.
    """
    from pvectl.cli import watch_text  # deferred for start-up time
    from pvectl.monitor import derive

    collector, session = open_collector(
        target.value,
        name,
        host,
        cluster,
        accept_new_host_key,
        connect_timeout,
        timeout=max(interval, connect_timeout) if once else interval,
        fsync_probe=fsync_probe,
        fsync_interval=fsync_interval,
    )
    try:
        if once:
            snap = collector.poll()
            emit(snap, output_format, lambda: watch_text.render(snap, 24), kind="watch")
            raise typer.Exit(int(derive.health(snap)))
        with contextlib.suppress(KeyboardInterrupt):
            _live(collector, interval)
    finally:
        collector.close()
        if session is not None:
            session.close()


def register(app: typer.Typer) -> None:
    app.command()(watch)
