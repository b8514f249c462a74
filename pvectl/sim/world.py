"""A deterministic world for N Totem nodes: virtual clock, faulty network, node faults.

One seed decides everything (TigerBeetle VOPR style): the number of nodes when not
given, the Totem timeouts, the network's loss/duplication/delay (delay jitter
reorders), which fault kinds are on, their schedule and the workload. Each concern
draws from its own ``random.Random`` derived from the seed, so turning one knob does not
reshuffle the others. Nothing iterates a set; node ids are ints in sorted lists.

A run has three phases:

1. safety (faults on): partitions (symmetric, asymmetric, isolate one node), crashes
   and restarts (restart loads the persisted ring seq), clean leaves, pauses longer
   than the token timeout, packet loss, duplication and reordering;
2. liveness: faults healed; within ``liveness_bound`` every node must be OPERATIONAL
   in one ring of all nodes;
3. drain: a last burst of traffic, then quiet; every message must reach its sender and
   every node must have delivered the same messages in the final ring.

The same ``pvectl.totem`` code runs as in production, packets go through the real
codec (HMAC included), and the checkers see every Deliver and ConfigChange.
"""

from __future__ import annotations

import dataclasses
import heapq
import math
import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pvectl.sim.checker import Checker, InvariantViolation
from pvectl.totem.srp import (
    AppSend,
    CancelTimer,
    Command,
    ConfigChange,
    Deliver,
    Log,
    PersistRingSeq,
    SendAll,
    SendTo,
    SetTimer,
    Shutdown,
    Srp,
    Start,
    State,
    TimerFired,
    TimerKind,
    TotemConfig,
)
from pvectl.totem.wire import Codec, Mcast, Message, Token

KEY = b"pvectl-sim-cluster-key-0123456789"

DECODED_CACHE_SIZE = 4096


class SharedDecodeCodec(Codec):
    """Every simulated node holds the same key, so a datagram sent to four receivers
    authenticates and parses to the same frozen message four times: decode it once.
    Tokens and frames are remembered as they are encoded, so receivers skip the parse and
    the MAC check altogether (``decode(encode(m)) == m`` is the codec's own contract, held
    by its tests). Only successes are kept (a rejection still counts on the receiving
    node's codec)."""

    def __init__(self, node_id: int, cache: dict[bytes, tuple[int, Message]], **kw: Any) -> None:
        super().__init__(node_id, "sim", KEY, **kw)
        self._decoded = cache

    def _remember(self, data: bytes, msg: Message) -> None:
        cache = self._decoded
        if len(cache) >= DECODED_CACHE_SIZE:
            cache.clear()
        cache[data] = (self.node_id, msg)

    def encode_token(self, t: Token) -> bytes:
        data = super().encode_token(t)
        self._remember(data, t)
        return data

    def encode_mcast(self, m: Mcast) -> bytes:
        data = super().encode_mcast(m)
        self._remember(data, m)
        return data

    def decode(self, data: bytes) -> tuple[int, Message]:
        found = self._decoded.get(data)
        if found is None:
            found = super().decode(data)
            if len(self._decoded) >= DECODED_CACHE_SIZE:
                self._decoded.clear()
            self._decoded[data] = found
        return found


_FAULT_KINDS = frozenset({"partition", "heal", "crash", "restart", "pause"})

# heap event kinds
_PKT = 0
_TIMER = 1
_ACTION = 2
_CORRUPTED = -2  # a packet's incarnation field: its bytes were damaged in flight


@dataclass(frozen=True)
class Options:
    """What one seed simulates; ``draw`` picks a swarm configuration from the seed."""

    nodes: int
    token_ms: int
    loss: float
    duplicate: float
    delay_s: float
    jitter_s: float
    partitions: bool
    crashes: bool
    pauses: bool
    leaves: bool
    rate: float  # application messages per second per node
    big_messages: bool
    safety_s: float
    encrypt: bool = False
    netmtu: int = 1400
    accelerated: bool = False  # the Accelerated Ring (its own CI seeds; not drawn)
    # drawn last, so the fields above stay what they were for every seed
    corrupt: float = 0.0  # share of datagrams with flipped bits or truncated in flight
    clock_skew: bool = False  # each node's clock: its own offset and drift
    disk_stalls: bool = False  # (whole nodes) one node's fsync stalls past the token timeout
    expected_requests: bool = False  # (whole nodes) ``pvecm expected`` during the faults
    qdevice: str = ""  # whole nodes: a qnetd and a qdevice per node, "ffsplit" (or "lms")
    # keep_active_partition_tie_breaker on (never drawn: off is corosync's default)
    qdevice_keep_active: bool = False

    @classmethod
    def draw(
        cls,
        seed: int,
        nodes: int | None = None,
        safety_s: float = 6.0,
        *,
        accelerated: bool = False,
    ) -> Options:
        r = random.Random(f"options-{seed}")
        drawn = cls(
            nodes=nodes if nodes is not None else r.randint(3, 7),
            token_ms=r.choice([200, 300, 500]),
            loss=r.choice([0.0, 0.0, 0.01, 0.05, 0.2]),
            duplicate=r.choice([0.0, 0.01, 0.05]),
            delay_s=r.choice([0.0002, 0.001, 0.003]),
            jitter_s=r.choice([0.0, 0.0005, 0.002]),
            partitions=r.random() < 0.6,
            crashes=r.random() < 0.5,
            pauses=r.random() < 0.4,
            leaves=r.random() < 0.3,
            rate=r.choice([2.0, 20.0, 100.0]),
            big_messages=r.random() < 0.3,
            safety_s=safety_s,
            encrypt=r.random() < 0.2,
            accelerated=accelerated,
            corrupt=r.choice([0.0, 0.0, 0.0, 0.002, 0.02]),
            clock_skew=r.random() < 0.5,
            disk_stalls=r.random() < 0.3,
            expected_requests=r.random() < 0.25,
        )
        # a QDevice as pvecm sets it up for an even node count: ffsplit, one device vote;
        # drawn last, so every draw above stays as it was (and Totem alone ignores it).
        # lms (odd counts) is not drawn: it lets two partitions hold the vote (see
        # docs/simulator.md); ``--nodes 2`` gives the classic two-node cluster
        if drawn.nodes % 2 == 0 and r.random() < 0.75:
            return dataclasses.replace(drawn, qdevice="ffsplit")
        return drawn


@dataclass
class SimNode:
    node_id: int
    srp: Srp | None = None
    incarnation: int = 0
    alive: bool = False
    paused_until: float = 0.0
    ring_seq: int = 0  # the "ring-id file"
    timers: dict[TimerKind, float] = field(default_factory=dict)
    scheduled: dict[TimerKind, float] = field(default_factory=dict)  # heap entry per kind
    sent: int = 0
    # the node's clocks: local = clock_offset + clock_rate * global simulated time, and its
    # wall clock (store mtimes) = wall_offset + local; Totem and the core see only these
    clock_offset: float = 0.0
    clock_rate: float = 1.0
    wall_offset: float = 0.0


class Simulator:
    def __init__(
        self,
        seed: int,
        options: Options | None = None,
        *,
        nodes: int | None = None,
        trace: bool = False,
        trace_len: int = 60,
        skip_faults: frozenset[int] = frozenset(),
    ) -> None:
        self.seed = seed
        # fault ids (numbered in schedule order) that do not happen: for --shrink
        self.skip_faults = skip_faults
        self.faults: list[str] = []  # fault id -> what it is, for --shrink's report
        self.opt = options or Options.draw(seed, nodes)
        self.net_rng = random.Random(f"net-{seed}")
        self.fault_rng = random.Random(f"fault-{seed}")
        self.work_rng = random.Random(f"work-{seed}")
        self.nonce_rng = random.Random(f"nonce-{seed}")
        self.corrupt_rng = random.Random(f"corrupt-{seed}")
        self.clock_rng = random.Random(f"clock-{seed}")
        self.corrupting = False  # set when the corruption fault is scheduled (not skipped)
        self.corrupted_sent = 0
        self.corrupted_rejected = 0
        self.config = TotemConfig(
            token=self.opt.token_ms,
            token_coefficient=50,
            netmtu=self.opt.netmtu,
            accelerated=self.opt.accelerated,
        )
        self.ids = list(range(1, self.opt.nodes + 1))
        # each node's peers, in node order: where its SendAll goes
        self._peers = {i: tuple(j for j in self.ids if j != i) for i in self.ids}
        self.timeouts = self.config.timeouts(len(self.ids))
        self.nodes = {i: SimNode(i) for i in self.ids}
        self.checker = Checker()
        self.decoded: dict[bytes, tuple[int, Message]] = {}  # shared by the nodes' codecs
        self.now = 0.0
        self._heap: list[tuple[float, int, int, int, int, Any]] = []
        self._ctr = 0
        self.blocked: set[tuple[int, int]] = set()
        self.faults_on = True
        self.trace_on = trace
        self.trace: deque[str] = deque(maxlen=trace_len)
        self.steps = 0
        self.packets = 0

    def _nonce(self, size: int) -> bytes:
        return self.nonce_rng.randbytes(size)

    # ---- node clocks ----------------------------------------------------------------------

    @staticmethod
    def _local(n: SimNode, t: float) -> float:
        """Node ``n``'s monotonic clock at global simulated time ``t`` (what its Totem and
        core get as ``now``); exactly ``t`` for a node without skew."""
        return n.clock_offset + n.clock_rate * t

    @staticmethod
    def _global(n: SimNode, local: float) -> float:
        """The global time at which node ``n``'s clock reads ``local`` (a deadline it set),
        rounded up so that the node's clock has reached the deadline when it fires."""
        t = (local - n.clock_offset) / n.clock_rate
        while n.clock_offset + n.clock_rate * t < local:
            t = math.nextafter(t, math.inf)
        return t

    def _wall_s(self, n: SimNode) -> int:
        """Node ``n``'s wall clock in whole seconds (store mtimes, DFSM epochs)."""
        return int(n.wall_offset + self._local(n, self.now))

    # ---- scheduling ---------------------------------------------------------------------

    def _push(self, t: float, kind: int, node: int, inc: int, payload: Any) -> None:
        self._ctr += 1
        heapq.heappush(self._heap, (t, self._ctr, kind, node, inc, payload))

    def _log(self, text: str) -> None:
        self.trace.append(f"{self.now:10.4f} {text}")

    def liveness_bound(self) -> float:
        """Time allowed after healing for one ring of all nodes (derived from timeouts).

        A healed node may have to notice a lost token (token), give up on a consensus
        that includes an unreachable peer (consensus), then merge via merge-detect on
        an idle ring (hold + merge) and go through commit and recovery; allow that
        three times over for cascades plus a fixed margin.
        """
        t = self.timeouts
        return 3 * (t.token + t.consensus + t.hold + t.merge) + 1.0

    def drain_bound(self) -> float:
        """Time allowed to empty the send queues once healed: the backlog at the
        ring's slowest plausible rate (one window of frames per 50 ms) plus margin."""
        frames = 0
        for i in self.ids:
            srp = self.nodes[i].srp
            if srp is not None:
                frames += srp.send_queue_bytes // 1000 + srp.send_queue_len
        return 2.0 + 0.05 * frames / self.config.window_size

    def _drained(self) -> bool:
        views = self.checker.views
        for i in self.ids:
            n = self.nodes[i]
            if n.srp is None or n.srp.send_queue_len or views[i].own_next != n.sent:
                return False
        return True

    # ---- node actions -------------------------------------------------------------------

    def _start_node(self, n: SimNode) -> None:
        n.incarnation += 1
        n.alive = True
        n.paused_until = 0.0
        n.timers = {}
        n.scheduled = {}
        n.sent = 0
        codec = SharedDecodeCodec(
            n.node_id, self.decoded, encrypt=self.opt.encrypt, nonce_source=self._nonce
        )
        n.srp = Srp(n.node_id, self.ids, codec, self.config, ring_seq=n.ring_seq)
        self.checker.node_started(n.node_id, n.incarnation)
        self._log(f"n{n.node_id} start (incarnation {n.incarnation}, ring seq {n.ring_seq})")
        self._execute(n, n.srp.handle(Start(), self._local(n, self.now)))

    def _crash(self, n: SimNode, *, clean: bool) -> None:
        if not n.alive:
            return
        if clean and n.srp is not None:
            self._log(f"n{n.node_id} leave")
            self._execute(n, n.srp.handle(Shutdown(), self._local(n, self.now)))
        self._log(f"n{n.node_id} crash")
        n.alive = False
        n.srp = None
        n.timers = {}
        n.scheduled = {}

    def _send_app(self, n: SimNode) -> None:
        if not n.alive or n.srp is None or n.paused_until > self.now:
            return
        size = 0
        r = self.work_rng
        if self.opt.big_messages and r.random() < 0.01:
            size = r.choice([3000, 20000, 100000])
        else:
            size = r.choice([0, 16, 64, 200])
        payload = b"%d.%d.%d|" % (n.node_id, n.incarnation, n.sent) + b"x" * size
        n.sent += 1
        self._execute(n, n.srp.handle(AppSend(payload), self._local(n, self.now)))

    # ---- command execution -------------------------------------------------------------

    def _execute(self, n: SimNode, cmds: list[Command]) -> None:
        nid = n.node_id
        for c in cmds:
            kind = type(c)  # the most frequent commands first, by exact type
            if kind is Deliver:
                self.checker.on_deliver(nid, c)  # type: ignore[arg-type]
            elif kind is SendAll:
                self._transmit(nid, self._peers[nid], c.data)  # type: ignore[union-attr]
            elif kind is SetTimer:
                # lazy timers: one heap entry per kind, moved only when it must fire
                # earlier; a later deadline is honoured when the early entry pops
                timer: TimerKind = c.kind  # type: ignore[union-attr,assignment]
                deadline: float = self._global(n, c.deadline)  # type: ignore[union-attr]
                n.timers[timer] = deadline
                sched = n.scheduled.get(timer)
                if sched is None or deadline < sched:
                    n.scheduled[timer] = deadline
                    self._push(deadline, _TIMER, nid, n.incarnation, timer)
            elif isinstance(c, SendTo):
                self._transmit(nid, (c.node,), c.data)
            elif isinstance(c, Deliver):
                self.checker.on_deliver(nid, c)
            elif isinstance(c, SetTimer):
                # lazy timers: one heap entry per kind, moved only when it must fire
                # earlier; a later deadline is honoured when the early entry pops
                at = self._global(n, c.deadline)
                n.timers[c.kind] = at
                sched = n.scheduled.get(c.kind)
                if sched is None or at < sched:
                    n.scheduled[c.kind] = at
                    self._push(at, _TIMER, nid, n.incarnation, c.kind)
            elif isinstance(c, CancelTimer):
                n.timers.pop(c.kind, None)
            elif isinstance(c, ConfigChange):
                if self.trace_on:
                    self._log(
                        f"n{nid} {c.kind} {c.ring_id} members={list(c.members)} "
                        f"left={list(c.left)} joined={list(c.joined)}"
                    )
                self.checker.on_config_change(nid, c)
            elif isinstance(c, PersistRingSeq):
                n.ring_seq = c.seq
            elif isinstance(c, Log) and self.trace_on and c.level != "debug":
                self._log(f"n{nid} {c.text}")

    def _transmit(self, src: int, dsts: Sequence[int], data: bytes) -> None:
        """One datagram from ``src`` to each of ``dsts``, in that order (the random draws
        per destination: loss, duplication, delay, damage)."""
        r = self.net_rng
        o = self.opt
        faults = self.faults_on
        blocked = self.blocked
        heap = self._heap
        now = self.now
        for dst in dsts:
            self.packets += 1
            if blocked and (src, dst) in blocked:
                continue
            copies = 1
            if faults:
                if o.loss and r.random() < o.loss:
                    continue
                if o.duplicate and r.random() < o.duplicate:
                    copies = 2
            while copies:
                copies -= 1
                delay = o.delay_s
                if o.jitter_s:
                    delay += r.expovariate(1 / o.jitter_s)
                at = now + delay
                self._ctr += 1
                if self.corrupting and faults and self.corrupt_rng.random() < o.corrupt:
                    self.corrupted_sent += 1
                    damaged = self._damage(data)
                    heapq.heappush(heap, (at, self._ctr, _PKT, dst, _CORRUPTED, damaged))
                    continue
                heapq.heappush(heap, (at, self._ctr, _PKT, dst, -1, data))

    def _damage(self, data: bytes) -> bytes:
        """A datagram as a bad link or NIC delivers it: one to three bits flipped anywhere
        (header, body or MAC), or cut short. Always different from what was sent."""
        r = self.corrupt_rng
        if len(data) > 1 and r.random() < 0.25:
            return data[: r.randrange(1, len(data))]
        damaged = bytearray(data)
        for bit in r.sample(range(len(data) * 8), min(r.randint(1, 3), len(data) * 8)):
            damaged[bit >> 3] ^= 1 << (bit & 7)
        return bytes(damaged)

    # ---- faults ------------------------------------------------------------------------

    def _fault(self, what: str) -> int:
        self.faults.append(what)
        return len(self.faults) - 1

    def _schedule_faults(self) -> None:
        """Every fault carries its id last in its action tuple (``--shrink`` drops ids)."""
        r = self.fault_rng
        o = self.opt
        t_end = o.safety_s
        if o.partitions:
            t = r.uniform(0.3, 1.5)
            while t < t_end:
                start = t
                t += r.uniform(0.5, 2.5)
                fid = self._fault(f"partition {start:.3f}-{min(t, t_end):.3f}s")
                self._push(start, _ACTION, 0, 0, ("partition", fid))
                self._push(min(t, t_end), _ACTION, 0, 0, ("heal", fid))
                t += r.uniform(0.3, 2.0)
        if o.crashes or o.leaves:
            t = r.uniform(0.5, 2.0)
            while t < t_end:
                victim = r.choice(self.ids)
                clean = o.leaves and (not o.crashes or r.random() < 0.5)
                down = r.uniform(0.05, 2.0)
                what = "leave" if clean else "crash"
                fid = self._fault(f"{what} n{victim} {t:.3f}-{min(t + down, t_end):.3f}s")
                self._push(t, _ACTION, victim, 0, ("crash", clean, fid))
                self._push(min(t + down, t_end), _ACTION, victim, 0, ("restart", fid))
                t += r.uniform(0.5, 3.0)
        if o.pauses:
            t = r.uniform(0.5, 2.0)
            while t < t_end:
                victim = r.choice(self.ids)
                length = r.uniform(0.5, 2.0) * self.timeouts.token
                fid = self._fault(f"pause n{victim} {t:.3f}s for {length:.3f}s")
                self._push(t, _ACTION, victim, 0, ("pause", length, fid))
                t += r.uniform(1.0, 3.0)
        # the kinds below draw from their own generators: the faults above stay as they were
        if o.corrupt:
            fid = self._fault(f"corrupt {o.corrupt:.1%} of the datagrams (bits flipped, cut)")
            self.corrupting = fid not in self.skip_faults
        if o.clock_skew:
            self._skew_clocks()

    def _skew_clocks(self) -> None:
        """Each node's clocks: a monotonic clock offset (its boot time) and drift up to
        +-1000 ppm (a bad crystal; NTP keeps real ones within about 500 ppm), and a wall
        clock seconds apart from the others. Totem's timeouts are local durations, so drift
        stretches or shortens them; nothing may compare one node's clock with another's."""
        r = self.clock_rng
        for i in self.ids:
            offset = r.uniform(0.0, 5.0)
            ppm = r.uniform(-1000.0, 1000.0)
            wall = r.uniform(0.0, 4.0)
            fid = self._fault(
                f"clock n{i} offset {offset:.3f}s drift {ppm:+.0f} ppm wall +{wall:.3f}s"
            )
            if fid not in self.skip_faults:
                n = self.nodes[i]
                n.clock_offset, n.clock_rate, n.wall_offset = offset, 1.0 + ppm * 1e-6, wall

    def _partition(self, apply: bool = True) -> None:
        """``apply`` False: draw the cut all the same (later partitions stay as drawn)."""
        r = self.fault_rng
        ids = self.ids
        mode = r.choice(["split", "isolate", "asymmetric"])
        self.blocked = set()
        if mode == "isolate":
            victim = r.choice(ids)
            for o in ids:
                if o != victim:
                    self.blocked.add((victim, o))
                    self.blocked.add((o, victim))
        elif mode == "split":
            shuffled = ids[:]
            r.shuffle(shuffled)
            cut = r.randint(1, len(ids) - 1)
            a, b = shuffled[:cut], shuffled[cut:]
            for x in a:
                for y in b:
                    self.blocked.add((x, y))
                    self.blocked.add((y, x))
        else:
            for x in ids:
                for y in ids:
                    if x != y and r.random() < 0.3:
                        self.blocked.add((x, y))
        if not apply:
            self.blocked = set()
            return
        self._log(f"partition {mode}: {sorted(self.blocked)}")

    def _action(self, node: int, action: tuple[Any, ...]) -> None:
        kind = action[0]
        if self.skip_faults and kind in _FAULT_KINDS and action[-1] in self.skip_faults:
            if kind == "partition":
                self._partition(apply=False)
            return
        if kind == "partition":
            self._partition()
        elif kind == "heal":
            self.blocked = set()
            self._log("heal partitions")
        elif kind == "crash":
            self._crash(self.nodes[node], clean=action[1])
        elif kind == "restart":
            n = self.nodes[node]
            if not n.alive:
                self._start_node(n)
        elif kind == "pause":
            n = self.nodes[node]
            if n.alive:
                n.paused_until = max(n.paused_until, self.now + action[1])
                self._log(f"n{node} pause until {n.paused_until:.4f}")
        elif kind == "send":
            for i in self.ids:
                n = self.nodes[i]
                k = self._poisson(self.opt.rate * action[1])
                for _ in range(k):
                    self._send_app(n)

    def _poisson(self, lam: float) -> int:
        if lam <= 0:
            return 0
        r = self.work_rng
        if lam > 30:
            return max(0, round(r.gauss(lam, lam**0.5)))
        k = 0
        p = r.random()
        limit = math.exp(-lam)
        while p > limit:
            k += 1
            p *= r.random()
        return k

    def _schedule_workload(self, start: float, end: float, tick: float = 0.05) -> None:
        t = start
        while t < end:
            self._push(t, _ACTION, 0, 0, ("send", tick))
            t += tick

    # ---- the loop ------------------------------------------------------------------------

    def _step(self) -> bool:
        if not self._heap:
            return False
        t, _, kind, nid, inc, payload = heapq.heappop(self._heap)
        if kind == _ACTION:
            self.now = t
            self._action(nid, payload)
            return True
        n = self.nodes[nid]
        if not n.alive or n.srp is None:
            return True
        if kind == _TIMER:
            if inc != n.incarnation or n.scheduled.get(payload) != t:
                return True  # superseded heap entry
            del n.scheduled[payload]
            deadline = n.timers.get(payload)
            if deadline is None:
                return True
            fire_at = max(deadline, n.paused_until)
            if fire_at > t:
                n.scheduled[payload] = fire_at
                self._push(fire_at, _TIMER, nid, inc, payload)
                return True
            self.now = t
            self.steps += 1
            del n.timers[payload]
            self._execute(n, n.srp.handle(TimerFired(payload), self._local(n, t)))
            return True
        if n.paused_until > t:
            self._push(n.paused_until, kind, nid, inc, payload)
            return True
        self.now = t
        self.steps += 1
        if inc == _CORRUPTED:
            self._receive_damaged(n, payload)
            return True
        self._execute(n, n.srp.receive(payload, self._local(n, t)))
        return True

    def _receive_damaged(self, n: SimNode, data: bytes) -> None:
        """Checker: a damaged datagram never decodes (the MAC must reject it). Totem counts
        every datagram its codec rejects in ``bad_packets``; one that decodes is not counted
        there, whatever Totem then does with it."""
        srp = n.srp
        assert srp is not None
        before = srp.stats["bad_packets"]
        commands = srp.receive(data, self._local(n, self.now))
        if srp.stats["bad_packets"] == before:
            raise InvariantViolation(
                f"node {n.node_id} accepted a datagram damaged in flight "
                f"({len(data)} bytes, {data[:12].hex()}...): the MAC must reject it"
            )
        self.corrupted_rejected += 1
        self._execute(n, commands)

    def _run_until(self, t_end: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= t_end:
            self._step()
        self.now = max(self.now, t_end)

    def converged(self) -> bool:
        ring = None
        for i in self.ids:
            n = self.nodes[i]
            if not n.alive or n.srp is None or n.srp.state is not State.OPERATIONAL:
                return False
            if tuple(n.srp.members) != tuple(self.ids):
                return False
            if ring is None:
                ring = n.srp.ring_id
            elif n.srp.ring_id != ring:
                return False
        return True

    def run(self) -> SimResult:
        """Run the three phases; raises InvariantViolation with the trace attached."""
        o = self.opt
        try:
            self._schedule_faults()  # first: it sets the nodes' clocks
            for i in self.ids:
                self._start_node(self.nodes[i])
            self._schedule_workload(0.05, o.safety_s)
            self._run_until(o.safety_s)
            # heal
            self.faults_on = False
            self.blocked = set()
            # pending fault actions (restarts) still matter; later crashes do not exist
            for i in self.ids:
                n = self.nodes[i]
                n.paused_until = min(n.paused_until, self.now)
                if not n.alive:
                    self._start_node(n)
            self._log("healed: all faults off")
            healed_at = self.now
            deadline = healed_at + self.liveness_bound()
            step = 0.05
            while not self.converged():
                if self.now >= deadline:
                    raise InvariantViolation(
                        f"liveness: no single ring of all {len(self.ids)} nodes "
                        f"{self.liveness_bound():.2f}s after healing: "
                        + ", ".join(self._describe(i) for i in self.ids)
                    )
                self._run_until(self.now + step)
            converge_s = self.now - healed_at
            # drain phase: a burst of traffic, then quiet until every queue is empty
            self._schedule_workload(self.now, self.now + 0.5)
            self._run_until(self.now + 0.5)
            drain_deadline = self.now + self.drain_bound()
            while not self._drained():
                if self.now >= drain_deadline:
                    break
                self._run_until(self.now + 0.1)
            self._run_until(self.now + 2 * self.timeouts.token_retransmit)
            self._check_drained()
            return SimResult(
                self.seed, o, converge_s, self.now, self.steps, self.checker.deliveries
            )
        except InvariantViolation as exc:
            exc.args = (
                f"seed {self.seed}: {exc.args[0]}\noptions: {o}\n"
                f"last events (t in seconds):\n" + "\n".join(self.trace),
            )
            raise

    def _describe(self, i: int) -> str:
        n = self.nodes[i]
        if not n.alive or n.srp is None:
            return f"n{i}=down"
        s = n.srp
        return f"n{i}={s.state.name}:{s.ring_id}:{list(s.members)}"

    def _check_drained(self) -> None:
        views = self.checker.views
        ref: list[tuple[int, int, int]] | None = None
        for i in self.ids:
            n = self.nodes[i]
            assert n.srp is not None
            v = views[i]
            if v.own_next != n.sent:
                raise InvariantViolation(
                    f"self-delivery: node {i} sent {n.sent} messages, delivered {v.own_next} "
                    f"of its own (send queue {n.srp.send_queue_len})"
                )
            if ref is None:
                ref = v.final_log
            elif v.final_log != ref:
                raise InvariantViolation(
                    f"final ring: node {i} delivered {len(v.final_log)} messages, node "
                    f"{self.ids[0]} {len(ref)}, or in another order"
                )


@dataclass(frozen=True)
class SimResult:
    seed: int
    options: Options
    converge_s: float
    simulated_s: float
    steps: int
    deliveries: int
