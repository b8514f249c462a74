"""Progress for long work, on stderr and only on a terminal.

A script or a pipe sees exactly the lines it saw before (``say``); a person at a terminal
also sees a spinner naming what runs now (``now``), or a bar (``bar``). ``NO_COLOR`` keeps
the spinner, without colour; ``PVECTL_NO_PROGRESS=1`` turns it off.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["Activity", "Bar", "activity", "bar", "enabled"]


def stderr_console() -> Console:
    """The console for everything pvectl says on stderr (progress, warnings, errors)."""
    from rich.console import Console  # deferred for start-up time

    return Console(
        stderr=True,
        no_color="NO_COLOR" in os.environ,
        highlight=False,
        soft_wrap=True,
        emoji=False,
    )


def enabled() -> bool:
    """Progress is drawn only when stderr is a terminal a person watches."""
    if os.environ.get("PVECTL_NO_PROGRESS", "") not in ("", "0"):
        return False
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class Activity:
    """What a long command reports: lines that stay (``say``) and the step running now
    (``now``, shown only on a terminal). Thread-safe: engines run in parallel."""

    def __init__(self, status: Any | None, console: Any | None) -> None:
        self._status = status
        self._console = console
        self._lock = threading.Lock()

    def say(self, message: str) -> None:
        with self._lock:
            if self._console is not None:
                self._console.print(message, markup=False, highlight=False)
            else:
                sys.stderr.write(message + "\n")
                sys.stderr.flush()

    def now(self, message: str) -> None:
        if self._status is None:
            return
        from rich.text import Text

        with self._lock:
            self._status.update(Text(message))


@contextmanager
def activity(title: str) -> Iterator[Activity]:
    """A spinner titled ``title`` while the block runs (terminal only)."""
    if not enabled():
        yield Activity(None, None)
        return
    from rich.text import Text

    console = stderr_console()
    with console.status(Text(title), spinner="dots") as status:
        yield Activity(status, console)


class Bar:
    """A progress bar's handle: ``advance`` it, and ``echo`` result lines to stdout."""

    def __init__(self, progress: Any | None, task: Any | None) -> None:
        self._progress = progress
        self._task = task

    def advance(self, n: int = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, n)

    def echo(self, line: str) -> None:
        """A line for stdout; above the bar when both are the same terminal."""
        if self._progress is not None and sys.stdout.isatty():
            self._progress.console.print(line, markup=False, highlight=False)
            return
        sys.stdout.write(line + "\n")


@contextmanager
def bar(title: str, total: int) -> Iterator[Bar]:
    """A progress bar over ``total`` items on stderr (terminal only)."""
    if not enabled():
        yield Bar(None, None)
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=stderr_console(),
        transient=True,
        redirect_stdout=False,
        redirect_stderr=False,
    ) as progress:
        yield Bar(progress, progress.add_task(title, total=total))
