"""What ``lab up`` (and a scenario's ``up``) asks of an engine: one options type, with the
part only the embedded engine honours kept apart, so the corosync engine can refuse it by
name instead of ignoring it."""

from __future__ import annotations

from dataclasses import dataclass, field

from pvectl.lab import quorum_setup

DEFAULT_PORT = 5405  # corosync's and the embedded nodes' UDP port


@dataclass(frozen=True)
class EmbeddedUp:
    """Options only the embedded engine has: pvectl's own store, Totem knobs, and nodes on
    the user's SSH hosts."""

    durability: str = "fsync"
    coupling: str = "decoupled"
    netmtu: int | None = None
    accelerated: bool = False  # totem { accelerated: yes }: the Accelerated Ring
    hosts: tuple[str, ...] = ()  # run the nodes on these SSH hosts instead of loopback
    port: int = DEFAULT_PORT  # first UDP port on a host (a host running k nodes uses k ports)
    accept_new_host_key: bool = False
    connect_timeout: float = 10.0
    addresses: tuple[str, ...] = ()  # ring addresses, one per --host (default: as reached)

    def given(self) -> list[str]:
        """The options set away from their defaults, as ``lab up`` spells them."""
        default = EmbeddedUp()
        spelled = {
            "durability": "--durability",
            "coupling": "--coupling",
            "netmtu": "--netmtu",
            "accelerated": "--accelerated",
            "hosts": "--host",
            "port": "--port",
            "addresses": "--address",
        }
        return [
            flag for key, flag in spelled.items() if getattr(self, key) != getattr(default, key)
        ]


@dataclass(frozen=True)
class UpOptions:
    """A lab's shape, for either engine."""

    nodes: int
    transport: str | None = None  # None: the engine's own (knet on corosync, udpu embedded)
    token: int | None = None
    two_node: bool = False
    wait_for_all: bool | None = None
    votes: tuple[int, ...] = ()
    subnet: str | None = None
    wait_timeout: float = 60.0
    qdevice: bool = False  # a qnetd, and a qdevice client on every node
    qdevice_algorithm: str = "ffsplit"
    qnetd: str = "pvectl"  # pvectl (pvectl qdevice serve) | corosync (corosync-qnetd, root)
    qdevice_tls: bool = True
    quorum: tuple[tuple[str, str], ...] = ()  # corosync.conf quorum keys (--quorum K=V)
    start: tuple[int, ...] = ()  # the nodes 'up' starts (empty: all)
    qdevice_start: bool = True  # False: the qdevice clients wait for 'lab qdevice start'
    qdevice_votes: int | None = None  # quorum.device.votes (None: as pvecm writes it)
    node_ids: tuple[int, ...] = ()  # as a corosync.conf writes them (default: 1..N)
    names: tuple[str, ...] = ()  # node names (default: nodeID)
    totem: tuple[tuple[str, str], ...] = ()  # totem timing keys taken from a corosync.conf
    embedded: EmbeddedUp = field(default_factory=EmbeddedUp)

    def ids(self) -> tuple[int, ...]:
        return self.node_ids or tuple(range(1, self.nodes + 1))

    def name_of(self, index: int) -> str:
        return self.names[index] if self.names else f"node{self.ids()[index]}"

    def quorum_values(self) -> dict[str, str]:
        return quorum_setup.merged(self.quorum, self.two_node, self.wait_for_all)
