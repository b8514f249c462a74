"""What a corosync lab is made of: its options, their checks, and the corosync.conf every
node gets, in the layout Proxmox writes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pvectl import corosync_conf
from pvectl.corosync_conf import Section
from pvectl.errors import UsageError
from pvectl.lab import quorum_setup
from pvectl.lab.qdevice import corosync as corosync_qdevice
from pvectl.lab.qdevice import qnetd as lab_qnetd
from pvectl.lab.state import LabNode

MAX_NODES = 16


@dataclass(frozen=True)
class UpOptions:
    nodes: int
    transport: str = "knet"
    token: int | None = None
    two_node: bool = False
    wait_for_all: bool | None = None
    votes: tuple[int, ...] = ()
    subnet: str | None = None
    wait_timeout: float = 60.0
    qdevice: bool = False  # a qnetd + the real corosync-qdevice on every node
    qdevice_algorithm: str = "ffsplit"
    qnetd: str = "pvectl"  # pvectl (pvectl qdevice serve) | corosync (corosync-qnetd)
    qdevice_tls: bool = True
    quorum: tuple[tuple[str, str], ...] = ()  # corosync.conf quorum keys (--quorum K=V)
    start: tuple[int, ...] = ()  # the nodes 'up' starts (empty: all)
    qdevice_start: bool = True  # False: corosync-qdevice waits for 'lab qdevice start'
    qdevice_votes: int | None = None  # quorum.device.votes (None: as pvecm writes it)
    node_ids: tuple[int, ...] = ()  # as a corosync.conf writes them (default: 1..N)
    names: tuple[str, ...] = ()  # node names (default: nodeID)
    totem: tuple[tuple[str, str], ...] = ()  # totem timing keys taken from a corosync.conf

    def ids(self) -> tuple[int, ...]:
        return self.node_ids or tuple(range(1, self.nodes + 1))

    def name_of(self, index: int) -> str:
        return self.names[index] if self.names else f"node{self.ids()[index]}"

    def quorum_values(self) -> dict[str, str]:
        return quorum_setup.merged(self.quorum, self.two_node, self.wait_for_all)


def build_conf(
    cluster_name: str,
    nodes: Sequence[LabNode],
    options: UpOptions,
    config_version: int = 1,
    subnet: str | None = None,
) -> str:
    """corosync.conf as Proxmox writes it (sorted keys, two-space indent), plus a log file
    because no syslog runs inside a lab node."""
    root = Section("")
    logging = Section(
        "logging",
        {
            "debug": "off",
            "logfile": "/var/log/corosync/corosync.log",
            "timestamp": "hires",
            "to_logfile": "yes",
            "to_stderr": "no",
            "to_syslog": "no",
        },
    )
    nodelist = Section("nodelist")
    for node in nodes:
        nodelist.children.append(
            Section(
                "node",
                {
                    "name": node.name,
                    "nodeid": str(node.node_id),
                    "quorum_votes": str(node.votes),
                    "ring0_addr": node.address,
                },
            )
        )
    quorum = quorum_setup.quorum_section(options.quorum_values())
    totem = Section(
        "totem",
        {
            "cluster_name": cluster_name,
            "config_version": str(config_version),
            "token_coefficient": "125",
            "version": "2",
        },
        [Section("interface", {"linknumber": "0"})],
    )
    if options.transport == "knet":
        totem.values.update({"ip_version": "ipv4-6", "link_mode": "passive", "secauth": "on"})
    else:  # udpu cannot encrypt in corosync 3
        totem.values.update(
            {
                "transport": options.transport,
                "ip_version": "ipv4",
                "crypto_cipher": "none",
                "crypto_hash": "none",
            }
        )
    totem.values.update(dict(options.totem))
    if options.token is not None:
        totem.values["token"] = str(options.token)
    if options.qdevice and subnet is not None:
        device = lab_qnetd.device_section(
            lab_qnetd.address(subnet),
            options.qdevice_algorithm,
            options.qdevice_tls,
            votes=options.qdevice_votes,
        )
        quorum.children.append(device)
    root.children.extend([logging, nodelist, quorum, totem])
    return corosync_conf.dump(root)


def check_options(options: UpOptions) -> None:
    if not 1 <= options.nodes <= MAX_NODES:
        raise UsageError(f"N must be between 1 and {MAX_NODES}, got {options.nodes}")
    if options.transport not in ("knet", "udpu"):
        raise UsageError(f"--transport must be knet or udpu, got {options.transport!r}")
    if options.votes and len(options.votes) != options.nodes:
        raise UsageError(f"--votes lists {len(options.votes)} values for {options.nodes} nodes")
    if any(v < 0 or v > 255 for v in options.votes):
        raise UsageError("--votes: each value must be between 0 and 255")
    if options.token is not None and not 100 <= options.token <= 600_000:
        raise UsageError(f"--token must be 100..600000 ms, got {options.token}")
    quorum_setup.check_lab_quorum(options)
    if options.qdevice:
        corosync_qdevice.check(
            options.nodes, options.votes, options.qdevice_algorithm, options.two_node
        )
        lab_qnetd.check_kind(options.qnetd)
