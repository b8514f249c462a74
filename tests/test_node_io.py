from __future__ import annotations

import asyncio
import random
import stat
from pathlib import Path
from typing import Any

import pytest

from pvectl.errors import PvectlError
from pvectl.node import control_socket
from pvectl.node.transport import FaultFilter, UdpTransport


def test_control_socket_json_lines_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"

    async def handler(request: dict[str, Any]) -> dict[str, Any]:
        if request["cmd"] == "boom":
            raise PvectlError("refused on purpose")
        return {"ok": True, "echo": request.get("value")}

    async def scenario() -> None:
        server = await control_socket.serve(path, handler)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        reply = await asyncio.to_thread(control_socket.call, path, "echo", value=[1, 2])
        assert reply == {"ok": True, "echo": [1, 2]}
        with pytest.raises(PvectlError, match="refused on purpose"):
            await asyncio.to_thread(control_socket.call, path, "boom")
        server.close()
        await server.wait_closed()

    asyncio.run(scenario())
    # the server is gone but the socket file stays: a clear error, not a traceback
    with pytest.raises(PvectlError, match=r"stale control socket|no control socket"):
        control_socket.call(path, "echo")


def _free_udp_ports(count: int) -> list[int]:
    import socket

    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(count)]
    for sock in socks:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in socks]
    for sock in socks:
        sock.close()
    return ports


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_udp_between_peers_and_partition_filter(host: str) -> None:
    ports = _free_udp_ports(2) if host == "127.0.0.1" else [p + 0 for p in _free_udp_ports(2)]
    peers = {1: (host, ports[0]), 2: (host, ports[1])}
    got: dict[int, list[tuple[int, bytes]]] = {1: [], 2: []}

    async def scenario() -> None:
        a = await UdpTransport.bind(peers[1], peers, lambda p, d: got[1].append((p, d)))
        b = await UdpTransport.bind(peers[2], peers, lambda p, d: got[2].append((p, d)))
        a.send(2, b"hello")
        await asyncio.sleep(0.05)
        assert got[2] == [(1, b"hello")]
        b.faults.blocked = {1}
        a.send(2, b"dropped")
        await asyncio.sleep(0.05)
        assert got[2] == [(1, b"hello")] and b.faults.dropped == 1
        b.send(1, b"still one way")
        await asyncio.sleep(0.05)
        assert got[1] == [(2, b"still one way")]
        a.close()
        b.close()

    try:
        asyncio.run(scenario())
    except OSError as exc:  # no IPv6 on this machine
        pytest.skip(f"cannot bind {host}: {exc}")


def test_token_is_handed_over_before_frames_of_the_same_wake_up() -> None:
    """With ``urgent`` (the runtime sets ``wire.is_token``), a wake-up's token goes to the
    machine before the frames queued ahead of it; without, arrival order is kept."""
    from pvectl.totem.ring_id import RingId
    from pvectl.totem.wire import Codec, Mcast, Token, is_token

    codec = Codec(1, "t", b"k" * 32)
    ring = RingId(1, 8)
    frames = [codec.encode(Mcast(ring, s, 1, b"x")) for s in (1, 2)]
    token = codec.encode(Token(ring, 3, 2, 2, 0, 2, 0, False, ()))
    assert is_token(token) and not any(is_token(f) for f in frames)

    def order(urgent: bool) -> list[bytes]:
        ports = _free_udp_ports(2)
        peers = {1: ("127.0.0.1", ports[0]), 2: ("127.0.0.1", ports[1])}
        got: list[bytes] = []
        batches: list[int] = []

        async def scenario() -> None:
            a = await UdpTransport.bind(peers[1], peers, lambda p, d: None)
            b = await UdpTransport.bind(
                peers[2], peers, lambda p, d: got.append(d), None, lambda: batches.append(len(got))
            )
            if urgent:
                b.urgent = is_token
            for data in (*frames, token):  # queued before the loop can read any of them
                a.send(2, data)
            await asyncio.sleep(0.05)
            a.close()
            b.close()

        asyncio.run(scenario())
        assert batches == [3]  # one wake-up
        return got

    assert order(urgent=False) == [*frames, token]
    assert order(urgent=True) == [token, *frames]


def test_loss_filter_is_seeded() -> None:
    seed = random.randrange(2**32)
    print(f"seed={seed}")
    first = FaultFilter(loss_pct=30, rng=random.Random(seed))
    second = FaultFilter(loss_pct=30, rng=random.Random(seed))
    a = [first.verdict(1)[0] for _ in range(1000)]
    b = [second.verdict(1)[0] for _ in range(1000)]
    assert a == b
    assert 200 < a.count(0) < 400


def test_control_socket_in_a_directory_deeper_than_af_unix_allows(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 100) / "node1"
    deep.mkdir(parents=True)
    path = deep / "control.sock"
    assert len(str(path)) > 108

    async def handler(request: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "cmd": request["cmd"]}

    async def scenario() -> None:
        server = await control_socket.serve(path, handler)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        reply = await asyncio.to_thread(control_socket.call, path, "ping")
        assert reply == {"ok": True, "cmd": "ping"}
        server.close()
        await server.wait_closed()

    asyncio.run(scenario())
