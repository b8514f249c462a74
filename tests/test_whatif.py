"""What-if: failure tolerance, splits and advice, and the two CLI entry points."""

from __future__ import annotations

import json

import pytest

from pvectl.cli import cmd_cluster
from pvectl.cli.output import OutputFormat
from pvectl.quorum.whatif import analyse, options_for_nodes, options_from_status
from pvectl.results import ClusterInfo, Member, QdeviceRow, QuorumStatus, RingId
from tests.conftest import run_cli


@pytest.mark.parametrize(
    ("nodes", "kw", "always", "qnetd_down"),
    [
        (1, {}, 0, None),
        (2, {}, 0, None),
        (2, {"two_node": True}, 1, None),
        (2, {"qdevice": "ffsplit"}, 1, 0),
        (3, {}, 1, None),
        (3, {"qdevice": "lms"}, 2, 0),
        (4, {}, 1, None),
        (4, {"qdevice": "ffsplit"}, 2, 1),
        (5, {}, 2, None),
        (6, {}, 2, None),
        (6, {"qdevice": "ffsplit"}, 3, 2),
        (7, {}, 3, None),
    ],
)
def test_failures_always_survived(
    nodes: int, kw: dict[str, object], always: int, qnetd_down: int | None
) -> None:
    report = analyse(options_for_nodes(nodes, **kw))  # type: ignore[arg-type]
    assert report.max_failures_always_survived == always
    assert report.max_failures_always_survived_qnetd_down == qnetd_down
    assert len([f for f in report.failures if "qnetd" not in f.failed]) == 2**nodes


def test_weighted_votes_survive_more_when_the_right_nodes_fail() -> None:
    report = analyse(options_for_nodes(3, [3, 1, 1]))
    assert report.max_failures_always_survived == 0  # losing the 3-vote node stops it
    assert report.max_failures_survivable == 2  # node1 alone has 3 of 5
    assert any("different vote counts" in line for line in report.advice)


def test_even_split_blocks_both_halves_unless_a_tie_breaker_decides() -> None:
    plain = analyse(options_for_nodes(4))
    halves = [s for s in plain.splits if len(s.side_a) == 2]
    assert halves and all(s.verdict == "whole cluster blocked" for s in halves)
    assert any("ffsplit" in line and "raises that to 2" in line for line in plain.advice)
    ffsplit = analyse(options_for_nodes(4, qdevice="ffsplit"))
    halves = [s for s in ffsplit.splits if len(s.side_a) == 2]
    assert all(s.verdict == "one side continues" and s.quorate_a for s in halves)  # node1's side


def test_two_node_splits_into_split_brain_and_says_so() -> None:
    report = analyse(options_for_nodes(2, two_node=True))
    assert [s.verdict for s in report.splits] == ["split brain"]
    assert any("fencing" in line for line in report.advice)


def test_odd_cluster_advice_warns_about_qdevice() -> None:
    plain = analyse(options_for_nodes(3))
    assert any(
        "not recommended" in line and "single point of failure" in line for line in plain.advice
    )
    ffsplit = analyse(options_for_nodes(3, qdevice="ffsplit"))
    assert any("meant for even node counts" in line for line in ffsplit.advice)
    lms = analyse(options_for_nodes(5, qdevice="lms"))
    assert any("only with care" in line for line in lms.advice)


def test_lms_one_at_a_time_column() -> None:
    report = analyse(options_for_nodes(5, last_man_standing=True))
    three = next(f for f in report.failures if f.failed == ("node1", "node2", "node3"))
    assert (three.quorate, three.quorate_one_at_a_time) == (False, True)
    four = next(f for f in report.failures if len(f.failed) == 4)
    assert four.quorate_one_at_a_time is False  # 2 -> 1 needs auto_tie_breaker too


def _status(flags: tuple[str, ...] = ("Quorate",)) -> QuorumStatus:
    return QuorumStatus(
        quorum_provider="corosync_votequorum",
        nodes=2,
        node_id=1,
        ring_id=RingId(1, 0x10),
        quorate="Quorate" in flags,
        expected_votes=3,
        highest_expected=3,
        total_votes=2,
        quorum=2,
        flags=flags,
        members=(Member(1, 1, "pve1", local=True), Member(2, 1, "pve2")),
        cluster=ClusterInfo("lab", 3, "knet", "on"),
        source="lab",
    )


def test_options_inferred_from_a_status_count_the_missing_votes() -> None:
    options, names = options_from_status(_status())
    assert options.node_votes == ((1, 1), (2, 1), (3, 1))
    assert names == {1: "pve1", 2: "pve2", 3: "missing1"}
    with_device = QuorumStatus(**{**_status().__dict__, "qdevice": QdeviceRow(votes=1)})
    options, _ = options_from_status(with_device)
    assert options.node_votes == ((1, 1), (2, 1)) and options.qdevice_votes == 1


def test_status_what_if_text_keeps_pvecm_layout_then_adds_the_table(
    capsys: pytest.CaptureFixture[str],
) -> None:
    cmd_cluster._status_with_what_if(_status(), OutputFormat.text)
    out = capsys.readouterr().out
    assert out.startswith("Cluster information\n-------------------\nName:             lab\n")
    assert "Membership information" in out
    assert out.index("Membership information") < out.index("Failures always survived: 1")
    assert "missing1" in out


def test_status_what_if_json_adds_a_what_if_key(capsys: pytest.CaptureFixture[str]) -> None:
    cmd_cluster._status_with_what_if(_status(), OutputFormat.json)
    data = json.loads(capsys.readouterr().out)
    assert data["quorate"] is True and data["expected_votes"] == 3
    assert data["what_if"]["max_failures_always_survived"] == 1
    assert len(data["what_if"]["failures"]) == 8


def test_cli_what_if_json() -> None:
    run = run_cli(
        "quorum", "what-if", "--nodes", "4", "--qdevice", "ffsplit", "--output-format", "json"
    )
    assert run.code == 0, run.stderr
    data = json.loads(run.stdout)
    assert data["expected_votes"] == 5 and data["quorum"] == 3
    assert data["max_failures_always_survived"] == 2
    assert data["max_failures_always_survived_qnetd_down"] == 1


def test_cli_what_if_from_corosync_conf(tmp_path: object) -> None:
    from pathlib import Path

    conf = Path(str(tmp_path)) / "corosync.conf"
    conf.write_text(
        "totem {\n  cluster_name: t\n}\n"
        "nodelist {\n"
        + "".join(
            f"  node {{\n    name: pve{i}\n    nodeid: {i}\n    ring0_addr: 10.0.0.{i}\n  }}\n"
            for i in (1, 2, 3)
        )
        + "}\nquorum {\n  provider: corosync_votequorum\n}\n"
    )
    run = run_cli("quorum", "what-if", "--config", str(conf))
    assert run.code == 0, run.stderr
    assert "pve3" in run.stdout and "Failures always survived: 1" in run.stdout


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("--nodes", "0"), 64, "--nodes must be between 1 and 32"),
        (("--nodes", "3", "--votes", "1,1"), 64, "--votes has 2 values for 3 nodes"),
        (("--nodes", "3", "--votes", "1,a,1"), 64, "--votes must be integers"),
        (("--nodes", "3", "--qdevice", "bogus"), 64, "bogus"),
        (("--nodes", "2", "--two-node", "--qdevice", "ffsplit"), 78, "two_node and quorum device"),
        (("--config", "/nonexistent/corosync.conf"), 66, "no such file"),
        ((), 64, "give --nodes"),
    ],
)
def test_cli_what_if_bad_input(args: tuple[str, ...], code: int, message: str) -> None:
    run = run_cli("quorum", "what-if", *args)
    assert run.code == code, (run.stdout, run.stderr)
    assert message in run.stderr and run.stderr.startswith("pvectl: error:")
    assert "Traceback" not in run.stderr


def test_large_symmetric_clusters_use_one_set_per_count() -> None:
    report = analyse(options_for_nodes(13))
    assert not report.exhaustive
    assert [len(f.failed) for f in report.failures] == list(range(14))
    assert report.max_failures_always_survived == 6
    assert (
        report.max_failures_always_survived
        == analyse(options_for_nodes(9)).max_failures_always_survived + 2
    )


def test_large_uneven_clusters_are_refused_not_guessed() -> None:
    from pvectl.quorum.whatif import WhatIfUnsupported

    with pytest.raises(WhatIfUnsupported, match="equal votes"):
        analyse(options_for_nodes(11, [2] + [1] * 10))
