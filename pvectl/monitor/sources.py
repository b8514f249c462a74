"""Where readings come from: one ``Source`` per node, whatever the target.

- corosync (this machine, a corosync lab node's namespaces, or a host over SSH): the
  status ``pvecm`` shows (``corosync-quorumtool``, ``corosync-cfgtool -s``) plus
  ``corosync-cmapctl -m stats``;
- an embedded lab node: its control socket's ``status`` and ``info`` (Totem counters,
  config-store version, the config.db commits of recent writes).

A source raises ``PvectlError`` when its node does not answer; the collector keeps the
last reading and marks it stale. SSH sources share one ``SshSession``: one connection per
host, kept open from one poll to the next and reopened when it breaks.
"""

from __future__ import annotations

import socket
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

from pvectl.corosync_conf import Section
from pvectl.errors import PvectlError
from pvectl.monitor import cmap_stats
from pvectl.monitor.derive import percentile
from pvectl.monitor.model import NodeReading
from pvectl.targets.corosync import CorosyncTarget
from pvectl.targets.hosts import HostSpec
from pvectl.targets.runner import CommandRunner

if TYPE_CHECKING:
    from pvectl.targets.ssh import SshSession  # annotations only: paramiko loads on use


class Source(Protocol):
    node: str  # the label of the node in rows and metrics

    def read(self) -> tuple[NodeReading, Section | None]:
        """A reading, and the node's corosync.conf when it has one."""
        ...


def read_corosync(target: CorosyncTarget, runner: CommandRunner) -> NodeReading:
    status = target.status()
    stats = runner.run(["corosync-cmapctl", "-m", "stats"], timeout=30)
    return cmap_stats.reading(status, stats.stdout if stats.returncode == 0 else "")


class CorosyncSource:
    """A node running corosync, its tools run by ``runner`` (local, namespaced or SSH)."""

    def __init__(self, node: str, runner: CommandRunner) -> None:
        self.node = node
        self.runner = runner
        self._config: Section | None = None
        self._config_read = False

    def read(self) -> tuple[NodeReading, Section | None]:
        connect = getattr(self.runner, "connect", None)
        if connect is not None:
            connect()  # connection errors first, naming the host
        target = CorosyncTarget(runner=self.runner)
        reading = read_corosync(target, self.runner)
        if not self._config_read:  # the configuration changes rarely: read it once
            try:
                self._config = target.config()
            except PvectlError:
                self._config = None
            self._config_read = True
        return replace(reading, status=replace(reading.status, source=self.runner.describe)), (
            self._config
        )


def embedded_reading(status_: Any, info: dict[str, Any]) -> NodeReading:
    """An embedded node's ``info`` counters as a reading (its Totem has no knet links)."""
    stats = info.get("stats") or {}
    fsync_ms = [float(v) for v in info.get("fsync_ms") or ()]
    p99 = percentile(fsync_ms, 0.99)
    return NodeReading(
        status=status_,
        tokens_rx_total=_opt_int(stats.get("tokens")),
        retransmits_total=_opt_int(stats.get("frames_retransmitted")),
        membership_changes_total=_opt_int(stats.get("rings_formed")),
        config_writes_total=_opt_int(info.get("store_version")),
        fsync_p99_s=p99 / 1000 if p99 is not None else None,
        uptime_s=float(info["uptime_s"]) if "uptime_s" in info else None,
    )


def _opt_int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) else None


class LabNodeSource:
    """One node of a pvectl lab, whichever engine runs it."""

    def __init__(self, lab: str, node_id: int, node: str) -> None:
        self.lab = lab
        self.node_id = node_id
        self.node = node
        self._corosync: CorosyncSource | None = None

    def read(self) -> tuple[NodeReading, Section | None]:
        from pvectl.lab.target import EmbeddedNodeTarget, LabTarget

        inner = LabTarget(self.lab, self.node_id).inner
        if isinstance(inner, EmbeddedNodeTarget):
            return embedded_reading(inner.status(), inner.info()), None
        if isinstance(inner, CorosyncTarget):
            if self._corosync is None:
                self._corosync = CorosyncSource(self.node, inner.runner)
            return self._corosync.read()
        raise PvectlError(f"lab {self.lab!r}: node {self.node_id} has no readable target")


def lab_sources(lab: str) -> list[Source]:
    from pvectl.lab.target import lab_nodes

    return [LabNodeSource(lab, node_id, name) for node_id, name in lab_nodes(lab)]


def host_sources(session: SshSession, hosts: list[HostSpec]) -> list[Source]:
    return [CorosyncSource(spec.text, session.runner(spec)) for spec in hosts]


def local_source() -> Source:
    from pvectl.targets.runner import LocalRunner

    return CorosyncSource(socket.gethostname(), LocalRunner())
