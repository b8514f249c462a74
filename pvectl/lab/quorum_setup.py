"""The ``quorum { }`` section of a lab, for both engines: ``--quorum KEY=VALUE`` and the
older ``--two-node``/``--wait-for-all`` flags merged into corosync.conf's own keys, and the
start-up check corosync does on them.

The check is the pure votequorum model's (``quorum_conf.options_from_config``) on the very
section the nodes get, so a lab refuses (exit 78, corosync's reason) exactly where corosync
would refuse to start, and an embedded node reads the same keys with the same rules.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from pvectl import quorum_conf
from pvectl.corosync_conf import Section
from pvectl.errors import UsageError
from pvectl.lab.qdevice import qnetd as lab_qnetd
from pvectl.quorum import votequorum as vq

QUORUM_KEYS = vq.QUORUM_KEYS
Pairs = tuple[tuple[str, str], ...]


def parse_assignments(items: Iterable[str]) -> Pairs:
    """``KEY=VALUE`` strings (``--quorum``), checked as corosync reads them; the last of a
    repeated key wins, as in corosync.conf."""
    values: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise UsageError(f"--quorum {item!r}: give KEY=VALUE, e.g. last_man_standing=1")
        values[key] = value
    return check_values(values, "--quorum")


def check_values(values: Mapping[str, object], where: str) -> Pairs:
    """Known keys and values corosync's parser accepts, as corosync.conf text."""
    pairs = []
    for key, raw in values.items():
        if key not in QUORUM_KEYS:
            raise UsageError(
                f"{where}: unknown quorum key {key!r} (known: {', '.join(QUORUM_KEYS)})"
            )
        text = _text(raw)
        vq.quorum_value(key, text, where)
        pairs.append((key, text))
    return tuple(pairs)


def _text(raw: object) -> str:
    if isinstance(raw, bool):
        return "1" if raw else "0"
    return str(raw)


def merged(
    quorum: Pairs,
    two_node: bool = False,
    wait_for_all: bool | None = None,
    last_man_standing: bool = False,
    auto_tie_breaker: bool = False,
) -> dict[str, str]:
    """The quorum keys a lab writes: the older flags first, ``quorum`` pairs over them."""
    values: dict[str, str] = {}
    if two_node:
        values["two_node"] = "1"
    if wait_for_all is not None:
        values["wait_for_all"] = "1" if wait_for_all else "0"
    if last_man_standing:
        values["last_man_standing"] = "1"
    if auto_tie_breaker:
        values["auto_tie_breaker"] = "1"
    values.update(dict(quorum))
    return values


def quorum_section(values: Mapping[str, str], device: Section | None = None) -> Section:
    section = Section("quorum", {"provider": "corosync_votequorum", **values})
    if device is not None:
        section.children.append(device)
    return section


def startup_check(
    node_votes: Sequence[tuple[int, int]],
    values: Mapping[str, str],
    device: Section | None = None,
    where: str = "the lab's corosync.conf",
) -> vq.QuorumOptions:
    """What votequorum makes of this configuration at start; ``QuorumConfigError`` (exit
    78) with corosync's own reason where corosync refuses to start."""
    nodelist = Section("nodelist")
    for node_id, votes in node_votes:
        nodelist.children.append(
            Section("node", {"nodeid": str(node_id), "quorum_votes": str(votes)})
        )
    root = Section("", children=[nodelist, quorum_section(values, device)])
    return quorum_conf.options_from_config(root, where)


def flag(values: Mapping[str, str], key: str) -> bool:
    raw = values.get(key)
    return raw is not None and vq.quorum_value(key, raw) != 0


def check_start(start: Sequence[int], node_ids: Sequence[int]) -> None:
    """``--start IDS``: node ids of the lab, each once."""
    for node_id in start:
        if node_id not in node_ids:
            raise UsageError(
                f"--start: the lab has no node {node_id} (nodes: {', '.join(map(str, node_ids))})"
            )
    if len(set(start)) != len(start):
        raise UsageError("--start lists a node twice")


def parse_ids(text: str | None) -> tuple[int, ...]:
    """``1,2`` (or ``1 2``) as node ids."""
    if not text:
        return ()
    try:
        return tuple(int(part) for part in text.replace(",", " ").split())
    except ValueError as exc:
        raise UsageError(f"{text!r}: give node ids separated by commas, e.g. 1,2") from exc


class LabQuorumOptions(Protocol):
    """What both engines' (frozen) ``UpOptions`` say about a lab's quorum."""

    @property
    def nodes(self) -> int: ...
    @property
    def votes(self) -> tuple[int, ...]: ...
    @property
    def node_ids(self) -> tuple[int, ...]: ...
    @property
    def start(self) -> tuple[int, ...]: ...
    @property
    def qdevice(self) -> bool: ...
    @property
    def qdevice_algorithm(self) -> str: ...
    @property
    def qdevice_tls(self) -> bool: ...
    @property
    def qdevice_votes(self) -> int | None: ...
    def ids(self) -> tuple[int, ...]: ...
    def quorum_values(self) -> dict[str, str]: ...


def check_lab_quorum(options: LabQuorumOptions) -> vq.QuorumOptions:
    """Before a lab starts, on either engine: its node ids, its ``--start`` set, and what
    corosync would make of the quorum section its nodes get (refusals exit 78)."""
    if options.node_ids and len(options.node_ids) != options.nodes:
        raise UsageError(f"{len(options.node_ids)} node ids for {options.nodes} nodes")
    check_start(options.start, options.ids())
    votes = options.votes or (1,) * options.nodes
    device = (
        lab_qnetd.device_section(
            "127.0.0.1",
            options.qdevice_algorithm,
            options.qdevice_tls,
            votes=options.qdevice_votes,
        )
        if options.qdevice
        else None
    )
    return startup_check(
        list(zip(options.ids(), votes, strict=True)), options.quorum_values(), device
    )
