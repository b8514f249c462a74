"""``pvectl quorum what-if``: the failure table and advice for a configuration on paper."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from pvectl.cli.helpfmt import PvectlTyper
from pvectl.cli.options import OutputFormatOption
from pvectl.cli.output import OutputFormat, emit
from pvectl.errors import UsageError

quorum_app = PvectlTyper(
    name="quorum",
    help="Quorum maths offline: what survives which failures, and what to change.",
    no_args_is_help=True,
)


class QdeviceAlgorithm(StrEnum):
    ffsplit = "ffsplit"
    lms = "lms"


@quorum_app.command("what-if")
def what_if(
    nodes: Annotated[
        int | None,
        typer.Option("--nodes", metavar="N", help="Number of nodes (ids 1..N), 1 to 32."),
    ] = None,
    votes: Annotated[
        str | None,
        typer.Option("--votes", metavar="VOTES", help="Votes per node, comma-separated: 1,1,1,2."),
    ] = None,
    two_node: Annotated[bool, typer.Option("--two-node", help="Set quorum.two_node.")] = False,
    qdevice: Annotated[
        QdeviceAlgorithm | None,
        typer.Option("--qdevice", help="Add a QDevice with this algorithm.", case_sensitive=False),
    ] = None,
    last_man_standing: Annotated[
        bool, typer.Option("--last-man-standing", help="Set quorum.last_man_standing.")
    ] = False,
    auto_tie_breaker: Annotated[
        bool, typer.Option("--auto-tie-breaker", help="Set quorum.auto_tie_breaker.")
    ] = False,
    wait_for_all: Annotated[
        bool | None,
        typer.Option("--wait-for-all/--no-wait-for-all", help="Set quorum.wait_for_all."),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            metavar="PATH",
            help="Read nodes and quorum options from this corosync.conf.",
            readable=False,  # our reader maps every failure to its exit code (77 here)
        ),
    ] = None,
    output_format: OutputFormatOption = OutputFormat.text,
) -> None:
    """Which node failures and network splits a cluster survives, and what to change.

    Lists the sets of failed nodes that keep quorum, how many failures are always
    survived and what each network split does, with advice (odd/even node count,
    QDevice ffsplit/lms, two_node).
    """
    # deferred for start-up time: only this command needs the quorum maths and rich
    from pvectl import corosync_conf, quorum_conf
    from pvectl.cli.whatif_text import render
    from pvectl.quorum import whatif

    names: dict[int, str] | None = None
    if config is not None:
        if nodes is not None or votes is not None:
            raise UsageError("--config gives the nodes: do not combine it with --nodes/--votes")
        root = corosync_conf.load(config)
        options = quorum_conf.options_from_config(root, str(config))
        names = {entry.node_id: entry.name for entry in corosync_conf.nodelist(root, str(config))}
        if not options.node_ids:
            raise UsageError(f"{config}: no nodelist: what-if needs the nodes")
    else:
        if nodes is None:
            raise UsageError("give --nodes N (or --config corosync.conf)")
        if not 1 <= nodes <= whatif.MAX_NODES:
            raise UsageError(f"--nodes must be between 1 and {whatif.MAX_NODES}, got {nodes}")
        vote_list = _parse_votes(votes, nodes)
        options = whatif.options_for_nodes(
            nodes,
            vote_list,
            two_node=two_node,
            qdevice=qdevice.value if qdevice else None,
            last_man_standing=last_man_standing,
            auto_tie_breaker=auto_tie_breaker,
            wait_for_all=wait_for_all,
        )
    report = whatif.analyse(options, names)
    emit(report, output_format, lambda: render(report), kind="what-if")


def _parse_votes(text: str | None, nodes: int) -> list[int] | None:
    if text is None:
        return None
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        raise UsageError(f"--votes must be integers separated by commas, got {text!r}") from None
    if len(values) != nodes:
        raise UsageError(f"--votes has {len(values)} values for {nodes} nodes")
    if any(v < 0 for v in values):
        raise UsageError("--votes values must be >= 0")
    return values


def register(app: typer.Typer) -> None:
    app.add_typer(quorum_app, name="quorum")
