"""Pure derivations over readings and snapshots: no clock, no I/O, no set order.

Rates come from two readings of one node and the time between them; the failure margin
from the what-if model of the live configuration; split brain as ``status --host``
defines it (``cluster_views``); events from comparing two consecutive snapshots.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import replace

from pvectl import quorum_conf
from pvectl.corosync_conf import Section
from pvectl.errors import ExitCode, PvectlError
from pvectl.monitor.model import (
    SCHEMA_VERSION,
    ClusterSnapshot,
    Event,
    MemberVotes,
    NodeReading,
    NodeView,
    ProbeReading,
)
from pvectl.quorum import whatif
from pvectl.quorum.partitions import HostView, compare_views
from pvectl.quorum.votequorum import QuorumOptions
from pvectl.results import QuorumStatus


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile (``fraction`` 0.99 for p99); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def _rate(now: int | None, before: int | None, elapsed_s: float | None) -> float | None:
    if now is None or before is None or not elapsed_s or elapsed_s <= 0 or now < before:
        return None  # a restarted daemon starts its counters again: no rate for that step
    return (now - before) / elapsed_s


def token_rotation(
    reading: NodeReading, previous: NodeReading | None, elapsed_s: float | None
) -> float | None:
    """corosync reports its mean token rotation; an embedded node counts tokens, so the
    mean time between two of them is the time between readings over the tokens seen."""
    if reading.token_rotation_s is not None:
        return reading.token_rotation_s
    tokens = reading.tokens_rx_total
    if tokens is None:
        return None
    before = previous.tokens_rx_total if previous is not None else None
    if before is not None and elapsed_s and tokens > before:
        return elapsed_s / (tokens - before)
    if reading.uptime_s and tokens > 0:
        return reading.uptime_s / tokens
    return None


def node_view(
    node: str,
    reading: NodeReading,
    seen_at: float,
    previous: NodeReading | None = None,
    elapsed_s: float | None = None,
) -> NodeView:
    """A fresh row from a reading (and the node's previous one, for rates)."""
    status = reading.status
    latencies = [link.latency_s for link in reading.links if link.latency_s is not None]
    qdevice = status.qdevice
    return NodeView(
        node=node,
        reachable=True,
        stale=False,
        error=None,
        last_seen=seen_at,
        node_id=status.node_id,
        ring_id=str(status.ring_id),
        members=tuple(sorted(m.node_id for m in status.members)),
        member_votes=tuple(
            MemberVotes(m.node_id, m.name, m.votes, m.local)
            for m in sorted(status.members, key=lambda m: m.node_id)
        ),
        quorate=status.quorate,
        total_votes=status.total_votes,
        expected_votes=status.expected_votes,
        highest_expected=status.highest_expected,
        quorum=status.quorum,
        qdevice_votes=(qdevice.votes if qdevice.casting else 0) if qdevice else None,
        qdevice_casting=qdevice.casting if qdevice else None,
        token_rotation_s=token_rotation(reading, previous, elapsed_s),
        token_workload=reading.token_workload,
        retransmits_total=reading.retransmits_total,
        retransmits_per_s=_rate(
            reading.retransmits_total,
            previous.retransmits_total if previous is not None else None,
            elapsed_s,
        ),
        rx_msg_dropped_total=reading.rx_msg_dropped_total,
        membership_changes_total=reading.membership_changes_total,
        token_lost_total=reading.token_lost_total,
        config_writes_total=reading.config_writes_total,
        fsync_p99_s=reading.fsync_p99_s,
        links=reading.links,
        links_down=sum(1 for link in reading.links if not link.connected),
        worst_link_latency_s=max(latencies) if latencies else None,
    )


def stale_view(node: str, last: NodeView | None, error: str) -> NodeView:
    """The node did not answer: its last known values, marked stale, with the reason."""
    if last is None:
        return NodeView(node=node, reachable=False, stale=True, error=error, last_seen=None)
    return replace(last, reachable=False, stale=True, error=error, retransmits_per_s=None)


# --- failure margin -------------------------------------------------------------------------


@functools.lru_cache(maxsize=32)
def _report(options: QuorumOptions) -> whatif.WhatIfReport:
    return whatif.analyse(options)


def margin(report: whatif.WhatIfReport, down: frozenset[int]) -> int:
    """Further node failures always survived when ``down`` are down already (qnetd up)."""
    name_of = {spec.node_id: spec.name for spec in report.nodes}
    down_names = {name_of[n] for n in down if n in name_of}
    rows = [f for f in report.failures if whatif.QNETD not in f.failed]
    if report.exhaustive:
        rows = [f for f in rows if down_names <= set(f.failed)]
    else:  # one representative set per count: only the count matters
        rows = [f for f in rows if len(f.failed) >= len(down_names)]
    baseline = [f for f in rows if len(f.failed) == len(down_names)]
    if not baseline or not all(f.quorate for f in baseline):
        return 0
    best = 0
    for extra in range(1, len(report.nodes) - len(down_names) + 1):
        same = [f for f in rows if len(f.failed) == len(down_names) + extra]
        if same and all(f.quorate for f in same):
            best = extra
        else:
            break
    return best


def failures_survivable(status: QuorumStatus, config: Section | None = None) -> int | None:
    """Node failures the cluster always survives from here, by the what-if model of its
    configuration (corosync.conf when known, else inferred from the status); 0 when not
    quorate; None when the model cannot say (too many unequal nodes)."""
    if not status.quorate:
        return 0
    try:
        options, _ = quorum_conf.options_from_status(status, config)
        report = _report(options)
    except PvectlError:
        return None
    present = {m.node_id for m in status.members}
    down = frozenset(spec.node_id for spec in report.nodes if spec.node_id not in present)
    return margin(report, down)


# --- the cluster as a whole -----------------------------------------------------------------


def snapshot(
    cluster: str,
    at: float,
    views: Sequence[NodeView],
    statuses: Mapping[str, QuorumStatus],
    configs: Mapping[str, Section | None] | None = None,
    previous: ClusterSnapshot | None = None,
    last_change_at: float | None = None,
    watching_since: float | None = None,
    probe: ProbeReading | None = None,
    keep_events: int = 50,
) -> ClusterSnapshot:
    """``statuses``: the nodes that answered this round (stale ones are left out, as a
    host that does not answer is in ``status --host``). ``last_change_at``: the last
    membership change seen before this round."""
    comparison = compare_views(
        [HostView(view.node, statuses.get(view.node), view.error) for view in views]
    )
    quorate_status = [s for s in (statuses.get(v.node) for v in views) if s and s.quorate]
    margins = [
        failures_survivable(s, (configs or {}).get(node))
        for node, s in ((v.node, statuses.get(v.node)) for v in views)
        if s is not None and s.quorate
    ]
    known = [m for m in margins if m is not None]
    survivable = min(known) if known else (0 if statuses and not quorate_status else None)
    draft = ClusterSnapshot(
        schema_version=SCHEMA_VERSION,
        cluster=cluster,
        at=at,
        nodes=tuple(views),
        quorate=bool(quorate_status),
        failures_survivable=survivable,
        split_brain=comparison.split_brain,
        partitions=len(comparison.partitions),
        seconds_since_membership_change=None,
        membership_change_seen=False,
        verdict="",
        fsync_probe=probe,
    )
    new_events = events(previous, draft)
    if any(e.kind == "membership" for e in new_events):
        last_change_at = at
    since = last_change_at if last_change_at is not None else watching_since
    kept = (*(previous.events if previous else ()), *new_events)[-keep_events:]
    return replace(
        draft,
        seconds_since_membership_change=max(0.0, at - since) if since is not None else None,
        membership_change_seen=last_change_at is not None,
        verdict=verdict(draft),
        events=kept,
    )


def verdict(snap: ClusterSnapshot) -> str:
    answering = [v for v in snap.nodes if not v.stale]
    missing = len(snap.nodes) - len(answering)
    tail = f"; {missing} node(s) not answering" if missing else ""
    if not answering:
        return "no node answers" + tail
    if snap.split_brain:
        return "SPLIT BRAIN: two quorate partitions with disjoint members" + tail
    head = "quorate" if snap.quorate else "NOT quorate"
    if snap.partitions > 1:
        head += f", {snap.partitions} partitions"
    survivable = "?" if snap.failures_survivable is None else str(snap.failures_survivable)
    return f"{head}; failures survivable: {survivable}" + tail


def health(snap: ClusterSnapshot) -> ExitCode:
    """``status``'s exit codes: 1 a node did not answer, 2 not quorate (or partitioned),
    0 every node answers, quorate and in agreement."""
    if any(v.stale for v in snap.nodes):
        return ExitCode.ERROR
    if not all(v.quorate for v in snap.nodes) or snap.partitions > 1:
        return ExitCode.NOT_QUORATE
    return ExitCode.OK


# --- events ---------------------------------------------------------------------------------


def _ids(ids: Sequence[int]) -> str:
    return ",".join(str(n) for n in ids) or "none"


def _node_events(at: float, before: NodeView, now: NodeView) -> list[Event]:
    name = now.node
    out: list[Event] = []
    if before.reachable and not now.reachable:
        return [Event(at, name, "reachability", f"{name} not answering: {now.error}")]
    if not now.reachable:
        return []
    if not before.reachable:
        out.append(Event(at, name, "reachability", f"{name} answers again"))
    if before.ring_id is None:
        return out
    if now.ring_id != before.ring_id or now.members != before.members:
        left = sorted(set(before.members) - set(now.members))
        joined = sorted(set(now.members) - set(before.members))
        change = "".join(
            part
            for part in (
                f", left {_ids(left)}" if left else "",
                f", joined {_ids(joined)}" if joined else "",
            )
        )
        out.append(
            Event(
                at,
                name,
                "membership",
                f"{name}: ring {before.ring_id} -> {now.ring_id}, members "
                f"{_ids(now.members)}{change}",
            )
        )
    if now.quorate != before.quorate and now.quorate is not None:
        word = "gained" if now.quorate else "LOST"
        out.append(
            Event(
                at,
                name,
                "quorum",
                f"{name}: quorum {word} ({now.total_votes}/{now.expected_votes} votes, "
                f"quorum {now.quorum})",
            )
        )
    was = {(link.link, link.peer): link.connected for link in before.links}
    for link in now.links:
        old = was.get((link.link, link.peer))
        if old is not None and old != link.connected:
            state = "up" if link.connected else "DOWN"
            out.append(
                Event(at, name, "link", f"{name}: link {link.link} to node {link.peer} {state}")
            )
    if now.qdevice_votes != before.qdevice_votes:
        out.append(
            Event(
                at,
                name,
                "qdevice",
                f"{name}: qdevice votes {_votes(before.qdevice_votes)} -> "
                f"{_votes(now.qdevice_votes)}",
            )
        )
    return out


def _votes(value: int | None) -> str:
    return "none" if value is None else str(value)


def events(previous: ClusterSnapshot | None, current: ClusterSnapshot) -> tuple[Event, ...]:
    """What changed between two snapshots, in node order."""
    if previous is None:
        return ()
    at = current.at
    before = {view.node: view for view in previous.nodes}
    out: list[Event] = []
    for view in current.nodes:
        old = before.get(view.node)
        if old is not None:
            out.extend(_node_events(at, old, view))
    if current.split_brain and not previous.split_brain:
        out.append(Event(at, "", "split-brain", "SPLIT BRAIN: two quorate disjoint partitions"))
    elif previous.split_brain and not current.split_brain:
        out.append(Event(at, "", "split-brain", "split brain over"))
    return tuple(out)
