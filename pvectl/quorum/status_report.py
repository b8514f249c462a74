"""A votequorum state as ``corosync-quorumtool -s`` would report it (the shared result type),
so the embedded nodes answer ``pvectl status`` in the same shape as a real corosync."""

from __future__ import annotations

from collections.abc import Mapping

from pvectl.quorum.votequorum import NodeFlag, NodeRecord, NodeState, VotequorumState
from pvectl.results import ClusterInfo, Member, QdeviceRow, QuorumStatus, RingId


def qdevice_column(flags: NodeFlag) -> str:
    """The Qdevice column: A/NA alive, V/NV casts vote, MW/NMW master wins, or NR."""
    if not flags & NodeFlag.QDEVICE_REGISTERED:
        return "NR"
    return ",".join(
        (
            "A" if flags & NodeFlag.QDEVICE_ALIVE else "NA",
            "V" if flags & NodeFlag.QDEVICE_CAST_VOTE else "NV",
            "MW" if flags & NodeFlag.QDEVICE_MASTER_WINS else "NMW",
        )
    )


def quorum_status(
    state: VotequorumState,
    ring_id: RingId,
    names: Mapping[int, str] | None = None,
    cluster: ClusterInfo | None = None,
    source: str = "lab",
    addresses: Mapping[int, tuple[str, ...]] | None = None,
    token_ms: int | None = None,
    consensus_ms: int | None = None,
) -> QuorumStatus:
    """``token_ms``/``consensus_ms``: the effective totem timeouts (after the coefficient),
    as corosync's runtime.config.totem.token and .consensus."""
    registered = bool(state.us.flags & NodeFlag.QDEVICE_REGISTERED)
    members = tuple(
        _member(node, state.local_node_id, names or {}, registered, addresses or {})
        for node in state.nodes
        if node.state is NodeState.MEMBER
    )
    qdevice = (
        QdeviceRow(
            votes=state.qdevice_votes,
            casting=bool(state.us.flags & NodeFlag.QDEVICE_CAST_VOTE),
        )
        if registered
        else None
    )
    return QuorumStatus(
        quorum_provider="corosync_votequorum",
        nodes=len(members),
        node_id=state.local_node_id,
        ring_id=ring_id,
        quorate=state.quorate,
        expected_votes=state.expected_votes,
        highest_expected=state.highest_expected,
        total_votes=state.total_votes,
        quorum=state.quorum,
        flags=state.flags,
        members=members,
        qdevice=qdevice,
        cluster=cluster,
        source=source,
        # quorumtool prints "Activity blocked" from votequorum's QUORATE flag on the local
        # node, not from the quorate answer: the two differ while a new state settles
        activity_blocked=not state.us.flags & NodeFlag.QUORATE,
        totem_token_ms=token_ms,
        totem_consensus_ms=consensus_ms,
    )


def _member(
    node: NodeRecord,
    local_node_id: int,
    names: Mapping[int, str],
    qdevice_shown: bool,
    addresses: Mapping[int, tuple[str, ...]],
) -> Member:
    return Member(
        node_id=node.node_id,
        votes=node.votes,
        name=names.get(node.node_id, str(node.node_id)),
        local=node.node_id == local_node_id,
        qdevice=qdevice_column(node.flags) if qdevice_shown else None,
        addresses=addresses.get(node.node_id, ()),
    )
