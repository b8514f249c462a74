"""Totem Single-Ring Protocol as a pure state machine (sans-IO).

Implements the TOCS'95 Totem SRP the way corosync's ``exec/totemsrp.c`` does: an ORF
token circulating over unicast in ascending node-id order, agreed delivery, aru-driven
retransmission and buffer release, window/max_messages flow control with ``fcc`` and
``backlog``, token hold on an idle ring, and the membership protocol
(GATHER -> COMMIT -> RECOVERY -> OPERATIONAL) giving Extended Virtual Synchrony:
a TRANSITIONAL configuration change, then a REGULAR one. Small application messages are
packed into frames and big ones fragmented (:mod:`pvectl.totem.packing`).

How a runtime drives it
=======================

Time is a float in **seconds** from any monotonic clock (``loop.time()``); every
``now`` and every ``SetTimer.deadline`` uses it.

1. Construct once per process start::

       srp = Srp(node_id, nodes, Codec(node_id, cluster_name, key), TotemConfig(),
                 ring_seq=<u64 loaded from the ring-id file, 0 if none>)

   ``nodes`` are all configured node ids (corosync.conf nodelist); they are the
   destinations of ``SendAll`` and size the token timeout (``token_coefficient``).
2. ``cmds = srp.handle(Start(), now)`` when the socket is up; after that feed
   ``PacketReceived(datagram)`` for every UDP datagram, ``TimerFired(kind)`` when a
   timer set by the machine expires, ``AppSend(payload)`` to multicast application
   bytes (up to 16 MiB, totally ordered, delivered to the sender too), and
   ``Shutdown()`` on clean stop (sends a leave; the machine is inert afterwards).
   ``MessageReceived(sender, message)`` feeds an already decoded message (tests).
   Datagrams from our own id (a looping transport) or from a node id outside ``nodes``
   are ignored and counted in ``srp.stats``; undecodable ones in ``codec.rejected``.
3. Execute the returned commands in order:

   * ``SendTo(node, data)``: one UDP datagram to that node's address;
   * ``SendAll(data)``: the same datagram to every configured node except self
     (udpu style; the machine already handled its own copy);
   * ``SetTimer(kind, deadline)``: (re)arm the single timer of that kind, replacing
     an earlier deadline; ``CancelTimer(kind)``: disarm it. A stale ``TimerFired`` is
     ignored by the machine, so races are harmless;
   * ``Deliver(sender, payload, ring_id, seq)``: hand to the application (CPG);
     ``seq`` is the frame's sequence number (packed messages share it, in order);
   * ``ConfigChange(kind, members, left, joined, ring_id)``: membership event;
   * ``Multicasted(tag, first_seq, last_seq)``: an ``AppSend`` that carried a ``tag``
     leaves in those frames (just before the ``SendAll`` of the last one: the token
     visit that sends it is the event being handled); ``MulticastStarted(tag, seq)`` first, when a
     fragmented message needs more than one frame. Untagged sends report nothing;
   * ``PersistRingSeq(seq)``: write the u64 to the ring-id file *before* sending
     anything else from this batch (corosync aborts if it cannot);
   * ``Log(level, text)``: corosync-style log lines, at membership events only.

Nothing inside reads a clock, a socket or a random generator; the same inputs give the
same outputs, which is what the simulator (:mod:`pvectl.sim`) relies on. Call
``handle`` from one thread. ``srp.send_queue_bytes`` tells a runtime when to push
back on writers (corosync returns TRY_AGAIN).

Sequence numbers start at 1 on every ring (aru 0 = nothing received).

DEVIATIONS (from the paper, and from corosync)
==============================================

Follows corosync where the two differ:

* token hold on an idle ring and TOKEN_HOLD_CANCEL (corosync; not in the paper);
* agreed delivery only, no safe delivery (corosync); buffers released only after two
  token visits with ``aru >= seq`` (paper's safe rule, as corosync);
* failed-to-receive is declared by the node that holds the aru down, which leaves by
  forming a singleton ring (corosync; the paper has the others fail it);
* the ring sequence loaded at start is incremented by 1 (corosync >= 3.0.3) and is
  persisted on entering COMMIT (corosync; the paper writes it on COMMIT->RECOVERY);
* new ring seq = highest seen + 4; ring order = ascending node id, rep = lowest
  (corosync; the paper lets the rep choose);
* ``fcc`` share computed with the previous backlog, as corosync's ``fcc_calculate``;
* old-ring messages after the last gap from non-transitional members are discarded at
  install (corosync and paper agree on the filter);
* merge detection with MERGE_DETECT messages, and a distinct LEAVE message (corosync).
* a join re-enters GATHER only if it taught us something (our proc or failed set
  grew); corosync 3 re-gathers even when a non-member's failed list could not be
  merged, which lets two nodes echo joins at each other and postpones consensus.

Ours:

* sequence numbers start at 1 (corosync: 0 with aru 0xFFFFFFFF), and instead of
  rollover-safe comparisons the representative re-forms the ring before seq reaches
  2**31 (at 50,000 frames/s that is every 12 hours);
* a foreign message (mcast or MERGE_DETECT) whose ring seq is *lower* than ours is
  ignored: it is a late packet from a ring we already left; the partition with the
  higher seq still triggers the merge from its side (corosync re-gathers on any);
* during RECOVERY every transitional member re-multicasts all old-ring messages above
  the lowest aru that it holds (the paper's rule), without corosync's received_flg
  shortcut beyond "everyone had everything";
* packing and fragmentation live in this module (corosync: totempg), and a message
  whose fragments straddle a configuration change is restarted on the new ring;
* the token's retransmit list carries sequence numbers of the current ring only;
* in GATHER, a JOIN/LEAVE that lists us as failed is ignored when its ring seq is below
  our current ring's (counted in ``stats["stale_verdicts"]``): the sender gave up on us
  before it heard of that ring, so the verdict concerns a round we have finished.
  corosync honours it (adds the sender to its failed set), which with two nodes can
  livelock: each node's "you failed" JOIN reaches the other just after it re-gathered,
  the answer forms a one-node ring and sends a new verdict, forever (simulator seed 532,
  ``--nodes 2``). The same staleness test (ring seq below ours) is corosync's own for
  JOINs in OPERATIONAL, COMMIT and RECOVERY. A verdict the sender still holds comes back
  on its next JOIN, which carries our seq (it learns it from our JOINs), and counts then;
  at worst we wait for the consensus timeout;
* no heartbeat, pause detection or ``send_join`` random delay (no randomness inside);
* replayed JOIN/LEAVE messages are dropped (packets carry no freshness of their own, so a
  captured JOIN of a node that has since crashed would otherwise re-form the ring each
  time it is replayed). Each node keeps, per sender, the highest ring sequence of a
  JOIN/LEAVE it accepted, and a floor: on installing a ring the floor of every member
  becomes the new ring's seq, and the floor of every node left out becomes one above the
  highest JOIN/LEAVE seen from it. A JOIN/LEAVE below its sender's floor is dropped and
  counted (``stats["stale_joins"]``). A node that comes back still gets in, because the
  sequences it sends next are higher: a restarted node starts from its persisted ring
  seq + 1 (persisted on entering COMMIT, so at least the floor its old ring gave it), and
  a node that was cut off forms a ring of its own (+4) or learns the seq of the ring it
  hears (a foreign message or MERGE_DETECT raises the highest seq it knows, corosync
  does not). So a replay re-forms the ring at most once per captured message and node
  start, instead of every time. Not a defence against a key holder, who can sign
  anything.

Accelerated Ring (``TotemConfig.accelerated``, ``totem { accelerated: yes }``; Babay and
Amir, "Fast Total Ordering for Modern Data Centers", ICDCS 2016; not in corosync):

* in OPERATIONAL, a token visit emits its retransmissions, then the token, then the new
  frames of the visit; the standard ring sends the token last. The next node starts its
  own visit while this node is still at its ``sendto`` calls, so a rotation no longer
  waits for every burst to leave.
* Safety argument. Only the order of the commands of one visit changes: the frames get
  the same sequence numbers, go into the retransmit buffer, and count in the token's
  ``seq``, ``aru``, ``fcc`` and ``backlog`` exactly as on the standard ring, before the
  token is encoded. An accelerated run is therefore a standard run on a network that
  delivers those frames later than the token, and UDP already allows that (the token
  is a unicast datagram, the frames other datagrams; nothing orders them). Total
  order, agreed delivery and EVS hold on the standard ring for every such reordering
  (the simulator reorders by jitter), so they hold here. Receivers that get the token
  first see ``seq`` beyond their aru: they keep the token's aru down until the frames
  arrive (buffers are released later, never earlier) and ask for retransmission only
  after ``miss_count_const`` visits, which covers the paper's "request only what the
  previous token announced" rule for frames that are merely in flight.
* RECOVERY and the membership protocol are unchanged (old-ring messages still go
  before the token), as is a visit with nothing new to send.

The same argument covers pvectl's runtime handing a token to ``handle`` before frames
that reached the socket ahead of it in one wake-up (``UdpTransport.urgent``): that is a
network that delivered the token first, on the standard ring as on the accelerated one.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Final, NamedTuple

from pvectl.totem.packing import Reassembler, SendQueue
from pvectl.totem.ring_id import RingId
from pvectl.totem.wire import (
    Codec,
    CommitEntry,
    CommitToken,
    Join,
    Leave,
    Mcast,
    MergeDetect,
    Message,
    Token,
    TokenHoldCancel,
    WireError,
    mcast_frame,
)

RTR_MAX: Final = 30  # RETRANSMIT_ENTRIES_MAX
QUEUE_RTR_ITEMS_SIZE_MAX: Final = 16384
RTR_SCAN_MAX: Final = 2048  # how far past my aru one token visit looks for holes
SEQ_REFORM: Final = 0x7FFF0000
_MCAST_HEADROOM: Final = 21 + 16  # mcast header + room to encapsulate in RECOVERY


class State(Enum):
    OPERATIONAL = 1
    GATHER = 2
    COMMIT = 3
    RECOVERY = 4


class TimerKind(StrEnum):
    TOKEN_LOSS = "token_loss"
    TOKEN_RETRANSMIT = "token_retransmit"
    TOKEN_HOLD = "token_hold"
    JOIN = "join"
    CONSENSUS = "consensus"
    MERGE_DETECT = "merge_detect"


class ConfigKind(StrEnum):
    TRANSITIONAL = "transitional"
    REGULAR = "regular"


@dataclass(frozen=True)
class TotemConfig:
    """corosync 3.x ``totem`` options (milliseconds); ``None`` = corosync's formula."""

    token: int = 3000
    token_coefficient: int = 650
    token_retransmits_before_loss_const: int = 4
    token_retransmit: int | None = None
    hold: int | None = None
    join: int = 50
    consensus: int | None = None
    merge: int = 200
    fail_recv_const: int = 2500
    seqno_unchanged_const: int = 30
    miss_count_const: int = 5
    window_size: int = 50
    max_messages: int = 17
    cancel_token_hold_on_retransmit: bool = False
    netmtu: int = 1400
    accelerated: bool = False  # Accelerated Ring (pvectl only; corosync has no such option)

    def timeouts(self, node_count: int) -> Timeouts:
        token = self.token
        if node_count > 2:
            token += (node_count - 2) * self.token_coefficient
        retransmit = self.token_retransmit
        if retransmit is None:
            retransmit = int(token / (self.token_retransmits_before_loss_const + 0.2))
        hold = self.hold if self.hold is not None else int(retransmit * 0.8 - 10)
        consensus = self.consensus if self.consensus is not None else int(1.2 * token)
        if consensus < self.join:
            raise ValueError("consensus must be >= join")
        return Timeouts(
            token=token / 1000,
            token_retransmit=max(retransmit, 1) / 1000,
            hold=max(hold, 1) / 1000,
            join=self.join / 1000,
            consensus=consensus / 1000,
            merge=self.merge / 1000,
        )


@dataclass(frozen=True)
class Timeouts:
    """Effective timeouts in seconds, as corosync logs them at start."""

    token: float
    token_retransmit: float
    hold: float
    join: float
    consensus: float
    merge: float


# ---- events -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Start:
    """The network is up: form (or join) a ring."""


@dataclass(frozen=True, slots=True)
class PacketReceived:
    data: bytes


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """An already decoded message (tests, or a runtime that decoded it itself)."""

    sender: int
    message: Message


@dataclass(frozen=True, slots=True)
class TimerFired:
    kind: TimerKind


@dataclass(frozen=True, slots=True)
class AppSend:
    """Application bytes to multicast; a ``tag`` (any value but None, opaque to the
    machine) asks for ``Multicasted(tag, ...)`` once the message has left."""

    payload: bytes
    tag: object = None


@dataclass(frozen=True, slots=True)
class Shutdown:
    """Clean stop: multicast a leave so the others re-form without waiting."""


Event = Start | PacketReceived | MessageReceived | TimerFired | AppSend | Shutdown


# ---- commands -----------------------------------------------------------------------


class SendTo(NamedTuple):
    """(Commands made on every token visit or frame are named tuples: cheaper to build
    than frozen dataclasses, and just as immutable.)"""

    node: int
    data: bytes


class SendAll(NamedTuple):
    data: bytes


class SetTimer(NamedTuple):
    kind: TimerKind
    deadline: float


class CancelTimer(NamedTuple):
    kind: TimerKind


class Deliver(NamedTuple):
    """One application message in agreed order (a named tuple: one per message)."""

    sender: int
    payload: bytes
    ring_id: RingId
    seq: int


@dataclass(frozen=True, slots=True)
class ConfigChange:
    kind: ConfigKind
    members: tuple[int, ...]
    left: tuple[int, ...]
    joined: tuple[int, ...]
    ring_id: RingId


@dataclass(frozen=True, slots=True)
class MulticastStarted:
    """The first fragment of a tagged message left in frame ``seq``, and the rest waits
    for later token visits (only for messages that do not fit one frame)."""

    tag: object
    seq: int


@dataclass(frozen=True, slots=True)
class Multicasted:
    """A tagged message has left completely: its frames ``first_seq..last_seq`` were
    multicast, the last on this token visit (the command comes right before that frame's
    ``SendAll``, so a runtime's clock read there is not late by the send calls)."""

    tag: object
    first_seq: int
    last_seq: int


@dataclass(frozen=True, slots=True)
class PersistRingSeq:
    seq: int


@dataclass(frozen=True, slots=True)
class Log:
    level: str
    text: str


Command = (
    SendTo
    | SendAll
    | SetTimer
    | CancelTimer
    | Deliver
    | ConfigChange
    | MulticastStarted
    | Multicasted
    | PersistRingSeq
    | Log
)

_tuple_new = tuple.__new__


def _new_deliver(sender: int, payload: bytes, ring_id: RingId, seq: int) -> Deliver:
    """``Deliver(...)`` without the keyword-handling ``__new__``: one is made per
    delivered message. Equal to ``Deliver(...)``."""
    return _tuple_new(Deliver, (sender, payload, ring_id, seq))


class _Buf:
    """Messages of one ring: the sort queue and its watermarks."""

    __slots__ = ("aru", "high_delivered", "high_seq", "last_released", "miss", "queue", "ring")

    def __init__(self, ring: RingId) -> None:
        self.ring = ring
        self.queue: dict[int, tuple[Mcast, bytes]] = {}
        self.aru = 0
        self.high_seq = 0
        self.high_delivered = 0
        self.last_released = 0
        self.miss: dict[int, int] = {}

    def insert(self, m: Mcast, data: bytes) -> bool:
        seq = m.seq
        if seq <= self.aru or seq in self.queue or seq > self.aru + QUEUE_RTR_ITEMS_SIZE_MAX:
            return False  # duplicate, or outside the sort-queue window (corosync sq_in_range)
        self.queue[seq] = (m, data)
        if seq > self.high_seq:
            self.high_seq = seq
        if seq == self.aru + 1:
            self.update_aru()
        return True

    def update_aru(self) -> None:
        aru = self.aru
        q = self.queue
        while aru + 1 in q:
            aru += 1
        if self.miss:
            for s in [s for s in self.miss if s <= aru]:
                del self.miss[s]
        self.aru = aru


def _fmt(ids: Sequence[int]) -> str:
    return " ".join(str(i) for i in ids)


class Srp:
    """One node's Totem SRP instance; see the module docstring for the driving protocol."""

    def __init__(
        self,
        node_id: int,
        nodes: Sequence[int],
        codec: Codec,
        config: TotemConfig | None = None,
        *,
        ring_seq: int = 0,
    ) -> None:
        if codec.node_id != node_id:
            raise ValueError("codec node id differs from node id")
        self.node_id = node_id
        self.nodes = tuple(sorted(set(nodes) | {node_id}))
        self._peers = frozenset(self.nodes) - {node_id}
        self.codec = codec
        self.config = config or TotemConfig()
        self.timeouts = self.config.timeouts(len(self.nodes))
        capacity = self.config.netmtu - codec.overhead - _MCAST_HEADROOM
        self._sendq = SendQueue(capacity)
        self.state = State.OPERATIONAL
        self._started = False
        self._stopped = False
        self._loaded_seq = ring_seq
        self.ring_id = RingId(node_id, ring_seq)
        self.members: tuple[int, ...] = ()
        self._token_ring_id_seq = ring_seq
        self._proc: set[int] = {node_id}
        self._failed: set[int] = set()
        self._consensus: set[int] = set()
        self._new_memb: tuple[int, ...] = ()
        self._trans_memb: tuple[int, ...] = ()
        self._leave_seen: set[int] = set()
        # replay protection for JOIN/LEAVE (see DEVIATIONS): per sender, the highest ring
        # seq accepted and the lowest one still acceptable
        self._join_high: dict[int, int] = {}
        self._join_floor: dict[int, int] = {}
        self._failed_to_recv = False
        self._token_discard = False
        self._old_saved = False
        self._old_ring_id = self.ring_id
        self._reg = _Buf(self.ring_id)
        self._rec: _Buf | None = None
        self._retrans_queue: deque[Mcast] = deque()
        self._last_token: bytes | None = None
        self._token_target = node_id
        self._next_cache: tuple[tuple[int, ...], int] = ((), node_id)  # members, successor
        self._commit_tseq = -1
        self._originated = False
        self._reset_ring_counters()
        self._timers: dict[TimerKind, float] = {}
        self._out: list[Command] = []
        self._loop: deque[tuple[int, Message, bytes]] = deque()
        self.stats: dict[str, int] = {
            "tokens": 0,
            "frames_sent": 0,
            "frames_retransmitted": 0,
            "rtr_requested": 0,
            "token_retransmits": 0,
            "rings_formed": 0,
            "bad_packets": 0,
            "unknown_sender": 0,
            "stale_joins": 0,
            "stale_verdicts": 0,
        }
        self._reasm = Reassembler(self.stats)

    def _reset_ring_counters(self) -> None:
        self._my_token_seq = -1
        self._last_seq = 0
        self._seq_unchanged = 0
        self._last_aru = 0
        self._aru_count = 0
        self._trc = 0
        self._pbl = 0
        self._retrans_flg_count = 0
        self._set_retrans_flg = False
        self._install_seq = 0
        self._received_flg = False
        self._rotation_counter = 0
        self._holding = False
        self._held = False

    # ---- public surface --------------------------------------------------------------

    @property
    def send_queue_bytes(self) -> int:
        return self._sendq.bytes_pending

    @property
    def send_queue_len(self) -> int:
        return len(self._sendq)

    @property
    def is_representative(self) -> bool:
        return self.ring_id.rep_node_id == self.node_id

    def handle(self, event: Event, now: float) -> list[Command]:
        """Feed one event; returns the commands to execute, in order."""
        if self._stopped:
            return []
        out: list[Command] = []
        self._out = out
        if type(event) is PacketReceived:
            self._packet(event.data, now)
        elif type(event) is AppSend:
            self._app_send(event.payload, event.tag, now)
        elif type(event) is TimerFired:
            self._timer(event.kind, now)
        elif type(event) is MessageReceived:
            data = self.codec.encode(event.message) if type(event.message) is Mcast else b""
            self._dispatch(event.sender, event.message, data, now)
        elif type(event) is Start:
            self._start(now)
        elif type(event) is Shutdown:
            self._shutdown(now)
        while self._loop and not self._stopped:
            sender, msg, data = self._loop.popleft()
            self._dispatch(sender, msg, data, now)
        return out

    def receive(self, data: bytes, now: float) -> list[Command]:
        """``handle(PacketReceived(data), now)`` without the event object: the runtime's
        per-datagram entry point."""
        if self._stopped:
            return []
        out: list[Command] = []
        self._out = out
        self._packet(data, now)
        while self._loop and not self._stopped:
            sender, msg, looped = self._loop.popleft()
            self._dispatch(sender, msg, looped, now)
        return out

    # ---- plumbing ------------------------------------------------------------------------

    def _packet(self, data: bytes, now: float) -> None:
        try:
            sender, msg = self.codec.decode(data)
        except WireError:
            self.stats["bad_packets"] += 1
            return
        if sender in self._peers:
            kind = type(msg)
            if kind is Mcast:  # the most frequent messages first
                self._on_mcast(sender, msg, data, now)  # type: ignore[arg-type]
            elif kind is Token:
                self._on_token(msg, now)  # type: ignore[arg-type]
            else:
                self._dispatch(sender, msg, data, now)
        elif sender != self.node_id:
            self.stats["unknown_sender"] += 1  # signed, but not in our nodelist

    def _set_timer(self, kind: TimerKind, deadline: float) -> None:
        self._timers[kind] = deadline
        self._out.append(_tuple_new(SetTimer, (kind, deadline)))

    def _cancel_timer(self, kind: TimerKind) -> None:
        if self._timers.pop(kind, None) is not None:
            self._out.append(CancelTimer(kind))

    def _send_to(self, node: int, msg: Message, data: bytes) -> None:
        if node == self.node_id:
            self._loop.append((node, msg, data))
        else:
            self._out.append(_tuple_new(SendTo, (node, data)))

    def _send_all(self, data: bytes) -> None:
        if len(self.nodes) > 1:
            self._out.append(SendAll(data))

    def _log(self, level: str, text: str) -> None:
        self._out.append(Log(level, text))

    def _dispatch(self, sender: int, msg: Message, data: bytes, now: float) -> None:
        t = type(msg)
        if t is Mcast:
            self._on_mcast(sender, msg, data, now)  # type: ignore[arg-type]
        elif t is Token:
            self._on_token(msg, now)  # type: ignore[arg-type]
        elif t is Join:
            self._on_join(sender, msg, now, leave=False)  # type: ignore[arg-type]
        elif t is Leave:
            self._on_join(sender, msg, now, leave=True)  # type: ignore[arg-type]
        elif t is CommitToken:
            self._on_commit_token(msg, now)  # type: ignore[arg-type]
        elif t is MergeDetect:
            self._on_merge_detect(sender, msg, now)  # type: ignore[arg-type]
        elif t is TokenHoldCancel:
            self._on_hold_cancel(msg, now)  # type: ignore[arg-type]

    # ---- start / stop --------------------------------------------------------------------

    def _start(self, now: float) -> None:
        if self._started:
            return
        self._started = True
        seq = self._loaded_seq + 1  # corosync >= 3.0.3: unique id for the first singleton
        self.ring_id = RingId(self.node_id, seq)
        self._old_ring_id = self.ring_id
        self._reg = _Buf(self.ring_id)
        self._token_ring_id_seq = seq
        self._log("notice", f"Initializing transport; ring seq loaded {self._loaded_seq}")
        self._gather_enter(now, "interface change")

    def _shutdown(self, now: float) -> None:
        proc = tuple(sorted(self._proc - {self.node_id}))
        failed = tuple(sorted(self._failed | {self.node_id}))
        leave = Leave(proc, failed, self._token_ring_id_seq)
        self._send_all(self.codec.encode(leave))
        for kind in list(self._timers):
            self._cancel_timer(kind)
        self._log("notice", "sent leave message; stopping")
        self._stopped = True

    # ---- application sends ------------------------------------------------------------

    def _app_send(self, payload: bytes, tag: object, now: float) -> None:
        self._sendq.push(payload, tag)
        if self.state is not State.OPERATIONAL:
            return
        if self._holding:
            self._release_hold(now)
        elif self._held:
            self._held = False
            self._seq_unchanged = 0
            self._send_all(self.codec.encode(TokenHoldCancel(self.ring_id)))
        else:
            self._seq_unchanged = 0

    def _release_hold(self, now: float) -> None:
        """The representative stops holding the idle token and sends it on."""
        self._holding = False
        self._seq_unchanged = 0
        self._cancel_timer(TimerKind.TOKEN_HOLD)
        if self._last_token is not None:
            self._resend_token()
            self._set_timer(TimerKind.TOKEN_RETRANSMIT, now + self.timeouts.token_retransmit)

    def _resend_token(self) -> None:
        assert self._last_token is not None
        if self._token_target == self.node_id:
            sender, msg = self.node_id, self.codec.decode(self._last_token)[1]
            self._loop.append((sender, msg, self._last_token))
        else:
            self._out.append(SendTo(self._token_target, self._last_token))

    # ---- timers --------------------------------------------------------------------------

    def _timer(self, kind: TimerKind, now: float) -> None:
        if self._timers.pop(kind, None) is None:
            return  # stale: cancelled or re-armed since
        state = self.state
        if kind is TimerKind.TOKEN_RETRANSMIT:
            if state is not State.GATHER and self._last_token is not None and not self._holding:
                self.stats["token_retransmits"] += 1
                self._resend_token()
                self._set_timer(kind, now + self.timeouts.token_retransmit)
        elif kind is TimerKind.TOKEN_HOLD:
            if self._holding and state in (State.OPERATIONAL, State.RECOVERY):
                self._holding = False
                self._resend_token()
                self._set_timer(TimerKind.TOKEN_RETRANSMIT, now + self.timeouts.token_retransmit)
        elif kind is TimerKind.TOKEN_LOSS:
            if state is State.GATHER:
                self._consensus_expired(now)
                self._gather_enter(now, "the consensus timeout expired")
            else:
                self._log(
                    "notice",
                    "A processor failed, forming new configuration: token timed out "
                    f"({round(self.timeouts.token * 1000)}ms), waiting "
                    f"{round(self.timeouts.consensus * 1000)}ms for consensus.",
                )
                self._gather_enter(now, f"token lost in {state.name}")
        elif kind is TimerKind.JOIN:
            if state is State.GATHER:
                self._send_join()
                self._set_timer(kind, now + self.timeouts.join)
        elif kind is TimerKind.CONSENSUS:
            if state is State.GATHER and self._consensus_expired(now):
                self._gather_enter(now, "consensus timeout")
        elif (
            kind is TimerKind.MERGE_DETECT and state is State.OPERATIONAL and self.is_representative
        ):
            self._send_all(self.codec.encode(MergeDetect(self.ring_id)))

    # ---- membership: GATHER ----------------------------------------------------------------

    def _gather_enter(self, now: float, reason: str) -> None:
        if self.state is State.RECOVERY:
            self._rec = None  # new ring state is discarded; the old ring's stays intact
            self._retrans_queue.clear()
        self.state = State.GATHER
        self._token_discard = True
        self._proc.add(self.node_id)
        self._consensus = {self.node_id}
        self._holding = self._held = False
        self._last_token = None
        for kind in (
            TimerKind.TOKEN_LOSS,
            TimerKind.TOKEN_RETRANSMIT,
            TimerKind.MERGE_DETECT,
            TimerKind.TOKEN_HOLD,
        ):
            self._cancel_timer(kind)
        self._send_join()
        self._set_timer(TimerKind.JOIN, now + self.timeouts.join)
        self._set_timer(TimerKind.CONSENSUS, now + self.timeouts.consensus)
        self._log("debug", f"entering GATHER state from {reason}")
        self._check_consensus(now)

    def _send_join(self) -> None:
        join = Join(tuple(sorted(self._proc)), tuple(sorted(self._failed)), self._token_ring_id_seq)
        self._send_all(self.codec.encode(join))

    def _consensus_agreed(self) -> bool:
        live = self._proc - self._failed
        return bool(live) and live <= self._consensus

    def _consensus_expired(self, now: float) -> bool:
        """corosync's memb_state_consensus_timeout_expired; True if GATHER must restart."""
        if self._consensus_agreed():
            self._consensus = {self.node_id}
            self._set_timer(TimerKind.TOKEN_LOSS, now + self.timeouts.token)
            return False
        missing = sorted(self._proc - self._failed - self._consensus)
        self._failed.update(missing)
        if missing:
            self._log("notice", f"no consensus from {_fmt(missing)}: marking them failed")
        return True

    def _check_consensus(self, now: float) -> None:
        if self.state is not State.GATHER or not self._consensus_agreed():
            return
        if self._failed_to_recv:
            self._proc = {self.node_id}
            self._failed = set()
            self._consensus = {self.node_id}
            self._create_commit_token(now)
        elif min(self._proc - self._failed) == self.node_id:
            self._create_commit_token(now)

    def _on_join(self, sender: int, msg: Join | Leave, now: float, *, leave: bool) -> None:
        if msg.ring_seq < self._join_floor.get(sender, 0):
            self.stats["stale_joins"] += 1  # a replay, or a late duplicate: older than a ring
            return
        if msg.ring_seq > self._join_high.get(sender, -1):
            self._join_high[sender] = msg.ring_seq
        if msg.ring_seq > self._token_ring_id_seq:
            self._token_ring_id_seq = msg.ring_seq
        if leave:
            self._leave_seen.add(sender)
        state = self.state
        if state is State.OPERATIONAL:
            if self.node_id in msg.failed:
                return
            if sender in self.members and msg.ring_seq < self.ring_id.seq:
                return  # stale join from before our ring formed
        elif state in (State.COMMIT, State.RECOVERY):
            if sender in self._new_memb and msg.ring_seq >= self.ring_id.seq:
                self._join_process(sender, msg, now, leave, force_gather=True)
            return
        elif self.node_id in msg.failed and msg.ring_seq < self.ring_id.seq:
            # GATHER: the sender gave up on me before it heard of my latest ring: a verdict
            # on a round I have finished. Honouring it livelocks two nodes (DEVIATIONS);
            # its next JOIN carries my seq, and a verdict it still holds counts then.
            self.stats["stale_verdicts"] += 1
            return
        self._join_process(sender, msg, now, leave, force_gather=False)

    def _join_process(
        self, sender: int, msg: Join | Leave, now: float, leave: bool, *, force_gather: bool
    ) -> None:
        proc = set(msg.proc)
        failed = set(msg.failed)
        me = self.node_id
        if proc == self._proc and failed == self._failed:
            if force_gather:
                self._gather_enter(now, "join during COMMIT/RECOVERY")
                return
            if not leave:
                self._consensus.add(sender)
            if self.state is State.GATHER:
                self._check_consensus(now)
                return
        elif (proc <= self._proc and failed <= self._failed) or sender in self._failed:
            pass  # nothing new, or from a node I gave up on
        else:
            new_proc = self._proc | proc
            new_failed = set(self._failed)
            if me in failed:
                new_failed.add(sender)
            elif sender in self.members:
                new_failed |= failed
            if not self._failed_to_recv:
                new_failed.discard(me)
            if new_proc != self._proc or new_failed != self._failed:
                self._proc = new_proc
                self._failed = new_failed
                self._gather_enter(now, "merge during join")
                return
            # nothing learnt (a non-member's failed list): re-gathering would only echo
            # joins back and forth and postpone consensus forever
        if self.state is State.OPERATIONAL or force_gather:
            self._gather_enter(now, "join during OPERATIONAL")

    # ---- membership: COMMIT ------------------------------------------------------------------

    def _create_commit_token(self, now: float) -> None:
        addrs = tuple(sorted(self._proc - self._failed))
        ring = RingId(self.node_id, self._token_ring_id_seq + 4)
        self._commit_enter(CommitToken(ring, 0, addrs, ()), now)

    def _commit_enter(self, ct: CommitToken, now: float) -> None:
        if not self._old_saved:
            self._old_saved = True
            self._old_ring_id = self._reg.ring
        reg = self._reg
        entry = CommitEntry(self._old_ring_id, reg.aru, reg.high_delivered, reg.aru == reg.high_seq)
        entries = (*ct.entries, entry)
        # the codec's interned object: frames of this ring then decode to the same one
        self.ring_id = self.codec.ring(ct.ring_id.rep_node_id, ct.ring_id.seq)
        if ct.ring_id.seq > self._token_ring_id_seq:
            self._token_ring_id_seq = ct.ring_id.seq
        self._out.append(PersistRingSeq(ct.ring_id.seq))
        self._new_memb = ct.addrs
        self.state = State.COMMIT
        self._commit_tseq = ct.token_seq
        self._cancel_timer(TimerKind.JOIN)
        self._cancel_timer(TimerKind.CONSENSUS)
        self._forward_commit(CommitToken(ct.ring_id, ct.token_seq + 1, ct.addrs, entries), now)

    def _forward_commit(self, ct: CommitToken, now: float) -> None:
        addrs = ct.addrs
        nxt = addrs[(addrs.index(self.node_id) + 1) % len(addrs)]
        data = self.codec.encode(ct)
        self._last_token = data
        self._token_target = nxt
        self._send_to(nxt, ct, data)
        self._set_timer(TimerKind.TOKEN_RETRANSMIT, now + self.timeouts.token_retransmit)
        self._set_timer(TimerKind.TOKEN_LOSS, now + self.timeouts.token)

    def _on_commit_token(self, ct: CommitToken, now: float) -> None:
        n = len(ct.addrs)
        me = self.node_id
        if me not in ct.addrs or len(set(ct.addrs)) != n:
            return
        state = self.state
        if state is State.GATHER:
            if (
                len(ct.entries) < n
                and ct.addrs[len(ct.entries)] == me
                and ct.ring_id.seq > self.ring_id.seq
                and ct.addrs == tuple(sorted(self._proc - self._failed))
            ):
                self._commit_enter(ct, now)
        elif state is State.COMMIT:
            first_rotation_done = len(ct.entries) == n and ct.token_seq > self._commit_tseq
            if (
                ct.ring_id == self.ring_id
                and first_rotation_done
                and ct.entries[ct.addrs.index(me)].old_ring_id == self._old_ring_id
            ):
                self._recovery_enter(ct, now)
        elif (
            state is State.RECOVERY
            and ct.ring_id == self.ring_id
            and me == ct.ring_id.rep_node_id
            and len(ct.entries) == n
            and not self._originated
            and ct.token_seq > self._commit_tseq
        ):
            self._originate_token(now)

    # ---- membership: RECOVERY ------------------------------------------------------------------

    def _recovery_enter(self, ct: CommitToken, now: float) -> None:
        self._commit_tseq = ct.token_seq
        old = self._old_ring_id
        trans = tuple(a for a, e in zip(ct.addrs, ct.entries, strict=True) if e.old_ring_id == old)
        self._trans_memb = trans
        tentries = [e for e in ct.entries if e.old_ring_id == old]
        low_aru = min(e.aru for e in tentries)
        need = any(not e.received for e in tentries) or len({e.aru for e in tentries}) > 1
        self._retrans_queue = deque()
        reg = self._reg
        if need:
            q = reg.queue
            for s in range(low_aru + 1, reg.high_seq + 1):
                ent = q.get(s)
                if ent is not None:
                    self._retrans_queue.append(ent[0])
            if self._retrans_queue:
                self._log("debug", f"Originated {len(self._retrans_queue)} messages in RECOVERY.")
        self._rec = _Buf(ct.ring_id)
        self._reset_ring_counters()
        self._originated = False
        self._token_discard = False
        self.state = State.RECOVERY
        self._forward_commit(CommitToken(ct.ring_id, ct.token_seq + 1, ct.addrs, ct.entries), now)

    def _originate_token(self, now: float) -> None:
        self._originated = True
        flg = bool(self._retrans_queue)
        self._set_retrans_flg = flg
        tok = Token(self.ring_id, 0, 0, 0, 0, 0, 0, flg, ())
        self._loop.append((self.node_id, tok, b""))

    # ---- install: EVS delivery ------------------------------------------------------------------

    def _operational_enter(self, install_seq: int, now: float) -> None:
        old = self._reg
        rec = self._rec
        assert rec is not None
        old_ring = old.ring
        for _seq, (m, _data) in sorted(rec.queue.items()):
            if (
                m.inner_ring == old_ring
                and m.inner_seq > old.high_delivered
                and m.inner_seq not in old.queue
            ):
                old.queue[m.inner_seq] = (Mcast(old_ring, m.inner_seq, m.origin, m.payload), b"")
                if m.inner_seq > old.high_seq:
                    old.high_seq = m.inner_seq
        s = old.high_delivered + 1
        while s in old.queue:
            self._deliver_frame(old.queue[s][0], s)
            s += 1
        old.high_delivered = s - 1
        trans = self._trans_memb
        tset = set(trans)
        new = self._new_memb
        left = tuple(sorted(set(self.members) - tset))
        joined = tuple(sorted(set(new) - tset))
        self._out.append(ConfigChange(ConfigKind.TRANSITIONAL, trans, left, (), self.ring_id))
        for s2 in sorted(k for k in old.queue if k > old.high_delivered):
            m = old.queue[s2][0]
            if m.origin in tset:
                self._deliver_frame(m, s2)
        self._reasm.drop_partials()
        self._sendq.restart_partial()
        self._out.append(ConfigChange(ConfigKind.REGULAR, new, (), joined, self.ring_id))
        failed_silent = [n for n in left if n not in self._leave_seen]
        self._log(
            "notice",
            f"A new membership ({self.ring_id}) was formed. Members joined: {_fmt(joined)}"
            + (f" left: {_fmt(left)}" if left else ""),
        )
        if failed_silent:
            self._log(
                "notice", f"Failed to receive the leave message. failed: {_fmt(failed_silent)}"
            )
        self._raise_join_floors(new)
        rec.high_delivered = install_seq
        self._reg = rec
        self._rec = None
        self.members = new
        self._proc = set(new)
        self._failed = set()
        self._consensus = set()
        self._failed_to_recv = False
        self._old_saved = False
        self._leave_seen.clear()
        self._retrans_queue.clear()
        self.state = State.OPERATIONAL
        self.stats["rings_formed"] += 1

    def _raise_join_floors(self, members: tuple[int, ...]) -> None:
        """A ring is installed: from now on a member's JOIN/LEAVE carries at least this
        ring's seq, and one from a node left out must be newer than all it sent before."""
        seq = self.ring_id.seq
        floor = self._join_floor
        inside = set(members)
        for node in sorted(self._peers):
            if node in inside:
                low = seq
            elif node in self._join_high:
                low = self._join_high[node] + 1
            else:
                continue
            if low > floor.get(node, 0):
                floor[node] = low

    # ---- messages --------------------------------------------------------------------------------

    def _deliver_frame(self, m: Mcast, seq: int) -> None:
        origin = m.origin
        ring = m.ring_id
        out = self._out
        for payload in self._reasm.unpack(origin, m.payload):
            out.append(_new_deliver(origin, payload, ring, seq))

    def _deliver_ready(self) -> None:
        buf = self._reg
        s = buf.high_delivered + 1
        q = buf.queue
        if s not in q:
            return
        while s in q:
            self._deliver_frame(q[s][0], s)
            s += 1
        buf.high_delivered = s - 1

    def _on_mcast(self, sender: int, m: Mcast, data: bytes, now: float) -> None:
        ring = m.ring_id
        state = self.state
        if state is State.OPERATIONAL:
            if ring is self.ring_id or ring == self.ring_id:
                if self._reg.insert(m, data):
                    self._deliver_ready()
                return
        elif state is State.RECOVERY:
            if ring == self.ring_id:
                assert self._rec is not None
                self._rec.insert(m, data)
            return
        elif state is State.COMMIT:
            return
        else:  # GATHER: the installed ring's messages still count
            if ring == self._reg.ring and not self._old_saved:
                if self._reg.insert(m, data):
                    self._deliver_ready()
                return
            if ring == self._reg.ring or ring == self.ring_id:
                return
        self._foreign(m.origin, ring, now)

    def _foreign(self, sender: int, ring: RingId, now: float) -> None:
        if ring.seq < self.ring_id.seq or ring == self.ring_id:
            return  # late packet of a ring we already left (deviation, see docstring)
        if ring.seq > self._token_ring_id_seq:
            # our next JOIN carries it: above the floor the others keep for us (deviation)
            self._token_ring_id_seq = ring.seq
        if self.state is State.OPERATIONAL:
            self._proc.add(sender)
            self._gather_enter(now, "foreign message in OPERATIONAL")
        elif self.state is State.GATHER and sender not in self._proc:
            self._proc.add(sender)
            self._gather_enter(now, "foreign message in GATHER")

    def _on_merge_detect(self, sender: int, msg: MergeDetect, now: float) -> None:
        if msg.ring_id != self.ring_id:
            self._foreign(sender, msg.ring_id, now)

    def _on_hold_cancel(self, msg: TokenHoldCancel, now: float) -> None:
        if msg.ring_id != self.ring_id or self.state is not State.OPERATIONAL:
            return
        self._seq_unchanged = 0
        self._held = False
        if self._holding:
            self._release_hold(now)

    # ---- the token -------------------------------------------------------------------------------

    def _fcc_calculate(self, tok: Token, cbl: int) -> int:
        cfg = self.config
        allowed = min(cfg.max_messages, cfg.window_size - tok.fcc)
        total = tok.backlog + cbl - self._pbl
        if total > 0:
            share = cfg.window_size * self._pbl // total
            if 0 < share < allowed:
                allowed = share
        return max(allowed, 0)

    def _on_token(self, tok: Token, now: float) -> None:
        state = self.state
        if state is State.GATHER or state is State.COMMIT or self._token_discard:
            return
        ring_id = tok.ring_id
        if (
            ring_id is not self.ring_id and ring_id != self.ring_id
        ) or tok.token_seq <= self._my_token_seq:
            return
        self.stats["tokens"] += 1
        operational = state is State.OPERATIONAL
        buf = self._reg if operational else self._rec
        assert buf is not None
        cfg = self.config
        me = self.node_id
        tok_seq = tok.seq
        timers = self._timers
        # idle-ring bookkeeping and the hold decision
        if tok_seq == self._last_seq:
            self._seq_unchanged += 1
            if TimerKind.MERGE_DETECT not in timers:
                self._set_timer(TimerKind.MERGE_DETECT, now + self.timeouts.merge)
        else:
            self._seq_unchanged = 0
            if timers:
                self._cancel_timer(TimerKind.MERGE_DETECT)
                self._cancel_timer(TimerKind.TOKEN_HOLD)
        self._last_seq = tok_seq
        holding = False
        if self.ring_id.rep_node_id == me:
            # a singleton ring has nobody to keep informed: hold at once when idle
            threshold = cfg.seqno_unchanged_const if len(self.members) > 1 else 0
            holding = (
                operational and self._seq_unchanged > threshold and not self._sendq.bytes_pending
            )
        else:
            self._held = self._seq_unchanged >= cfg.seqno_unchanged_const
        tok_aru = tok.aru
        if operational and buf.last_released < tok_aru:
            self._free(buf, tok_aru)
        last_aru = self._last_aru
        self._last_aru = tok_aru
        # flow control allowance
        cbl = self._sendq.frames_pending() if operational else len(self._retrans_queue)
        allowed = self._fcc_calculate(tok, cbl)
        # retransmissions requested on the token
        sent = 0
        rtr: list[int] = []
        if tok.rtr:
            q = buf.queue
            for s in tok.rtr:
                ent = q.get(s)
                if ent is not None and sent < allowed:
                    self._send_all(ent[1] or self._reencode(ent[0], s))
                    sent += 1
                else:
                    rtr.append(s)
            self.stats["frames_retransmitted"] += sent
            allowed -= sent
        # add what I am missing, after miss_count_const visits
        if buf.aru < tok_seq and len(rtr) < RTR_MAX:
            q = buf.queue
            listed = set(rtr)
            miss = buf.miss
            for s in range(buf.aru + 1, min(tok_seq, buf.aru + RTR_SCAN_MAX) + 1):
                if s in q or s in listed:
                    continue
                c = miss.get(s, 0) + 1
                miss[s] = c
                if c >= cfg.miss_count_const:
                    rtr.append(s)
                    self.stats["rtr_requested"] += 1
                    if len(rtr) >= RTR_MAX:
                        break
        if holding and rtr and cfg.cancel_token_hold_on_retransmit:
            holding = False
        # never run ahead of the oldest unreleased message by more than the queue size
        limit = buf.last_released + QUEUE_RTR_ITEMS_SIZE_MAX - tok_seq
        if allowed > limit:
            allowed = max(limit, 0)
        # new messages (or old-ring messages, encapsulated, in RECOVERY)
        seq = tok_seq
        new_sent = 0
        # Accelerated Ring: this visit's new frames leave after the token (see DEVIATIONS)
        after: list[Command] = []
        if allowed > 0 and (self._sendq if operational else self._retrans_queue):
            ring = self.ring_id
            encode = self.codec.encode_mcast
            q = buf.queue
            out = main_out = self._out
            many = len(self.nodes) > 1
            if operational:
                sendq = self._sendq
                tags = sendq.tags
                if cfg.accelerated:
                    out = self._out = after  # _report_tagged keeps its place by its frame
                while new_sent < allowed and sendq:
                    seq += 1
                    m = mcast_frame(ring, seq, me, sendq.next_frame())
                    data = encode(m)
                    q[seq] = (m, data)
                    if tags:
                        self._report_tagged(seq)
                    if many:
                        out.append(SendAll(data))
                    new_sent += 1
                self._out = main_out
            else:
                rq = self._retrans_queue
                while new_sent < allowed and rq:
                    old = rq.popleft()
                    seq += 1
                    m = Mcast(ring, seq, old.origin, old.payload, old.ring_id, old.seq)
                    data = encode(m)
                    q[seq] = (m, data)
                    if many:
                        out.append(SendAll(data))
                    new_sent += 1
            if new_sent:
                self.stats["frames_sent"] += new_sent
                buf.high_seq = seq
                buf.update_aru()
        # flow-control fields
        total_sent = sent + new_sent
        fcc = max(tok.fcc + total_sent - self._trc, 0)
        backlog = max(tok.backlog + cbl - self._pbl, 0)
        self._trc = total_sent
        self._pbl = cbl
        # aru
        aru = tok_aru
        aru_addr = tok.aru_addr
        if buf.aru < aru or aru_addr == me or aru_addr == 0:
            aru = buf.aru
            aru_addr = 0 if aru == seq else me
        if aru == last_aru and aru_addr != 0:
            self._aru_count += 1
        else:
            self._aru_count = 0
        if self._aru_count > cfg.fail_recv_const and aru_addr == me:
            self._log("error", "FAILED TO RECEIVE")
            self._failed_to_recv = True
            self._failed.add(me)
            self._out.extend(after)
            self._gather_enter(now, "failed to receive")
            return
        self._my_token_seq = tok.token_seq
        retrans_flg = tok.retrans_flg
        install = False
        if not operational:
            # RECOVERY: wait until nobody has old-ring messages left to send, then until
            # everybody has everything up to install_seq, on two successive rotations
            empty = not self._retrans_queue
            if not empty and not retrans_flg:
                retrans_flg = True
                self._set_retrans_flg = True
            elif empty and retrans_flg and self._set_retrans_flg:
                retrans_flg = False
                self._set_retrans_flg = False
            self._retrans_flg_count = 0 if retrans_flg else self._retrans_flg_count + 1
            if self._retrans_flg_count == 2:
                self._install_seq = seq
            if self._retrans_flg_count >= 2 and self._install_seq <= buf.aru:
                self._received_flg = True
            if self._retrans_flg_count >= 3 and self._install_seq <= aru:
                self._rotation_counter += 1
            else:
                self._rotation_counter = 0
            install = self._rotation_counter == 2
        new_tok: Token = _tuple_new(
            Token,
            (
                self.ring_id,
                tok.token_seq + 1,
                seq,
                aru,
                aru_addr,
                fcc,
                backlog,
                retrans_flg,
                tuple(rtr) if rtr else (),
            ),
        )
        if install:
            self._operational_enter(seq, now)
            operational = True
        members = self.members if operational else self._new_memb
        nxt_cache = self._next_cache
        if nxt_cache[0] is members:
            nxt = nxt_cache[1]
        else:
            nxt = members[(members.index(me) + 1) % len(members)]
            self._next_cache = (members, nxt)
        data = self.codec.encode_token(new_tok)
        self._last_token = data
        self._token_target = nxt
        self._holding = holding
        if not holding:
            self._send_to(nxt, new_tok, data)
        if after:
            self._out.extend(after)
        if operational and buf.high_delivered + 1 in buf.queue:
            self._deliver_ready()
        self._set_timer(TimerKind.TOKEN_LOSS, now + self.timeouts.token)
        if holding:
            self._cancel_timer(TimerKind.TOKEN_RETRANSMIT)
            self._set_timer(TimerKind.TOKEN_HOLD, now + self.timeouts.hold)
        else:
            self._set_timer(TimerKind.TOKEN_RETRANSMIT, now + self.timeouts.token_retransmit)
        if operational and seq > SEQ_REFORM and self.is_representative:
            self._gather_enter(now, "sequence numbers near rollover")

    def _report_tagged(self, seq: int) -> None:
        """Frame ``seq`` just went out: tell which tagged messages it completed or started."""
        sendq = self._sendq
        tags = sendq.tags
        framed = sendq.framed
        while tags:
            head = tags[0]
            if head.index < framed:
                tags.popleft()
                self._out.append(Multicasted(head.tag, head.first_seq or seq, seq))
                continue
            if head.index == framed and sendq.partial and not head.first_seq:
                head.first_seq = seq
                self._out.append(MulticastStarted(head.tag, seq))
            break

    def _reencode(self, m: Mcast, seq: int) -> bytes:
        return self.codec.encode_mcast(m)

    def _free(self, buf: _Buf, token_aru: int) -> None:
        limit = min(token_aru, self._last_aru, buf.high_delivered)
        start = buf.last_released
        if limit <= start:
            return
        q = buf.queue
        for s in range(start + 1, limit + 1):
            q.pop(s, None)
        buf.last_released = limit
