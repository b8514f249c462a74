"""An embedded node's configuration, read from a corosync.conf-format file.

The same parser as the corosync target (``pvectl.corosync_conf``), the same sections:
``totem`` (cluster_name, token, token_coefficient, consensus, join, window_size,
max_messages, netmtu, crypto_cipher; and ``accelerated: yes`` for the Accelerated Ring,
which corosync does not have), ``nodelist`` (nodeid, name, ring0_addr,
quorum_votes) and ``quorum`` (all votequorum options). pvectl adds, for embedded nodes only:

* ``nodelist.node.pvectl_port`` (default 5405): nodes sharing one address (``::1``) need
  distinct ports;
* a ``pvectl`` section: ``durability`` (fsync | wal-normal), ``coupling`` (coupled |
  decoupled), ``authkey`` (path of the cluster key), ``qdevice_cert_dir`` (the qdevice
  client's TLS files, default ``<node state dir>/qdevice``: ``qnetd-cacert.crt``,
  ``cluster-NAME.crt``, ``cluster-NAME.key``, PEM).

``quorum.device`` with ``model: net`` makes the node run a qdevice client
(``pvectl.node.qdevice.client_task``): ``timeout``, ``sync_timeout``, ``net { host, port,
algorithm, tie_breaker, tls, connect_timeout }`` as corosync-qdevice reads them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pvectl import corosync_conf, quorum_conf
from pvectl.errors import ConfigError
from pvectl.node.backing_store import Durability
from pvectl.quorum.qdevice.client import cast_vote_interval_ms, heartbeat_interval_ms
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


QDEVICE_ALGORITHMS = ("ffsplit", "lms", "2nodelms")
QDEVICE_TLS = ("on", "off", "required")


@dataclass(frozen=True)
class QdeviceNetConfig:
    """``quorum.device`` (model net), with corosync-qdevice's defaults."""

    host: str
    port: int = 5403
    algorithm: str = "ffsplit"
    tie_breaker: str = "lowest"  # lowest | highest | a node id
    keep_active_partition: bool = False  # keep_active_partition_tie_breaker
    tls: str = "on"
    timeout_ms: int = 10_000
    sync_timeout_ms: int = 30_000
    connect_timeout_ms: int = 8_000
    cert_dir: Path | None = None  # None: <node state dir>/qdevice

    @property
    def heartbeat_interval_ms(self) -> int:
        return heartbeat_interval_ms(self.timeout_ms)

    @property
    def cast_vote_interval_ms(self) -> int:
        return cast_vote_interval_ms(self.timeout_ms)


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
    qdevice: QdeviceNetConfig | None = None

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
    accelerated = totem.get("accelerated")
    if accelerated is not None:
        if accelerated not in ("yes", "no"):
            raise ConfigError(f"totem.accelerated must be yes or no, not {accelerated!r}", where)
        values["accelerated"] = accelerated == "yes"
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
        quorum=quorum_conf.options_from_config(root, where),
        durability=Durability(durability),
        coupling=coupling,
        authkey=key_path,
        encrypt=cipher not in (None, "none"),
        qdevice=_qdevice(root, extra, where),
    )


def _qdevice(
    root: corosync_conf.Section, extra: corosync_conf.Section | None, where: str
) -> QdeviceNetConfig | None:
    quorum = root.section("quorum")
    device = quorum.section("device") if quorum else None
    if device is None or device.get("model") != "net":
        return None
    net = device.section("net")
    host = net.get("host") if net else None
    if net is None or not host:
        raise ConfigError("quorum.device.net.host is required for model net", where)

    def number(section: corosync_conf.Section, key: str, default: int) -> int:
        raw = section.get(key)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError as exc:
            raise ConfigError(f"quorum.device: {key} is not an integer: {raw!r}", where) from exc
        if value <= 0:
            raise ConfigError(f"quorum.device: {key} must be positive", where)
        return value

    timeout = number(device, "timeout", 10_000)
    algorithm = net.get("algorithm") or "ffsplit"
    tls = net.get("tls") or "on"
    tie_breaker = net.get("tie_breaker") or "lowest"
    if algorithm not in QDEVICE_ALGORITHMS:
        raise ConfigError(f"quorum.device.net.algorithm {algorithm!r} is not supported", where)
    if tls not in QDEVICE_TLS:
        raise ConfigError(f"quorum.device.net.tls must be on, off or required: {tls!r}", where)
    if tie_breaker not in ("lowest", "highest") and not tie_breaker.isdigit():
        raise ConfigError(f"quorum.device.net.tie_breaker {tie_breaker!r} is not valid", where)
    keep_active = net.get("keep_active_partition_tie_breaker") or "off"
    if keep_active not in ("on", "off"):
        raise ConfigError(
            f"quorum.device.net.keep_active_partition_tie_breaker must be on or off: "
            f"{keep_active!r}",
            where,
        )
    cert_dir = extra.get("qdevice_cert_dir") if extra else None
    return QdeviceNetConfig(
        host=host,
        port=number(net, "port", 5403),
        algorithm=algorithm,
        tie_breaker=tie_breaker,
        keep_active_partition=keep_active == "on",
        tls=tls,
        timeout_ms=timeout,
        sync_timeout_ms=number(device, "sync_timeout", 30_000),
        connect_timeout_ms=number(net, "connect_timeout", timeout * 8 // 10),
        cert_dir=Path(cert_dir) if cert_dir else None,
    )
