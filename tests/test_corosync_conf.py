from __future__ import annotations

import json
from pathlib import Path

import pytest

from pvectl import corosync_conf
from pvectl.cli.pvecm_text import cluster_header
from pvectl.errors import ConfigError
from tests.conftest import run_cli

PVE_CONF = """\
logging {
  debug: off
  to_syslog: yes
}

nodelist {
  node {
    name: pve1
    nodeid: 1
    quorum_votes: 1
    ring0_addr: 192.168.15.91
  }
  node {
    name: pve2
    nodeid: 2
    quorum_votes: 2
    ring0_addr: 192.168.15.92
  }
}

quorum {
  provider: corosync_votequorum
  two_node: 1
}

totem {
  cluster_name: homelab
  config_version: 7
  interface {
    linknumber: 0
  }
  ip_version: ipv4-6
  link_mode: passive
  secauth: on
  token_coefficient: 125
  version: 2
}
"""


def test_parse_reads_sections_and_nodelist() -> None:
    root = corosync_conf.parse(PVE_CONF)
    assert root.lookup("totem.cluster_name") == "homelab"
    assert root.lookup("quorum.two_node") == "1"
    nodes = corosync_conf.nodelist(root)
    assert [(n.node_id, n.name, n.votes, n.addresses) for n in nodes] == [
        (1, "pve1", 1, ("192.168.15.91",)),
        (2, "pve2", 2, ("192.168.15.92",)),
    ]
    info = corosync_conf.cluster_info(root)
    assert (info.name, info.config_version, info.transport, info.secure_auth) == (
        "homelab",
        7,
        "knet",
        "on",
    )


def test_dump_round_trips_in_pve_layout() -> None:
    root = corosync_conf.parse(PVE_CONF)
    assert corosync_conf.dump(root) == PVE_CONF


def test_header_fallbacks_match_pvecm() -> None:
    info = corosync_conf.cluster_info(corosync_conf.parse("quorum {\n}\n"))
    assert (info.name, info.config_version, info.transport, info.secure_auth) == (
        "UNKOWN?",
        -1,
        "knet",
        "off",
    )


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("totem {\n  cluster_name: x\n", 2, "not closed"),
        ("totem {\n}\n}\n", 3, "unexpected '}'"),
        ("totem {\n  this is not valid\n}\n", 2, "cannot parse"),
        ("cluster_name: x\n", 1, "outside of any section"),
    ],
)
def test_syntax_errors_name_the_line(text: str, line: int, fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        corosync_conf.parse(text, "/etc/corosync/corosync.conf")
    assert err.value.line == line
    assert f"/etc/corosync/corosync.conf:{line}:" in str(err.value)
    assert fragment in str(err.value)


def test_comments_at_the_end_of_a_line_are_stripped_as_proxmox_does(tmp_path: Path) -> None:
    conf = tmp_path / "corosync.conf"
    conf.write_text(
        PVE_CONF.replace("quorum_votes: 2", "quorum_votes: 2   # the heavy node")
        .replace("totem {", "totem {  # ring settings")
        .replace("nodelist {", "# all nodes\nnodelist {")
    )
    root = corosync_conf.load(conf)
    votes = {n.name: n.votes for n in corosync_conf.nodelist(root, str(conf))}
    assert votes == {"pve1": 1, "pve2": 2}
    assert root.section("totem") is not None
    # the CLI reads the same file: what-if counts the heavy node's 2 votes
    run = run_cli("quorum", "what-if", "--config", str(conf), "--output-format", "json")
    assert run.code == 0, run.stderr
    assert {n["name"]: n["votes"] for n in json.loads(run.stdout)["nodes"]} == votes


@pytest.mark.parametrize("written", ["0003", "7", "12abc"])
def test_config_version_is_printed_as_written(written: str) -> None:
    root = corosync_conf.parse("totem {\n  cluster_name: c\n  config_version: " + written + "\n}\n")
    info = corosync_conf.cluster_info(root)
    assert f"Config Version:   {written}\n" in cluster_header(info)
