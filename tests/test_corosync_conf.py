from __future__ import annotations

import pytest

from pvectl import corosync_conf
from pvectl.errors import ConfigError

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
