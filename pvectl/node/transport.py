"""UDP transport between embedded nodes (udpu style: unicast to each member).

The receive filter is where the lab breaks the network on purpose: partitions (drop
everything from peers outside our group), random loss, extra delay and duplication.
nftables can do drops and loss inside namespaces, but delay and duplication need this
filter since ``tc netem`` is not available everywhere.
"""

from __future__ import annotations

import asyncio
import errno
import random
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

from pvectl.errors import ExitCode, PvectlError

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


class UdpTransport:
    """A non-blocking UDP socket read from a reader callback that drains it.

    asyncio's datagram transport hands over one datagram per loop iteration (one epoll
    wait each); draining up to ``MAX_BATCH`` datagrams per wake-up, then calling
    ``on_batch_end`` once, lets the runtime forward the token before it works through
    the deliveries of the frames that came with it. With ``urgent`` set (the runtime
    passes ``wire.is_token``), the datagrams of a wake-up it picks are handed over first,
    so the token is forwarded before this node even orders those frames: the ring's
    rotation no longer waits for every receiver's share of the burst (+20-40 % at 1 KiB
    and 64 KiB on a 2-core machine). For Totem this is just a network that delivered the
    token before frames sent earlier, which UDP allows and the protocol tolerates (the
    frames count as missing for a visit; retransmission waits ``miss_count_const``).

    Sends go straight to ``sendto``: a datagram the kernel refuses (full buffer) is
    dropped and counted, as on a real network, and Totem retransmits it.
    """

    MAX_BATCH = 64

    def __init__(
        self,
        sock: socket.socket,
        peers: dict[int, Address],
        on_datagram: Callable[[int, bytes], None],
        faults: FaultFilter | None = None,
        on_batch_end: Callable[[], None] | None = None,
    ) -> None:
        self.sock = sock
        self.peers = peers
        self.by_address = {(_norm(host), port): node for node, (host, port) in peers.items()}
        self._sources: dict[tuple[str | int, ...], int] = {}
        self.urgent: Callable[[bytes], bool] | None = None
        self.on_datagram = on_datagram
        self.on_batch_end = on_batch_end
        self.faults = faults or FaultFilter()
        self.unknown_sources = 0
        self.send_errors = 0
        self.loop = asyncio.get_running_loop()
        self._closed = False
        self._sendto = sock.sendto
        self.loop.add_reader(sock.fileno(), self._read_ready)

    @classmethod
    async def bind(
        cls,
        local: Address,
        peers: dict[int, Address],
        on_datagram: Callable[[int, bytes], None],
        faults: FaultFilter | None = None,
        on_batch_end: Callable[[], None] | None = None,
    ) -> UdpTransport:
        family = socket.AF_INET6 if ":" in local[0] else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
            sock.setblocking(False)
            sock.bind(local)
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                # 'lab up' reads "is already in use" in the node's last words to pick
                # another subnet: keep the phrase
                raise PvectlError(
                    f"UDP {local[0]}:{local[1]} is already in use (corosync or another lab "
                    "node?): stop it, or give this lab another port with 'lab up --port N'",
                    ExitCode.UNAVAILABLE,
                ) from exc
            raise
        return cls(sock, peers, on_datagram, faults, on_batch_end)

    def _read_ready(self) -> None:
        recvfrom = self.sock.recvfrom
        received = 0
        faults = self.faults
        # the fault filter only changes between wake-ups (lab commands): with none set, a
        # datagram from a known source goes straight to the callback
        plain = not (faults.blocked or faults.loss_pct or faults.duplicate_pct or faults.delay_ms)
        sources = self._sources
        on_datagram = self.on_datagram
        urgent = self.urgent
        try:
            if urgent is not None:
                # read the whole batch, then hand over the urgent datagrams (the token)
                # first: the ring moves on while this node works through the frames
                batch: list[tuple[bytes, tuple[str | int, ...]]] = []
                later: list[tuple[bytes, tuple[str | int, ...]]] = []
                while received < self.MAX_BATCH:
                    try:
                        data, addr = recvfrom(65536)
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:
                        continue
                    received += 1
                    (batch if urgent(data) else later).append((data, addr))
                batch += later
                for data, addr in batch:
                    peer = sources.get(addr)
                    if plain and peer is not None:
                        on_datagram(peer, data)
                    else:
                        self._received(data, addr)
                return
            while received < self.MAX_BATCH:
                try:
                    data, addr = recvfrom(65536)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:  # ICMP unreachable reported on the socket: the peer is down
                    continue
                received += 1
                peer = sources.get(addr)
                if plain and peer is not None:
                    on_datagram(peer, data)
                else:
                    self._received(data, addr)
        finally:
            if received and self.on_batch_end is not None and not self._closed:
                self.on_batch_end()

    def _received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        peer = self._sources.get(addr)
        if peer is None:
            peer = self.by_address.get((_norm(str(addr[0])), int(addr[1])))
            if peer is None:
                self.unknown_sources += 1
                return
            self._sources[addr] = peer  # as the socket reports it: no normalising next time
        faults = self.faults
        if not (faults.blocked or faults.loss_pct or faults.duplicate_pct or faults.delay_ms):
            self.on_datagram(peer, data)
            return
        copies, delay = faults.verdict(peer)
        for _ in range(copies):
            if delay > 0:
                self.loop.call_later(delay, self._delayed, peer, data)
            else:
                self.on_datagram(peer, data)

    def _delayed(self, peer: int, data: bytes) -> None:
        if not self._closed:
            self.on_datagram(peer, data)
            if self.on_batch_end is not None:
                self.on_batch_end()

    def send_many(self, nodes: tuple[int, ...], data: bytes) -> None:
        """The same datagram to each of ``nodes`` (udpu multicast), in that order."""
        if self._closed:
            return
        peers = self.peers
        sendto = self._sendto
        for node in nodes:
            address = peers.get(node)
            if address is None:
                continue
            try:
                sendto(data, address)
            except OSError:  # full buffer, or ECONNREFUSED from an earlier ICMP
                self.send_errors += 1

    def send(self, node: int, data: bytes) -> None:
        address = self.peers.get(node)
        if address is None or self._closed:
            return
        try:
            self._sendto(data, address)
        except (BlockingIOError, InterruptedError):
            self.send_errors += 1
        except OSError:  # e.g. ECONNREFUSED from an earlier ICMP: the peer is down
            self.send_errors += 1

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()


def _norm(host: str) -> str:
    return host.removeprefix("::ffff:")
