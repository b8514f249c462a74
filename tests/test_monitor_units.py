"""The watch/exporter's pure parts: corosync stats parsing, rates, failure margin, events,
the exporter's text (checked by promtool) and the dashboard at 80 columns."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from rich.console import Console

from pvectl.cli import watch_text
from pvectl.cli.cmd_exporter import parse_listen
from pvectl.cli.exporter_metrics import SnapshotCollector
from pvectl.errors import ExitCode, UsageError
from pvectl.monitor import cmap_stats, derive
from pvectl.monitor.model import ClusterSnapshot, LinkReading, NodeReading, NodeView
from pvectl.quorum import whatif
from pvectl.results import Member, QdeviceRow, QuorumStatus, RingId, to_jsonable

DATA = Path(__file__).parent / "data"
SCHEMA = Path(__file__).parents[1] / "docs" / "schema" / "watch.schema.json"


def status(
    node_id: int = 1,
    members: tuple[int, ...] = (1, 2, 3),
    seq: int = 8,
    expected: int = 3,
    qdevice: QdeviceRow | None = None,
) -> QuorumStatus:
    total = len(members) + (qdevice.votes if qdevice and qdevice.casting else 0)
    quorum = expected // 2 + 1
    return QuorumStatus(
        quorum_provider="corosync_votequorum",
        nodes=len(members),
        node_id=node_id,
        ring_id=RingId(1, seq),
        quorate=total >= quorum,
        expected_votes=expected,
        highest_expected=expected,
        total_votes=total,
        quorum=quorum,
        flags=("Quorate",) if total >= quorum else (),
        members=tuple(Member(n, 1, f"node{n}", n == node_id) for n in members),
        qdevice=qdevice,
    )


# --- corosync-cmapctl -m stats ----------------------------------------------------------


def test_stats_of_a_healthy_node_give_rotation_counters_and_peer_links() -> None:
    reading = cmap_stats.reading(status(), (DATA / "cmapctl-stats-node1-3up.txt").read_text())
    assert reading.token_rotation_s == pytest.approx(0.092)
    assert reading.retransmits_total == 0
    assert reading.membership_changes_total == 3
    assert [(link.peer, link.connected) for link in reading.links] == [(2, True), (3, True)]
    assert reading.links[1].latency_s == pytest.approx(350e-6)  # knet reports microseconds
    assert reading.links[1].down_count == 1


def test_stats_after_a_peer_died_show_its_link_down() -> None:
    text = (DATA / "cmapctl-stats-node1-node3down.txt").read_text()
    reading = cmap_stats.reading(status(members=(1, 2)), text)
    view = derive.node_view("node1", reading, 100.0)
    assert [(link.peer, link.connected) for link in reading.links] == [(2, True), (3, False)]
    assert view.links_down == 1
    assert reading.membership_changes_total == 4


def test_without_knet_stats_the_links_come_from_cfgtool() -> None:
    from pvectl.results import LinkStatus

    base = replace(
        status(),
        links=(
            LinkStatus(0, "10.0.0.1", ((1, "localhost"), (2, "connected"), (3, "disconnected"))),
        ),
    )
    reading = cmap_stats.reading(base, "")
    assert [(link.peer, link.connected) for link in reading.links] == [(2, True), (3, False)]
    assert reading.token_rotation_s is None


# --- rates and token rotation ------------------------------------------------------------


def test_retransmit_rate_from_two_readings_and_none_after_a_restart() -> None:
    before = NodeReading(status(), retransmits_total=10)
    after = NodeReading(status(), retransmits_total=40)
    assert derive.node_view("n", after, 0, before, 3.0).retransmits_per_s == pytest.approx(10)
    restarted = NodeReading(status(), retransmits_total=2)
    assert derive.node_view("n", restarted, 0, after, 3.0).retransmits_per_s is None


def test_embedded_token_rotation_from_tokens_counted_between_readings() -> None:
    first = NodeReading(status(), tokens_rx_total=100, uptime_s=50.0)
    assert derive.token_rotation(first, None, None) == pytest.approx(0.5)
    later = NodeReading(status(), tokens_rx_total=140, uptime_s=52.0)
    assert derive.token_rotation(later, first, 2.0) == pytest.approx(0.05)


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert derive.percentile(values, 0.99) == 99.0
    assert derive.percentile([5.0], 0.99) == 5.0
    assert derive.percentile([], 0.99) is None


# --- failure margin ----------------------------------------------------------------------


def test_margin_of_three_nodes_is_one_then_zero_after_a_failure() -> None:
    assert derive.failures_survivable(status()) == 1
    assert derive.failures_survivable(status(members=(1, 2))) == 0
    assert derive.failures_survivable(status(members=(1,))) == 0  # not quorate


def test_margin_of_five_nodes_counts_down() -> None:
    five = tuple(range(1, 6))
    assert derive.failures_survivable(status(members=five, expected=5)) == 2
    assert derive.failures_survivable(status(members=(1, 2, 3, 4), expected=5)) == 1


def test_margin_with_unequal_votes_depends_on_who_is_down() -> None:
    options = whatif.QuorumOptions.build([(1, 2), (2, 1), (3, 1), (4, 1)])
    report = whatif.analyse(options)
    # 5 votes, quorum 3: any one node may fail; two never safely (1 and 2 leave 2 votes)
    assert derive.margin(report, frozenset()) == 1
    assert derive.margin(report, frozenset({2})) == 0  # now losing node 1 loses quorum
    assert derive.margin(report, frozenset({1, 2})) == 0  # not quorate already


# --- snapshots and events ----------------------------------------------------------------


def view(name: str, st: QuorumStatus, **changes: object) -> NodeView:
    return replace(derive.node_view(name, NodeReading(st), 100.0), **changes)  # type: ignore[arg-type]


def snap(views: list[NodeView], statuses: dict[str, QuorumStatus], at: float, prev=None):  # type: ignore[no-untyped-def]
    return derive.snapshot("c", at, views, statuses, previous=prev, watching_since=0.0)


def test_a_killed_node_gives_membership_quorum_and_reachability_events() -> None:
    s1 = {f"node{n}": status(n) for n in (1, 2, 3)}
    first = snap([view(k, v) for k, v in s1.items()], s1, 10.0)
    assert first.events == () and first.failures_survivable == 1
    assert not first.membership_change_seen
    s2 = {"node1": status(1, (1,), seq=12)}
    views = [view("node1", s2["node1"])]
    views += [
        derive.stale_view(n, first.nodes[i], "refused") for i, n in ((1, "node2"), (2, "node3"))
    ]
    second = snap(views, s2, 15.0, first)
    kinds = [(e.node, e.kind) for e in second.events]
    assert ("node1", "membership") in kinds
    assert ("node1", "quorum") in kinds
    assert ("node2", "reachability") in kinds
    assert "left 2,3" in next(e.text for e in second.events if e.kind == "membership")
    assert second.membership_change_seen and second.seconds_since_membership_change == 0
    assert derive.health(second) == ExitCode.ERROR
    assert second.failures_survivable == 0
    assert second.nodes[1].stale and second.nodes[1].ring_id == "1.8"  # last known kept


def test_link_and_qdevice_changes_are_events() -> None:
    st = status()
    up = view("node1", st, links=(LinkReading(0, 2, True),))
    down = view(
        "node1",
        replace(st, qdevice=QdeviceRow(1)),
        links=(LinkReading(0, 2, False),),
        qdevice_votes=1,
    )
    first = snap([up], {"node1": st}, 1.0)
    second = snap([down], {"node1": st}, 2.0, first)
    texts = [e.text for e in second.events]
    assert "node1: link 0 to node 2 DOWN" in texts
    assert "node1: qdevice votes none -> 1" in texts


def test_split_brain_is_two_quorate_disjoint_partitions() -> None:
    # two nodes each believing they alone are quorate (e.g. expected votes lowered)
    a = status(1, (1,), seq=20, expected=1)
    b = status(2, (2,), seq=21, expected=1)
    both = snap([view("node1", a), view("node2", b)], {"node1": a, "node2": b}, 5.0)
    assert both.split_brain and both.partitions == 2
    assert "SPLIT BRAIN" in both.verdict
    assert derive.health(both) == ExitCode.NOT_QUORATE


def test_health_is_ok_only_when_all_answer_quorate_and_agree() -> None:
    s1 = {f"node{n}": status(n) for n in (1, 2, 3)}
    assert derive.health(snap([view(k, v) for k, v in s1.items()], s1, 1.0)) == ExitCode.OK


# --- exporter and dashboard ----------------------------------------------------------------


def _sample_snapshot() -> ClusterSnapshot:
    text = (DATA / "cmapctl-stats-node1-node3down.txt").read_text()
    st = status(1, (1, 2), seq=9)
    node1 = derive.node_view("node1", cmap_stats.reading(st, text), 100.0)
    node2 = derive.node_view("node2", NodeReading(status(2, (1, 2), seq=9)), 100.0)
    node3 = derive.stale_view("node3", None, "node3: host unreachable")
    statuses = {"node1": st, "node2": status(2, (1, 2), seq=9)}
    return derive.snapshot("lab", 130.0, [node1, node2, node3], statuses, watching_since=100.0)


def test_exporter_text_passes_promtool_and_dead_node_is_up_zero() -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(_sample_snapshot, "here"))
    text = generate_latest(registry).decode()
    assert 'pvectl_up{cluster="lab",node="node3"} 0.0' in text
    assert 'pvectl_link_up{cluster="lab",link="0",node="node1",peer="3"} 0.0' in text
    assert 'pvectl_link_errors{cluster="lab",node="node1"} 1.0' in text
    assert 'pvectl_quorate{cluster="lab",node="node3"}' not in text  # no stale values
    assert "pvectl_membership_changes_total" in text
    if shutil.which("promtool") is None:
        pytest.skip("needs promtool (Debian package prometheus)")
    check = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_dashboard_fits_80_columns_and_marks_the_stale_node() -> None:
    console = Console(width=80, record=True, color_system=None)
    console.print(watch_text.render(_sample_snapshot(), 24))
    lines = console.export_text().splitlines()
    assert all(len(line) <= 80 for line in lines)
    assert len(lines) <= 24
    row = next(line for line in lines if line.startswith("node3"))
    assert "NO DATA" in row
    assert any(line.startswith("node1") and "1 DOWN" in line for line in lines)


def test_snapshot_json_matches_the_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    document = json.loads(json.dumps(to_jsonable(_sample_snapshot())))
    jsonschema.validate(document, json.loads(SCHEMA.read_text()))


def test_listen_addresses() -> None:
    assert parse_listen("127.0.0.1:9595") == ("127.0.0.1", 9595)
    assert parse_listen("[::1]:9100") == ("::1", 9100)
    assert parse_listen(":9595") == ("0.0.0.0", 9595)
    for bad in ("9595", "host:0", "host:99999", "[::1]"):
        with pytest.raises(UsageError):
            parse_listen(bad)


def test_example_alert_rules_pass_promtool() -> None:
    if shutil.which("promtool") is None:
        pytest.skip("needs promtool (Debian package prometheus)")
    rules = Path(__file__).parents[1] / "contrib" / "pvectl-alerts.yml"
    check = subprocess.run(
        ["promtool", "check", "rules", str(rules)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "7 rules found" in check.stdout
