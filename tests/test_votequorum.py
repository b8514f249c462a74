"""Each votequorum option's semantics, one behaviour per test (as votequorum.c has them)."""

from __future__ import annotations

import pytest

from pvectl import quorum_conf
from pvectl.corosync_conf import parse
from pvectl.errors import CommandRefused
from pvectl.quorum import cluster
from pvectl.quorum.votequorum import (
    NodeFlag,
    QuorumConfigError,
    QuorumOptions,
    TieBreaker,
    cancel_wait_for_all,
    check_set_expected,
    expected_reconfigured,
    expected_warning,
    initial_state,
    local_nodeinfo,
    membership_changed,
    next_deadline,
    nodeinfo_received,
    set_expected,
    sync_completed,
)


def uniform(n: int, **kw: object) -> QuorumOptions:
    return QuorumOptions.build([(i, 1) for i in range(1, n + 1)], **kw)  # type: ignore[arg-type]


def view(model: cluster.ClusterModel, node_id: int) -> tuple[int, int, int, bool]:
    s = model.state_of(node_id)
    return s.expected_votes, s.quorum, s.total_votes, s.quorate


# --- plain majority --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("nodes", "alive", "quorate"),
    [(3, 2, True), (3, 1, False), (4, 2, False), (4, 3, True), (5, 3, True), (5, 2, False)],
)
def test_majority_as_in_the_seed_article(nodes: int, alive: int, quorate: bool) -> None:
    model = cluster.reform(cluster.start(uniform(nodes)), [range(1, alive + 1)], 1.0)
    assert view(model, 1)[3] is quorate
    assert model.state_of(1).quorum == nodes // 2 + 1


def test_flags_line_order_and_content() -> None:
    model = cluster.start(uniform(2, two_node=True))
    assert model.state_of(1).flags == ("2Node", "Quorate", "WaitForAll")


# --- last_man_standing -----------------------------------------------------------------------


def test_lms_window_shrinks_8_to_5_into_expected_5_quorum_3() -> None:
    options = uniform(8, last_man_standing=True, last_man_standing_window_ms=10_000)
    model = cluster.reform(cluster.start(options), [[1, 2, 3, 4, 5]], now=1.0)
    assert view(model, 1) == (8, 5, 5, True)
    assert next_deadline(model.state_of(1)) == 11.0
    model = cluster.advance(model, 10.999)  # not yet
    assert view(model, 1) == (8, 5, 5, True)
    model = cluster.advance(model, 11.0)
    assert view(model, 1) == (5, 3, 5, True)
    assert next_deadline(model.state_of(1)) is None


def test_lms_lets_failures_one_at_a_time_go_below_half() -> None:
    options = uniform(5, last_man_standing=True)
    model = cluster.start(options)
    for now, alive in ((1.0, [1, 2, 3, 4]), (20.0, [1, 2, 3]), (40.0, [1, 2])):
        model = cluster.advance(cluster.reform(model, [alive], now), now + 15.0)
    assert view(model, 1) == (2, 2, 2, True)
    # the same two survivors without the window in between: no quorum
    abrupt = cluster.reform(cluster.start(options), [[1, 2]], 1.0)
    assert view(abrupt, 1)[3] is False


def test_lms_not_applied_when_quorum_already_lost() -> None:
    model = cluster.reform(cluster.start(uniform(4, last_man_standing=True)), [[1, 2]], 1.0)
    model = cluster.advance(model, 60.0)
    assert view(model, 1) == (4, 3, 2, False)


def test_lms_disabled_by_a_node_with_more_than_one_vote() -> None:
    options = QuorumOptions.build([(1, 1), (2, 2), (3, 1)], last_man_standing=True)
    assert any("1 vote" in note for note in options.notes)
    model = cluster.start(options)
    assert "LastManStanding" not in model.state_of(1).flags


# --- auto_tie_breaker ------------------------------------------------------------------------


def test_atb_half_split_goes_to_the_lowest_node() -> None:
    model = cluster.reform(
        cluster.start(uniform(4, auto_tie_breaker=True)), [[1, 2], [3, 4]], 0.001
    )
    assert view(model, 1) == (4, 3, 2, True)
    assert view(model, 3) == (4, 3, 2, False)


def test_atb_highest_and_list() -> None:
    highest = uniform(4, auto_tie_breaker=True, auto_tie_breaker_node="highest")
    model = cluster.reform(cluster.start(highest), [[1, 2], [3, 4]], 0.001)
    assert (view(model, 1)[3], view(model, 4)[3]) == (False, True)
    listed = uniform(4, auto_tie_breaker=True, auto_tie_breaker_node="3 1")
    assert listed.auto_tie_breaker is TieBreaker.LIST
    model = cluster.reform(cluster.start(listed), [[1, 2], [3, 4]], 0.001)
    assert (view(model, 1)[3], view(model, 3)[3]) == (False, True)


def test_atb_list_refuses_when_an_earlier_listed_node_may_be_on_the_other_side() -> None:
    listed = uniform(4, auto_tie_breaker=True, auto_tie_breaker_node="3 1")
    # node 3 is on neither side (down), node 1's side would win if 3 was not in the last ring
    model = cluster.reform(cluster.start(listed), [[1, 2], [4]], 0.001)
    assert view(model, 1)[3] is False


def test_atb_on_odd_cluster_needs_wait_for_all() -> None:
    disabled = uniform(5, auto_tie_breaker=True)
    assert disabled.auto_tie_breaker is TieBreaker.NONE
    assert any("wait_for_all" in note for note in disabled.notes)
    assert (
        uniform(5, auto_tie_breaker=True, wait_for_all=True).auto_tie_breaker is TieBreaker.LOWEST
    )
    with pytest.raises(QuorumConfigError, match="auto_tie_breaker & last_man_standing"):
        uniform(5, auto_tie_breaker=True, last_man_standing=True)


def test_atb_disables_two_node() -> None:
    options = uniform(2, two_node=True, auto_tie_breaker=True)
    assert not options.two_node and options.wait_for_all
    assert any("two_node has been disabled" in note for note in options.notes)


# --- two_node and wait_for_all ---------------------------------------------------------------


def test_two_node_quorum_is_1_and_the_survivor_stays_quorate() -> None:
    model = cluster.start(uniform(2, two_node=True))
    assert view(model, 1) == (2, 1, 2, True)
    model = cluster.reform(model, [[1]], 1.0)
    assert view(model, 1) == (2, 1, 1, True)


def test_two_node_implies_wait_for_all_a_lone_boot_waits() -> None:
    options = uniform(2, two_node=True)
    assert options.wait_for_all
    alone = cluster.start(options, [1])
    assert view(alone, 1) == (2, 1, 1, False)
    joined = cluster.reform(alone, [[1, 2]], 5.0)
    assert view(joined, 1)[3] is True


def test_two_node_without_wait_for_all_boots_quorate_alone() -> None:
    alone = cluster.start(uniform(2, two_node=True, wait_for_all=False), [1])
    assert view(alone, 1) == (2, 1, 1, True)


def test_wait_for_all_blocks_a_majority_at_boot_until_cancelled() -> None:
    alone = cluster.start(uniform(3, wait_for_all=True), [1, 2])
    assert view(alone, 1)[3] is False  # 2 of 3 would be a majority, but WFA waits
    cancelled = cancel_wait_for_all(alone.state_of(1))
    assert cancelled.quorate


def test_wait_for_all_is_cleared_by_joining_a_quorate_cluster() -> None:
    options = uniform(3, wait_for_all=True)
    model = cluster.reform(cluster.start(options), [[1, 2]], 1.0)
    assert view(model, 1)[3] is True  # WFA only matters before the first quorum
    joined = cluster.reform(model, [[1, 2, 3]], 2.0)  # node 3 boots fresh, WFA armed
    assert view(joined, 3)[3] is True


# --- qdevice ---------------------------------------------------------------------------------


def test_qdevice_default_votes_are_n_minus_1() -> None:
    options = uniform(5, qdevice_model="net", qdevice_algorithm="lms")
    assert options.qdevice_votes == 4
    assert options.configured_expected_votes == 9
    model = cluster.reform(cluster.start(options), [[1]], 1.0)
    assert view(model, 1) == (9, 5, 5, True)  # the last node standing with qnetd's 4 votes


def test_qdevice_vote_counts_only_where_the_local_daemon_casts_it() -> None:
    options = uniform(2, qdevice_model="net", qdevice_votes=1)
    model = cluster.reform(cluster.start(options), [[1], [2]], 1.0)  # qnetd picks node 1
    assert view(model, 1) == (3, 2, 2, True)
    assert view(model, 2) == (3, 2, 1, False)
    cut = cluster.reform(model, [[1, 2]], 2.0, qnetd_up=False)
    assert view(cut, 1) == (3, 2, 2, True) and "Qdevice" in cut.state_of(1).flags


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"two_node": True}, "two_node and quorum device cannot be configured at the same time"),
        ({"last_man_standing": True}, "not compatible with last_man_standing"),
        ({"allow_downscale": True}, "not compatible with allow_downscale"),
        ({"expected_votes": 5}, "quorum.device.votes must be specified when quorum.expected"),
        ({"expected_votes": 5, "qdevice_votes": 4}, "too high or expected_votes is too low"),
    ],
)
def test_qdevice_incompatibilities_are_corosyncs_errors(
    kw: dict[str, object], message: str
) -> None:
    with pytest.raises(QuorumConfigError, match=message):
        uniform(4, qdevice_model="net", **kw)


def test_qdevice_uneven_votes_need_explicit_device_votes() -> None:
    with pytest.raises(QuorumConfigError, match="not all nodes votes 1"):
        QuorumOptions.build([(1, 1), (2, 2)], qdevice_model="net")


def test_no_nodelist_and_no_expected_votes_is_refused() -> None:
    with pytest.raises(QuorumConfigError, match=r"nodelist or quorum\.expected_votes"):
        QuorumOptions.build([])


# --- corosync.conf ---------------------------------------------------------------------------

CONF = """
totem {
  cluster_name: lab
  version: 2
}
nodelist {
  node {
    name: pve1
    nodeid: 1
    quorum_votes: 1
    ring0_addr: 10.0.0.1
  }
  node {
    name: pve2
    nodeid: 2
    quorum_votes: 2
    ring0_addr: 10.0.0.2
  }
}
quorum {
  provider: corosync_votequorum
  wait_for_all: 0
  last_man_standing: 1
  last_man_standing_window: 20000
  device {
    model: net
    votes: 1
    net {
      algorithm: ffsplit
      host: 10.0.0.9
    }
  }
}
"""


def test_options_from_corosync_conf() -> None:
    with pytest.raises(QuorumConfigError, match="last_man_standing") as info:
        quorum_conf.options_from_config(
            parse(CONF, "/etc/pve/corosync.conf"), "/etc/pve/corosync.conf"
        )
    assert str(info.value).startswith("/etc/pve/corosync.conf: configuration error:")
    conf = CONF.replace("last_man_standing: 1", "allow_downscale: 0")
    options = quorum_conf.options_from_config(parse(conf))
    assert options.node_votes == ((1, 1), (2, 2))
    assert options.qdevice_votes == 1 and options.qdevice_algorithm == "ffsplit"
    assert options.configured_expected_votes == 4
    assert not options.wait_for_all


def test_bad_number_in_config_is_a_config_error() -> None:
    conf = CONF.replace("last_man_standing: 1", "two_node: yes")
    corosyncs = (
        r'Value of key "quorum.two_node" is expected to be integer in range \(0..255\), but "yes"'
    )
    with pytest.raises(QuorumConfigError, match=corosyncs):
        quorum_conf.options_from_config(parse(conf))


# --- runtime expected votes ------------------------------------------------------------------


def test_setexpected_refused_below_present_votes() -> None:
    with pytest.raises(CommandRefused) as info:
        check_set_expected(1, 3, False)
    assert str(info.value) == (
        "3 votes are present in this partition: expected votes cannot go below 3"
    )


def test_setexpected_refused_when_a_quorate_partition_would_lose_quorum() -> None:
    with pytest.raises(CommandRefused) as info:
        check_set_expected(5, 2, True)
    assert str(info.value) == (
        "the partition is quorate and expected 5 would make quorum 3 > 2 present votes: "
        "it would lose quorum"
    )
    check_set_expected(5, 2, False)  # inquorate already: allowed
    check_set_expected(3, 2, True)  # quorum 2 <= 2: allowed


def test_expected_1_recovers_the_lone_survivor() -> None:
    model = cluster.reform(cluster.start(uniform(2)), [[1]], 1.0)
    survivor = model.state_of(1)
    assert not survivor.quorate
    recovered = set_expected(survivor, 1)
    assert (recovered.expected_votes, recovered.quorum, recovered.quorate) == (1, 1, True)
    with pytest.raises(CommandRefused):
        set_expected(cluster.reform(cluster.start(uniform(3)), [[1, 2]], 0.001).state_of(1), 1)


def test_lowered_expected_spreads_to_joiners_and_rises_with_the_votes_present() -> None:
    """An inquorate joiner adopts the quorate node's expected (nodeinfo handler); expected
    then only rises again as votes come back ("keep expected at the highest votes")."""
    model = cluster.reform(cluster.start(uniform(3)), [[1]], 1.0)
    lowered = set_expected(model.state_of(1), 1)
    fresh = initial_state(uniform(3), 2)  # node 2 reboots with corosync.conf's expected 3
    ours = membership_changed(lowered, (1, 2), 2.0)
    theirs = membership_changed(fresh, (1, 2), 2.0)
    infos = (local_nodeinfo(ours), local_nodeinfo(theirs))
    for info in infos:
        ours = nodeinfo_received(ours, info, info.node_id)
        theirs = nodeinfo_received(theirs, info, info.node_id)
    ours, theirs = sync_completed(ours), sync_completed(theirs)
    assert (ours.highest_expected, ours.quorum, ours.quorate) == (2, 2, True)
    assert (theirs.expected_votes, theirs.quorum, theirs.quorate) == (2, 2, True)


def test_reconfigure_applies_to_every_member() -> None:
    state = cluster.start(uniform(3)).state_of(2)
    state = expected_reconfigured(state, 5)
    assert {n.expected_votes for n in state.nodes} == {5}
    assert state.quorum == 3 and state.quorate


def test_expected_warning_names_the_risks() -> None:
    text = expected_warning(1, 1, 3)
    assert "not written to corosync.conf" in text
    assert "split brain" in text
    assert "2 missing vote(s)" in text


def test_leaving_flag_round_trips() -> None:
    state = cluster.start(uniform(3)).state_of(1)
    assert local_nodeinfo(state).flags & NodeFlag.QUORATE


def test_without_nodelist_expected_votes_and_quorum_votes_apply() -> None:
    conf = "quorum {\n  provider: corosync_votequorum\n  expected_votes: 4\n  votes: 2\n}\n"
    options = quorum_conf.options_from_config(parse(conf))
    assert options.node_votes == () and options.configured_expected_votes == 4
    state = initial_state(options, 7)
    assert (state.us.votes, state.expected_votes, state.quorum, state.quorate) == (2, 4, 3, False)


def test_qdevice_nodeinfo_takes_the_higher_votes_unless_a_quorate_node_says_otherwise() -> None:
    from pvectl.quorum.votequorum import QDEVICE_NODE_ID, NodeInfo

    options = uniform(3, qdevice_model="net", qdevice_algorithm="lms")
    state = cluster.start(options).state_of(1)
    assert state.qdevice_votes == 2
    assert nodeinfo_received(state, NodeInfo(QDEVICE_NODE_ID, 1, 0), 2).qdevice_votes == 2
    assert nodeinfo_received(state, NodeInfo(QDEVICE_NODE_ID, 3, 0), 2).qdevice_votes == 3


def test_state_renders_as_quorumtool_status() -> None:
    from pvectl.cli.pvecm_text import quorum_block
    from pvectl.quorum.status_report import quorum_status
    from pvectl.totem.ring_id import RingId

    options = uniform(2, qdevice_model="net", qdevice_votes=1)
    model = cluster.reform(cluster.start(options), [[1], [2]], 1.0)
    status = quorum_status(model.state_of(2), RingId(2, 0x1A8), {1: "pve1", 2: "pve2"})
    assert (status.nodes, status.quorate, status.total_votes, status.quorum) == (1, False, 1, 2)
    assert status.members[0].qdevice == "A,NV,NMW" and status.members[0].local
    assert status.qdevice is not None and not status.qdevice.casting
    text = quorum_block(status, date="x")
    assert "Quorum:           2 Activity blocked\n" in text
    assert "Flags:            Qdevice \n" in text
    assert "Ring ID:          2.1a8\n" in text


def test_expected_cannot_drop_below_configured_qdevice_votes_plus_members() -> None:
    """recalculate_quorum raises expected to member votes + the device's configured votes
    (get_total_votes counts them even when not cast), so with qnetd unreachable a lone
    node of a 2-node + QDevice cluster is not rescued by 'expected 1'. This follows
    votequorum.c; votequorum(5) suggests only cast votes count (unverified on a live cluster)."""
    options = uniform(2, qdevice_model="net", qdevice_votes=1)
    model = cluster.reform(cluster.start(options), [[1]], 1.0, qnetd_up=False)
    lone = model.state_of(1)
    assert (lone.expected_votes, lone.total_votes, lone.quorate) == (3, 1, False)
    after = set_expected(lone, 1)
    assert (after.expected_votes, after.quorum, after.quorate) == (2, 2, False)
    with_qnetd = cluster.reform(cluster.start(options), [[1]], 1_000, qnetd_up=True)
    assert with_qnetd.state_of(1).quorate  # the QDevice vote is the real rescue


@pytest.mark.parametrize("atb", [False, True])
def test_lms_cascade_of_the_votequorum_man_page(atb: bool) -> None:
    """votequorum(5): 8 nodes -> 5 (E5 q3) -> 3 (E3 q2) -> 2 (E2 q2); the last step to one
    node needs auto_tie_breaker."""
    options = uniform(8, last_man_standing=True, auto_tie_breaker=atb)
    model = cluster.start(options)
    now = 0
    for alive, want in (
        ([1, 2, 3, 4, 5], (5, 3)),
        ([1, 2, 3], (3, 2)),
        ([1, 2], (2, 2)),
    ):
        now += 1_000
        model = cluster.advance(cluster.reform(model, [alive], now), now + 10_000)
        now += 10_000
        state = model.state_of(1)
        assert (state.expected_votes, state.quorum, state.quorate) == (*want, True)
    model = cluster.advance(cluster.reform(model, [[1]], now + 1_000), now + 20_000)
    assert model.state_of(1).quorate is atb
