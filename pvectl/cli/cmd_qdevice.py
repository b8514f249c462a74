"""``pvectl qdevice ...``: serve a qnetd, list its clients, manage its certificates, and
show the local node's qdevice. Thin: pvectl.node.qdevice.qnetd and pvectl.targets do the work."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from pvectl.cli.helpfmt import PvectlTyper
from pvectl.cli.options import (
    AcceptNewHostKeyOption,
    ClusterNameOption,
    ConnectTimeoutOption,
    HostsOption,
    OutputFormatOption,
)
from pvectl.cli.output import OutputFormat, emit
from pvectl.cli.remote import DEFAULT_CONNECT_TIMEOUT, open_session, remote_hosts
from pvectl.errors import ExitCode, UsageError
from pvectl.progress import Activity, activity

qdevice_app = PvectlTyper(
    help="QDevice: serve a qnetd (the tie-breaker vote), its certificates, local status.",
    no_args_is_help=True,
)
certs_app = PvectlTyper(help="Certificates for 'pvectl qdevice serve'.", no_args_is_help=True)
qdevice_app.add_typer(certs_app, name="certs")


class TlsMode(StrEnum):
    on = "on"
    required = "required"
    off = "off"


PortOption = Annotated[
    int,
    typer.Option(
        "--port", metavar="PORT", min=1, max=65535, help="TCP port (qnetd's default 5403)."
    ),
]
SocketOption = Annotated[
    Path | None,
    typer.Option(
        "--control-socket",
        metavar="PATH",
        help="Unix control socket (default $XDG_RUNTIME_DIR/pvectl/qnetd-PORT.sock, else "
        "/run/pvectl/... as root, else /tmp/pvectl-UID/...). Its directory must be yours "
        "and closed to others (mode 0700), or it is refused (exit 77).",
    ),
]


@qdevice_app.command()
def serve(
    port: PortOption = 5403,
    listen: Annotated[
        list[str] | None,
        typer.Option(
            "--listen", metavar="ADDRESS", help="Address to listen on (repeatable; default: all)."
        ),
    ] = None,
    cert_dir: Annotated[
        Path | None,
        typer.Option(
            "--cert-dir",
            metavar="DIR",
            help="Certificate directory; created with a new CA on first serve if empty.",
        ),
    ] = None,
    tls: Annotated[
        TlsMode | None,
        typer.Option(
            "--tls",
            help="required (the default): every client must STARTTLS (and, with "
            "--client-cert, present its cluster's certificate) before INIT, so no plaintext "
            "client can take a node id; on: TLS offered but optional, corosync-qnetd's "
            "default (a plaintext client may register as any node of any cluster); off: "
            "no TLS.",
            show_default=False,
        ),
    ] = None,
    client_cert: Annotated[
        bool,
        typer.Option(
            "--client-cert/--no-client-cert",
            help="Require a client certificate whose CN is the cluster name (qnetd -c).",
        ),
    ] = True,
    control_socket: SocketOption = None,
    max_clients: Annotated[
        int,
        typer.Option(
            "--max-clients",
            metavar="N",
            min=1,
            help="Connections held at once; more are closed at once and logged "
            "(corosync-qnetd's -m).",
        ),
    ] = 1000,
) -> None:
    """Run a qnetd server that real corosync-qdevice daemons (and pvectl nodes) use.

    Speaks corosync-qnetd's protocol on TCP 5403 with the ffsplit, lms, 2nodelms and test
    algorithms. Runs in the foreground until Ctrl-C / SIGTERM; logs go to stderr.
    """
    from pvectl.node.qdevice import qnetd

    qnetd.serve(
        port=port,
        listen=list(listen) if listen else None,
        cert_dir=str(cert_dir) if cert_dir else None,
        tls=tls.value if tls else None,
        require_client_cert=client_cert,
        control_socket=control_socket,
        max_clients=max_clients,
    )


@qdevice_app.command()
def clients(
    port: PortOption = 5403,
    control_socket: SocketOption = None,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="As qnetd-tool -lv.")] = True,
    output_format: OutputFormatOption = OutputFormat.text,
) -> None:
    """Clusters and nodes a running 'pvectl qdevice serve' serves (corosync-qnetd-tool -lv)."""
    from pvectl.node.qdevice.qnetd import query_status
    from pvectl.quorum.qdevice.server import render_qnetd_tool

    result = query_status(port, control_socket)
    emit(result, output_format, lambda: render_qnetd_tool(result, verbose), kind="qdevice-clients")


@certs_app.command("init")
def certs_init(
    directory: Annotated[
        Path, typer.Argument(metavar="DIR", help="Directory to create the CA in.")
    ],
    force: Annotated[bool, typer.Option("--force", help="Replace existing certificates.")] = False,
) -> None:
    """Create a CA and the server certificate (CN "Qnetd Server") in DIR.

    Then on each node: corosync-qdevice-net-certutil -i -c DIR/qnetd-cacert.crt
    """
    from pvectl.node.qdevice.certs import init_cert_dir

    certs = init_cert_dir(directory, force=force)
    typer.echo(f"CA certificate:     {certs.ca_cert}  (copy to every node)")
    typer.echo(f"server certificate: {certs.server_cert}")
    typer.echo(f"private keys:       {certs.ca_key}, {certs.server_key} (mode 0600)")


@certs_app.command("sign")
def certs_sign(
    request: Annotated[
        Path,
        typer.Argument(
            metavar="REQUEST",
            help="A node's qdevice-net-node.crq (corosync-qdevice-net-certutil -r).",
        ),
    ],
    cluster: Annotated[
        str, typer.Option("--cluster", "-n", metavar="NAME", help="totem.cluster_name.")
    ],
    cert_dir: Annotated[
        Path, typer.Option("--cert-dir", metavar="DIR", help="The server's directory.")
    ],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", metavar="FILE", help="Default DIR/cluster-NAME.crt."),
    ] = None,
) -> None:
    """Sign a cluster certificate request, as corosync-qnetd-certutil -s does.

    Then on that node: corosync-qdevice-net-certutil -M -c cluster-NAME.crt, and copy the
    resulting qdevice-net-node.p12 to the other nodes (corosync-qdevice-net-certutil -m).
    """
    from pvectl.node.qdevice.certs import sign_request

    out = sign_request(cert_dir, request, cluster, output)
    typer.echo(f"cluster certificate: {out}")


class SetupAlgorithm(StrEnum):
    ffsplit = "ffsplit"
    lms = "lms"


class DeviceTls(StrEnum):
    on = "on"
    off = "off"
    required = "required"


DryRunOption = Annotated[
    bool, typer.Option("--dry-run", help="Run the checks and print the plan; change nothing.")
]


@qdevice_app.command()
def setup(
    address: Annotated[
        str, typer.Argument(metavar="ADDRESS", help="The qnetd host's IP address (net.host).")
    ],
    host: HostsOption = None,
    cluster: ClusterNameOption = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Allow an odd node count (algorithm lms) and delete existing qdevice "
            "certificate stores on the nodes.",
        ),
    ] = False,
    algorithm: Annotated[
        SetupAlgorithm | None,
        typer.Option("--algorithm", help="Default: ffsplit for an even node count, lms for odd."),
    ] = None,
    tls: Annotated[
        DeviceTls,
        typer.Option(
            "--tls",
            help="quorum.device.net.tls: required (the nodes get certificates and never "
            "talk to qnetd in plaintext), on (corosync's optional TLS: a node carries on in "
            "plaintext if qnetd offers no TLS), or off.",
        ),
    ] = DeviceTls.required,
    qnetd_user: Annotated[
        str, typer.Option("--qnetd-user", metavar="USER", help="SSH user on the qnetd host.")
    ] = "root",
    qnetd_ssh: Annotated[
        str | None,
        typer.Option(
            "--qnetd-ssh",
            metavar="HOST",
            help="Reach the qnetd host over SSH as this [user@]host[:port] or ~/.ssh/config "
            "alias (default: USER@ADDRESS).",
            show_default=False,
        ),
    ] = None,
    wait: Annotated[
        float,
        typer.Option(
            "--wait", metavar="SECONDS", min=1, help="Seconds to wait for the vote to count."
        ),
    ] = 60.0,
    dry_run: DryRunOption = False,
    accept_new_host_key: AcceptNewHostKeyOption = False,
    connect_timeout: ConnectTimeoutOption = DEFAULT_CONNECT_TIMEOUT,
    output_format: OutputFormatOption = OutputFormat.text,
) -> None:
    """Add a QDevice to a real cluster over SSH, as 'pvecm qdevice setup' does.

    The qnetd host runs the real corosync-qnetd and is reached over SSH. Every guard runs
    before anything changes: all nodes online, one cluster, no device configured, no used
    certificate store, odd node count only with --force, qnetd's TCP 5403 reachable from
    every node. Exit 64 bad usage, 69 a node/qnetd unreachable or no vote after setup,
    78 refused by a guard, 1 a step failed (the message names it).
    """
    from pvectl.cli.qdevice_text import render_change
    from pvectl.targets.hosts import parse_host
    from pvectl.targets.qdevice.setup import setup as run_setup

    hosts = remote_hosts(host, cluster)
    _check_address(address)
    qnetd = parse_host(qnetd_ssh or f"{qnetd_user}@{address}")
    quiet = output_format != OutputFormat.text
    with (
        activity("qdevice setup: surveying the nodes") as shown,
        open_session(accept_new_host_key, connect_timeout) as ssh,
    ):
        change = run_setup(
            ssh,
            hosts,
            qnetd,
            address,
            force=force,
            algorithm=algorithm.value if algorithm else None,
            tls=tls.value,
            dry_run=dry_run,
            wait=wait,
            report=_steps(shown, quiet),
        )
    emit(change, output_format, lambda: render_change(change), kind="qdevice-change")


def _steps(shown: Activity, quiet: bool) -> Callable[[str], None]:
    """Each step's line on stdout (text format), and as the spinner's text on a terminal."""

    def report(line: str) -> None:
        if not quiet:
            typer.echo(line)
        shown.now(f"qdevice: {line}")

    return report


def _check_address(address: str) -> None:
    import ipaddress

    try:
        ipaddress.ip_address(address)
    except ValueError as exc:
        raise UsageError(
            f"ADDRESS {address!r}: give the qnetd host's IP address (as pvecm does)"
        ) from exc


@qdevice_app.command()
def remove(
    host: HostsOption = None,
    cluster: ClusterNameOption = None,
    dry_run: DryRunOption = False,
    accept_new_host_key: AcceptNewHostKeyOption = False,
    connect_timeout: ConnectTimeoutOption = DEFAULT_CONNECT_TIMEOUT,
    output_format: OutputFormatOption = OutputFormat.text,
) -> None:
    """Remove the QDevice from a real cluster over SSH, as 'pvecm qdevice remove' does.

    Stops corosync-qdevice, drops quorum.device (config_version + 1), reloads corosync
    and deletes the nodes' certificate stores.
    """
    from pvectl.cli.qdevice_text import render_change
    from pvectl.targets.qdevice.setup import remove as run_remove

    hosts = remote_hosts(host, cluster)
    quiet = output_format != OutputFormat.text
    with (
        activity("qdevice remove: surveying the nodes") as shown,
        open_session(accept_new_host_key, connect_timeout) as ssh,
    ):
        change = run_remove(ssh, hosts, dry_run=dry_run, report=_steps(shown, quiet))
    emit(change, output_format, lambda: render_change(change), kind="qdevice-change")
    if output_format == OutputFormat.text and not dry_run:
        typer.echo("Removed Qdevice.")


@qdevice_app.command()
def status(
    host: HostsOption = None,
    cluster: ClusterNameOption = None,
    accept_new_host_key: AcceptNewHostKeyOption = False,
    connect_timeout: ConnectTimeoutOption = DEFAULT_CONNECT_TIMEOUT,
    output_format: OutputFormatOption = OutputFormat.text,
) -> None:
    """The qdevice daemon's view (corosync-qdevice-tool -sv), here or on each --host.

    Exit 0 connected and casting a vote everywhere, 2 otherwise, 1 when no daemon runs.
    """
    from pvectl.cli.qdevice_text import render_qdevice_status
    from pvectl.targets.qdevice.status import local_qdevice_status
    from pvectl.targets.runner import LocalRunner

    hosts = remote_hosts(host, cluster)
    if len(hosts) == 1:  # one node: its daemon's own answer, or its error
        from pvectl.cli.remote import only_result
        from pvectl.targets.remote import across_hosts

        with open_session(accept_new_host_key, connect_timeout) as ssh:
            single = only_result(across_hosts(ssh, hosts, local_qdevice_status)[0])
        emit(single, output_format, lambda: render_qdevice_status(single), kind="qdevice-status")
        voting = single.state == "Connected" and single.casting_vote
        raise typer.Exit(int(ExitCode.OK if voting else ExitCode.NOT_QUORATE))
    if hosts:
        from pvectl.cli.qdevice_text import render_remote_status
        from pvectl.targets.qdevice.setup import all_voting, remote_status

        with open_session(accept_new_host_key, connect_timeout) as ssh:
            rows = remote_status(ssh, hosts)
        emit(
            rows,
            output_format,
            lambda: render_remote_status(rows),
            kind="qdevice-status-hosts",
        )
        raise typer.Exit(int(ExitCode.OK if all_voting(rows) else ExitCode.NOT_QUORATE))
    result = local_qdevice_status(LocalRunner())
    emit(result, output_format, lambda: render_qdevice_status(result), kind="qdevice-status")
    ok = result.state == "Connected" and result.casting_vote
    raise typer.Exit(int(ExitCode.OK if ok else ExitCode.NOT_QUORATE))


def register(app: typer.Typer) -> None:
    app.add_typer(qdevice_app, name="qdevice")
