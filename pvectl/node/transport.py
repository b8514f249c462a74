"""UDP transport between embedded nodes (udpu style: unicast to each member).

The receive filter is where the lab breaks the network on purpose: partitions (drop
everything from peers outside our group), random loss, extra delay and duplication.
nftables can do drops and loss inside namespaces, but delay and duplication need this
filter since ``tc netem`` is not available everywhere.
"""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

Address = tuple[str, int]


@dataclass
class FaultFilter:
    """What to do to incoming datagrams; changed at runtime by lab commands."""

    blocked: set[int] = field(default_factory=set)  # peers on the other side of a partition
    loss_pct: float = 0.0
    delay_ms: float = 0.0
    duplicate_pct: float = 0.0
    rng: random.Random = field(default_factory=random.Random)
    dropped: int = 0

    def verdict(self, peer: int) -> tuple[int, float]:
        """How many copies to deliver (0, 1 or 2) and after what delay in seconds."""
        if peer in self.blocked or (self.loss_pct and self.rng.random() * 100 < self.loss_pct):
            self.dropped += 1
            return 0, 0.0
        copies = 2 if self.duplicate_pct and self.rng.random() * 100 < self.duplicate_pct else 1
        return copies, self.delay_ms / 1000.0


class UdpTransport(asyncio.DatagramProtocol):
    def __init__(
        self,
        peers: dict[int, Address],
        on_datagram: Callable[[int, bytes], None],
        faults: FaultFilter | None = None,
    ) -> None:
        self.peers = peers
        self.by_address = {(_norm(host), port): node for node, (host, port) in peers.items()}
        self.on_datagram = on_datagram
        self.faults = faults or FaultFilter()
        self.transport: asyncio.DatagramTransport | None = None
        self.unknown_sources = 0

    @classmethod
    async def bind(
        cls,
        local: Address,
        peers: dict[int, Address],
        on_datagram: Callable[[int, bytes], None],
        faults: FaultFilter | None = None,
    ) -> UdpTransport:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in local[0] else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
        sock.bind(local)
        _, protocol = await loop.create_datagram_endpoint(
            lambda: cls(peers, on_datagram, faults), sock=sock
        )
        return protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        peer = self.by_address.get((_norm(str(addr[0])), int(addr[1])))
        if peer is None:
            self.unknown_sources += 1
            return
        copies, delay = self.faults.verdict(peer)
        for _ in range(copies):
            if delay > 0:
                asyncio.get_running_loop().call_later(delay, self.on_datagram, peer, data)
            else:
                self.on_datagram(peer, data)

    def error_received(self, exc: Exception) -> None:  # ICMP unreachable: the peer is down
        pass

    def send(self, node: int, data: bytes) -> None:
        if self.transport is not None and node in self.peers:
            self.transport.sendto(data, self.peers[node])

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def _norm(host: str) -> str:
    return host.removeprefix("::ffff:")
