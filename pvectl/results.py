"""Result types shared by every target (corosync, ssh, lab): one shape, many sources.

Field names follow corosync-quorumtool's labels in snake_case, so the JSON schema reads
like the text users already know.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, order=True)
class RingId:
    """Totem ring id: the representative's node id and the ring sequence number."""

    rep_node_id: int
    seq: int

    def __str__(self) -> str:
        return f"{self.rep_node_id:x}.{self.seq:x}"

    @classmethod
    def parse(cls, text: str) -> RingId:
        rep, _, seq = text.strip().partition(".")
        if not seq:
            return cls(0, int(rep, 16))
        return cls(int(rep, 16), int(seq, 16))


@dataclass(frozen=True)
class ClusterInfo:
    """The header ``pvecm status`` prints from corosync.conf's totem section."""

    name: str
    config_version: int
    transport: str
    secure_auth: str


@dataclass(frozen=True)
class Member:
    """One row of the membership table."""

    node_id: int
    votes: int
    name: str
    local: bool = False
    qdevice: str | None = None  # "A,V,NMW" / "NR"; None when no qdevice column is shown
    addresses: tuple[str, ...] = ()


@dataclass(frozen=True)
class QdeviceRow:
    """The pseudo-node 0 row shown when a quorum device is registered."""

    votes: int
    name: str = "Qdevice"
    casting: bool = True  # False: shown as 0 votes plus "(votes N)"


@dataclass(frozen=True)
class LinkStatus:
    """One knet/udpu link as ``corosync-cfgtool -s`` reports it from the local node."""

    link_id: int
    address: str
    peers: tuple[tuple[int, str], ...] = ()  # (node id, "localhost"/"connected"/...)


@dataclass(frozen=True)
class QuorumStatus:
    """What ``corosync-quorumtool -s`` reports, from one node's point of view."""

    quorum_provider: str
    nodes: int
    node_id: int
    ring_id: RingId
    quorate: bool
    expected_votes: int
    highest_expected: int
    total_votes: int
    quorum: int
    flags: tuple[str, ...]
    members: tuple[Member, ...]
    qdevice: QdeviceRow | None = None
    cluster: ClusterInfo | None = None
    source: str = "corosync"  # which target answered: corosync, lab, ssh:HOST
    activity_blocked: bool = False  # quorumtool's "Quorum: N Activity blocked"
    links: tuple[LinkStatus, ...] = ()  # corosync-cfgtool -s, where available
    totem_token_ms: int | None = None  # runtime.config.totem.token (after coefficient)
    totem_consensus_ms: int | None = None  # runtime.config.totem.consensus


@dataclass(frozen=True)
class NodeList:
    """What ``corosync-quorumtool -l`` (``pvecm nodes``) reports."""

    members: tuple[Member, ...]
    qdevice: QdeviceRow | None = None
    source: str = "corosync"


@dataclass(frozen=True)
class ExpectedResult:
    """Outcome of a runtime expected-votes change."""

    requested: int
    previous_expected: int
    total_votes: int
    quorum_before: int
    quorum_after: int
    quorate_after: bool
    source: str = "corosync"
    warnings: tuple[str, ...] = field(default_factory=tuple)
