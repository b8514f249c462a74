"""Where a datagram's CPU goes in the embedded Totem engine, stage by stage.

    python benchmarks/totem_cost.py [--size 1024] [--netmtu 1400] [--json FILE]

Each stage runs the engine's real code on its own, many times, timed with this
process's CPU clock (``time.process_time``), so other jobs on a shared machine do not
change the figures much. The unit is one Totem frame of ``--size``-byte application
messages at ``--netmtu`` (1400 by default, the lab's and corosync's value):

* receive: ``UdpTransport`` draining a loopback UDP socket (syscall + peer lookup);
* MAC check: HMAC-SHA256 over the datagram, constant-time compare;
* decode: ``Codec.decode`` less the MAC check (header checks, parse, message object);
* SRP processing: a frame through ``Srp`` in OPERATIONAL (sort queue, aru, ordering),
  less decode and delivery;
* delivery: reassembly into application messages, ``Deliver`` commands, and the
  benchmark service's recorder;
* token and retransmit bookkeeping: a token visit at a node that does not send
  (miss counters, buffer release, flow control, token encode), per frame it carried;
* send: framing, encode with MAC, and one ``sendto`` per peer (2 in a 3-node ring).

Running it against an older checkout (``PYTHONPATH=old/tree``) gives the before column.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import json
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pvectl.node import bench
from pvectl.node.transport import UdpTransport
from pvectl.results import RingId
from pvectl.totem import srp as srp_mod
from pvectl.totem.packing import Reassembler, SendQueue
from pvectl.totem.srp import PacketReceived, Srp, TotemConfig
from pvectl.totem.wire import Codec, Mcast, Token

KEY = b"benchmark-key-0123456789abcdef!!"
PEERS = 2  # sendto calls per frame in a 3-node ring


def cpu_us(fn: Callable[[], object], n: int) -> float:
    """CPU microseconds per call of ``fn`` (best of 3 rounds of ``n`` calls)."""
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        for _ in range(n):
            fn()
        best = min(best, time.process_time() - start)
    return best / n * 1e6


def frames(size: int, netmtu: int, count: int, codec: Codec, ring: RingId) -> list[bytes]:
    capacity = netmtu - codec.overhead - srp_mod._MCAST_HEADROOM
    q = SendQueue(capacity)
    for i in range(count):
        q.push(bench.HEADER.pack(bench.SERVICE_BENCH, i, i) + b"x" * (size - bench.HEADER.size))
    out = []
    seq = 0
    while q:
        seq += 1
        out.append(codec.encode(Mcast(ring, seq, 1, q.next_frame())))
    return out


def operational(node_id: int, ids: list[int], cfg: TotemConfig) -> dict[int, Srp]:
    """Form a ring of ``ids`` in memory; returns the machines, OPERATIONAL."""
    nodes = {i: Srp(i, ids, Codec(i, "bench", KEY), cfg) for i in ids}
    wire: list[tuple[int, bytes]] = []
    timers: dict[int, dict[Any, float]] = {i: {} for i in ids}
    now = 0.0

    def run(i: int, cmds: list[Any]) -> None:
        for c in cmds:
            if isinstance(c, srp_mod.SendAll):
                wire.extend((j, c.data) for j in ids if j != i)
            elif isinstance(c, srp_mod.SendTo):
                wire.append((c.node, c.data))
            elif isinstance(c, srp_mod.SetTimer):
                timers[i][c.kind] = c.deadline

    for i in ids:
        run(i, nodes[i].handle(srp_mod.Start(), now))
    while not all(
        n.state is srp_mod.State.OPERATIONAL and len(n.members) == len(ids) for n in nodes.values()
    ):
        while wire:
            j, data = wire.pop(0)
            run(j, nodes[j].handle(PacketReceived(data), now))
        now += 0.01
        for i in ids:
            for kind, deadline in list(timers[i].items()):
                if deadline <= now:
                    del timers[i][kind]
                    run(i, nodes[i].handle(srp_mod.TimerFired(kind), now))
    return nodes


def receive_us(datagram: bytes, n: int) -> float:
    """The transport's drain loop on a real loopback socket, per datagram."""

    async def main() -> float:
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        rx.bind(("127.0.0.1", 0))
        rx.setblocking(False)
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tx.bind(("127.0.0.1", 0))
        dest = rx.getsockname()
        got = [0]

        def on_datagram(_peer: int, _data: bytes) -> None:
            got[0] += 1

        transport = UdpTransport(rx, {2: tx.getsockname()}, on_datagram)
        spent = 0.0
        done = 0
        try:
            while done < n:
                for _ in range(256):
                    tx.sendto(datagram, dest)
                start = time.process_time()
                while got[0] < 256:
                    before = got[0]
                    transport._read_ready()
                    if got[0] == before:
                        break
                spent += time.process_time() - start
                done += got[0]
                got[0] = 0
        finally:
            transport.close()
            tx.close()
        return spent / done * 1e6

    return asyncio.run(main())


def send_us(datagram: bytes, n: int) -> float:
    """``sendto`` of one datagram to a loopback peer (the receiver drains untimed)."""
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    rx.bind(("127.0.0.1", 0))
    rx.setblocking(False)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dest = rx.getsockname()
    spent = 0.0
    for _ in range(n // 256):
        start = time.process_time()
        for _ in range(256):
            tx.sendto(datagram, dest)
        spent += time.process_time() - start
        try:
            while True:
                rx.recv(65536)
        except BlockingIOError:
            pass
    rx.close()
    tx.close()
    return spent / (n // 256 * 256) * 1e6


CONF = """totem {
  cluster_name: bench
  version: 2
  netmtu: %d
}
nodelist {
  node {
    nodeid: 1
    name: n1
    ring0_addr: 127.0.0.1
  }
  node {
    nodeid: 2
    name: n2
    ring0_addr: 127.0.0.1
  }
  node {
    nodeid: 3
    name: n3
    ring0_addr: 127.0.0.1
  }
}
quorum {
  provider: corosync_votequorum
}
"""


def runtime_receiver_us(
    data: list[bytes],
    tokens: list[bytes],
    per_token: int,
    netmtu: int,
    receiver: Srp,
    per_frame: float = 1.0,
) -> float:
    """A receiving node as the lab runs it: ``NodeRuntime`` (deliveries to the benchmark
    service) fed by ``UdpTransport`` from a real loopback socket, frames and tokens in
    ring order; CPU per datagram, token forwarding included."""
    import logging
    import tempfile

    from pvectl.node import config as node_config
    from pvectl.node.runtime import NodeRuntime

    async def main(tmp: Path) -> float:
        (tmp / "authkey").write_bytes(KEY)
        (tmp / "corosync.conf").write_text(CONF % netmtu)
        cfg = node_config.load(tmp / "corosync.conf", 2)
        runtime = NodeRuntime(cfg, tmp, logging.getLogger("bench"))
        runtime.totem.srp = receiver
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        rx.bind(("127.0.0.1", 0))
        rx.setblocking(False)
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tx.bind(("127.0.0.1", 0))
        sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sink.bind(("127.0.0.1", 0))
        sink.setblocking(False)
        transport = UdpTransport(
            rx,
            {1: tx.getsockname(), 3: sink.getsockname()},
            runtime.totem.on_datagram,
            on_batch_end=runtime.totem.on_batch_end,
        )
        runtime.totem.transport = transport
        dest = rx.getsockname()
        spent = 0.0
        sent = 0
        try:
            for k, tok in enumerate(tokens):
                for d in data[k * per_token : (k + 1) * per_token]:
                    tx.sendto(d, dest)
                tx.sendto(tok, dest)
                sent += per_token + 1
                if k % 4 == 3 or k == len(tokens) - 1:
                    start = time.process_time()
                    transport._read_ready()
                    transport._read_ready()
                    spent += time.process_time() - start
                    try:
                        while True:
                            sink.recv(65536)
                    except BlockingIOError:
                        pass
        finally:
            for timer in runtime.totem.timers.values():
                timer.cancel()
            transport.close()
            tx.close()
            sink.close()
            runtime.backing.close()
        if runtime.bench.recorder.count < len(tokens) * per_token * min(per_frame, 1.0) - 1:
            raise RuntimeError(
                f"only {runtime.bench.recorder.count} deliveries: the harness is broken"
            )
        return spent / sent * 1e6

    with tempfile.TemporaryDirectory(prefix="totem-cost-") as tmp:
        return asyncio.run(main(Path(tmp)))


def measure(size: int, netmtu: int, n: int) -> dict[str, float]:
    cfg = TotemConfig(netmtu=netmtu)
    ids = [1, 2, 3]
    nodes = operational(2, ids, cfg)
    sender, receiver = nodes[1], nodes[2]
    ring = receiver.ring_id
    codec1 = sender.codec
    count = max(n, 1000)
    data = frames(size, netmtu, count, codec1, ring)
    per_frame = count / len(data)  # application messages per frame
    d0 = data[0]
    codec2 = receiver.codec
    view = memoryview(d0)
    mac = getattr(codec2, "_mac", None)
    if mac is not None:
        mac_us = cpu_us(lambda: hmac.compare_digest(mac(view[:-32]), view[-32:]), n)
    else:
        key = codec2._mac_key
        mac_us = cpu_us(
            lambda: hmac.compare_digest(hmac.digest(key, d0[:-32], "sha256"), d0[-32:]), n
        )
    decode_us = cpu_us(lambda: codec2.decode(d0), n) - mac_us
    # a frame through the machine: fresh receiver per round, frames in order
    receive = getattr(receiver, "receive", None)
    best = float("inf")
    for _ in range(3):
        fresh = operational(2, ids, cfg)[2]
        handle = getattr(fresh, "receive", None)
        start = time.process_time()
        if handle is not None:
            for d in data:
                handle(d, 1.0)
        else:
            for d in data:
                fresh.handle(PacketReceived(d), 1.0)
        best = min(best, time.process_time() - start)
    del receive
    machine_us = best / len(data) * 1e6
    m0 = codec2.decode(d0)[1]
    assert isinstance(m0, Mcast)
    reasm = Reassembler()
    new_deliver = getattr(srp_mod, "_new_deliver", srp_mod.Deliver)

    def deliver_in_srp() -> None:
        for p in reasm.unpack(1, m0.payload):
            new_deliver(1, p, ring, 1)

    srp_deliver_us = cpu_us(deliver_in_srp, n)
    recorder = bench.Recorder()
    payloads = reasm.unpack(1, m0.payload)
    mono = time.monotonic_ns

    def deliver_to_service() -> None:
        for p in payloads:
            recorder.delivered(1, p, mono())

    service_us = cpu_us(deliver_to_service, n)
    srp_us = machine_us - mac_us - decode_us - srp_deliver_us
    # a token visit at a non-sender: the frames came before it, nothing to send
    frames_per_token = min(cfg.max_messages, cfg.window_size)
    tok_codec = codec1

    def token_visit() -> None:
        fresh = operational(2, ids, cfg)[2]
        hd = getattr(fresh, "receive", None)
        seq = 0
        tseq = fresh._my_token_seq + 1
        t_total = 0.0
        visits = 0
        for k in range(0, len(data), frames_per_token):
            for d in data[k : k + frames_per_token]:
                if hd is not None:
                    hd(d, 1.0)
                else:
                    fresh.handle(PacketReceived(d), 1.0)
            seq = min(k + frames_per_token, len(data))
            tok = tok_codec.encode(Token(ring, tseq, seq, seq, 0, frames_per_token, 0, False, ()))
            tseq += 3
            start = time.process_time()
            if hd is not None:
                hd(tok, 1.0)
            else:
                fresh.handle(PacketReceived(tok), 1.0)
            t_total += time.process_time() - start
            visits += 1
        token_times.append(t_total / visits * 1e6)

    token_times: list[float] = []
    for _ in range(3):
        token_visit()
    token_us = min(token_times) / frames_per_token
    # send: frame, encode, sendto per peer
    capacity = netmtu - codec1.overhead - srp_mod._MCAST_HEADROOM
    q = SendQueue(capacity)
    payload = bench.HEADER.pack(bench.SERVICE_BENCH, 0, 0) + b"x" * (size - bench.HEADER.size)
    make = getattr(sys.modules["pvectl.totem.wire"], "mcast_frame", Mcast)

    def frame_encode() -> None:
        while len(q) < 2 * per_frame + 2:
            q.push(payload)
        codec1.encode_mcast(make(ring, 7, 1, q.next_frame()))

    encode_us = cpu_us(frame_encode, n)
    sendto_us = send_us(d0, n)
    recv_us = receive_us(d0, n)
    # the whole receiving node: 16 frames, then the token that follows them
    per_token = 16
    whole = []
    for _ in range(3):
        fresh = operational(2, ids, cfg)[2]
        seq_tokens = []
        tseq = fresh._my_token_seq + 1
        for k in range(0, len(data) - per_token + 1, per_token):
            seq = k + per_token
            seq_tokens.append(
                tok_codec.encode(Token(ring, tseq, seq, seq, 0, per_token, 0, False, ()))
            )
            tseq += 3
        whole.append(runtime_receiver_us(data, seq_tokens, per_token, netmtu, fresh, per_frame))
    stages = {
        "receive": recv_us,
        "MAC check": mac_us,
        "decode": decode_us,
        "SRP processing": srp_us,
        "delivery": srp_deliver_us + service_us,
        "token and retransmit bookkeeping": token_us,
        "send (frame + encode + MAC)": encode_us,
        f"send ({PEERS} x sendto)": PEERS * sendto_us,
    }
    return {"messages_per_frame": per_frame, "runtime_receiver_us": min(whole), **stages}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--netmtu", type=int, default=1400)
    parser.add_argument("-n", type=int, default=20000, help="calls per stage")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    args = parser.parse_args()
    result = measure(args.size, args.netmtu, args.n)
    per_frame = result.pop("messages_per_frame")
    whole = result.pop("runtime_receiver_us")
    print(
        f"per-datagram CPU, {args.size}-byte messages at netmtu {args.netmtu} "
        f"({per_frame:.2f} messages per frame), microseconds:"
    )
    receiver = 0.0
    for name, us in result.items():
        print(f"  {name:<36}{us:8.2f}")
        if not name.startswith("send"):
            receiver += us
    sender = sum(us for name, us in result.items() if name.startswith("send"))
    print(f"  {'receiver total (per datagram)':<36}{receiver:8.2f}")
    print(f"  {'sender total (per frame)':<36}{sender:8.2f}")
    print(f"  {'receiving node, runtime + transport':<36}{whole:8.2f}  (one process, ring order)")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "size": args.size,
                    "netmtu": args.netmtu,
                    "messages_per_frame": per_frame,
                    "stages_us": result,
                    "receiver_us": receiver,
                    "sender_us": sender,
                    "receiving_node_us": whole,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
