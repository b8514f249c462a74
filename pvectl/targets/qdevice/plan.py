"""The pure part of ``pvectl qdevice setup/remove``: what the cluster looks like (the survey
of every node), the guards pvecm runs (and the ones it lacks), the algorithm, and the
corosync.conf edits, all without I/O, so they are tested without a cluster. ``setup``
carries the plan out over SSH."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pvectl import corosync_conf
from pvectl.corosync_conf import Section
from pvectl.errors import ExitCode, PvectlError, UsageError

PVE_CONF = "/etc/pve/corosync.conf"  # pmxcfs's cluster-wide copy: its presence means Proxmox


class QdeviceSetupError(PvectlError):
    """A guard refused before anything changed (exit 78 unless said otherwise)."""

    exit_code = ExitCode.CONFIG


@dataclass(frozen=True)
class NodeView:
    """One ``--host`` as the survey found it."""

    host: str
    node_id: int
    config_path: str
    config_text: str
    membership: tuple[int, ...]
    systemd: bool
    has_nssdb: bool


@dataclass(frozen=True)
class Survey:
    nodes: tuple[NodeView, ...]
    cluster_name: str
    config: Section
    nodelist: tuple[corosync_conf.NodeEntry, ...]
    pve: bool  # /etc/pve/corosync.conf is the source (pmxcfs copies it to each node)


@dataclass(frozen=True)
class QdeviceChange:
    """What setup or remove did (or, with --dry-run, would do)."""

    action: str
    cluster: str
    hosts: tuple[str, ...]
    plan: tuple[str, ...]
    done: tuple[str, ...]
    dry_run: bool
    config_version_before: int
    config_version_after: int
    algorithm: str | None = None
    qnetd: str | None = None
    service_manager: str = "systemd"
    votes: dict[str, str] = field(default_factory=dict)  # host -> its Qdevice column
    seconds: tuple[float, ...] = ()  # per step done


# ---- pure decisions ---------------------------------------------------------------------


def choose_algorithm(node_count: int, force: bool, requested: str | None) -> str:
    """pvecm: ffsplit for even clusters; an odd count only with --force, then lms."""
    if node_count % 2 == 1 and not force:
        raise QdeviceSetupError(
            f"clusters with an odd node count ({node_count}) are not officially supported: "
            "a QDevice adds no tie-breaking there; rerun with --force to use algorithm lms"
        )
    if requested:
        return requested
    return "lms" if node_count % 2 == 1 else "ffsplit"


def qnetd_tls_note(tool_status: str, host: str, tls: str = "required") -> str | None:
    """What to tell the user when ``corosync-qnetd-tool -s`` shows a qnetd that takes
    plaintext clients (``-s on``, corosync-qnetd's default): anyone who reaches TCP 5403
    could register as a node of this cluster before the real one (which is then refused
    as a duplicate node id). pvectl does not change the qnetd host's daemon: it may serve
    other clusters that have no certificates yet."""
    for line in tool_status.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "TLS":
            mode = value.strip().split(" ", 1)[0]
            if mode == "Required":
                return None
            if mode == "Unsupported" and tls == "required":
                raise QdeviceSetupError(
                    f"qnetd {host} runs without TLS (corosync-qnetd -s off), and the nodes "
                    "would require it: enable TLS there, or rerun with --tls off"
                )
            return (
                f"note: qnetd {host} has TLS {mode}: it takes plaintext clients, who "
                "could take this cluster's node ids; once every cluster it serves has "
                'certificates, set COROSYNC_QNETD_OPTIONS="-s req" in '
                "/etc/default/corosync-qnetd there and restart corosync-qnetd"
            )
    return None


def bumped(config: Section, change: Callable[[Section], None]) -> Section:
    """A copy of ``config`` with ``change`` applied and config_version + 1 (atomic_write_conf)."""
    new = copy.deepcopy(config)
    totem = new.section("totem")
    version = totem.get("config_version") if totem else None
    if totem is None or version is None or not version.isdigit():
        raise QdeviceSetupError(
            "invalid corosync config: unable to read config version (totem.config_version)"
        )
    totem.values["config_version"] = str(int(version) + 1)
    change(new)
    return new


def with_device(config: Section, device: Section) -> Section:
    def add(root: Section) -> None:
        quorum = root.section("quorum")
        if quorum is None:
            quorum = Section("quorum", {"provider": "corosync_votequorum"})
            root.children.append(quorum)
        quorum.children = [c for c in quorum.children if c.name != "device"] + [device]

    return bumped(config, add)


def without_device(config: Section) -> Section:
    def drop(root: Section) -> None:
        quorum = root.section("quorum")
        if quorum is not None:
            quorum.children = [c for c in quorum.children if c.name != "device"]

    return bumped(config, drop)


def config_version(config: Section) -> int:
    return corosync_conf.cluster_info(config).config_version


def check_cluster(nodes: Sequence[NodeView]) -> Survey:
    """One cluster, one corosync.conf, every nodelist node reached and online."""
    parsed = [(n, corosync_conf.parse(n.config_text, f"{n.host}:{n.config_path}")) for n in nodes]
    names = {n.host: corosync_conf.cluster_info(c).name for n, c in parsed}
    if len(set(names.values())) > 1:
        listed = ", ".join(f"{host} is in {name!r}" for host, name in names.items())
        raise QdeviceSetupError(
            f"cluster name mismatch: {listed}; every --host must be a node of one cluster"
        )
    versions = {n.host: config_version(c) for n, c in parsed}
    if len(set(versions.values())) > 1:
        listed = ", ".join(f"{host} has {v}" for host, v in versions.items())
        raise QdeviceSetupError(
            f"corosync.conf differs between the nodes (config_version: {listed}): "
            "bring them in line first"
        )
    first, config = parsed[0]
    entries = corosync_conf.nodelist(config, first.config_path)
    if not entries:
        raise QdeviceSetupError(f"{first.host}: corosync.conf has no nodelist")
    by_id = {n.node_id: n for n in nodes}
    for entry in entries:
        if entry.node_id not in first.membership:
            raise PvectlError(
                f"All nodes must be online! Node {entry.name} (id {entry.node_id}) is offline, "
                "aborting.",
                ExitCode.UNAVAILABLE,
            )
    missing = [e for e in entries if e.node_id not in by_id]
    if missing:
        names_missing = ", ".join(f"{e.name} (id {e.node_id})" for e in missing)
        raise UsageError(
            f"no --host reaches node(s) {names_missing} of the nodelist: pass --host for "
            "every node of the cluster"
        )
    strangers = [n.host for n in nodes if n.node_id not in {e.node_id for e in entries}]
    if strangers:
        raise QdeviceSetupError(f"{', '.join(strangers)}: not in the cluster's nodelist")
    ordered = tuple(by_id[e.node_id] for e in entries)
    return Survey(
        nodes=ordered,
        cluster_name=names[first.host],
        config=config,
        nodelist=entries,
        pve=first.config_path == PVE_CONF,
    )
