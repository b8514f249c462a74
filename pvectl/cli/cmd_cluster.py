"""``status``, ``nodes``, ``expected``: the pvecm mirror. Thin: targets do the work.

With ``--host`` (or ``--cluster``) the corosync target runs on each node over SSH; with
several hosts the answers come side by side and are compared.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Annotated

import typer

from pvectl.cli.options import (
    AcceptNewHostKeyOption,
    ClusterNameOption,
    ConnectTimeoutOption,
    HostsOption,
    LabNameOption,
    LabNodeOption,
    OutputFormatOption,
    TargetKind,
    TargetOption,
)
from pvectl.cli.output import OutputFormat, emit, stdout_console, to_jsonable
from pvectl.cli.remote import DEFAULT_CONNECT_TIMEOUT, only_result, open_session, remote_hosts
from pvectl.errors import ExitCode, UsageError

if TYPE_CHECKING:
    from pvectl.corosync_conf import Section
    from pvectl.results import ExpectedResult, NodeList, QuorumStatus
    from pvectl.targets.ssh import SshRunner

# The targets, the views and rich are imported inside the commands (deferred for start-up
# time): building the command tree for --help must not load paramiko, asyncio or rich.


def _remote_status(runner: SshRunner) -> QuorumStatus:
    from pvectl.targets.remote import corosync_target

    result = corosync_target(runner).status()
    return dataclasses.replace(result, source=runner.describe)


def _remote_status_and_config(runner: SshRunner) -> tuple[QuorumStatus, Section | None]:
    """For --what-if: the node's own corosync.conf describes its cluster, not ours."""
    from pvectl.targets.corosync import CorosyncTarget

    target = CorosyncTarget(runner=runner)
    return dataclasses.replace(target.status(), source=runner.describe), target.config()


def _remote_nodes(runner: SshRunner) -> NodeList:
    from pvectl.targets.remote import corosync_target

    result = corosync_target(runner).nodes()
    return dataclasses.replace(result, source=runner.describe)


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
    host: HostsOption = None,
    cluster: ClusterNameOption = None,
    accept_new_host_key: AcceptNewHostKeyOption = False,
    connect_timeout: ConnectTimeoutOption = DEFAULT_CONNECT_TIMEOUT,
) -> None:
    """Membership, votes, quorum and flags, in `pvecm status` layout.

    Exit status as corosync-quorumtool: 0 quorate, 2 not quorate, 1 error, 64 usage.
    With several hosts: 0 all quorate and in agreement, 2 some host not quorate or the
    views disagree (partitioned), 1 some host could not be asked.
    """
    from pvectl.cli import side_by_side_text
    from pvectl.lab.resolve import resolve_target
    from pvectl.quorum.partitions import HostView, compare_views
    from pvectl.targets.remote import across_hosts

    hosts = remote_hosts(host, cluster)
    if not hosts:
        result = resolve_target(target.value, name, node).status()
        _emit_status(result, output_format, what_if)
        raise typer.Exit(int(ExitCode.OK if result.quorate else ExitCode.NOT_QUORATE))
    if len(hosts) == 1 and what_if:
        with open_session(accept_new_host_key, connect_timeout) as ssh:
            single, config = only_result(across_hosts(ssh, hosts, _remote_status_and_config)[0])
        _status_with_what_if(single, output_format, config)
        raise typer.Exit(int(ExitCode.OK if single.quorate else ExitCode.NOT_QUORATE))
    with open_session(accept_new_host_key, connect_timeout) as ssh:
        outcomes = across_hosts(ssh, hosts, _remote_status)
    if len(outcomes) == 1:
        single = only_result(outcomes[0])
        _emit_status(single, output_format, what_if)
        raise typer.Exit(int(ExitCode.OK if single.quorate else ExitCode.NOT_QUORATE))
    comparison = compare_views([HostView(o.host, o.result, o.error) for o in outcomes])
    emit(
        comparison,
        output_format,
        lambda: side_by_side_text.status_side_by_side(comparison),
        kind="status-hosts",
    )
    if any(o.error is not None for o in outcomes):
        raise typer.Exit(int(ExitCode.ERROR))
    all_quorate = all(v.status is not None and v.status.quorate for v in comparison.views)
    ok = all_quorate and comparison.agree
    raise typer.Exit(int(ExitCode.OK if ok else ExitCode.NOT_QUORATE))


def _emit_status(result: QuorumStatus, output_format: OutputFormat, what_if: bool) -> None:
    from pvectl.cli import pvecm_text

    if what_if:
        _status_with_what_if(result, output_format)
    else:
        emit(result, output_format, lambda: pvecm_text.pvecm_status(result), kind="status")


def _status_with_what_if(
    result: QuorumStatus, output_format: OutputFormat, config: Section | None = None
) -> None:
    from pvectl import corosync_conf, quorum_conf
    from pvectl.cli import pvecm_text, whatif_text
    from pvectl.quorum import whatif

    if config is None and result.source == "corosync":  # the local file: local cluster only
        found = corosync_conf.find_config()
        config = corosync_conf.load(found) if found else None
    options, names = quorum_conf.options_from_status(result, config)
    report = whatif.analyse(options, names)
    if output_format is OutputFormat.text:
        emit(result, output_format, lambda: pvecm_text.pvecm_status(result), kind="status")
        stdout_console().print(whatif_text.render(report))
    else:
        emit(
            {**to_jsonable(result), "what_if": to_jsonable(report)},
            output_format,
            str,
            kind="status",
        )


def nodes(
    output_format: OutputFormatOption = OutputFormat.text,
    target: TargetOption = TargetKind.auto,
    name: LabNameOption = "default",
    node: LabNodeOption = None,
    host: HostsOption = None,
    cluster: ClusterNameOption = None,
    accept_new_host_key: AcceptNewHostKeyOption = False,
    connect_timeout: ConnectTimeoutOption = DEFAULT_CONNECT_TIMEOUT,
) -> None:
    """The member list, as `pvecm nodes` (one block per host with several hosts)."""
    from pvectl.cli import pvecm_text, side_by_side_text
    from pvectl.lab.resolve import resolve_target
    from pvectl.targets.remote import across_hosts

    hosts = remote_hosts(host, cluster)
    if not hosts:
        result = resolve_target(target.value, name, node).nodes()
        emit(result, output_format, lambda: pvecm_text.pvecm_nodes(result), kind="nodes")
        return
    with open_session(accept_new_host_key, connect_timeout) as ssh:
        outcomes = across_hosts(ssh, hosts, _remote_nodes)
    if len(outcomes) == 1:
        single = only_result(outcomes[0])
        emit(single, output_format, lambda: pvecm_text.pvecm_nodes(single), kind="nodes")
        return
    emit(
        outcomes,
        output_format,
        lambda: side_by_side_text.nodes_per_host(outcomes),
        kind="nodes-hosts",
    )
    if any(o.error is not None for o in outcomes):
        raise typer.Exit(int(ExitCode.ERROR))


def expected(
    votes: Annotated[int, typer.Argument(help="New expected votes (integer >= 1).")],
    output_format: OutputFormatOption = OutputFormat.text,
    target: TargetOption = TargetKind.auto,
    name: LabNameOption = "default",
    node: LabNodeOption = None,
    host: HostsOption = None,
    accept_new_host_key: AcceptNewHostKeyOption = False,
    connect_timeout: ConnectTimeoutOption = DEFAULT_CONNECT_TIMEOUT,
) -> None:
    """Set expected votes at runtime (the lone-survivor recovery), with corosync's guards.

    Runtime only: corosync.conf is not changed, and a node that joins later can raise it
    again. Use it only when you know the missing nodes are really down. Takes at most one
    --host: lowering expected votes in two partitions at once would make both quorate.
    """
    from pvectl.lab.resolve import resolve_target
    from pvectl.targets.remote import across_hosts, corosync_target

    if votes < 1:
        raise UsageError(f"expected votes must be an integer >= 1, got {votes}")
    hosts = remote_hosts(host, None)
    if len(hosts) > 1:
        raise UsageError(
            "expected takes one --host: it changes quorum for that node's whole partition, "
            "and doing it in two partitions at once would make both quorate (split-brain)"
        )
    if hosts:
        with open_session(accept_new_host_key, connect_timeout) as ssh:
            outcome = across_hosts(
                ssh, hosts, lambda runner: corosync_target(runner).set_expected(votes)
            )[0]
        only_result(outcome)
        assert outcome.result is not None
        result: ExpectedResult = dataclasses.replace(outcome.result, source=f"ssh:{outcome.host}")
    else:
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
        kind="expected",
    )


def register(app: typer.Typer) -> None:
    app.command()(status)
    app.command()(nodes)
    app.command()(expected)
