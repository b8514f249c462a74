"""``status``, ``nodes``, ``expected``: the pvecm mirror. Thin: targets do the work."""

from __future__ import annotations

from typing import Annotated

import typer

from pvectl import corosync_conf
from pvectl.cli import pvecm_text, whatif_text
from pvectl.cli.options import (
    LabNameOption,
    LabNodeOption,
    OutputFormatOption,
    TargetKind,
    TargetOption,
)
from pvectl.cli.output import OutputFormat, emit, stdout_console, to_jsonable
from pvectl.errors import ExitCode, UsageError
from pvectl.quorum import whatif
from pvectl.results import QuorumStatus
from pvectl.targets.resolve import resolve_target


def status(
    output_format: OutputFormatOption = OutputFormat.text,
    target: TargetOption = TargetKind.auto,
    name: LabNameOption = "default",
    node: LabNodeOption = None,
    what_if: Annotated[
        bool,
        typer.Option(
            "--what-if",
            help="Also show which node failures keep quorum, the failures always survived, "
            "what splits do, and advice (JSON: a 'what_if' key).",
        ),
    ] = False,
) -> None:
    """Membership, votes, quorum and flags, in `pvecm status` layout.

    Exit status as corosync-quorumtool: 0 quorate, 2 not quorate, 1 error, 64 usage.
    """
    result = resolve_target(target.value, name, node).status()
    if what_if:
        _status_with_what_if(result, output_format)
    else:
        emit(result, output_format, lambda: pvecm_text.pvecm_status(result))
    raise typer.Exit(int(ExitCode.OK if result.quorate else ExitCode.NOT_QUORATE))


def _status_with_what_if(result: QuorumStatus, output_format: OutputFormat) -> None:
    config = None
    if result.source == "corosync":  # the local file describes the local cluster only
        found = corosync_conf.find_config()
        config = corosync_conf.load(found) if found else None
    options, names = whatif.options_from_status(result, config)
    report = whatif.analyse(options, names)
    if output_format is OutputFormat.text:
        emit(result, output_format, lambda: pvecm_text.pvecm_status(result))
        stdout_console().print(whatif_text.render(report))
    else:
        emit({**to_jsonable(result), "what_if": to_jsonable(report)}, output_format, str)


def nodes(
    output_format: OutputFormatOption = OutputFormat.text,
    target: TargetOption = TargetKind.auto,
    name: LabNameOption = "default",
    node: LabNodeOption = None,
) -> None:
    """The member list, as `pvecm nodes`."""
    result = resolve_target(target.value, name, node).nodes()
    emit(result, output_format, lambda: pvecm_text.pvecm_nodes(result))


def expected(
    votes: Annotated[int, typer.Argument(help="New expected votes (integer >= 1).")],
    output_format: OutputFormatOption = OutputFormat.text,
    target: TargetOption = TargetKind.auto,
    name: LabNameOption = "default",
    node: LabNodeOption = None,
) -> None:
    """Set expected votes at runtime (the lone-survivor recovery), with corosync's guards.

    Runtime only: corosync.conf is not changed, and a node that joins later can raise it
    again. Use it only when you know the missing nodes are really down.
    """
    if votes < 1:
        raise UsageError(f"expected votes must be an integer >= 1, got {votes}")
    result = resolve_target(target.value, name, node).set_expected(votes)
    emit(
        result,
        output_format,
        lambda: (
            f"Expected votes set to {result.requested} (was {result.previous_expected}); "
            f"quorum is now {result.quorum_after}, "
            f"{'quorate' if result.quorate_after else 'NOT quorate'}.\n"
            + "".join(f"warning: {w}\n" for w in result.warnings)
        ),
    )


def register(app: typer.Typer) -> None:
    app.command()(status)
    app.command()(nodes)
    app.command()(expected)
