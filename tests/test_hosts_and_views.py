"""--host syntax, named clusters in config.yaml, and comparing several nodes' views."""

from __future__ import annotations

from pathlib import Path

import pytest

from pvectl.errors import ConfigError, UsageError
from pvectl.quorum.partitions import HostView, compare_views
from pvectl.results import Member, QuorumStatus, RingId
from pvectl.targets.hosts import cluster_hosts, config_path, parse_host, select_hosts


@pytest.mark.parametrize(
    ("text", "alias", "user", "port"),
    [
        ("pve1", "pve1", None, None),
        ("root@pve1", "pve1", "root", None),
        ("root@192.168.1.10:2222", "192.168.1.10", "root", 2222),
        ("pve1.lan:22", "pve1.lan", None, 22),
        ("[fd00::1]:2200", "fd00::1", None, 2200),
        ("admin@[::1]", "::1", "admin", None),
    ],
)
def test_host_syntax(text: str, alias: str, user: str | None, port: int | None) -> None:
    spec = parse_host(text)
    assert (spec.alias, spec.user, spec.port) == (alias, user, port)


@pytest.mark.parametrize("text", ["", "@pve1", "pve1:", "pve1:99999", "a b", "root@pve1:x"])
def test_bad_host_syntax_is_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError):
        parse_host(text)


def test_cluster_from_config_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert config_path() == tmp_path / "pvectl" / "config.yaml"
    config_path().parent.mkdir(parents=True)
    config_path().write_text(
        "clusters:\n  homelab:\n    hosts: [pve1, root@pve2, 'pve3:2222']\n"
        "  lab:\n    hosts:\n      - 10.0.0.1\n"
    )
    assert [h.text for h in cluster_hosts("homelab")] == ["pve1", "root@pve2", "pve3:2222"]
    chosen = select_hosts(["pve1", "extra"], "homelab")  # duplicates dropped, order kept
    assert [h.text for h in chosen] == ["pve1", "root@pve2", "pve3:2222", "extra"]
    with pytest.raises(UsageError, match="known: homelab, lab"):
        cluster_hosts("nope")


def test_broken_config_yaml_names_file_and_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    config_path().parent.mkdir(parents=True)
    config_path().write_text("clusters:\n  homelab:\n    hosts: [pve1, pve2\n  x: 1\n")
    with pytest.raises(ConfigError) as caught:
        cluster_hosts("homelab")
    assert str(config_path()) in str(caught.value)
    assert ":4:" in str(caught.value) or ":3:" in str(caught.value)


def view(host: str, ring: RingId, members: list[int], quorate: bool) -> HostView:
    status = QuorumStatus(
        quorum_provider="corosync_votequorum",
        nodes=len(members),
        node_id=members[0],
        ring_id=ring,
        quorate=quorate,
        expected_votes=4,
        highest_expected=4,
        total_votes=len(members),
        quorum=3,
        flags=(),
        members=tuple(Member(m, 1, f"node{m}") for m in members),
    )
    return HostView(host, status)


def test_agreeing_views() -> None:
    ring = RingId(1, 0x20)
    result = compare_views([view("a", ring, [1, 2, 3], True), view("b", ring, [1, 2, 3], True)])
    assert result.agree and not result.split_brain
    assert "all answering hosts agree: ring 1.20, quorate" in result.verdict


def test_partitioned_views_are_flagged() -> None:
    result = compare_views(
        [
            view("a", RingId(1, 0x24), [1, 2], False),
            view("b", RingId(1, 0x24), [1, 2], False),
            view("c", RingId(3, 0x24), [3, 4], False),
            HostView("d", error="d: host unreachable"),
        ]
    )
    assert not result.agree and not result.split_brain
    assert len(result.partitions) == 2
    assert "DISAGREE" in result.verdict and "d: host unreachable" not in result.verdict
    assert "a, b see ring 1.24 with nodes 1, 2" in result.verdict
    assert "did not answer: d" in result.verdict


def test_two_quorate_partitions_are_split_brain() -> None:
    result = compare_views(
        [view("a", RingId(1, 5), [1, 2], True), view("c", RingId(3, 5), [3], True)]
    )
    assert result.split_brain
    assert result.verdict.startswith("SPLIT-BRAIN")


def test_a_stale_quorate_view_during_a_ring_change_is_not_split_brain() -> None:
    # node 3 has not noticed the token loss yet and still lists nodes 1 and 2
    result = compare_views(
        [
            view("a", RingId(1, 8), [1, 2], True),
            view("b", RingId(1, 8), [1, 2], True),
            view("c", RingId(1, 4), [1, 2, 3], True),
        ]
    )
    assert not result.agree and not result.split_brain
    assert "DISAGREE" in result.verdict and "membership change" in result.verdict
