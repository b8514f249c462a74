"""qnetd's decision algorithms and votequorum's qdevice votes, on the scenarios
corosync-qnetd's ffsplit and lms documentation describes."""

from __future__ import annotations

import pytest

from pvectl.quorum.qdevice.algorithms import (
    ClientView,
    QdeviceConfigError,
    UnsupportedCluster,
    developer_test_vote,
    expected_with_qdevice,
    ffsplit_decide,
    ffsplit_membership_stable,
    lms_decide,
    qdevice_votes,
    quorum_of,
    two_node_lms_decide,
)
from pvectl.quorum.qdevice.wire import (
    Algorithm,
    Heuristics,
    TieBreaker,
    TieBreakerMode,
    Vote,
    WireRingId,
)

LOWEST = TieBreaker(TieBreakerMode.LOWEST)
HIGHEST = TieBreaker(TieBreakerMode.HIGHEST)


def client(
    node: int,
    config: tuple[int, ...],
    members: tuple[int, ...],
    ring: tuple[int, int],
    heuristics: Heuristics = Heuristics.UNDEFINED,
    kap: bool = False,
) -> ClientView:
    return ClientView(node, config, members, WireRingId(*ring), heuristics, kap)


# --- votes ------------------------------------------------------------------------------


def test_default_votes_are_nodes_minus_one() -> None:
    assert qdevice_votes([1, 1, 1, 1], algorithm=Algorithm.LMS) == 3
    assert expected_with_qdevice([1, 1, 1, 1], 3) == 7
    assert quorum_of(7) == 4


def test_two_nodes_ffsplit_expected_three_quorum_two() -> None:
    votes = qdevice_votes([1, 1], configured_votes=1)
    assert votes == 1
    assert expected_with_qdevice([1, 1], votes) == 3
    assert quorum_of(3) == 2


def test_four_nodes_ffsplit_needs_votes_one() -> None:
    with pytest.raises(QdeviceConfigError, match="ffsplit"):
        qdevice_votes([1, 1, 1, 1])  # default would be 3
    assert qdevice_votes([1, 1, 1, 1], configured_votes=1) == 1
    assert quorum_of(expected_with_qdevice([1, 1, 1, 1], 1)) == 3


def test_votes_must_be_set_with_expected_votes_or_uneven_nodes() -> None:
    with pytest.raises(QdeviceConfigError, match="expected_votes"):
        qdevice_votes([1, 1, 1], expected_votes_set=True, algorithm=Algorithm.LMS)
    with pytest.raises(QdeviceConfigError, match="different votes"):
        qdevice_votes([1, 2, 1], algorithm=Algorithm.LMS)
    with pytest.raises(QdeviceConfigError, match="ffsplit"):
        qdevice_votes([1, 2], configured_votes=1)
    assert qdevice_votes([1, 2, 1], configured_votes=2, algorithm=Algorithm.LMS) == 2


# --- ffsplit ---------------------------------------------------------------------------


def test_ffsplit_two_nodes_together_both_ack() -> None:
    cs = [client(1, (1, 2), (1, 2), (1, 8)), client(2, (1, 2), (1, 2), (1, 8))]
    decision = ffsplit_decide(cs, LOWEST)
    assert decision is not None
    assert decision.acks == (1, 2) and decision.nacks == ()


@pytest.mark.parametrize(
    ("tie_breaker", "winner", "loser"),
    [(LOWEST, 1, 2), (HIGHEST, 2, 1), (TieBreaker(TieBreakerMode.NODE_ID, 2), 2, 1)],
)
def test_ffsplit_one_one_split_goes_to_tie_breaker(
    tie_breaker: TieBreaker, winner: int, loser: int
) -> None:
    cs = [client(1, (1, 2), (1,), (1, 12)), client(2, (1, 2), (2,), (2, 12))]
    decision = ffsplit_decide(cs, tie_breaker)
    assert decision is not None
    assert decision.acks == (winner,)
    assert decision.nacks == (loser,)


def test_ffsplit_survivor_alone_gets_the_vote() -> None:
    # node2 is dead (not connected): node1 is half of the cluster but the only client
    decision = ffsplit_decide([client(1, (1, 2), (1,), (1, 12))], HIGHEST)
    assert decision is not None and decision.acks == (1,)


def test_ffsplit_majority_wins_regardless_of_tie_breaker() -> None:
    cfg = (1, 2, 3, 4)
    cs = [
        client(1, cfg, (1,), (1, 20)),
        client(2, cfg, (2, 3, 4), (2, 20)),
        client(3, cfg, (2, 3, 4), (2, 20)),
        client(4, cfg, (2, 3, 4), (2, 20)),
    ]
    decision = ffsplit_decide(cs, LOWEST)
    assert decision is not None
    assert decision.acks == (2, 3, 4) and decision.nacks == (1,)


def test_ffsplit_two_two_split_more_connected_clients_beat_tie_breaker() -> None:
    cfg = (1, 2, 3, 4)
    # node 2 is not connected to qnetd: partition {1,2} has 1 client, {3,4} has 2
    cs = [
        client(1, cfg, (1, 2), (1, 20)),
        client(3, cfg, (3, 4), (3, 20)),
        client(4, cfg, (3, 4), (3, 20)),
    ]
    decision = ffsplit_decide(cs, LOWEST)
    assert decision is not None and decision.acks == (3, 4)


def test_ffsplit_heuristics_score_beats_tie_breaker() -> None:
    cfg = (1, 2)
    cs = [
        client(1, cfg, (1,), (1, 30), Heuristics.FAIL),
        client(2, cfg, (2,), (2, 30), Heuristics.PASS),
    ]
    decision = ffsplit_decide(cs, LOWEST)
    assert decision is not None and decision.acks == (2,)


def test_ffsplit_keep_active_partition_prefers_previous_winner() -> None:
    cfg = (1, 2)
    cs = [client(1, cfg, (1,), (1, 40), kap=True), client(2, cfg, (2,), (2, 40), kap=True)]
    decision = ffsplit_decide(cs, LOWEST, previous_quorate=frozenset({2}))
    assert decision is not None and decision.acks == (2,)
    # without KAP on both, the tie-breaker decides
    cs[1] = client(2, cfg, (2,), (2, 40), kap=False)
    decision = ffsplit_decide(cs, LOWEST, previous_quorate=frozenset({2}))
    assert decision is not None and decision.acks == (1,)


def test_ffsplit_odd_cluster_without_majority_gets_no_vote() -> None:
    cfg = (1, 2, 3)
    cs = [client(1, cfg, (1,), (1, 5)), client(2, cfg, (2,), (2, 5)), client(3, cfg, (3,), (3, 5))]
    decision = ffsplit_decide(cs, LOWEST)
    assert decision is not None
    assert decision.quorate_partition is None
    assert decision.acks == () and decision.nacks == (1, 2, 3)


def test_ffsplit_waits_for_stable_membership() -> None:
    # node2 still reports the old ring while node1 already reports the new one
    cs = [client(1, (1, 2), (1, 2), (1, 9)), client(2, (1, 2), (1, 2), (1, 8))]
    assert not ffsplit_membership_stable(cs)
    assert ffsplit_decide(cs, LOWEST) is None
    # different configured node lists are unstable too
    cs = [client(1, (1, 2), (1,), (1, 9)), client(2, (1, 2, 3), (2,), (2, 9))]
    assert ffsplit_decide(cs, LOWEST) is None
    # and a membership list that the partner does not share
    cs = [client(1, (1, 2), (1, 2), (1, 9)), client(2, (1, 2), (2,), (1, 9))]
    assert ffsplit_decide(cs, LOWEST) is None


# --- lms --------------------------------------------------------------------------------


def test_lms_single_partition_acks() -> None:
    cfg = (1, 2, 3)
    cs = [client(n, cfg, (1, 2, 3), (1, 7)) for n in cfg]
    assert lms_decide(cs[0], cs, LOWEST, {}).vote is Vote.ACK


def test_lms_last_man_standing_alone_acks() -> None:
    cs = [client(3, (1, 2, 3), (3,), (3, 9))]
    assert lms_decide(cs[0], cs, LOWEST, {3: Vote.ACK}).vote is Vote.ACK


def test_lms_larger_partition_wins() -> None:
    cfg = (1, 2, 3)
    cs = [
        client(1, cfg, (1,), (1, 9)),
        client(2, cfg, (2, 3), (2, 9)),
        client(3, cfg, (2, 3), (2, 9)),
    ]
    last = {1: Vote.ACK, 2: Vote.ACK, 3: Vote.ACK}
    assert lms_decide(cs[0], cs, LOWEST, last).vote is Vote.NACK
    assert lms_decide(cs[1], cs, LOWEST, last).vote is Vote.ACK


def test_lms_equal_partitions_go_to_tie_breaker() -> None:
    cfg = (1, 2, 3, 4)
    cs = [
        client(1, cfg, (1, 2), (1, 9)),
        client(2, cfg, (1, 2), (1, 9)),
        client(3, cfg, (3, 4), (3, 9)),
        client(4, cfg, (3, 4), (3, 9)),
    ]
    last = {n: Vote.ACK for n in cfg}
    assert lms_decide(cs[2], cs, LOWEST, last).vote is Vote.NACK
    assert lms_decide(cs[1], cs, LOWEST, last).vote is Vote.ACK
    assert lms_decide(cs[2], cs, HIGHEST, last).vote is Vote.ACK


def test_lms_heuristics_score_beats_size() -> None:
    cfg = (1, 2, 3)
    cs = [
        client(1, cfg, (1,), (1, 9), Heuristics.PASS),
        client(2, cfg, (2, 3), (2, 9), Heuristics.FAIL),
        client(3, cfg, (2, 3), (2, 9), Heuristics.FAIL),
    ]
    last = {n: Vote.ACK for n in cfg}
    # scores: {1}: 1 + 1 = 2, {2,3}: 2 - 2 = 0
    assert lms_decide(cs[0], cs, LOWEST, last).vote is Vote.ACK


def test_lms_newcomer_gets_nack_while_another_partition_holds_the_vote() -> None:
    cfg = (1, 2)
    cs = [client(1, cfg, (1,), (1, 9)), client(2, cfg, (2,), (2, 9))]
    result = lms_decide(cs[1], cs, LOWEST, {1: Vote.ACK})
    assert result.vote is Vote.NACK and not result.remember


def test_lms_waits_until_partners_report_the_same_ring() -> None:
    cfg = (1, 2)
    cs = [client(1, cfg, (1, 2), (1, 10)), client(2, cfg, (1, 2), (1, 9))]
    assert lms_decide(cs[0], cs, LOWEST, {}).vote is Vote.WAIT_FOR_REPLY


# --- 2nodelms and test ----------------------------------------------------------------


def test_two_node_lms() -> None:
    cfg = (1, 2)
    together = [client(1, cfg, (1, 2), (1, 5)), client(2, cfg, (1, 2), (1, 5))]
    assert two_node_lms_decide(together[0], together, LOWEST, {}).vote is Vote.ACK
    alone = [client(2, cfg, (2,), (2, 6))]
    assert two_node_lms_decide(alone[0], alone, LOWEST, {}).vote is Vote.ACK
    split = [client(1, cfg, (1,), (1, 6)), client(2, cfg, (2,), (2, 6))]
    last = {1: Vote.ACK, 2: Vote.ACK}
    assert two_node_lms_decide(split[0], split, LOWEST, last).vote is Vote.ACK
    assert two_node_lms_decide(split[1], split, LOWEST, last).vote is Vote.NACK
    better = [client(1, cfg, (1,), (1, 6), Heuristics.FAIL), client(2, cfg, (2,), (2, 6))]
    assert two_node_lms_decide(better[1], better, LOWEST, last).vote is Vote.ACK
    three = [client(1, (1, 2, 3), (1,), (1, 6))]
    with pytest.raises(UnsupportedCluster):
        two_node_lms_decide(three[0], three, LOWEST, {})


def test_developer_test_algorithm_acks() -> None:
    assert developer_test_vote() is Vote.ACK
