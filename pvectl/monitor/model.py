"""The facts a watch or a scrape is made of: frozen, JSON-able, one schema for every target."""

from __future__ import annotations

from dataclasses import dataclass

from pvectl.results import QuorumStatus

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class LinkReading:
    """One knet link to one peer, as the local node sees it."""

    link: int
    peer: int  # the peer's node id
    connected: bool
    latency_s: float | None = None  # knet's running average
    down_count: int | None = None  # times knet saw this link go down


@dataclass(frozen=True)
class NodeReading:
    """What one node reported at one moment; counters are totals since it started.

    ``None`` means the target does not report that fact (an embedded node has no knet).
    """

    status: QuorumStatus
    token_rotation_s: float | None = None  # corosync's mtt_rx_token
    token_workload: int | None = None  # corosync's avg_token_workload
    tokens_rx_total: int | None = None  # embedded: tokens received (rotation from deltas)
    retransmits_total: int | None = None
    rx_msg_dropped_total: int | None = None
    membership_changes_total: int | None = None  # rings entered (operational_entered)
    token_lost_total: int | None = None
    config_writes_total: int | None = None  # embedded: config-store version
    fsync_p99_s: float | None = None  # embedded: config.db commits of recent writes
    uptime_s: float | None = None  # embedded: for a first token rotation
    links: tuple[LinkReading, ...] = ()


@dataclass(frozen=True)
class MemberVotes:
    node_id: int
    name: str
    votes: int
    local: bool


@dataclass(frozen=True)
class NodeView:
    """One dashboard row / one ``node`` label: the latest reading, or the last known one
    marked stale with why it is stale."""

    node: str
    reachable: bool
    stale: bool
    error: str | None
    last_seen: float | None  # wall-clock time of the reading shown
    node_id: int | None = None
    ring_id: str | None = None
    members: tuple[int, ...] = ()
    member_votes: tuple[MemberVotes, ...] = ()
    quorate: bool | None = None
    total_votes: int | None = None
    expected_votes: int | None = None
    highest_expected: int | None = None
    quorum: int | None = None
    qdevice_votes: int | None = None  # None: no quorum device
    qdevice_casting: bool | None = None
    token_rotation_s: float | None = None
    token_workload: int | None = None
    retransmits_total: int | None = None
    retransmits_per_s: float | None = None
    rx_msg_dropped_total: int | None = None
    membership_changes_total: int | None = None
    token_lost_total: int | None = None
    config_writes_total: int | None = None
    fsync_p99_s: float | None = None
    links: tuple[LinkReading, ...] = ()
    links_down: int = 0
    worst_link_latency_s: float | None = None


@dataclass(frozen=True)
class Event:
    at: float  # wall-clock seconds
    node: str  # the node that saw it ("" for the cluster as a whole)
    kind: str  # membership | quorum | link | qdevice | reachability | split-brain
    text: str


@dataclass(frozen=True)
class ProbeReading:
    """The optional fsync probe of the machine pvectl runs on."""

    directory: str
    samples: int
    p99_s: float | None
    last_s: float | None


@dataclass(frozen=True)
class ClusterSnapshot:
    schema_version: int
    cluster: str
    at: float  # wall-clock seconds
    nodes: tuple[NodeView, ...]
    quorate: bool  # some answering node is quorate
    failures_survivable: int | None  # further node failures always survived, from now
    split_brain: bool
    partitions: int
    seconds_since_membership_change: float | None
    membership_change_seen: bool  # False: no change seen since watching began
    verdict: str
    events: tuple[Event, ...] = ()
    fsync_probe: ProbeReading | None = None
