"""The text views of ``pvectl qdevice setup/remove/status``: a change and its plan, one
node's qdevice daemon, several hosts' daemons."""

from __future__ import annotations

from collections.abc import Sequence

from pvectl.targets.qdevice.plan import QdeviceChange
from pvectl.targets.qdevice.setup import RemoteQdeviceStatus
from pvectl.targets.qdevice.status import QdeviceStatus


def render_change(change: QdeviceChange) -> str:
    head = "would do" if change.dry_run else "did"
    lines = [
        f"QDevice {change.action} for cluster {change.cluster!r} "
        f"({', '.join(change.hosts)}); qnetd {change.qnetd or '?'}, algorithm "
        f"{change.algorithm or '?'}; services: {change.service_manager}",
        f"corosync.conf config_version {change.config_version_before} -> "
        f"{change.config_version_after}",
        f"Plan ({head}):" if change.dry_run else "Done:",
    ]
    steps = change.plan if change.dry_run else change.done
    for number, text in enumerate(steps, start=1):
        took = f"  [{change.seconds[number - 1]:.1f} s]" if number <= len(change.seconds) else ""
        lines.append(f"  {number}. {text}{took}")
    if change.votes:
        lines.append("Qdevice column: " + ", ".join(f"{h} {f}" for h, f in change.votes.items()))
    if change.dry_run:
        lines.append("dry run: nothing was changed")
    return "\n".join(lines) + "\n"


def render_remote_status(rows: Sequence[RemoteQdeviceStatus]) -> str:
    out: list[str] = []
    for row in rows:
        out.append(f"== {row.host}: corosync-qdevice {row.service}")
        if row.status is not None:
            s = row.status
            vote = "casting its vote" if s.casting_vote else "NOT casting a vote"
            counted = "counted" if s.device_counted else "not counted"
            out.append(
                f"   state {s.state}, {vote}; qnetd {s.qnetd_host or '?'}, "
                f"algorithm {s.algorithm or '?'}, TLS {s.tls_active or 'No'}"
            )
            out.append(
                f"   Qdevice column {s.votequorum_flags or '-'}, device row votes "
                f"{s.device_votes if s.device_votes is not None else '-'} ({counted})"
            )
        else:
            out.append(f"   {row.error}")
    return "\n".join(out) + "\n"


def render_qdevice_status(status: QdeviceStatus) -> str:
    vote = "casting its vote" if status.casting_vote else "NOT casting a vote"
    lines = [
        f"{'Model:':<22}{status.model}",
        f"{'Node ID:':<22}{status.node_id if status.node_id is not None else '?'}",
        f"{'QNetd host:':<22}{status.qnetd_host or '?'}",
        f"{'Cluster name:':<22}{status.cluster_name or '?'}",
        f"{'Algorithm:':<22}{status.algorithm or '?'}",
        f"{'Tie-breaker:':<22}{status.tie_breaker or '?'}",
        f"{'TLS:':<22}{status.tls or '?'} (active: {status.tls_active or 'No'})",
        f"{'State:':<22}{status.state}",
        f"{'Vote:':<22}{vote}",
        f"{'Ring ID:':<22}{status.ring_id or '?'}",
        f"{'Membership:':<22}{', '.join(map(str, status.membership)) or '-'}",
        f"{'Quorate:':<22}{'?' if status.quorate is None else ('Yes' if status.quorate else 'No')}",
    ]
    if status.votequorum_flags is not None or status.device_votes is not None:
        counted = "counted" if status.device_counted else "not counted"
        lines.append(
            f"{'Votequorum:':<22}{status.votequorum_flags or '?'}, "
            f"device votes {status.device_votes if status.device_votes is not None else '?'}"
            f" ({counted})"
        )
    return "\n".join(lines) + "\n"
