"""Simulator seeds per minute (the headline), then Totem codec rates and in-process ring
throughput.

Run: ``python benchmarks/totem_sim.py [--seeds 60] [--seconds 5] [--sim-only] [--jobs N]``

* simulator, the headline: whole nodes (Totem, votequorum, config store with its commit
  pipeline, writers at both levels), 5 nodes, the swarm mix of faults and traffic drawn per
  seed, default settings (netmtu 1400), ~10 simulated seconds per seed (faults on for
  8.5 s, then healing, convergence and drain), on every core (``--jobs``, default one
  process per core): seeds per minute of wall time on the machine (target 1,000) and per
  minute of CPU. Extra rows: whole nodes in one process, Totem alone (same seeds), and
  Totem alone at 2 msgs/s/node;
* codec: encode and decode per second for a token, a 64-byte message frame and a full
  1,400-byte packed frame, HMAC-SHA256 only and with AES-256-GCM;
Rates use this process's CPU time (``time.process_time``), so other jobs on a shared
machine slow the wall clock but not the figures much; the simulator rows also give the
wall-clock rate.

* engine: 3 Srp instances joined by an in-memory zero-delay network in this one
  process, flooding 64-byte messages: agreed deliveries per second and CPU per
  message per node. In a 3-node lab each node has its own process, so the per-node
  figure is the ceiling a runtime can reach before syscalls (target >= 50,000/s).

Reference figures printed beside ours come from the Totem papers (TOCS'95: > 1,000
ordered msgs/s on 10 Mbit/s; RRP ICDCS'02: > 9,000 1-KB msgs/s on 100 Mbit/s); corosync
publishes no CPG benchmark numbers (see the Totem spec digest, section 5).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from collections import deque
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pvectl.results import RingId
from pvectl.sim.swarm import SeedJob, outcomes
from pvectl.sim.world import Options, Simulator
from pvectl.totem.packing import SendQueue
from pvectl.totem.srp import (
    AppSend,
    Deliver,
    PacketReceived,
    SendAll,
    SendTo,
    SetTimer,
    Srp,
    Start,
    State,
    TimerFired,
    TotemConfig,
)
from pvectl.totem.wire import Codec, Mcast, Token

KEY = b"benchmark-key-0123456789abcdef!!"


@dataclasses.dataclass(frozen=True)
class SimRate:
    cpu_per_min: float  # seeds per minute of this process's CPU time
    wall_per_min: float  # seeds per minute of wall time
    simulated_s: float  # simulated seconds per seed
    acknowledged: int = 0  # store writes acknowledged, whole nodes only


def _swarm_options(seed: int) -> Options:
    """The benchmark's seeds: 5 nodes, the swarm mix, default settings (netmtu 1400)."""
    return Options.draw(seed, 5, safety_s=8.5)


def bench_sim(seeds: int, rate: float | None = None) -> SimRate:
    """Totem alone (``rate``: application messages per second per node, else the mix)."""
    cpu, wall = time.process_time(), time.perf_counter()
    simulated = 0.0
    for seed in range(seeds):
        opts = _swarm_options(seed)
        if rate is not None:
            opts = dataclasses.replace(opts, rate=rate)
        result = Simulator(seed, opts).run()
        simulated += result.simulated_s
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return SimRate(seeds / cpu * 60, seeds / wall * 60, simulated / seeds)


def bench_nodes(seeds: int, jobs: int = 1) -> SimRate:
    """Whole nodes (Totem + votequorum + config store, writers at both levels), the seeds
    shared by ``jobs`` processes (seeds are independent, as in a swarm run): seeds per
    minute of wall time on the machine, and per minute of CPU (all processes)."""
    wall = time.perf_counter()
    runs = [SeedJob(seed, nodes=5, safety_s=8.5) for seed in range(seeds)]
    done = list(outcomes(runs, jobs, ordered=False))
    wall = time.perf_counter() - wall
    failed = [out.headline for out in done if out.violation]
    if failed:
        raise SystemExit(f"simulator violation: {failed[0]}")
    cpu = sum(out.cpu_s for out in done)
    simulated = sum(out.simulated_s for out in done)
    acknowledged = sum(out.acknowledged for out in done)
    return SimRate(seeds / cpu * 60, seeds / wall * 60, simulated / seeds, acknowledged)


def rate(fn: object, seconds: float) -> float:
    assert callable(fn)
    n = 0
    end = time.process_time() + seconds
    while time.process_time() < end:
        for _ in range(200):
            fn()
        n += 200
    return n / seconds


def bench_codec(seconds: float) -> list[tuple[str, float, float]]:
    ring = RingId(1, 100)
    q = SendQueue(1400 - 45 - 37)
    for i in range(40):
        q.push(bytes([i]) * 64)
    packed = q.next_frame()
    rows = []
    for encrypt in (False, True):
        a = Codec(1, "bench", KEY, encrypt=encrypt, nonce_source=os.urandom)
        b = Codec(2, "bench", KEY, encrypt=encrypt, nonce_source=os.urandom)
        label = "HMAC+AES-GCM" if encrypt else "HMAC-SHA256"
        for name, msg in (
            ("token", Token(ring, 5, 100, 98, 3, 12, 40, False, ())),
            ("frame 64 B", Mcast(ring, 7, 1, b"\x00\x00\x40" + b"x" * 64)),
            (f"frame {len(packed)} B packed", Mcast(ring, 7, 1, packed)),
        ):
            data = a.encode(msg)
            rows.append(
                (
                    f"{name} ({label})",
                    rate(lambda m=msg, c=a: c.encode(m), seconds / 12),
                    rate(lambda d=data, c=b: c.decode(d), seconds / 12),
                )
            )
    return rows


def bench_engine(seconds: float, payload_size: int = 64) -> tuple[float, list[float]]:
    ids = [1, 2, 3]
    cfg = TotemConfig(window_size=300, max_messages=100)
    nodes = {i: Srp(i, ids, Codec(i, "bench", KEY), cfg) for i in ids}
    cpu = dict.fromkeys(ids, 0.0)
    wire: deque[tuple[int, bytes]] = deque()
    timers: dict[int, dict[object, float]] = {i: {} for i in ids}
    delivered = dict.fromkeys(ids, 0)
    now = 0.0

    def execute(i: int, cmds: list[object]) -> None:
        for c in cmds:
            if isinstance(c, SendAll):
                for j in ids:
                    if j != i:
                        wire.append((j, c.data))
            elif isinstance(c, SendTo):
                wire.append((c.node, c.data))
            elif isinstance(c, Deliver):
                delivered[i] += 1
            elif isinstance(c, SetTimer):
                timers[i][c.kind] = c.deadline

    for i in ids:
        execute(i, list(nodes[i].handle(Start(), now)))
    # form the ring (join timers must fire)
    while not all(n.state is State.OPERATIONAL and len(n.members) == 3 for n in nodes.values()):
        while wire:
            j, data = wire.popleft()
            execute(j, list(nodes[j].handle(PacketReceived(data), now)))
        now += 0.01
        for i in ids:
            for kind, deadline in list(timers[i].items()):
                if deadline <= now:
                    del timers[i][kind]
                    execute(i, list(nodes[i].handle(TimerFired(kind), now)))  # type: ignore[arg-type]
    payload = b"p" * payload_size
    base = dict(delivered)
    wall_start = time.process_time()
    while time.process_time() - wall_start < seconds:
        for i in ids:
            t0 = time.process_time()
            srp = nodes[i]
            out: list[object] = []
            for _ in range(500):
                out += srp.handle(AppSend(payload), now)
            cpu[i] += time.process_time() - t0
            execute(i, out)
        budget = 3000
        while wire and budget:
            budget -= 1
            j, data = wire.popleft()
            t0 = time.process_time()
            cmds = nodes[j].handle(PacketReceived(data), now)
            cpu[j] += time.process_time() - t0
            execute(j, list(cmds))
    while wire:
        j, data = wire.popleft()
        t0 = time.process_time()
        cmds = nodes[j].handle(PacketReceived(data), now)
        cpu[j] += time.process_time() - t0
        execute(j, list(cmds))
    wall = time.process_time() - wall_start
    total = min(delivered[i] - base[i] for i in ids)
    per_node = [(delivered[i] - base[i]) / cpu[i] for i in ids]
    return total / wall, per_node


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, default=60)
    p.add_argument("--seconds", type=float, default=4.0, help="time per codec/engine run")
    p.add_argument("--sim-only", action="store_true", help="only the simulator rows")
    p.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        help="processes for the whole-node headline (default: one per core)",
    )
    args = p.parse_args()
    if args.seeds < 1 or args.jobs < 1 or args.seconds <= 0:
        p.error("--seeds and --jobs must be at least 1, --seconds above 0")
    print("Simulator and Totem engine benchmark (pvectl)  -- CPython", sys.version.split()[0])
    print()
    # the cryptography import (encrypted seeds) is paid once per process, not per seed
    Codec(1, "warm-up", KEY, encrypt=True, nonce_source=os.urandom)
    nodes = bench_nodes(args.seeds, args.jobs)
    print(
        f"simulator, whole nodes, {args.seeds} seeds x 5 nodes x {nodes.simulated_s:.1f} "
        f"simulated s (swarm mix, netmtu 1400), {args.jobs} process(es) on "
        f"{os.cpu_count()} cores: {nodes.wall_per_min:,.0f} seeds/minute "
        f"(target 1,000), {nodes.cpu_per_min:,.0f} per CPU; "
        f"{nodes.acknowledged:,} acknowledged writes"
    )
    if args.jobs != 1:
        one = bench_nodes(args.seeds)
        print(
            f"  whole nodes, 1 process: {one.wall_per_min:,.0f} seeds/minute, "
            f"{one.cpu_per_min:,.0f} per CPU"
        )
    for label, r in (("Totem alone, swarm mix", None), ("Totem alone, 2 msgs/s/node", 2.0)):
        totem = bench_sim(args.seeds, r)
        print(
            f"  {label}: {totem.cpu_per_min:,.0f} seeds/minute CPU, "
            f"{totem.wall_per_min:,.0f} wall ({totem.simulated_s:.1f} simulated s per seed)"
        )
    if args.sim_only:
        return
    print()
    print(f"{'codec':42} {'encode/s':>12} {'decode/s':>12}")
    for name, enc, dec in bench_codec(args.seconds):
        print(f"{name:42} {enc:12,.0f} {dec:12,.0f}")
    print()
    agreed, per_node = bench_engine(args.seconds)
    print("engine, 3 nodes in one process, 64-byte messages, zero-delay network:")
    print(f"  agreed deliveries (all 3 nodes on one core) {agreed:12,.0f} msgs/s")
    print(
        "  per node (CPU of that node only)           "
        + "  ".join(f"{r:,.0f}" for r in per_node)
        + " msgs/s   target >= 50,000"
    )
    print("  reference: Totem TOCS'95 > 1,000 msgs/s (10 Mbit/s); RRP'02 > 9,000 1 KB msgs/s")


if __name__ == "__main__":
    main()
