"""``lab up --config FILE`` / ``--from-host NODE``: a user's own corosync.conf as a lab.

What is taken: the nodelist (node ids as written, names, votes), the votequorum keys of
``quorum { }`` and its ``device`` (model net: the lab runs its own qnetd with the same
algorithm and votes), and the totem timing. What is not: addresses, interfaces, crypto,
the qnetd's host (the lab's own are used). Reading a remote file goes through the
project's SSH session (``~/.ssh/config``, known_hosts, agent and key files).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pvectl import corosync_conf, quorum_conf
from pvectl.corosync_conf import Section
from pvectl.errors import ConfigError, ExitCode, PvectlError
from pvectl.lab import quorum_setup
from pvectl.quorum import votequorum as vq

REMOTE_PATHS = ("/etc/pve/corosync.conf", "/etc/corosync/corosync.conf")
TOTEM_TIMING = ("token", "token_coefficient", "consensus", "join", "merge")
MAX_NODES = 16


@dataclass(frozen=True)
class ImportedCluster:
    """The parts of a corosync.conf a lab takes, ready for ``UpOptions``."""

    source: str
    cluster_name: str
    node_ids: tuple[int, ...]
    names: tuple[str, ...]
    votes: tuple[int, ...]
    quorum: tuple[tuple[str, str], ...]
    totem: tuple[tuple[str, str], ...]
    qdevice: bool = False
    qdevice_algorithm: str = "ffsplit"
    qdevice_votes: int | None = None

    @property
    def token(self) -> int | None:
        value = dict(self.totem).get("token")
        return int(value) if value is not None else None


def parse(text: str, source: str) -> ImportedCluster:
    """A corosync.conf's text; syntax errors name ``source:line`` (exit 65), options
    corosync refuses to start with give corosync's reason (exit 78)."""
    root = corosync_conf.parse(text, source)
    entries = corosync_conf.nodelist(root, source)
    if not entries:
        raise ConfigError("no nodelist: a lab needs the cluster's nodes", source)
    if len(entries) > MAX_NODES:
        raise ConfigError(f"{len(entries)} nodes: a lab runs at most {MAX_NODES}", source)
    quorum = root.section("quorum") or Section("quorum")
    pairs = tuple(
        (key, value)
        for key, value in quorum.values.items()
        if key in vq.QUORUM_KEYS and value is not None
    )
    quorum_setup.check_values(dict(pairs), source)
    totem = root.section("totem") or Section("totem")
    timing = []
    for key in TOTEM_TIMING:
        raw = totem.get(key)
        if raw is None:
            continue
        if not raw.isdigit():
            raise ConfigError(f"totem.{key} must be an integer, got {raw!r}", source)
        timing.append((key, raw))
    device = quorum.section("device")
    algorithm, device_votes = "ffsplit", None
    if device is not None:
        model = device.get("model")
        if model != "net":
            raise ConfigError(
                f"quorum.device.model {model!r}: the lab runs model net (a qnetd) only", source
            )
        net = device.section("net")
        algorithm = (net.get("algorithm") if net else None) or "ffsplit"
        if algorithm not in ("ffsplit", "lms"):
            raise ConfigError(
                f"quorum.device.net.algorithm {algorithm!r}: the lab runs ffsplit or lms", source
            )
        raw_votes = device.get("votes")
        if raw_votes is not None:
            if not raw_votes.isdigit():
                raise ConfigError(f"quorum.device.votes must be an integer: {raw_votes!r}", source)
            device_votes = int(raw_votes)
    # corosync's own start-up verdict on this configuration, before any lab is built
    quorum_conf.options_from_config(root, source)
    info = corosync_conf.cluster_info(root)
    return ImportedCluster(
        source=source,
        cluster_name=info.name,
        node_ids=tuple(e.node_id for e in entries),
        names=tuple(e.name for e in entries),
        votes=tuple(e.votes for e in entries),
        quorum=pairs,
        totem=tuple(timing),
        qdevice=device is not None,
        qdevice_algorithm=algorithm,
        qdevice_votes=device_votes,
    )


def read_file(path: Path) -> ImportedCluster:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise PvectlError(f"{path}: no such file", ExitCode.NO_INPUT) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise PvectlError(f"{path}: cannot read: {exc}", ExitCode.NO_INPUT) from exc
    return parse(text, str(path))


def read_from_host(
    host: str, accept_new_host_key: bool = False, connect_timeout: float = 10.0
) -> ImportedCluster:
    """The cluster's corosync.conf on ``host``: ``/etc/pve/corosync.conf`` (the copy
    pmxcfs keeps for the whole cluster), else ``/etc/corosync/corosync.conf``."""
    from pvectl.targets.hosts import parse_host
    from pvectl.targets.ssh import SshSession, SshSettings

    spec = parse_host(host)
    settings = SshSettings(accept_new_host_key=accept_new_host_key, connect_timeout=connect_timeout)
    with SshSession(settings) as session:
        runner = session.runner(spec)
        for path in REMOTE_PATHS:
            result = runner.run(["cat", "--", path], timeout=connect_timeout + 20)
            if result.returncode == 0:
                return parse(result.stdout, f"{host}:{path}")
    raise PvectlError(
        f"{host}: neither {' nor '.join(REMOTE_PATHS)} can be read (is it a cluster node, "
        "and may this user read them?)",
        ExitCode.NO_INPUT,
    )


def up_fields(
    imported: ImportedCluster | None,
    nodes: int | None,
    quorum: tuple[tuple[str, str], ...],
    votes: tuple[int, ...],
    qdevice: bool,
    token: int | None = None,
) -> dict[str, object]:
    """``UpOptions`` fields for ``lab up``: N alone, or a corosync.conf's cluster with
    the command line's ``--quorum``/``--votes`` over it (N, if given, must match)."""
    from pvectl.errors import UsageError

    if imported is None:
        if nodes is None:
            raise UsageError("lab up needs N (the number of nodes), --config or --from-host")
        return {"nodes": nodes, "quorum": quorum, "votes": votes, "token": token}
    count = len(imported.node_ids)
    if nodes is not None and nodes != count:
        raise UsageError(f"N is {nodes} but {imported.source} lists {count} nodes: omit N")
    fields: dict[str, object] = {
        "nodes": count,
        "node_ids": imported.node_ids,
        "names": imported.names,
        "votes": votes or imported.votes,
        "quorum": tuple(dict([*imported.quorum, *quorum]).items()),
        "totem": imported.totem,
        "token": token if token is not None else imported.token,
    }
    if imported.qdevice and not qdevice:
        fields.update(
            qdevice=True,
            qdevice_algorithm=imported.qdevice_algorithm,
            qdevice_votes=imported.qdevice_votes,
        )
    return fields
