"""A ``ClusterSnapshot`` as Prometheus metric families (prometheus_client does the text).

Names follow Prometheus conventions: ``pvectl_`` prefix, base units (seconds), ``_total``
for counters, labels ``cluster``, ``node`` (the node that reports), ``peer`` and ``link``.
A node that does not answer exports ``pvectl_up 0`` and nothing else: its last values
are not passed off as current. docs/exporter.md lists every metric.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pvectl.monitor.model import ClusterSnapshot, NodeView

NODE = ["cluster", "node"]
LINK = ["cluster", "node", "peer", "link"]


def _gauge(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels)


def families(snap: ClusterSnapshot, exporter_node: str = "") -> list[Metric]:
    c = snap.cluster
    up = _gauge("pvectl_up", "1 if the node answered the last collection, else 0.", NODE)
    seen = _gauge(
        "pvectl_last_seen_timestamp_seconds", "When the node last answered (Unix time).", NODE
    )
    quorate = _gauge("pvectl_quorate", "1 if the node's partition is quorate.", NODE)
    votes = _gauge(
        "pvectl_quorum_votes",
        "Votequorum votes as the node sees them, by type "
        "(expected_votes, highest_expected, total_votes, quorum).",
        [*NODE, "type"],
    )
    member_votes = _gauge(
        "pvectl_member_votes",
        "Votes of each member in the node's membership.",
        [*NODE, "member", "member_id", "local"],
    )
    members = _gauge("pvectl_members", "Members in the node's current ring.", NODE)
    ring = _gauge("pvectl_ring_info", "The node's current ring id (value 1).", [*NODE, "ring_id"])
    qdevice = _gauge("pvectl_qdevice_votes", "Votes the quorum device casts now.", NODE)
    rotation = _gauge(
        "pvectl_token_rotation_seconds", "Mean token rotation time (mtt_rx_token).", NODE
    )
    workload = _gauge(
        "pvectl_token_workload", "corosync's average token workload (avg_token_workload).", NODE
    )
    fsync = _gauge(
        "pvectl_fsync_p99_seconds",
        "p99 of recent fsync latencies: source=store the node's config.db commits "
        "(embedded lab), source=probe pvectl's own fsync probe.",
        [*NODE, "source"],
    )
    link_up = _gauge("pvectl_link_up", "1 if the knet link to the peer is connected.", LINK)
    latency = _gauge(
        "pvectl_link_latency_seconds", "knet's average latency of the link to the peer.", LINK
    )
    links = _gauge(
        "pvectl_links",
        "1 if every peer is connected on this link of the node, 0 if any is not.",
        [*NODE, "link"],
    )
    link_errors = _gauge(
        "pvectl_link_errors", "Links of the node with at least one peer not connected.", NODE
    )
    counters = {
        "retransmits": ("Totem messages retransmitted (mcast_retx).", "retransmits_total"),
        "rx_msg_dropped": ("Totem messages dropped on receive.", "rx_msg_dropped_total"),
        "membership_changes": (
            "Rings the node entered (operational_entered): membership changes.",
            "membership_changes_total",
        ),
        "token_lost": ("Tokens lost (token timeouts), all states.", "token_lost_total"),
        "config_writes": ("Config-store writes applied (embedded lab).", "config_writes_total"),
    }
    counter_families = {
        key: CounterMetricFamily(f"pvectl_{key}", doc, labels=NODE)
        for key, (doc, _) in counters.items()
    }
    link_downs = CounterMetricFamily(
        "pvectl_link_down_transitions", "Times knet saw the link go down.", labels=LINK
    )
    for view in snap.nodes:
        labels = [c, view.node]
        up.add_metric(labels, 0.0 if view.stale else 1.0)
        if view.last_seen is not None:
            seen.add_metric(labels, view.last_seen)
        if view.stale:
            continue
        _node(view, labels, quorate, votes, member_votes, members, ring, qdevice)
        if view.token_rotation_s is not None:
            rotation.add_metric(labels, view.token_rotation_s)
        if view.token_workload is not None:
            workload.add_metric(labels, float(view.token_workload))
        if view.fsync_p99_s is not None:
            fsync.add_metric([*labels, "store"], view.fsync_p99_s)
        for key, (_, field) in counters.items():
            value = getattr(view, field)
            if value is not None:
                counter_families[key].add_metric(labels, float(value))
        faulty: dict[int, bool] = {}
        for link in view.links:
            link_labels = [*labels, str(link.peer), str(link.link)]
            link_up.add_metric(link_labels, 1.0 if link.connected else 0.0)
            if link.latency_s is not None:
                latency.add_metric(link_labels, link.latency_s)
            if link.down_count is not None:
                link_downs.add_metric(link_labels, float(link.down_count))
            faulty[link.link] = faulty.get(link.link, False) or not link.connected
        for number, bad in sorted(faulty.items()):
            links.add_metric([*labels, str(number)], 0.0 if bad else 1.0)
        if view.links:
            link_errors.add_metric(labels, float(sum(faulty.values())))
    if snap.fsync_probe is not None and snap.fsync_probe.p99_s is not None:
        fsync.add_metric([c, exporter_node, "probe"], snap.fsync_probe.p99_s)
    cluster = _cluster(snap)
    return [
        up,
        seen,
        quorate,
        votes,
        member_votes,
        members,
        ring,
        qdevice,
        rotation,
        workload,
        fsync,
        link_up,
        latency,
        links,
        link_errors,
        *counter_families.values(),
        link_downs,
        *cluster,
    ]


def _node(
    view: NodeView,
    labels: list[str],
    quorate: GaugeMetricFamily,
    votes: GaugeMetricFamily,
    member_votes: GaugeMetricFamily,
    members: GaugeMetricFamily,
    ring: GaugeMetricFamily,
    qdevice: GaugeMetricFamily,
) -> None:
    quorate.add_metric(labels, 1.0 if view.quorate else 0.0)
    for kind in ("expected_votes", "highest_expected", "total_votes", "quorum"):
        value = getattr(view, kind)
        if value is not None:
            votes.add_metric([*labels, kind], float(value))
    for member in view.member_votes:
        member_votes.add_metric(
            [*labels, member.name, str(member.node_id), str(member.local).lower()],
            float(member.votes),
        )
    members.add_metric(labels, float(len(view.members)))
    if view.ring_id is not None:
        ring.add_metric([*labels, view.ring_id], 1.0)
    if view.qdevice_votes is not None:
        qdevice.add_metric(labels, float(view.qdevice_votes))


def _cluster(snap: ClusterSnapshot) -> list[GaugeMetricFamily]:
    c = [snap.cluster]
    quorate = _gauge("pvectl_cluster_quorate", "1 if some answering node is quorate.", ["cluster"])
    quorate.add_metric(c, 1.0 if snap.quorate else 0.0)
    margin = _gauge(
        "pvectl_failures_survivable",
        "Further node failures the cluster always survives (what-if model).",
        ["cluster"],
    )
    if snap.failures_survivable is not None:
        margin.add_metric(c, float(snap.failures_survivable))
    split = _gauge(
        "pvectl_split_brain", "1 if two quorate partitions have disjoint members.", ["cluster"]
    )
    split.add_metric(c, 1.0 if snap.split_brain else 0.0)
    parts = _gauge(
        "pvectl_partitions", "Distinct views (ring and members) among nodes.", ["cluster"]
    )
    parts.add_metric(c, float(snap.partitions))
    changed = _gauge(
        "pvectl_last_membership_change_timestamp_seconds",
        "When the exporter last saw a membership change (absent until it sees one).",
        ["cluster"],
    )
    if snap.membership_change_seen and snap.seconds_since_membership_change is not None:
        changed.add_metric(c, snap.at - snap.seconds_since_membership_change)
    collected = _gauge(
        "pvectl_collection_timestamp_seconds", "When the cached collection was made.", ["cluster"]
    )
    collected.add_metric(c, snap.at)
    return [quorate, margin, split, parts, changed, collected]


class SnapshotCollector(Collector):
    """Serves the latest cached snapshot: a scrape never waits for a node."""

    def __init__(self, latest: Callable[[], ClusterSnapshot | None], exporter_node: str) -> None:
        self.latest = latest
        self.exporter_node = exporter_node

    def collect(self) -> Iterator[Metric]:
        snap = self.latest()
        if snap is not None:
            yield from families(snap, self.exporter_node)

    def describe(self) -> Iterator[Metric]:
        return iter(())
