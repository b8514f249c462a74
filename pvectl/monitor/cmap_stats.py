"""``corosync-cmapctl -m stats`` parsed into a ``NodeReading``'s counters: pure.

Keys are corosync 3's ``stats.srp.*`` (Totem) and ``stats.knet.nodeN.linkM.*`` (knet,
latencies in microseconds). The local node's own knet entry (``localhost``) is left out.
"""

from __future__ import annotations

import re

from pvectl.monitor.model import LinkReading, NodeReading
from pvectl.results import QuorumStatus
from pvectl.targets.corosync_parse import parse_cmap

_KNET = re.compile(r"^stats\.knet\.node(?P<node>\d+)\.link(?P<link>\d+)\.(?P<field>\w+)$")


def _int(values: dict[str, str], key: str) -> int | None:
    try:
        return int(values[key])
    except (KeyError, ValueError):
        return None


def links(values: dict[str, str], local_node: int) -> tuple[LinkReading, ...]:
    fields: dict[tuple[int, int], dict[str, str]] = {}
    for key, value in values.items():
        match = _KNET.match(key)
        if match and int(match["node"]) != local_node:
            fields.setdefault((int(match["node"]), int(match["link"])), {})[match["field"]] = value
    out: list[LinkReading] = []
    for (peer, link), found in sorted(fields.items()):
        if found.get("enabled", "1") == "0":
            continue
        samples = _int(found, "latency_samples")
        average = _int(found, "latency_ave")
        out.append(
            LinkReading(
                link=link,
                peer=peer,
                connected=found.get("connected") == "1",
                latency_s=average / 1e6 if average is not None and samples else None,
                down_count=_int(found, "down_count"),
            )
        )
    return tuple(out)


def reading(status: QuorumStatus, stats_text: str) -> NodeReading:
    """The status plus what ``corosync-cmapctl -m stats`` adds to it."""
    values = parse_cmap(stats_text)
    rotation = _int(values, "stats.srp.mtt_rx_token")
    lost = [
        found
        for state in ("operational", "gather", "commit", "recovery")
        if (found := _int(values, f"stats.srp.{state}_token_lost")) is not None
    ]
    found_links = links(values, status.node_id) or _cfgtool_links(status)
    return NodeReading(
        status=status,
        token_rotation_s=rotation / 1000 if rotation is not None else None,
        token_workload=_int(values, "stats.srp.avg_token_workload"),
        retransmits_total=_int(values, "stats.srp.mcast_retx"),
        rx_msg_dropped_total=_int(values, "stats.srp.rx_msg_dropped"),
        membership_changes_total=_int(values, "stats.srp.operational_entered"),
        token_lost_total=sum(lost) if lost else None,
        links=found_links,
    )


def _cfgtool_links(status: QuorumStatus) -> tuple[LinkReading, ...]:
    """Without knet statistics (udpu), ``corosync-cfgtool -s``'s per-peer words."""
    return tuple(
        LinkReading(link=link.link_id, peer=peer, connected=state.strip().lower() == "connected")
        for link in status.links
        for peer, state in link.peers
        if peer != status.node_id and state != "localhost"
    )
