"""An embedded node's configuration, read from a corosync.conf-format file.

The same parser as the corosync target (``pvectl.corosync_conf``), the same sections:
``totem`` (cluster_name, token, token_coefficient, consensus, join, window_size,
max_messages, netmtu, crypto_cipher), ``nodelist`` (nodeid, name, ring0_addr,
quorum_votes) and ``quorum`` (all votequorum options). pvectl adds, for embedded nodes only:

* ``nodelist.node.pvectl_port`` (default 5405): nodes sharing one address (``::1``) need
  distinct ports;
* a ``pvectl`` section: ``durability`` (fsync | wal-normal), ``coupling`` (coupled |
  decoupled), ``authkey`` (path of the cluster key).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pvectl import corosync_conf
from pvectl.errors import ConfigError
from pvectl.node.backing_store import Durability
from pvectl.quorum.votequorum import QuorumOptions
from pvectl.results import ClusterInfo
from pvectl.totem.srp import TotemConfig

DEFAULT_PORT = 5405
COUPLINGS = ("coupled", "decoupled")


@dataclass(frozen=True)
class Peer:
    node_id: int
    name: str
    address: str
    port: int
    votes: int


@dataclass(frozen=True)
class NodeConfig:
    node_id: int
    cluster: ClusterInfo
    peers: tuple[Peer, ...]
    totem: TotemConfig
    quorum: QuorumOptions
    durability: Durability
    coupling: str
    authkey: Path
    encrypt: bool

    @property
    def me(self) -> Peer:
        return next(p for p in self.peers if p.node_id == self.node_id)

    @property
    def names(self) -> dict[int, str]:
        return {p.node_id: p.name for p in self.peers}


_TOTEM_INTS = (
    "token",
    "token_coefficient",
    "consensus",
    "join",
    "merge",
    "window_size",
    "max_messages",
    "netmtu",
    "fail_recv_const",
    "seqno_unchanged_const",
)


def load(path: Path, node_id: int) -> NodeConfig:
    root = corosync_conf.load(path)
    where = str(path)
    totem = root.section("totem")
    if totem is None:
        raise ConfigError("no totem section", where)
    entries = corosync_conf.nodelist(root, where)
    if not entries:
        raise ConfigError("no nodelist (embedded nodes need one)", where)
    ports: dict[int, int] = {}
    nodes_section = root.section("nodelist")
    assert nodes_section is not None
    for block in nodes_section.sections("node"):
        raw_id, raw_port = block.get("nodeid"), block.get("pvectl_port")
        if raw_id is not None and raw_port is not None:
            try:
                ports[int(raw_id)] = int(raw_port)
            except ValueError as exc:
                raise ConfigError(f"bad pvectl_port {raw_port!r}", where) from exc
    peers = []
    for entry in entries:
        if not entry.addresses:
            raise ConfigError(f"node {entry.node_id} has no ring0_addr", where)
        peers.append(
            Peer(
                entry.node_id,
                entry.name,
                entry.addresses[0],
                ports.get(entry.node_id, DEFAULT_PORT),
                entry.votes,
            )
        )
    if node_id not in {p.node_id for p in peers}:
        raise ConfigError(f"node id {node_id} is not in the nodelist", where)
    values: dict[str, Any] = {}
    for key in _TOTEM_INTS:
        raw = totem.get(key)
        if raw is not None:
            try:
                values[key] = int(raw)
            except ValueError as exc:
                raise ConfigError(f"totem.{key}: not an integer: {raw!r}", where) from exc
    extra = root.section("pvectl")
    durability = (extra.get("durability") if extra else None) or "fsync"
    coupling = (extra.get("coupling") if extra else None) or "decoupled"
    if durability not in {d.value for d in Durability}:
        raise ConfigError(
            f"pvectl.durability must be fsync or wal-normal, not {durability!r}", where
        )
    if coupling not in COUPLINGS:
        raise ConfigError(f"pvectl.coupling must be coupled or decoupled, not {coupling!r}", where)
    key_path = Path((extra.get("authkey") if extra else None) or path.parent / "authkey")
    cipher = totem.get("crypto_cipher", "none")
    return NodeConfig(
        node_id=node_id,
        cluster=corosync_conf.cluster_info(root),
        peers=tuple(peers),
        totem=dataclasses.replace(TotemConfig(), **values),
        quorum=QuorumOptions.from_config(root, where),
        durability=Durability(durability),
        coupling=coupling,
        authkey=key_path,
        encrypt=cipher not in (None, "none"),
    )
