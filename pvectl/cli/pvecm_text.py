"""The text layouts of ``pvecm status`` / ``pvecm nodes`` (corosync-quorumtool's), kept
byte-for-byte so scripts that parse pvecm's output work on pvectl's."""

from __future__ import annotations

import time

from pvectl.results import ClusterInfo, Member, NodeList, QdeviceRow, QuorumStatus

FLAG_ORDER = (
    "2Node",
    "Quorate",
    "WaitForAll",
    "LastManStanding",
    "AutoTieBreaker",
    "AllowDownscale",
    "Qdevice",
)


def cluster_header(info: ClusterInfo) -> str:
    return (
        "Cluster information\n"
        "-------------------\n"
        f"{'Name:':<17} {info.name}\n"
        f"{'Config Version:':<17} {info.config_version_text or info.config_version}\n"
        f"{'Transport:':<17} {info.transport}\n"
        f"{'Secure auth:':<17} {info.secure_auth}\n"
        "\n"
    )


def _node_id(node_id: int, hex_ids: bool) -> str:
    return f"0x{node_id:08x} " if hex_ids else f"{node_id:>10} "


def membership_block(
    members: tuple[Member, ...],
    qdevice: QdeviceRow | None,
    hex_ids: bool,
    show_addresses: bool = False,
) -> str:
    """corosync-quorumtool's table: columns right-aligned in 10 plus a space; the qdevice
    pseudo-node row prints 11 spaces before its name and " (votes N)" after it when this
    node's qdevice is not casting its vote."""
    show_qdevice = qdevice is not None or any(m.qdevice is not None for m in members)
    lines = ["Membership information", "----------------------"]
    header = f"{'Nodeid':>10} {'Votes':>10} "
    if show_qdevice:
        header += f"{'Qdevice':>10} "
    lines.append(header + "Name")
    for member in members:
        row = _node_id(member.node_id, hex_ids) + f"{member.votes:>10} "
        if show_qdevice:
            row += f"{member.qdevice or 'NR':>10} "
        shown = member.addresses[0] if show_addresses and member.addresses else member.name
        row += shown + (" (local)" if member.local else "")
        lines.append(row)
    if qdevice is not None:
        votes = qdevice.votes if qdevice.casting else 0
        row = _node_id(0, hex_ids) + f"{votes:>10} " + f"{'':>10} " + qdevice.name
        if not qdevice.casting:
            # corosync-quorumtool appends the configured votes after the name
            row += f" (votes {qdevice.votes})"
        lines.append(row)
    return "\n".join(lines) + "\n"


def quorum_block(status: QuorumStatus, hex_ids: bool = True, date: str | None = None) -> str:
    node_id = f"0x{status.node_id:08x}" if hex_ids else str(status.node_id)
    # quorumtool: printf("%d %s", quorum, quorate ? " " : "Activity blocked")
    quorum = f"{status.quorum} " + (" " if status.quorate else "Activity blocked")
    flags = "".join(f"{flag} " for flag in FLAG_ORDER if flag in status.flags)
    return (
        "Quorum information\n"
        "------------------\n"
        f"Date:             {date if date is not None else time.ctime()}\n"
        f"Quorum provider:  {status.quorum_provider}\n"
        f"Nodes:            {status.nodes}\n"
        f"Node ID:          {node_id}\n"
        f"Ring ID:          {status.ring_id}\n"
        f"Quorate:          {'Yes' if status.quorate else 'No'}\n"
        "\n"
        "Votequorum information\n"
        "----------------------\n"
        f"Expected votes:   {status.expected_votes}\n"
        f"Highest expected: {status.highest_expected}\n"
        f"Total votes:      {status.total_votes}\n"
        f"Quorum:           {quorum}\n"
        f"Flags:            {flags}\n"
        "\n"
    )


def pvecm_status(status: QuorumStatus, date: str | None = None) -> str:
    """``pvecm status``: cluster header, then ``corosync-quorumtool -siH``."""
    header = cluster_header(status.cluster) if status.cluster else ""
    return (
        header
        + quorum_block(status, True, date)
        + membership_block(status.members, status.qdevice, hex_ids=True, show_addresses=True)
    )


def pvecm_nodes(nodes: NodeList) -> str:
    """``pvecm nodes``: ``corosync-quorumtool -l`` (decimal ids, node names)."""
    return "\n" + membership_block(nodes.members, nodes.qdevice, hex_ids=False)
