"""Issue 12, the pure parts: ``--quorum KEY=VALUE`` and the scenario's ``quorum``/``start``/
``qdevice`` keys read as corosync reads corosync.conf, corosync's start-up refusals, and
settling that accepts members which decide differently."""

from __future__ import annotations

import pytest

from pvectl import corosync_conf
from pvectl.errors import ConfigError, ExitCode, PvectlError, UsageError
from pvectl.lab import embedded_engine, quorum_setup
from pvectl.lab import scenario as sc
from pvectl.lab.options import UpOptions
from pvectl.quorum import votequorum as vq


def test_quorum_assignments_keep_corosyncs_spelling() -> None:
    pairs = quorum_setup.parse_assignments(
        ["last_man_standing=1", "auto_tie_breaker_node=5 2", "expected_votes=3"]
    )
    assert pairs == (
        ("last_man_standing", "1"),
        ("auto_tie_breaker_node", "5 2"),
        ("expected_votes", "3"),
    )
    options = quorum_setup.startup_check(
        [(1, 1), (2, 1), (5, 1)], dict(pairs) | {"auto_tie_breaker": "1", "wait_for_all": "1"}
    )
    assert options.expected_votes == 3 and options.auto_tie_breaker_nodes == (5, 2)


@pytest.mark.parametrize(
    ("item", "code", "words"),
    [
        ("last_man_standnig=1", ExitCode.USAGE, "unknown quorum key 'last_man_standnig'"),
        ("two_node", ExitCode.USAGE, "give KEY=VALUE"),
        ("two_node=256", ExitCode.CONFIG, 'integer in range (0..255), but "256" was given'),
        # corosync reads numbers with strtoll(..., 10): no hex, no octal, no other digits
        ("expected_votes=0x3", ExitCode.CONFIG, 'but "0x3" was given'),
        ("expected_votes=\u0661", ExitCode.CONFIG, "was given"),
        ("last_man_standing_window=soon", ExitCode.CONFIG, "(0..4294967295)"),
    ],
)
def test_bad_quorum_assignments(item: str, code: int, words: str) -> None:
    with pytest.raises(PvectlError) as caught:
        quorum_setup.parse_assignments([item])
    assert caught.value.exit_code == code and words in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("nodes", "values", "reason"),
    [
        (
            3,
            {"auto_tie_breaker": "1", "last_man_standing": "1"},
            "auto_tie_breaker & last_man_standing not available in odd sized cluster",
        ),
        (2, {"two_node": "1", "device": ""}, "two_node and quorum device cannot be configured"),
        (
            3,
            {"last_man_standing": "1", "device": ""},
            "quorum.device is not compatible with last_man_standing",
        ),
        (
            3,
            {"allow_downscale": "1", "device": ""},
            "quorum.device is not compatible with allow_downscale",
        ),
        (3, {"expected_votes": "3", "device": ""}, "quorum.device.votes must be specified when"),
    ],
)
def test_corosyncs_startup_refusals_exit_78(
    nodes: int, values: dict[str, str], reason: str
) -> None:
    device = None
    if values.pop("device", None) is not None:
        device = corosync_conf.Section("device", {"model": "net"})
    with pytest.raises(vq.QuorumConfigError) as caught:
        quorum_setup.startup_check([(i, 1) for i in range(1, nodes + 1)], values, device)
    assert caught.value.exit_code == ExitCode.CONFIG
    assert f"configuration error: {reason}" in str(caught.value)


def test_startup_adjustments_as_corosync() -> None:
    three = [(1, 1), (2, 1), (3, 1)]
    two_node = quorum_setup.startup_check(three, {"two_node": "1"})
    assert two_node.two_node and two_node.wait_for_all  # two_node implies wait_for_all
    explicit = quorum_setup.startup_check(three, {"two_node": "1", "wait_for_all": "0"})
    assert explicit.two_node and not explicit.wait_for_all
    atb = quorum_setup.startup_check([*three, (4, 1)], {"two_node": "1", "auto_tie_breaker": "1"})
    assert not atb.two_node and atb.auto_tie_breaker is vq.TieBreaker.LOWEST
    odd = quorum_setup.startup_check(three, {"auto_tie_breaker": "1"})
    assert odd.auto_tie_breaker is vq.TieBreaker.NONE  # odd votes without WFA: disabled
    tracking = quorum_setup.startup_check(three, {"allow_downscale": "1"})
    assert tracking.expected_votes_tracking


def test_expected_votes_tracking_starts_from_the_nodelist_not_expected_votes() -> None:
    """corosync replaces quorum.expected_votes by the persisted barrier, 0 on a first
    start: the nodelist total counts then."""
    options = quorum_setup.startup_check(
        [(1, 1), (2, 1), (3, 1)], {"expected_votes": "5", "expected_votes_tracking": "1"}
    )
    assert vq.initial_state(options, 1).expected_votes == 3
    assert vq.initial_state(options, 1, ev_tracking_barrier=4).expected_votes == 4
    plain = quorum_setup.startup_check([(1, 1), (2, 1), (3, 1)], {"expected_votes": "5"})
    assert vq.initial_state(plain, 1).expected_votes == 5


def test_embedded_up_options_write_every_key_and_accept_two_node_on_three() -> None:
    options = UpOptions(
        3, two_node=True, quorum=(("last_man_standing_window", "3000"), ("expected_votes", "2"))
    )
    embedded_engine.check_options(options)
    assert options.quorum_values() == {
        "two_node": "1",
        "last_man_standing_window": "3000",
        "expected_votes": "2",
    }
    with pytest.raises(UsageError, match="no node 4"):
        embedded_engine.check_options(UpOptions(3, start=(1, 4)))


SCENARIO = """\
up:
  nodes: 5
  token: 1000
  votes: [1, 1, 1, 1, 1]
  quorum: {last_man_standing: 1, last_man_standing_window: 3000, auto_tie_breaker: 1,
           auto_tie_breaker_node: "5 2", expected_votes_tracking: 1, wait_for_all: 0}
  start: [1, 2]
  qdevice: {algorithm: lms, votes: 2, start: false}
steps:
  - qdevice: start
  - qnetd: stop
  - qnetd: start
  - qdevice: stop
"""


def test_scenario_reach_keys() -> None:
    parsed = sc.parse(SCENARIO, "s.yaml")
    up = parsed.up
    assert dict(up.quorum)["auto_tie_breaker_node"] == "5 2"
    assert dict(up.quorum)["last_man_standing_window"] == "3000"
    assert up.start == (1, 2) and up.qdevice and not up.qdevice_start
    assert (up.qdevice_algorithm, up.qdevice_votes) == ("lms", 2)
    assert [s.describe() for s in parsed.steps] == [
        "qdevice start",
        "qnetd stop",
        "qnetd start",
        "qdevice stop",
    ]
    old = sc.parse("up: {nodes: 2, qdevice: true}\nsteps: [heal]\n")
    assert old.up.qdevice and old.up.qdevice_start and old.up.quorum == ()


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("up:\n  nodes: 3\n  quorum:\n    lms: 1\nsteps: [heal]\n", 4, "unknown quorum key 'lms'"),
        (
            "up:\n  nodes: 3\n  quorum: {two_node: yes}\nsteps: [heal]\n",
            3,
            "quorum two_node: give it as corosync.conf does",
        ),
        (
            "up:\n  nodes: 3\n  quorum:\n    two_node: 300\nsteps: [heal]\n",
            4,
            'Value of key "quorum.two_node" is expected to be integer in range (0..255)',
        ),
        ("up: {nodes: 3, start: [4]}\nsteps: [heal]\n", 1, "start lists a node above 3"),
        ("up: {nodes: 3, qdevice: {algo: lms}}\nsteps: [heal]\n", 1, "unknown key 'algo'"),
        ("up: 3\nsteps:\n  - heal\n  - qdevice: start\n", 4, "need a QDevice in up"),
        ("up: {nodes: 2, qdevice: true}\nsteps:\n  - qnetd: reboot\n", 3, "start or stop"),
    ],
)
def test_bad_reach_keys_name_their_line(text: str, line: int, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        sc.parse(text, "bad.yaml")
    assert caught.value.exit_code == ExitCode.DATA
    assert str(caught.value).startswith(f"bad.yaml:{line}: ") and words in str(caught.value)


def _state(node: int, members: tuple[int, ...], quorate: bool, expected: int) -> sc.NodeState:
    return sc.node_state(node, members, quorate, len(members), expected, expected // 2 + 1, [])


def test_members_that_decide_differently_are_formed_and_reported() -> None:
    """After 'expected' raised one node's value and fresh nodes joined it, corosync keeps
    that node inquorate while the others are quorate: settled, and recorded."""
    views = (_state(1, (1, 2, 3), False, 5), _state(2, (1, 2, 3), True, 3))
    views += (_state(3, (1, 2, 3), True, 3),)
    assert sc.formed(views, [1, 2, 3])
    assert not sc.settled(views, [1, 2, 3])
    assert sc.disagreements(views) == (
        "ring 1,2,3: quorate no on node 1, yes on nodes 2,3",
        "ring 1,2,3: expected_votes 5 on node 1, 3 on nodes 2,3",
        "ring 1,2,3: quorum 3 on node 1, 2 on nodes 2,3",
    )
    split = (_state(1, (1, 2), True, 3), _state(2, (2,), True, 3))
    assert not sc.formed(split, [1, 2])  # node 1 still sees node 2: not re-formed
    assert not sc.formed(views[:2], [1, 2, 3])  # node 3 runs but does not answer
