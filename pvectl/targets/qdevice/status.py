"""The local qdevice daemon's view, from ``corosync-qdevice-tool -sv``.

The tool prints two sections ("Qdevice information", "Qdevice-net information") of
``Label:<spaces>value`` lines, node lists indented below their label. The parser keeps
every field (``fields``) and lifts the ones scripts need into named attributes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from pvectl.errors import TargetUnavailable
from pvectl.targets.runner import CommandRunner

_LABEL = re.compile(r"^(?P<label>[A-Za-z][A-Za-z0-9 /\-()]*?):\s*(?P<value>.*)$")
_LIST_ITEM = re.compile(r"^\s+\d+\s+Node ID = (?P<id>\d+)(?:, State = (?P<state>\w+))?")


@dataclass(frozen=True)
class QdeviceStatus:
    """One node's qdevice: connection to qnetd and whether it casts its vote."""

    model: str
    node_id: int | None
    state: str  # "Connected", "Connect failed", "Waiting for initial reply", ...
    casting_vote: bool  # "Poll timer running: Yes (cast vote)"
    qnetd_host: str | None
    cluster_name: str | None
    algorithm: str | None
    tie_breaker: str | None
    tls: str | None
    tls_active: str | None
    ring_id: str | None
    membership: tuple[int, ...]
    quorate: bool | None
    expected_votes: int | None
    configured_nodes: tuple[int, ...]
    fields: dict[str, str] = field(default_factory=dict)
    # votequorum's side (corosync-quorumtool -s): the local node's Qdevice column
    # ("A,V,NMW") and the device row's votes; None when quorumtool gave nothing
    votequorum_flags: str | None = None
    device_votes: int | None = None
    device_counted: bool | None = None  # False: shown as "0 ... (votes N)"
    source: str = "corosync-qdevice-tool"


def parse_qdevice_tool(text: str) -> QdeviceStatus:
    fields: dict[str, str] = {}
    lists: dict[str, list[int]] = {}
    current_list: str | None = None
    section = ""
    for raw in text.splitlines():
        if not raw.strip() or set(raw.strip()) == {"-"}:
            continue
        item = _LIST_ITEM.match(raw)
        if item and current_list is not None:
            lists.setdefault(current_list, []).append(int(item.group("id")))
            continue
        match = _LABEL.match(raw.strip())
        if match is None:
            if raw.strip().endswith("information"):
                section = "net." if raw.strip().startswith("Qdevice-net") else ""
            continue
        label = match.group("label").strip()
        value = match.group("value").strip()
        key = section + label if (section + label) not in fields and section else label
        if key in fields:
            key = section + label
        fields[key] = value
        current_list = label if value == "" else None

    def get(*labels: str) -> str | None:
        for label in labels:
            if label in fields:
                return fields[label]
            if "net." + label in fields:
                return fields["net." + label]
        return None

    def ids(text_value: str | None) -> tuple[int, ...]:
        if not text_value:
            return ()
        return tuple(int(x) for x in re.findall(r"\d+", text_value))

    node_id = get("Node ID")
    poll = get("Poll timer running") or ""
    quorate = get("Quorate")
    expected = get("Expected votes")
    configured = lists.get("Configured node list") or list(ids(get("Configured node list")))
    return QdeviceStatus(
        model=get("Model") or "?",
        node_id=int(node_id) if node_id and node_id.isdigit() else None,
        state=get("State") or "?",
        casting_vote="cast vote" in poll and "Yes" in poll,
        qnetd_host=get("QNetd host"),
        cluster_name=get("Cluster name"),
        algorithm=get("Algorithm"),
        tie_breaker=get("Tie-breaker"),
        tls=get("TLS"),
        tls_active=get("TLS active"),
        ring_id=get("Ring ID"),
        membership=ids(get("Membership node list")),
        quorate=None if quorate is None else quorate.startswith("Yes"),
        expected_votes=int(expected) if expected and expected.isdigit() else None,
        configured_nodes=tuple(configured),
        fields=fields,
    )


_LOCAL_ROW = re.compile(r"^\s*\S+\s+\d+\s+(?P<flags>[A-Z,]+)\s+.*\(local\)\s*$")
_DEVICE_ROW = re.compile(r"^\s*(?:0|0x00000000)\s+(?P<shown>\d+)\s")
_NOT_COUNTED = re.compile(r"\(votes (?P<votes>\d+)\)")


def votequorum_qdevice_view(quorumtool_s: str) -> tuple[str | None, int | None, bool | None]:
    """(local node's Qdevice column, device votes, counted) from corosync-quorumtool -s."""
    flags = votes = counted = None
    for line in quorumtool_s.splitlines():
        local = _LOCAL_ROW.match(line)
        if local:
            flags = local.group("flags")
        device = _DEVICE_ROW.match(line)
        if device:
            hidden = _NOT_COUNTED.search(line)
            if hidden:
                votes, counted = int(hidden.group("votes")), False
            else:
                votes, counted = int(device.group("shown")), True
    return flags, votes, counted


def local_qdevice_status(runner: CommandRunner) -> QdeviceStatus:
    result = runner.run(["corosync-qdevice-tool", "-sv"], timeout=10)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise TargetUnavailable(
            f"corosync-qdevice-tool on {runner.describe}: "
            + (detail[-1] if detail else f"exit {result.returncode}")
            + " (is corosync-qdevice running?)"
        )
    status = parse_qdevice_tool(result.stdout)
    quorum = runner.run(["corosync-quorumtool", "-s"], timeout=10)
    if quorum.returncode in (0, 2):
        flags, votes, counted = votequorum_qdevice_view(quorum.stdout)
        status = replace(status, votequorum_flags=flags, device_votes=votes, device_counted=counted)
    return status
