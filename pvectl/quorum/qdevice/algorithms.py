"""QDevice decisions as pure functions: votequorum's qdevice votes and qnetd's algorithms.

qnetd decides per cluster from what each connected qdevice reported: its configured node
list, its current membership and ring id, and its heuristics result. These functions take
that snapshot (``ClientView``) and return the vote; sending the votes (and the ffsplit
rule "NACKs are acknowledged before any ACK goes out") is the server core's job, driven
by :func:`ffsplit_decide`'s split of winners and losers. Same answers as corosync-qnetd
3.0.x (qnetd-algo-ffsplit.c, -lms.c, -2nodelms.c, -test.c); no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pvectl.quorum.qdevice.wire import (
    Algorithm,
    Heuristics,
    TieBreaker,
    TieBreakerMode,
    Vote,
    WireRingId,
)


class QdeviceConfigError(ValueError):
    """A quorum.device configuration that votequorum or corosync-qdevice refuses."""


# --- votes (votequorum's defaults, section 3.5) ----------------------------------------


def qdevice_votes(
    node_votes: Sequence[int],
    configured_votes: int | None = None,
    expected_votes_set: bool = False,
    algorithm: Algorithm = Algorithm.FFSPLIT,
) -> int:
    """The votes a quorum device contributes.

    Unset votes default to N - 1 (N = nodes) when every node has one vote and
    ``quorum.expected_votes`` is not set; otherwise they must be configured. ffsplit
    behaves as one extra node, so it needs exactly 1 vote and one vote per node.
    """
    if not node_votes:
        raise QdeviceConfigError("a quorum device needs a nodelist")
    uneven = any(v != 1 for v in node_votes)
    if configured_votes is None:
        if expected_votes_set:
            raise QdeviceConfigError(
                "quorum.device.votes must be set when quorum.expected_votes is set"
            )
        if uneven:
            raise QdeviceConfigError(
                "quorum.device.votes must be set when nodes have different votes"
            )
        votes = len(node_votes) - 1
    else:
        votes = configured_votes
    if votes < 1:
        raise QdeviceConfigError(f"quorum.device.votes must be >= 1 (is {votes})")
    if algorithm is Algorithm.FFSPLIT and (votes != 1 or uneven):
        raise QdeviceConfigError(
            "algorithm ffsplit needs quorum.device.votes: 1 and one vote per node"
        )
    return votes


def expected_with_qdevice(node_votes: Sequence[int], device_votes: int) -> int:
    """Expected votes once the device is counted: 2 nodes + ffsplit -> 3, 4 + lms -> 7."""
    return sum(node_votes) + device_votes


def quorum_of(expected: int) -> int:
    return expected // 2 + 1


# --- what qnetd knows about one connected qdevice ------------------------------------


@dataclass(frozen=True)
class ClientView:
    """One qdevice as qnetd sees it (its last reported lists)."""

    node_id: int
    config_nodes: tuple[int, ...] = ()
    membership: tuple[int, ...] = ()
    ring_id: WireRingId | None = None
    heuristics: Heuristics = Heuristics.UNDEFINED
    keep_active_partition: bool = False


def tie_breaker_node(tie_breaker: TieBreaker, config_nodes: Sequence[int]) -> int:
    """The configured node whose partition wins an exact tie."""
    if tie_breaker.mode is TieBreakerMode.NODE_ID:
        return tie_breaker.node_id
    if not config_nodes:
        return 0
    if tie_breaker.mode is TieBreakerMode.HIGHEST:
        return max(config_nodes)
    return min(config_nodes)


def _heuristics_counts(
    membership: Sequence[int], connected: Mapping[int, ClientView]
) -> tuple[int, int, int]:
    clients = passed = failed = 0
    for node in membership:
        other = connected.get(node)
        if other is None:
            continue
        clients += 1
        if other.heuristics is Heuristics.PASS:
            passed += 1
        elif other.heuristics is Heuristics.FAIL:
            failed += 1
    return clients, passed, failed


# --- ffsplit ------------------------------------------------------------------------------


def ffsplit_membership_stable(clients: Sequence[ClientView]) -> bool:
    """All clients report the same configured nodes, and clients that see each other
    report the same ring id and the same membership. Until then qnetd waits."""
    configs = {frozenset(c.config_nodes) for c in clients}
    if len(configs) > 1:
        return False
    by_node = {c.node_id: c for c in clients}
    for client in clients:
        mine = set(client.membership)
        for node in client.membership:
            other = by_node.get(node)
            if other is None:
                continue
            if other.ring_id != client.ring_id or not mine <= set(other.membership):
                return False
    return True


def _ffsplit_better(
    candidate: ClientView,
    best: ClientView | None,
    connected: Mapping[int, ClientView],
    tie_breaker: TieBreaker,
    previous_quorate: frozenset[int],
) -> bool:
    """qnetd's partition comparison: is ``candidate``'s partition better than ``best``'s?"""
    configured = len(candidate.config_nodes)
    members = len(candidate.membership)
    if configured % 2:
        return members > configured // 2  # odd clusters never tie
    if members > configured // 2:
        return True
    if members < configured // 2:
        return False
    # exact 50:50 split
    c_clients, c_pass, c_fail = _heuristics_counts(candidate.membership, connected)
    if best is None:
        b_clients = b_pass = b_fail = 0
    else:
        b_clients, b_pass, b_fail = _heuristics_counts(best.membership, connected)
    c_score = c_clients + c_pass - c_fail
    b_score = b_clients + b_pass - b_fail
    if c_score != b_score:
        return c_score > b_score
    if c_clients != b_clients:
        return c_clients > b_clients
    if best is not None and candidate.keep_active_partition and best.keep_active_partition:
        c_was = candidate.node_id in previous_quorate
        b_was = best.node_id in previous_quorate
        if c_was != b_was:
            return c_was
    return tie_breaker_node(tie_breaker, candidate.config_nodes) in candidate.membership


def ffsplit_select_partition(
    clients: Sequence[ClientView],
    tie_breaker: TieBreaker,
    previous_quorate: frozenset[int] = frozenset(),
) -> frozenset[int] | None:
    """The membership that gets the vote, or None when no partition may be quorate.

    Clients are compared in connection order, as qnetd walks its client list.
    """
    connected = {c.node_id: c for c in clients}
    best: ClientView | None = None
    for client in clients:
        if _ffsplit_better(client, best, connected, tie_breaker, previous_quorate):
            best = client
    return None if best is None else frozenset(best.membership)


@dataclass(frozen=True)
class FfsplitDecision:
    """Who gets ACK and who gets NACK; NACKs must all be acknowledged before ACKs go out
    so that two partitions never hold the vote at the same time."""

    quorate_partition: frozenset[int] | None
    acks: tuple[int, ...]
    nacks: tuple[int, ...]


def ffsplit_decide(
    clients: Sequence[ClientView],
    tie_breaker: TieBreaker,
    previous_quorate: frozenset[int] = frozenset(),
) -> FfsplitDecision | None:
    """None while membership is not stable (the caller answers WAIT_FOR_REPLY)."""
    if not ffsplit_membership_stable(clients):
        return None
    partition = ffsplit_select_partition(clients, tie_breaker, previous_quorate)
    acks = tuple(c.node_id for c in clients if partition is not None and c.node_id in partition)
    nacks = tuple(c.node_id for c in clients if c.node_id not in acks)
    return FfsplitDecision(partition, acks, nacks)


# --- lms (last man standing) --------------------------------------------------------


@dataclass(frozen=True)
class LmsResult:
    vote: Vote
    remember: bool = True  # False: a newcomer's NACK, not recorded as its last result


@dataclass(frozen=True)
class _Partition:
    ring_id: WireRingId
    nodes: tuple[int, ...]
    score: int


def _partitions(clients: Sequence[ClientView]) -> list[_Partition]:
    """Connected clients grouped by ring id, in connection order of first appearance."""
    groups: dict[WireRingId, list[ClientView]] = {}
    for client in clients:
        if client.ring_id is None:
            continue
        groups.setdefault(client.ring_id, []).append(client)
    out = []
    for ring_id, members in groups.items():
        passed = sum(1 for c in members if c.heuristics is Heuristics.PASS)
        failed = sum(1 for c in members if c.heuristics is Heuristics.FAIL)
        out.append(
            _Partition(ring_id, tuple(c.node_id for c in members), len(members) + passed - failed)
        )
    return out


def _ring_ids_agree(me: ClientView, clients: Sequence[ClientView]) -> bool:
    """Everyone who is in my membership must already report my ring id."""
    by_node = {c.node_id: c for c in clients}
    for node in me.membership:
        other = by_node.get(node)
        if other is not None and other.ring_id != me.ring_id:
            return False
    return True


def lms_decide(
    me: ClientView,
    clients: Sequence[ClientView],
    tie_breaker: TieBreaker,
    last_results: Mapping[int, Vote],
) -> LmsResult:
    """Vote for ``me`` (one of ``clients``). ``last_results`` holds each client's last
    remembered ACK/NACK; a client absent from it is a newcomer."""
    if not _ring_ids_agree(me, clients):
        return LmsResult(Vote.WAIT_FOR_REPLY)
    partitions = _partitions(clients)
    if not partitions:
        return LmsResult(Vote.WAIT_FOR_REPLY)
    if len(partitions) == 1:
        return LmsResult(Vote.ACK)  # one partition: votequorum decides
    if me.node_id not in last_results:
        for other in clients:
            if other.ring_id != me.ring_id and last_results.get(other.node_id) is Vote.ACK:
                return LmsResult(Vote.NACK, remember=False)

    for measure in (lambda p: p.score, lambda p: len(p.nodes)):
        top = max(measure(p) for p in partitions)
        leaders = [p for p in partitions if measure(p) == top]
        if len(leaders) == 1:
            return LmsResult(Vote.ACK if leaders[0].ring_id == me.ring_id else Vote.NACK)
    # equal scores and sizes: the partition holding the tie-breaker node wins
    connected_ids = [c.node_id for c in clients]
    if tie_breaker.mode is TieBreakerMode.NODE_ID:
        tb_node = tie_breaker.node_id
    elif tie_breaker.mode is TieBreakerMode.HIGHEST:
        tb_node = max(connected_ids)
    else:
        tb_node = min(connected_ids)
    tb_ring = next((c.ring_id for c in clients if c.node_id == tb_node), None)
    if me.node_id == tb_node or (tb_ring is not None and tb_ring == me.ring_id):
        return LmsResult(Vote.ACK)
    return LmsResult(Vote.NACK)


# --- 2nodelms -------------------------------------------------------------------------


class UnsupportedCluster(ValueError):
    """2nodelms on a cluster that is not 2 nodes."""


def two_node_lms_decide(
    me: ClientView,
    clients: Sequence[ClientView],
    tie_breaker: TieBreaker,
    last_results: Mapping[int, Vote],
) -> LmsResult:
    """lms specialised for 2 nodes: together or alone -> ACK; split with both connected
    -> better heuristics, else the tie-breaker node's side."""
    if me.config_nodes and len(me.config_nodes) != 2:
        raise UnsupportedCluster(
            f"2nodelms needs a 2-node cluster, got {len(me.config_nodes)} nodes"
        )
    if not _ring_ids_agree(me, clients):
        return LmsResult(Vote.WAIT_FOR_REPLY)
    others = [c for c in clients if c.node_id != me.node_id and c.ring_id is not None]
    if not others or all(c.ring_id == me.ring_id for c in others):
        return LmsResult(Vote.ACK)
    if me.node_id not in last_results and any(
        last_results.get(c.node_id) is Vote.ACK for c in others
    ):
        return LmsResult(Vote.NACK, remember=False)
    other = others[0]
    if me.heuristics != other.heuristics:
        rank = {Heuristics.FAIL: 0, Heuristics.UNDEFINED: 1, Heuristics.PASS: 2}
        return LmsResult(Vote.ACK if rank[me.heuristics] > rank[other.heuristics] else Vote.NACK)
    tb_node = tie_breaker_node(tie_breaker, me.config_nodes or (me.node_id, other.node_id))
    return LmsResult(Vote.ACK if me.node_id == tb_node else Vote.NACK)


def developer_test_vote() -> Vote:
    """The developers' "test" algorithm: always ACK."""
    return Vote.ACK
