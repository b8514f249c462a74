"""Text in, dataclasses out: the output of corosync's own tools, parsed without running
anything, so the local, SSH and lab targets share one parser.

Formats are corosync 3.1's (``tools/corosync-quorumtool.c``, ``corosync-cfgtool.c``,
``corosync-cmapctl.c``); anything unexpected raises ``PvectlError`` naming the line.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace

from pvectl.errors import PvectlError
from pvectl.results import (
    ClusterInfo,
    LinkStatus,
    Member,
    NodeList,
    QdeviceRow,
    QuorumStatus,
    RingId,
)

_ROW = re.compile(r"^\s*(?P<id>0x[0-9a-fA-F]+|\d+)\s+(?P<votes>\d+)(?P<rest>.*)$")
_NOT_CASTING = re.compile(r"^(?P<name>.*) \(votes (?P<votes>\d+)\)$")
_ERROR_NAME = re.compile(r"\b(CS_ERR_[A-Z_]+)\b")


class ParseError(PvectlError):
    """corosync printed something this parser does not understand."""


def _node_id(text: str) -> int:
    return int(text, 16) if text.lower().startswith("0x") else int(text)


def _labelled(lines: list[str]) -> dict[str, str]:
    """``Label:   value`` lines of the quorum blocks, label as printed."""
    fields: dict[str, str] = {}
    for line in lines:
        label, sep, value = line.partition(":")
        if sep and label and not label.startswith(" ") and label[0].isupper():
            fields.setdefault(label.strip(), value.strip())
    return fields


def _membership_rows(lines: list[str], what: str) -> tuple[tuple[Member, ...], QdeviceRow | None]:
    """Rows after the ``Nodeid Votes [Qdevice] Name`` header."""
    try:
        start = next(i for i, line in enumerate(lines) if line.split()[:2] == ["Nodeid", "Votes"])
    except StopIteration:
        raise ParseError(
            f"{what}: no membership table (corosync printed {len(lines)} lines)"
        ) from None
    header = lines[start]
    has_qdevice_column = "Qdevice" in header.split()
    members: list[Member] = []
    qdevice: QdeviceRow | None = None
    for number, line in enumerate(lines[start + 1 :], start=start + 2):
        if not line.strip():
            break
        match = _ROW.match(line)
        if match is None:
            raise ParseError(f"{what}: line {number}: unexpected membership row {line!r}")
        node_id = _node_id(match["id"])
        rest = match["rest"].strip()
        if node_id == 0:  # the quorum device's pseudo-node row
            suffix = _NOT_CASTING.match(rest)
            if suffix:
                qdevice = QdeviceRow(int(suffix["votes"]), suffix["name"], casting=False)
            else:
                qdevice = QdeviceRow(int(match["votes"]), rest or "Qdevice", casting=True)
            continue
        flags: str | None = None
        if has_qdevice_column:
            flags, _, rest = rest.partition(" ")
        local = rest.endswith(" (local)")
        name = rest.removesuffix(" (local)")
        members.append(Member(node_id, int(match["votes"]), name, local, flags))
    return tuple(members), qdevice


def _int(fields: dict[str, str], label: str, what: str) -> int:
    try:
        return int(fields[label].split()[0], 0)
    except (KeyError, ValueError, IndexError) as exc:
        raise ParseError(f"{what}: no usable '{label}:' line") from exc


def parse_status(text: str, what: str = "corosync-quorumtool -s") -> QuorumStatus:
    """``corosync-quorumtool -s`` with any of ``-i``/``-H``: the quorum and votequorum
    blocks and the membership table."""
    lines = text.splitlines()
    fields = _labelled(lines)
    if "Quorate" not in fields:
        raise ParseError(f"{what}: no 'Quorate:' line in its output")
    quorum_line = fields.get("Quorum", "")
    members, qdevice = _membership_rows(lines, what)
    return QuorumStatus(
        quorum_provider=fields.get("Quorum provider", ""),
        nodes=_int(fields, "Nodes", what),
        node_id=_int(fields, "Node ID", what),
        ring_id=RingId.parse(fields.get("Ring ID", "0")),
        quorate=fields["Quorate"] == "Yes",
        expected_votes=_int(fields, "Expected votes", what),
        highest_expected=_int(fields, "Highest expected", what),
        total_votes=_int(fields, "Total votes", what),
        quorum=_int(fields, "Quorum", what),
        flags=tuple(fields.get("Flags", "").split()),
        members=members,
        qdevice=qdevice,
        activity_blocked="Activity blocked" in quorum_line,
    )


def parse_node_list(text: str, what: str = "corosync-quorumtool -l") -> NodeList:
    members, qdevice = _membership_rows(text.splitlines(), what)
    return NodeList(members=members, qdevice=qdevice)


def merge_names(status: QuorumStatus, named: NodeList) -> QuorumStatus:
    """Combine ``-siH`` (addresses, what pvecm shows) with ``-l`` (node names)."""
    names = {m.node_id: m.name for m in named.members}
    members = tuple(
        replace(m, name=names.get(m.node_id, m.name), addresses=(m.name,)) for m in status.members
    )
    return replace(status, members=members)


def build_status(
    status_text: str,
    names_text: str,
    cmap_text: str = "",
    links_text: str = "",
    cluster: ClusterInfo | None = None,
    source: str = "corosync",
) -> QuorumStatus:
    """One ``QuorumStatus`` from the outputs of ``corosync-quorumtool -siH``, ``-l``,
    ``corosync-cmapctl runtime.config.totem.`` and ``corosync-cfgtool -s`` (the last two
    may be empty), however they were obtained (locally, one SSH round trip, ...)."""
    status = parse_status(status_text, "corosync-quorumtool -siH")
    status = merge_names(status, parse_node_list(names_text, "corosync-quorumtool -l"))
    cmap = parse_cmap(cmap_text)
    return replace(
        status,
        cluster=cluster,
        source=source,
        links=parse_links(links_text),
        totem_token_ms=_maybe_int(cmap.get("runtime.config.totem.token")),
        totem_consensus_ms=_maybe_int(cmap.get("runtime.config.totem.consensus")),
    )


def _maybe_int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def parse_cmap(text: str) -> dict[str, str]:
    """``corosync-cmapctl`` lines ``key (type) = value`` as a dict of strings."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(" = ")
        if not sep:
            continue
        name = key.split(" (", 1)[0].strip()
        values[name] = value
    return values


def parse_links(text: str) -> tuple[LinkStatus, ...]:
    """``corosync-cfgtool -s``: per link, the local address and each peer's state."""
    links: list[LinkStatus] = []
    link_id: int | None = None
    address = ""
    peers: list[tuple[int, str]] = []

    def flush() -> Iterator[LinkStatus]:
        if link_id is not None:
            yield LinkStatus(link_id, address, tuple(peers))

    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("LINK ID") or line.startswith("LINK:"):
            links.extend(flush())
            digits = re.search(r"\d+", line)
            link_id = int(digits.group()) if digits else len(links)
            address, peers = "", []
        elif line.startswith("addr") and "=" in line:
            address = line.split("=", 1)[1].strip()
        elif line.startswith("nodeid:"):
            match = re.match(r"nodeid:\s*(\d+):\s*(.*)$", line)
            if match:
                peers.append((int(match.group(1)), match.group(2).strip()))
    links.extend(flush())
    return tuple(links)


def error_name(text: str) -> str | None:
    """The ``CS_ERR_*`` name in a tool's message, if any."""
    match = _ERROR_NAME.search(text)
    return match.group(1) if match else None
