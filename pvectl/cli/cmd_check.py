"""``pvectl check``: a homelab health report. Thin: facts and rules live in pvectl/check/."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

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
from pvectl.cli.output import OutputFormat, emit
from pvectl.cli.remote import DEFAULT_CONNECT_TIMEOUT, open_session, remote_hosts

if TYPE_CHECKING:
    from rich.console import RenderableType

    from pvectl.check.rules import CheckReport, NodeFacts
    from pvectl.targets.runner import CommandRunner
    from pvectl.targets.ssh import SshRunner

# rich, the checks and the targets are imported inside the functions (deferred for
# start-up time: building the command tree must not load them).
_STYLE = {"ok": "green", "warning": "yellow", "critical": "bold red"}


def report_text(report: CheckReport) -> RenderableType:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("severity")
    table.add_column("check")
    table.add_column("host")
    table.add_column("finding / advice", overflow="fold")
    for finding in report.findings:
        table.add_row(
            Text(finding.severity.value.upper(), style=_STYLE[finding.severity.value]),
            finding.check,
            finding.host,
            Text(finding.message) + Text("\n-> " + finding.advice, style="dim"),
        )
    summary = Text(
        f"\nworst: {report.worst.value} (exit {report.exit_code}); "
        f"checked: {', '.join(report.hosts)}",
        style=_STYLE[report.worst.value],
    )
    return Group(table, summary)


def check(
    output_format: OutputFormatOption = OutputFormat.text,
    target: TargetOption = TargetKind.auto,
    name: LabNameOption = "default",
    host: HostsOption = None,
    cluster: ClusterNameOption = None,
    accept_new_host_key: AcceptNewHostKeyOption = False,
    connect_timeout: ConnectTimeoutOption = DEFAULT_CONNECT_TIMEOUT,
    fsync: Annotated[
        bool, typer.Option("--fsync/--no-fsync", help="Measure each node's system-disk fsync.")
    ] = True,
    fsync_dir: Annotated[
        str | None,
        typer.Option(
            "--fsync-dir",
            metavar="DIR",
            help="Directory to measure fsync in (default: /var/lib/pve-cluster, else "
            "/var/lib/corosync, else /var/tmp).",
            show_default=False,
        ),
    ] = None,
    fsync_seconds: Annotated[
        float,
        typer.Option(
            "--fsync-seconds",
            metavar="SECONDS",
            min=0.05,
            max=60,
            help="Seconds per durable-write loop (fsync, fdatasync, O_DSYNC: three loops).",
        ),
    ] = 1.0,
) -> None:
    """Health report: quorum, votes, token, links, latency and disk, with advice.

    Checks quorum, node count, expected votes, the token timeout, links, latency and
    fsync. Each finding has a severity and one line of advice. Exit 0 all ok, 1 worst is
    a warning, 2 something is critical (an unreachable node counts as critical). With
    --target lab (or auto and no corosync here) every running node of the lab is checked.
    """
    from pvectl.check.facts import gather, gather_lab
    from pvectl.check.rules import NodeFacts, evaluate
    from pvectl.errors import TargetUnavailable
    from pvectl.lab.resolve import choose
    from pvectl.lab.target import running_labs
    from pvectl.targets.remote import across_hosts, corosync_target
    from pvectl.targets.runner import LocalRunner

    hosts = remote_hosts(host, cluster)

    def facts_of(runner: CommandRunner, label: str) -> NodeFacts:
        return gather(
            runner,
            label,
            lambda: corosync_target(runner).status(),
            fsync=fsync,
            fsync_dir=fsync_dir,
            fsync_seconds=fsync_seconds,
        )

    source = ("ssh", "")
    if not hosts:
        try:
            source = choose(target.value, name)
        except TargetUnavailable:
            if target is not TargetKind.auto or running_labs():
                raise
            source = ("corosync", "")  # nothing runs: the local check says what is missing
    if source[0] == "lab":
        facts = gather_lab(source[1], fsync=fsync, fsync_dir=fsync_dir, fsync_seconds=fsync_seconds)
    elif not hosts:
        facts = [facts_of(LocalRunner(), "local")]
    else:
        with open_session(accept_new_host_key, connect_timeout) as ssh:

            def remote(runner: SshRunner) -> NodeFacts:
                return facts_of(runner, runner.spec.text)

            outcomes = across_hosts(ssh, hosts, remote)
        facts = [o.result or NodeFacts(host=o.host, error=o.error) for o in outcomes]
    report = evaluate(facts)
    emit(report, output_format, lambda: report_text(report), kind="check")
    raise typer.Exit(report.exit_code)


def register(app: typer.Typer) -> None:
    app.command()(check)
