"""``pvectl exporter``: the watch's facts for Prometheus, over HTTP.

A background thread collects every ``--interval`` seconds; a scrape serves the latest
collection, so it never stalls on a dead node. prometheus_client is imported here only.
"""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import threading
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer

from pvectl.cli.monitor_options import FsyncIntervalOption, FsyncProbeOption, open_collector
from pvectl.cli.options import (
    AcceptNewHostKeyOption,
    ClusterNameOption,
    ConnectTimeoutOption,
    HostsOption,
    LabNameOption,
    TargetKind,
    TargetOption,
)
from pvectl.cli.output import stderr_console
from pvectl.cli.remote import DEFAULT_CONNECT_TIMEOUT
from pvectl.errors import ExitCode, PvectlError, UsageError

if TYPE_CHECKING:
    from pvectl.monitor.collect import Collector

DEFAULT_LISTEN = "127.0.0.1:9595"
_LISTEN = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^:\[\]]*)):(?P<port>\d{1,5})$")


def parse_listen(text: str) -> tuple[str, int]:
    """``ADDR:PORT`` (``[v6]:PORT``; an empty ADDR listens on every address)."""
    match = _LISTEN.match(text.strip())
    port = int(match["port"]) if match else 0
    if match is None or not 1 <= port <= 65535:
        raise UsageError(
            f"--listen {text!r}: expected ADDR:PORT, e.g. 127.0.0.1:9595 or [::1]:9595"
        )
    return match["v6"] or match["host"] or "0.0.0.0", port


def _collect_forever(collector: Collector, interval: float, stop: threading.Event) -> None:
    while not stop.wait(interval):
        collector.poll()


def _on_term(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def exporter(
    listen: Annotated[
        str,
        typer.Option(
            "--listen",
            metavar="ADDR:PORT",
            help="Where to serve /metrics ([V6]:PORT for IPv6; :PORT for every address).",
        ),
    ] = DEFAULT_LISTEN,
    target: TargetOption = TargetKind.auto,
    name: LabNameOption = "default",
    host: HostsOption = None,
    cluster: ClusterNameOption = None,
    interval: Annotated[
        float,
        typer.Option(
            "--interval",
            metavar="S",
            min=0.5,
            help="Seconds between collections; scrapes get the latest one.",
        ),
    ] = 5.0,
    fsync_probe: FsyncProbeOption = None,
    fsync_interval: FsyncIntervalOption = 10.0,
    accept_new_host_key: AcceptNewHostKeyOption = False,
    connect_timeout: ConnectTimeoutOption = DEFAULT_CONNECT_TIMEOUT,
) -> None:
    """Serve the cluster's facts as Prometheus metrics (see docs/exporter.md).

    A superset of ha_cluster_exporter's corosync metrics, plus failures
    survivable, split brain, token rotation, retransmits, knet links per peer
    and fsync latency.

    A node that does not answer gives pvectl_up{node=...} 0, not a failed
    scrape.
    """
    from prometheus_client import CollectorRegistry, start_http_server

    from pvectl.cli.exporter_metrics import SnapshotCollector

    address, port = parse_listen(listen)
    collector, session = open_collector(
        target.value,
        name,
        host,
        cluster,
        accept_new_host_key,
        connect_timeout,
        timeout=interval,
        fsync_probe=fsync_probe,
        fsync_interval=fsync_interval,
    )
    stop = threading.Event()
    try:
        first = collector.poll()
        registry = CollectorRegistry(auto_describe=False)
        registry.register(SnapshotCollector(lambda: collector.latest, socket.gethostname()))
        try:
            server, _ = start_http_server(port, address, registry)
        except OSError as exc:
            raise PvectlError(
                f"--listen {listen}: cannot listen: {exc.strerror or exc}", ExitCode.UNAVAILABLE
            ) from exc
        thread = threading.Thread(
            target=_collect_forever, args=(collector, interval, stop), daemon=True
        )
        thread.start()
        signal.signal(signal.SIGTERM, _on_term)
        stderr_console().print(
            f"pvectl exporter: http://{listen}/metrics, cluster {first.cluster!r}, "
            f"{len(first.nodes)} node(s), collected every {interval:g} s",
            markup=False,
        )
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
        server.shutdown()
    finally:
        stop.set()
        collector.close()
        if session is not None:
            session.close()


def register(app: typer.Typer) -> None:
    app.command()(exporter)
