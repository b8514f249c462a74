"""check's rules on facts, with corosync-cmapctl outputs captured from a real 3-node
corosync 3.1.7 cluster (namespaces on this machine, tests/data/)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pvectl.check.facts import link_stats, parse_cmap
from pvectl.check.rules import (
    ConfigFacts,
    FsyncFigures,
    NodeFacts,
    Severity,
    effective_token_ms,
    evaluate,
)
from pvectl.cli.output import OutputFormat, serialize
from pvectl.results import Member, QuorumStatus, RingId

DATA = Path(__file__).parent / "data"


def cfg(count: int = 3, **kwargs: object) -> ConfigFacts:
    nodes = tuple((i, f"node{i}", 1) for i in range(1, count + 1))
    return ConfigFacts(nodes=nodes, **kwargs)  # type: ignore[arg-type]


def status(present: list[int], expected: int = 3, quorum: int = 2, local: int = 1) -> QuorumStatus:
    total = len(present)
    return QuorumStatus(
        quorum_provider="corosync_votequorum",
        nodes=total,
        node_id=local,
        ring_id=RingId(present[0], 0x10),
        quorate=total >= quorum,
        expected_votes=expected,
        highest_expected=expected,
        total_votes=total,
        quorum=quorum,
        flags=("Quorate",) if total >= quorum else (),
        members=tuple(Member(n, 1, f"node{n}", local=n == local) for n in present),
    )


def stats(name: str) -> dict[str, str]:
    return parse_cmap((DATA / name).read_text())


def fast_disk() -> FsyncFigures:
    return FsyncFigures("/var/tmp", 5000.0, 0.4)


def by_check(report_findings: tuple[object, ...], check: str) -> list[object]:
    return [f for f in report_findings if getattr(f, "check", None) == check]


def test_link_stats_from_real_cmapctl_output() -> None:
    links = {(s.node_id, s.link): s for s in link_stats(stats("cmapctl-stats-node1-3up.txt"))}
    assert links[(2, 0)].connected and links[(3, 0)].connected
    assert links[(2, 0)].latency_ave_ms == pytest.approx(0.170)
    assert links[(2, 0)].latency_max_ms == pytest.approx(0.310)
    assert links[(1, 0)].latency_ave_ms is None  # the local node: no samples
    down = {(s.node_id, s.link): s for s in link_stats(stats("cmapctl-stats-node1-node3down.txt"))}
    assert not down[(3, 0)].connected
    assert down[(2, 0)].connected


def healthy(host: str = "node1") -> NodeFacts:
    s = stats("cmapctl-stats-node1-3up.txt")
    return NodeFacts(
        host=host,
        status=status([1, 2, 3]),
        config=cfg(3),
        runtime_token_ms=3650,
        runtime_consensus_ms=4380,
        links=link_stats(s),
        mtt_rx_token_ms=57.0,
        fsync=fast_disk(),
    )


def test_healthy_three_node_cluster_is_all_ok() -> None:
    report = evaluate([healthy()])
    assert report.worst is Severity.ok and report.exit_code == 0
    checks = {f.check: f for f in report.findings}
    assert set(checks) == {"quorum", "expected-votes", "latency", "fsync", "node-count", "token"}
    assert "3 of 3 votes, quorum 2; can lose 1" in checks["quorum"].message
    assert "3 nodes (odd)" in checks["node-count"].message
    assert "would not help" in checks["node-count"].advice
    assert "token 3650 ms, consensus 4380 ms" in checks["token"].message
    assert "about 8.0 s" in checks["token"].message
    assert "node2 link0 0.17 ms avg" in checks["latency"].message


def test_lost_node_is_a_warning_naming_it_and_the_consequence() -> None:
    facts = NodeFacts(
        host="node1",
        status=status([1, 2]),
        config=cfg(3),
        links=link_stats(stats("cmapctl-stats-node1-node3down.txt")),
        fsync=fast_disk(),
    )
    report = evaluate([facts])
    assert report.exit_code == 1
    quorum = next(f for f in report.findings if f.check == "quorum")
    assert quorum.severity is Severity.warning
    assert "1 vote(s) lost: 2 of 3" in quorum.message
    assert "node3 (id 3)" in quorum.message
    assert "one more lost vote stops the cluster" in quorum.message
    link = next(f for f in report.findings if f.check == "link")
    assert "link0 to node3 is down" in link.message


def test_lone_node_is_critical() -> None:
    facts = NodeFacts(host="node1", status=status([1]), config=cfg(3))
    report = evaluate([facts])
    quorum = next(f for f in report.findings if f.check == "quorum")
    assert quorum.severity is Severity.critical and report.exit_code == 2
    assert "NOT quorate: 1 of 3" in quorum.message
    assert "pvectl expected 1" in quorum.advice


def test_expected_votes_lowered_at_runtime() -> None:
    two_of_three = NodeFacts(host="n", status=status([1, 2], expected=2), config=cfg(3))
    found = next(f for f in evaluate([two_of_three]).findings if f.check == "expected-votes")
    assert found.severity is Severity.warning
    assert "changed at runtime: 2 (corosync.conf: 3)" in found.message
    lone = NodeFacts(host="n", status=status([1], expected=1, quorum=1), config=cfg(3))
    found = next(f for f in evaluate([lone]).findings if f.check == "expected-votes")
    assert found.severity is Severity.critical
    assert "split-brain" in found.advice


@pytest.mark.parametrize(
    ("count", "extra", "severity", "words"),
    [
        (2, {}, Severity.warning, "ffsplit"),
        (
            2,
            {"qdevice_model": "net", "qdevice_algorithm": "ffsplit", "qdevice_votes": 1},
            Severity.ok,
            "50/50",
        ),
        (4, {}, Severity.warning, "2/2 split"),
        (4, {"qdevice_model": "net", "qdevice_algorithm": "lms"}, Severity.warning, "lms"),
        (5, {}, Severity.ok, "survives 2"),
        (3, {"qdevice_model": "net", "qdevice_algorithm": "lms"}, Severity.warning, "discourages"),
    ],
)
def test_node_count_and_qdevice_advice(
    count: int, extra: dict[str, object], severity: Severity, words: str
) -> None:
    finding = next(
        f
        for f in evaluate([NodeFacts(host="h", config=cfg(count, **extra))]).findings
        if f.check == "node-count"
    )
    assert finding.severity is severity
    assert words in finding.message + finding.advice


def test_token_against_node_count() -> None:
    assert effective_token_ms(cfg(3)) == 3650
    assert effective_token_ms(cfg(2)) == 3000
    assert effective_token_ms(cfg(5, token_coefficient_ms=125)) == 3375
    big = next(
        f for f in evaluate([NodeFacts(host="h", config=cfg(40))]).findings if f.check == "token"
    )
    assert big.severity is Severity.critical  # 27700 + 33240 ms > HA's window
    assert "token_coefficient" in big.advice
    short = next(
        f
        for f in evaluate(
            [NodeFacts(host="h", config=cfg(3, token_ms=300, token_coefficient_ms=0))]
        ).findings
        if f.check == "token"
    )
    assert short.severity is Severity.warning


@pytest.mark.parametrize(
    ("rate", "p99", "severity"),
    [
        (40.0, 30.0, Severity.critical),
        (500.0, 5.0, Severity.warning),
        (3000.0, 80.0, Severity.warning),
        (5000.0, 0.5, Severity.ok),
    ],
)
def test_fsync_verdicts(rate: float, p99: float, severity: Severity) -> None:
    facts = NodeFacts(host="h", fsync=FsyncFigures("/var/tmp", rate, p99))
    finding = next(f for f in evaluate([facts]).findings if f.check == "fsync")
    assert finding.severity is severity


def test_high_latency_is_critical_beyond_three_nodes() -> None:
    from pvectl.check.rules import LinkStat

    facts = NodeFacts(
        host="h",
        status=status([1, 2, 3, 4, 5], expected=5, quorum=3),
        config=cfg(5),
        links=(LinkStat(2, 0, True, 12.0, 20.0), LinkStat(3, 0, True, 0.3, 0.5)),
    )
    finding = next(f for f in evaluate([facts]).findings if f.check == "latency")
    assert finding.severity is Severity.critical
    facts3 = NodeFacts(
        host="h", status=status([1, 2, 3]), config=cfg(3), links=(LinkStat(2, 0, True, 7.0, 9.0),)
    )
    finding = next(f for f in evaluate([facts3]).findings if f.check == "latency")
    assert finding.severity is Severity.warning


def test_unreachable_host_is_critical_and_json_uses_severity_names() -> None:
    report = evaluate([healthy("a"), NodeFacts(host="b", error="b: host unreachable")])
    assert report.exit_code == 2
    doc = json.loads(serialize(report, OutputFormat.json, "check"))
    assert doc["worst"] == "critical" and doc["exit_code"] == 2
    assert {f["severity"] for f in doc["findings"]} == {"ok", "critical"}
    assert doc["hosts"] == ["a", "b"]


def test_config_facts_carry_the_quorum_models_summary() -> None:
    from pvectl import corosync_conf
    from pvectl.check.facts import config_facts

    nodes = "".join(
        f"  node {{\n    name: pve{i}\n    nodeid: {i}\n    quorum_votes: 1\n"
        f"    ring0_addr: 10.0.0.{i}\n  }}\n"
        for i in (1, 2, 3, 4)
    )
    text = (
        "totem {\n  cluster_name: home\n  config_version: 4\n  token_coefficient: 125\n}\n"
        f"nodelist {{\n{nodes}}}\nquorum {{\n  provider: corosync_votequorum\n}}\n"
    )
    facts = config_facts(corosync_conf.parse(text), "corosync.conf")
    assert [n[1] for n in facts.nodes] == ["pve1", "pve2", "pve3", "pve4"]
    assert facts.token_coefficient_ms == 125 and facts.config_version == 4
    assert facts.what_if is not None and "quorum is 3 of 4" in facts.what_if
    finding = next(
        f for f in evaluate([NodeFacts(host="h", config=facts)]).findings if f.check == "node-count"
    )
    assert finding.severity is Severity.warning
    assert "Model: 4 nodes, 4 votes: quorum is 3 of 4; any 1 node failure" in finding.message
