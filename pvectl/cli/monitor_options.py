"""What ``watch`` and ``exporter`` share: their options and which nodes they read."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from pvectl.errors import TargetUnavailable

if TYPE_CHECKING:  # annotations only: the collectors load when watch/exporter run
    from pvectl.monitor.collect import Collector
    from pvectl.monitor.sources import Source
    from pvectl.targets.ssh import SshSession

FsyncProbeOption = Annotated[
    str | None,
    typer.Option(
        "--fsync-probe",
        metavar="DIR",
        help="Also time a 4 KiB write+fdatasync in DIR every --fsync-interval seconds "
        "(rolling p99; off by default).",
        show_default=False,
    ),
]

FsyncIntervalOption = Annotated[
    float,
    typer.Option(
        "--fsync-interval", metavar="S", min=0.1, help="Seconds between fsync probe writes."
    ),
]


def _auto_sources(lab_name: str) -> tuple[list[Source], str]:
    from pvectl.lab import target as lab_target
    from pvectl.lab.resolve import NO_CLUSTER_HINT
    from pvectl.monitor.sources import lab_sources, local_source
    from pvectl.targets import corosync

    if corosync.is_running():
        return [local_source()], ""
    if not lab_target.is_running(lab_name) and lab_name == "default":
        running = lab_target.running_labs()
        lab_name = running[0] if len(running) == 1 else lab_name
    if lab_target.is_running(lab_name):
        return list(lab_sources(lab_name)), lab_name
    raise TargetUnavailable(NO_CLUSTER_HINT)


def open_collector(
    target: str,
    lab_name: str,
    hosts: list[str] | None,
    cluster: str | None,
    accept_new_host_key: bool,
    connect_timeout: float,
    timeout: float,
    fsync_probe: str | None,
    fsync_interval: float,
) -> tuple[Collector, SshSession | None]:
    """The collector over the chosen nodes, and the SSH session it uses (to close)."""
    # deferred for start-up time: the collectors and SSH load only when a command runs
    from pvectl.cli.remote import open_session, remote_hosts
    from pvectl.monitor.collect import Collector
    from pvectl.monitor.fsync_probe import FsyncProbe
    from pvectl.monitor.sources import host_sources, lab_sources, local_source

    specs = remote_hosts(hosts, cluster)
    session: SshSession | None = None
    name = cluster or ""
    if specs:
        session = open_session(accept_new_host_key, connect_timeout)
        sources = host_sources(session, specs)
    elif target == "corosync":
        sources = [local_source()]
    elif target == "lab":
        sources, name = lab_sources(lab_name), lab_name
    else:
        sources, name = _auto_sources(lab_name)
    probe = FsyncProbe(fsync_probe, fsync_interval) if fsync_probe else None
    if probe is not None:
        probe.start()
    return Collector(sources, name, timeout=timeout, probe=probe), session
