"""The lab's pieces that need no root: corosync.conf layout, option checks, namespace
matching, nftables rule text, the state directory and the state file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pvectl import corosync_conf
from pvectl.errors import UsageError
from pvectl.lab import corosync_config, corosync_engine, netns
from pvectl.lab import state as lab_state
from pvectl.lab.corosync_config import UpOptions
from pvectl.lab.state import LabNode, LabState


def _nodes(count: int, votes: tuple[int, ...] = ()) -> tuple[LabNode, ...]:
    return tuple(
        LabNode(
            i,
            f"node{i}",
            f"pvcl-t-n{i}",
            f"10.99.9.{i}",
            f"/x/node{i}",
            votes[i - 1] if votes else 1,
        )
        for i in range(1, count + 1)
    )


def test_conf_is_in_proxmox_layout_and_parses_back() -> None:
    text = corosync_config.build_conf("tlab", _nodes(3, (1, 1, 2)), UpOptions(3, token=1000))
    root = corosync_conf.parse(text)
    assert corosync_conf.dump(root) == text  # already in write_conf's sorted layout
    totem = root.section("totem")
    assert totem is not None
    assert (totem.get("secauth"), totem.get("link_mode"), totem.get("token_coefficient")) == (
        "on",
        "passive",
        "125",
    )
    assert totem.get("token") == "1000" and totem.get("transport") is None
    entries = corosync_conf.nodelist(root)
    assert [(e.node_id, e.votes, e.addresses) for e in entries] == [
        (1, 1, ("10.99.9.1",)),
        (2, 1, ("10.99.9.2",)),
        (3, 2, ("10.99.9.3",)),
    ]
    assert "\n\nnodelist {\n" in text and text.startswith("logging {\n  debug: off\n")


def test_conf_options() -> None:
    udpu = corosync_conf.parse(
        corosync_config.build_conf("t", _nodes(2), UpOptions(2, transport="udpu"))
    )
    assert udpu.lookup("totem.transport") == "udpu" and udpu.lookup("totem.secauth") is None
    two = corosync_conf.parse(
        corosync_config.build_conf("t", _nodes(2), UpOptions(2, two_node=True, wait_for_all=False))
    )
    assert two.lookup("quorum.two_node") == "1" and two.lookup("quorum.wait_for_all") == "0"


@pytest.mark.parametrize(
    "options",
    [
        UpOptions(0),
        UpOptions(17),
        UpOptions(3, votes=(1, 1)),
        UpOptions(3, transport="udp"),
        UpOptions(3, token=5),
        UpOptions(2, votes=(1, 300)),
    ],
)
def test_bad_up_options(options: UpOptions) -> None:
    with pytest.raises(UsageError):
        corosync_config.check_options(options)


def test_two_node_on_three_nodes_is_accepted_as_corosync_does() -> None:
    corosync_config.check_options(UpOptions(3, two_node=True))
    conf = corosync_conf.parse(
        corosync_config.build_conf(
            "t", _nodes(3), UpOptions(3, quorum=(("two_node", "1"), ("expected_votes", "2")))
        )
    )
    assert conf.lookup("quorum.two_node") == "1" and conf.lookup("quorum.expected_votes") == "2"


@pytest.mark.parametrize(
    ("quorum", "nodes", "exit_code", "reason"),
    [
        (
            (("auto_tie_breaker", "1"), ("last_man_standing", "1")),
            3,
            78,
            "configuration error: auto_tie_breaker & last_man_standing not available in odd "
            "sized cluster",
        ),
        (
            (("last_man_standing", "on"),),
            3,
            78,
            'Value of key "quorum.last_man_standing" is expected',
        ),
        ((("expected_votes", "-1"),), 3, 78, "integer in range (0..4294967295)"),
    ],
)
def test_quorum_refusals_are_corosyncs(
    quorum: tuple[tuple[str, str], ...], nodes: int, exit_code: int, reason: str
) -> None:
    from pvectl.errors import PvectlError

    with pytest.raises(PvectlError) as caught:
        corosync_config.check_options(UpOptions(nodes, quorum=quorum))
    assert caught.value.exit_code == exit_code and reason in str(caught.value)


def test_partition_groups() -> None:
    state = LabState(
        "t", "corosync", "/x", "pvcl-t-", "pvcl-t-hub", "10.99.9.0/24", "t", "knet", _nodes(4)
    )
    assert corosync_engine.parse_groups(["1,2", "3 4"], state) == [[1, 2], [3, 4]]
    with pytest.raises(UsageError, match="overlap"):
        corosync_engine.parse_groups(["1,2", "2,3"], state)
    with pytest.raises(UsageError, match="no node 7"):
        corosync_engine.parse_groups(["1", "7"], state)
    with pytest.raises(UsageError, match="two groups"):
        corosync_engine.parse_groups(["1,2"], state)
    with pytest.raises(UsageError, match="not a node id"):
        corosync_engine.parse_groups(["1", "x"], state)


def test_nft_rules() -> None:
    rules = netns.partition_rules(["10.99.9.3", "10.99.9.4"])
    assert "ip saddr { 10.99.9.3, 10.99.9.4 } drop" in rules
    assert "ip daddr { 10.99.9.3, 10.99.9.4 } drop" in rules
    assert 'iifname "eth0" numgen random mod 100 < 25 drop' in netns.loss_rules(25)


def test_namespaces_of_one_lab_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "pvcl-a-hub",
        "pvcl-a-n1",
        "pvcl-a-n12",
        "pvcl-a-b-n1",
        "pvcl-ab-n1",
        "pvt-ssh-n1",
        "cslab-n1",
    ):
        (tmp_path / name).touch()
    monkeypatch.setattr(netns, "NETNS_DIR", tmp_path)
    assert netns.lab_namespaces("a") == ["pvcl-a-hub", "pvcl-a-n1", "pvcl-a-n12"]
    assert netns.lab_namespaces("a-b") == ["pvcl-a-b-n1"]


def test_state_dir_and_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert lab_state.lab_dir("tx") == tmp_path / "pvectl" / "lab" / "tx"
    state = LabState(
        "tx",
        "corosync",
        str(lab_state.lab_dir("tx")),
        "pvcl-tx-",
        "pvcl-tx-hub",
        "10.99.9.0/24",
        "tx",
        "knet",
        _nodes(2),
        {"token": 1000},
    )
    lab_state.save(state.with_pid(2, 4242))
    loaded = lab_state.load("tx")
    assert loaded is not None and loaded.node(2).pid == 4242 and loaded.options == {"token": 1000}
    assert [lab.name for lab in lab_state.all_labs()] == ["tx"]
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "missing"))
    fallback = (
        Path("/run/pvectl/lab") if os.geteuid() == 0 else Path(f"/tmp/pvectl-{os.getuid()}/lab")
    )
    assert lab_state.labs_root() == fallback
    for bad in ("", "-x", "a/b", "x" * 17, "a b"):
        with pytest.raises(UsageError):
            lab_state.check_lab_name(bad)


def test_an_operation_the_corosync_engine_cannot_honour_names_the_engine() -> None:
    """Both engines implement every LabEngine operation (mypy checks the dispatch); what
    the corosync engine cannot do is a usage error (64) that names it."""
    from pathlib import Path

    from pvectl.errors import ExitCode, UsageError
    from pvectl.lab import corosync_engine

    for call in (
        lambda: corosync_engine.slow_disk("x", 1, 10.0),
        lambda: corosync_engine.mount_node("x", 1, Path("/mnt")),
    ):
        with pytest.raises(UsageError, match="the corosync engine") as caught:
            call()
        assert caught.value.exit_code == ExitCode.USAGE
