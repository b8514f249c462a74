"""Fuzz targets for the text files a user hands pvectl: corosync.conf and scenario YAML.

Bytes are decoded as UTF-8 with replacement characters (the CLI refuses non-UTF-8 files
before parsing; the replacement keeps mutated inputs reaching the parsers). A
``ConfigError`` (exit 65, one line) is the documented refusal of both; ``quorum
what-if --config`` also refuses a cluster beyond its limits with ``WhatIfUnsupported``.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from pvectl import corosync_conf, quorum_conf
from pvectl.errors import ConfigError
from pvectl.lab import scenario
from pvectl.quorum import whatif
from tests.fuzz.harness import FuzzTarget

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


def _corosync_conf(nodes: int, quorum: str = "", extra_node: str = "") -> bytes:
    """A corosync.conf as Proxmox VE writes it (pvecm create / addnode)."""
    blocks = "".join(
        f"  node {{\n    name: pve{i}\n    nodeid: {i}\n    quorum_votes: 1\n"
        f"    ring0_addr: 192.0.2.{10 + i}\n{extra_node}  }}\n"
        for i in range(1, nodes + 1)
    )
    return (
        "logging {\n  debug: off\n  to_syslog: yes\n}\n\n"
        f"nodelist {{\n{blocks}}}\n\n"
        "quorum {\n  provider: corosync_votequorum\n"
        f"{quorum}}}\n\n"
        "totem {\n  cluster_name: prod\n  config_version: 3\n  interface {\n"
        "    linknumber: 0\n  }\n  ip_version: ipv4-6\n  link_mode: passive\n"
        "  secauth: on\n  version: 2\n}\n"
    ).encode()


CONF_SEEDS = (
    _corosync_conf(3),
    _corosync_conf(2, "  two_node: 1\n"),
    _corosync_conf(
        4,
        "  device {\n    model: net\n    votes: 1\n    net {\n      algorithm: ffsplit\n"
        "      host: 192.0.2.5\n      tls: on\n    }\n  }\n",
        "    ring1_addr: 198.51.100.1\n",
    ),
    _corosync_conf(4, "  last_man_standing: 1\n  wait_for_all: 1\n  auto_tie_breaker: 1\n"),
)


def run_corosync_conf(data: bytes) -> None:
    """What ``quorum what-if --config`` does with a file: parse, read the nodelist and
    the quorum options, and (for small clusters, to keep each input fast) the analysis."""
    text = data.decode("utf-8", errors="replace")
    try:
        root = corosync_conf.parse(text, "fuzz.conf")
        corosync_conf.cluster_info(root)
        entries = corosync_conf.nodelist(root, "fuzz.conf")
        options = quorum_conf.options_from_config(root, "fuzz.conf")
        if 0 < len(entries) <= 4:
            whatif.analyse(options, {e.node_id: e.name for e in entries})
    except (ConfigError, whatif.WhatIfUnsupported):
        pass


SCENARIO_SEEDS = (
    *(path.read_bytes() for path in sorted(SCENARIOS.glob("*.yaml"))),
    b"""\
description: every step kind
up: {nodes: 4, token: 1000, votes: [1, 1, 1, 2], wait_for_all: false, two_node: false}
steps:
  - kill: 1
  - stop: 2
  - start: 2
  - pause: {node: 3, seconds: 1.5}
  - partition: [[1, 2], [3]]
  - heal
  - expected: {node: 3, votes: 2}
  - expected: 4
  - wait: 2
  - wait: {node: 2, members: [2, 1], quorate: true, timeout: 5}
  - expect: {node: 2, quorate: false, flags: [Quorate, 2Node], quorum: 3, total_votes: 4}
""",
)


def run_scenario(data: bytes) -> None:
    """``lab run FILE`` up to the first lab action: the strict YAML load and validation."""
    with contextlib.suppress(ConfigError):
        scenario.parse(data.decode("utf-8", errors="replace"), "fuzz.yaml")


TARGETS = [
    FuzzTarget("corosync_conf", run_corosync_conf, seeds=CONF_SEEDS, max_size=8192),
    FuzzTarget("scenario_yaml", run_scenario, seeds=SCENARIO_SEEDS, max_size=8192),
]
