"""``pvectl qdevice ...``: serve a qnetd, list its clients, manage its certificates, and
show the local node's qdevice. Thin: pvectl.node.qnetd and pvectl.targets do the work."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from pvectl.cli.options import (
    AcceptNewHostKeyOption,
    ClusterNameOption,
    ConnectTimeoutOption,
    HostsOption,
    OutputFormatOption,
)
from pvectl.cli.output import OutputFormat, emit
from pvectl.errors import ExitCode
from pvectl.targets.ssh import DEFAULT_CONNECT_TIMEOUT

qdevice_app = typer.Typer(
    help="QDevice: serve a qnetd (the tie-breaker vote), its certificates, local status.",
    no_args_is_help=True,
)
certs_app = typer.Typer(help="Certificates for 'pvectl qdevice serve'.", no_args_is_help=True)
qdevice_app.add_typer(certs_app, name="certs")


class TlsMode(StrEnum):
    on = "on"
    required = "required"
    off = "off"


PortOption = Annotated[
    int, typer.Option("--port", min=1, max=65535, help="TCP port (qnetd's default 5403).")
]
SocketOption = Annotated[
    Path | None,
    typer.Option(
        "--control-socket",
        help="Unix control socket (default $XDG_RUNTIME_DIR/pvectl/qnetd-PORT.sock, "
        "or /run/pvectl/... as root).",
    ),
]


@qdevice_app.command()
def serve(
    port: PortOption = 5403,
    listen: Annotated[
        list[str] | None,
        typer.Option("--listen", help="Address to listen on (repeatable; default: all)."),
    ] = None,
    cert_dir: Annotated[
        Path | None,
        typer.Option(
            "--cert-dir",
            help="Certificate directory; created with a new CA on first serve if empty.",
        ),
    ] = None,
    tls: Annotated[
        TlsMode,
        typer.Option("--tls", help="on: offered (qnetd default), required, or off."),
    ] = TlsMode.on,
    client_cert: Annotated[
        bool,
        typer.Option(
            "--client-cert/--no-client-cert",
            help="Require a client certificate whose CN is the cluster name (qnetd -c).",
        ),
    ] = True,
    control_socket: SocketOption = None,
) -> None:
    """Run a qnetd server that real corosync-qdevice daemons (and pvectl nodes) use.

    Speaks corosync-qnetd's protocol on TCP 5403 with the ffsplit, lms, 2nodelms and test
    algorithms. Runs in the foreground until Ctrl-C / SIGTERM; logs go to stderr.
    """
    from pvectl.node import qnetd

    qnetd.serve(
        port=port,
        listen=list(listen) if listen else None,
        cert_dir=str(cert_dir) if cert_dir else None,
        tls=tls.value,
        require_client_cert=client_cert,
        control_socket=control_socket,
    )


@qdevice_app.command()
def clients(
    port: PortOption = 5403,
    control_socket: SocketOption = None,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="As qnetd-tool -lv.")] = True,
    output_format: OutputFormatOption = OutputFormat.text,
) -> None:
    """Clusters and nodes a running 'pvectl qdevice serve' serves (corosync-qnetd-tool -lv)."""
    from pvectl.node.qnetd import query_status
    from pvectl.quorum.qnetd_core import render_qnetd_tool

    result = query_status(port, control_socket)
    emit(result, output_format, lambda: render_qnetd_tool(result, verbose))


@certs_app.command("init")
def certs_init(
    directory: Annotated[Path, typer.Argument(help="Directory to create the CA in.")],
    force: Annotated[bool, typer.Option("--force", help="Replace existing certificates.")] = False,
) -> None:
    """Create a CA and the server certificate (CN "Qnetd Server") in DIRECTORY.

    Then on each node: corosync-qdevice-net-certutil -i -c DIRECTORY/qnetd-cacert.crt
    """
    from pvectl.node.qnetd_certs import init_cert_dir

    certs = init_cert_dir(directory, force=force)
    typer.echo(f"CA certificate:     {certs.ca_cert}  (copy to every node)")
    typer.echo(f"server certificate: {certs.server_cert}")
    typer.echo(f"private keys:       {certs.ca_key}, {certs.server_key} (mode 0600)")


@certs_app.command("sign")
def certs_sign(
    request: Annotated[
        Path,
        typer.Argument(help="A node's qdevice-net-node.crq (corosync-qdevice-net-certutil -r)."),
    ],
    cluster: Annotated[str, typer.Option("--cluster", "-n", help="totem.cluster_name.")],
    cert_dir: Annotated[Path, typer.Option("--cert-dir", help="The server's directory.")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Default DIR/cluster-NAME.crt.")
    ] = None,
) -> None:
    """Sign a cluster certificate request, as corosync-qnetd-certutil -s does.

    Then on that node: corosync-qdevice-net-certutil -M -c cluster-NAME.crt, and copy the
    resulting qdevice-net-node.p12 to the other nodes (corosync-qdevice-net-certutil -m).
    """
    from pvectl.node.qnetd_certs import sign_request

    out = sign_request(cert_dir, request, cluster, output)
    typer.echo(f"cluster certificate: {out}")


@qdevice_app.command()
def status(
    output_format: OutputFormatOption = OutputFormat.text,
    host: HostsOption = None,
    cluster: ClusterNameOption = None,
    accept_new_host_key: AcceptNewHostKeyOption = False,
    connect_timeout: ConnectTimeoutOption = DEFAULT_CONNECT_TIMEOUT,
) -> None:
    """This node's qdevice daemon, from corosync-qdevice-tool -sv (exit 0 connected and
    casting a vote, 2 otherwise, 1 when no daemon runs). With --host: on that node over
    SSH; with several hosts one block per host (exit 1 if a host failed, else 2 if one
    is not casting its vote)."""
    from pvectl.cli.remote import only_result, open_session, remote_hosts
    from pvectl.targets.qdevice_status import local_qdevice_status, render_qdevice_status
    from pvectl.targets.remote import across_hosts
    from pvectl.targets.runner import LocalRunner

    hosts = remote_hosts(host, cluster)
    if len(hosts) > 1:
        with open_session(accept_new_host_key, connect_timeout) as ssh:
            outcomes = across_hosts(ssh, hosts, local_qdevice_status)

        def blocks() -> str:
            return "".join(
                f"== {o.host} ==\n"
                + (render_qdevice_status(o.result) if o.result else f"error: {o.error}\n")
                + "\n"
                for o in outcomes
            )

        emit(outcomes, output_format, blocks)
        if any(o.result is None for o in outcomes):
            raise typer.Exit(int(ExitCode.ERROR))
        voting = all(
            o.result is not None and o.result.state == "Connected" and o.result.casting_vote
            for o in outcomes
        )
        raise typer.Exit(int(ExitCode.OK if voting else ExitCode.NOT_QUORATE))
    if hosts:
        with open_session(accept_new_host_key, connect_timeout) as ssh:
            result = only_result(across_hosts(ssh, hosts, local_qdevice_status)[0])
    else:
        result = local_qdevice_status(LocalRunner())
    emit(result, output_format, lambda: render_qdevice_status(result))
    ok = result.state == "Connected" and result.casting_vote
    raise typer.Exit(int(ExitCode.OK if ok else ExitCode.NOT_QUORATE))


def register(app: typer.Typer) -> None:
    app.add_typer(qdevice_app, name="qdevice")
