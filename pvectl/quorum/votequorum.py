"""votequorum as corosync 3.1 computes it: options, per-node state, and pure transitions.

Each node decides quorum on its own, from the NODEINFO messages (votes, expected votes,
flags) every member multicasts during the sync after a membership change, plus its local
quorum device's vote. This module is that decision and nothing else: no clock (``now``
comes in), no sockets. The embedded node runtime calls, on every membership change::

    state = membership_changed(state, members, now)       # corosync's sync_init
    broadcast(local_nodeinfo(state))                        # sync_process
    for info in delivered_nodeinfos: state = nodeinfo_received(state, info)
    state = sync_completed(state)                           # sync_activate

and ``lms_timer_fired(state, now)`` once ``next_deadline(state)`` has passed. Other
inputs: ``set_expected`` (the local ``expected N``: guard + apply; multicast the value and
let the other nodes call ``expected_reconfigured``), ``set_qdevice`` (the local qdevice
daemon's registration/poll; then re-send ``local_nodeinfo``), ``leaving`` (NODEINFO to
send on clean shutdown with allow_downscale), ``cancel_wait_for_all``. The formulas follow
corosync's votequorum.c (``calculate_quorum``, ``are_we_quorate``, ``recalculate_quorum``);
names mirror corosync's so the two can be read side by side.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from enum import IntEnum, IntFlag, StrEnum
from typing import TypeVar

from pvectl.errors import CommandRefused, ConfigError, ExitCode

DEFAULT_LMS_WINDOW_MS = 10_000
UINT32 = 2**32 - 1  # corosync reads quorum.expected_votes, votes, device.votes as uint32
QDEVICE_NODE_ID = 0  # votequorum's pseudo node id for the quorum device

# The votequorum keys of corosync 3.1's ``quorum { }`` section, by the type corosync's
# parser gives them (coroparse): flags are uint8 (any value but 0 turns them on), the
# others uint32, and ``auto_tie_breaker_node`` is text ("lowest", "highest" or node ids).
QUORUM_FLAG_KEYS = (
    "two_node",
    "wait_for_all",
    "last_man_standing",
    "auto_tie_breaker",
    "allow_downscale",
    "expected_votes_tracking",
)
QUORUM_NUMBER_KEYS = ("expected_votes", "last_man_standing_window")
QUORUM_TEXT_KEYS = ("auto_tie_breaker_node",)
QUORUM_KEYS = (
    "expected_votes",
    *QUORUM_FLAG_KEYS[:3],
    "last_man_standing_window",
    *QUORUM_FLAG_KEYS[3:],
    "auto_tie_breaker_node",
)
_UINT_RANGE = {8: 255, 32: 4_294_967_295}


_Record = TypeVar("_Record", "NodeInfo", "NodeRecord", "VotequorumState")


def replace(record: _Record, /, **changes: object) -> _Record:
    """A copy of a frozen record with ``changes``: ``dataclasses.replace`` without its
    ``__init__`` call (these records validate nothing there), about three times faster;
    the simulator replaces them some 10,000 times per seed."""
    unknown = changes.keys() - record.__dataclass_fields__.keys()
    if unknown:
        raise TypeError(f"{type(record).__name__} has no field {sorted(unknown)[0]!r}")
    copy = object.__new__(type(record))
    copy.__dict__.update(record.__dict__, **changes)
    return copy


class QuorumConfigError(ConfigError):
    """A quorum configuration corosync refuses to start with (same wording as corosync)."""

    exit_code = ExitCode.CONFIG


class NodeFlag(IntFlag):
    """NODEINFO flags, with corosync's values (they travel on the wire)."""

    NONE = 0
    QUORATE = 1
    LEAVING = 2
    WFASTATUS = 4
    FIRST = 8
    QDEVICE_REGISTERED = 16
    QDEVICE_ALIVE = 32
    QDEVICE_CAST_VOTE = 64
    QDEVICE_MASTER_WINS = 128


class NodeState(IntEnum):
    MEMBER = 1
    DEAD = 2
    LEAVING = 3


class TieBreaker(StrEnum):
    NONE = "none"
    LOWEST = "lowest"
    HIGHEST = "highest"
    LIST = "list"


@dataclass(frozen=True)
class QuorumOptions:
    """The ``quorum`` section (and nodelist votes) as votequorum ends up using them.

    ``two_node``/``wait_for_all``/``auto_tie_breaker`` are the *effective* values, after
    corosync's own adjustments (two_node implies WFA; ATB disables two_node; ATB without
    WFA on an odd nodelist total is disabled); ``notes`` says what was adjusted and why.
    """

    node_votes: tuple[tuple[int, int], ...]  # (node id, votes) from the nodelist, sorted
    expected_votes: int = 0  # quorum.expected_votes; 0 = not set
    two_node: bool = False
    wait_for_all: bool = False
    last_man_standing: bool = False
    last_man_standing_window_ms: int = DEFAULT_LMS_WINDOW_MS
    auto_tie_breaker: TieBreaker = TieBreaker.NONE
    auto_tie_breaker_nodes: tuple[int, ...] = ()
    allow_downscale: bool = False
    expected_votes_tracking: bool = False
    qdevice_votes: int = 0  # 0: no quorum device
    qdevice_model: str = ""
    qdevice_algorithm: str = ""  # ffsplit | lms | 2nodelms (quorum.device.net.algorithm)
    qdevice_tie_breaker: str = "lowest"
    no_nodelist_votes: int = 1  # quorum.votes, only used without a nodelist
    notes: tuple[str, ...] = ()

    @property
    def has_qdevice(self) -> bool:
        return bool(self.qdevice_model)

    @property
    def node_ids(self) -> tuple[int, ...]:
        return tuple(node_id for node_id, _ in self.node_votes)

    def votes_of(self, node_id: int) -> int:
        for candidate, votes in self.node_votes:
            if candidate == node_id:
                return votes
        return self.no_nodelist_votes

    @functools.cached_property  # options never change once built
    def nodelist_votes(self) -> int:
        return sum(votes for _, votes in self.node_votes)

    @functools.cached_property
    def configured_expected_votes(self) -> int:
        """What a node starts with as its expected votes (``us->expected_votes``)."""
        if self.expected_votes:
            return self.expected_votes
        return self.nodelist_votes + self.qdevice_votes

    @classmethod
    def build(
        cls,
        node_votes: tuple[tuple[int, int], ...] | list[tuple[int, int]],
        *,
        expected_votes: int = 0,
        two_node: bool = False,
        wait_for_all: bool | None = None,
        last_man_standing: bool = False,
        last_man_standing_window_ms: int = DEFAULT_LMS_WINDOW_MS,
        auto_tie_breaker: bool = False,
        auto_tie_breaker_node: str = "lowest",
        allow_downscale: bool = False,
        expected_votes_tracking: bool = False,
        qdevice_model: str = "",
        qdevice_votes: int | None = None,
        qdevice_algorithm: str = "ffsplit",
        qdevice_tie_breaker: str = "lowest",
        no_nodelist_votes: int = 1,
        path: str = "",
    ) -> QuorumOptions:
        """Validate and resolve options exactly as votequorum's readconfig does at startup.

        Raises ``QuorumConfigError`` with corosync's own message where corosync would
        refuse to start.
        """
        nodes = tuple(sorted(node_votes))
        notes: list[str] = []
        have_nodelist = bool(nodes)
        have_qdevice = bool(qdevice_model)
        node_count = len(nodes)
        node_expected = sum(votes for _, votes in nodes)

        def fail(message: str) -> QuorumConfigError:
            return QuorumConfigError(f"configuration error: {message}", path)

        if not have_nodelist and not expected_votes:
            raise fail("nodelist or quorum.expected_votes must be configured!")
        if two_node and have_qdevice:
            raise fail("two_node and quorum device cannot be configured at the same time!")
        effective_wfa = two_node if wait_for_all is None else wait_for_all
        atb = TieBreaker.NONE
        atb_nodes: tuple[int, ...] = ()
        if auto_tie_breaker:
            atb, atb_nodes = _parse_atb(auto_tie_breaker_node)
            if atb is TieBreaker.NONE:
                notes.append(
                    "auto_tie_breaker_node is not valid (lowest, highest or a list of node "
                    "ids): auto_tie_breaker is disabled"
                )
        effective_two_node = two_node
        if two_node and atb is not TieBreaker.NONE:
            notes.append(
                "two_node and auto_tie_breaker are both specified but are not compatible: "
                "two_node has been disabled"
            )
            effective_two_node = False
        if atb is not TieBreaker.NONE and node_expected % 2 and not effective_wfa:
            if last_man_standing:
                raise fail(
                    "auto_tie_breaker & last_man_standing not available in odd sized cluster"
                )
            notes.append(
                "auto_tie_breaker needs wait_for_all on a cluster with an odd number of votes: "
                "auto_tie_breaker has been disabled"
            )
            atb, atb_nodes = TieBreaker.NONE, ()
        if have_qdevice and last_man_standing:
            raise fail("quorum.device is not compatible with last_man_standing")
        if have_qdevice and atb is not TieBreaker.NONE:
            raise fail("quorum.device is not compatible with auto_tie_breaker")
        if have_qdevice and allow_downscale:
            raise fail("quorum.device is not compatible with allow_downscale")
        if have_qdevice and qdevice_votes is None:
            if expected_votes:
                raise fail(
                    "quorum.device.votes must be specified when quorum.expected_votes is set"
                )
            if have_nodelist and node_count != node_expected:
                raise fail("quorum.device.votes must be specified when not all nodes votes 1")
        if qdevice_votes and expected_votes and expected_votes - qdevice_votes < 2:
            raise fail("quorum.device.votes is too high or expected_votes is too low")
        device_votes = 0
        if have_qdevice:
            device_votes = qdevice_votes if qdevice_votes is not None else node_expected - 1
        if last_man_standing and any(votes > 1 for _, votes in nodes):
            notes.append(
                "last_man_standing works only when every node has 1 vote: it will be "
                "disabled as soon as a node with more votes joins"
            )
        if allow_downscale:
            expected_votes_tracking = True
        return cls(
            node_votes=nodes,
            expected_votes=expected_votes,
            two_node=effective_two_node,
            wait_for_all=effective_wfa,
            last_man_standing=last_man_standing,
            last_man_standing_window_ms=last_man_standing_window_ms,
            auto_tie_breaker=atb,
            auto_tie_breaker_nodes=atb_nodes,
            allow_downscale=allow_downscale,
            expected_votes_tracking=expected_votes_tracking,
            qdevice_votes=device_votes,
            qdevice_model=qdevice_model,
            qdevice_algorithm=qdevice_algorithm if have_qdevice else "",
            qdevice_tie_breaker=qdevice_tie_breaker,
            no_nodelist_votes=no_nodelist_votes,
            notes=tuple(notes),
        )


def quorum_value(key: str, raw: str, path: str = "", line: int = 0) -> int | str:
    """One ``quorum.KEY`` value as corosync's parser reads it, or corosync's own refusal.

    corosync reads them as base-10 integers (``strtoll``: leading blanks and a sign
    allowed, ASCII digits only) within the key's type range; anything else stops it at
    start with "Value of key ... is expected to be integer".
    """
    if key in QUORUM_TEXT_KEYS or key not in (*QUORUM_FLAG_KEYS, *QUORUM_NUMBER_KEYS):
        return raw
    high = _UINT_RANGE[8 if key in QUORUM_FLAG_KEYS else 32]
    text = raw.strip()
    digits = re.fullmatch(r"[+-]?[0-9]{1,20}", text)
    value = int(text) if digits else -1
    if not 0 <= value <= high:
        raise QuorumConfigError(
            f'Value of key "quorum.{key}" is expected to be integer in range (0..{high}), '
            f'but "{raw if len(raw) <= 40 else raw[:37] + "..."}" was given',
            path,
            line,
        )
    return value


def _parse_atb(text: str) -> tuple[TieBreaker, tuple[int, ...]]:
    word = text.strip()
    if word == "lowest":
        return TieBreaker.LOWEST, ()
    if word == "highest":
        return TieBreaker.HIGHEST, ()
    ids: list[int] = []
    for token in re.split(r"\s+", word):
        if not token.isdigit() or int(token) == 0:
            break  # corosync's strtol loop stops at the first non-number (or 0)
        ids.append(int(token))
    return (TieBreaker.LIST, tuple(ids)) if ids else (TieBreaker.NONE, ())


@dataclass(frozen=True)
class NodeInfo:
    """A NODEINFO message: what one node tells the others about itself."""

    node_id: int
    votes: int
    expected_votes: int
    flags: NodeFlag = NodeFlag.NONE


@dataclass(frozen=True)
class NodeRecord:
    """What this node knows about one node (``struct cluster_node``)."""

    node_id: int
    state: NodeState
    votes: int
    expected_votes: int
    flags: NodeFlag = NodeFlag.NONE


@dataclass(frozen=True)
class VotequorumState:
    """One node's votequorum view. Replace, never mutate: every transition returns a new one."""

    options: QuorumOptions
    local_node_id: int
    nodes: tuple[NodeRecord, ...]  # sorted by node id; includes this node
    qdevice_votes: int
    quorum: int = 0
    quorate: bool = False
    two_node: bool = False
    wait_for_all_status: bool = False
    last_man_standing: bool = False
    lms_deadline: float | None = None  # seconds, the caller's clock (one timer convention)
    members: tuple[int, ...] = ()  # quorum_members: the current ring
    previous_members: tuple[int, ...] = ()
    lowest_node_id: int = -1  # as of the last time this node was quorate (ATB)
    highest_node_id: int = -1
    ev_barrier: int = 0
    ev_tracking_barrier: int = 0  # the runtime persists this (corosync: state_dir/ev_tracking)
    events: tuple[str, ...] = field(default=(), compare=False)  # what the last step logged

    @property
    def us(self) -> NodeRecord:
        return self._node(self.local_node_id)  # always present

    def _node(self, node_id: int) -> NodeRecord:
        for node in self.nodes:
            if node.node_id == node_id:
                return node
        raise KeyError(node_id)

    def node(self, node_id: int) -> NodeRecord | None:
        for node in self.nodes:
            if node.node_id == node_id:
                return node
        return None

    @property
    def expected_votes(self) -> int:
        return self.us.expected_votes

    @property
    def highest_expected(self) -> int:
        return max((n.expected_votes for n in self.nodes if n.state is NodeState.MEMBER), default=0)

    @property
    def total_votes(self) -> int:
        """Member votes plus the device's when *this* node's qdevice casts its vote."""
        total = sum(n.votes for n in self.nodes if n.state is NodeState.MEMBER)
        if self.us.flags & NodeFlag.QDEVICE_CAST_VOTE:
            total += self.qdevice_votes
        return total

    @property
    def flags(self) -> tuple[str, ...]:
        """The ``Flags:`` line of corosync-quorumtool, in its order."""
        shown: list[str] = []
        if self.two_node:
            shown.append("2Node")
        if self.quorate:
            shown.append("Quorate")
        if self.options.wait_for_all:
            shown.append("WaitForAll")
        if self.last_man_standing:
            shown.append("LastManStanding")
        if self.options.auto_tie_breaker is not TieBreaker.NONE:
            shown.append("AutoTieBreaker")
        if self.options.allow_downscale:
            shown.append("AllowDownscale")
        if self.us.flags & NodeFlag.QDEVICE_REGISTERED:
            shown.append("Qdevice")
        return tuple(shown)


# --- construction -----------------------------------------------------------------------


def initial_state(
    options: QuorumOptions, local_node_id: int, ev_tracking_barrier: int = 0
) -> VotequorumState:
    """A node that has just started: alone, FIRST flag set, WFA armed (exec_init)."""
    expected = options.configured_expected_votes
    if options.expected_votes_tracking:
        # corosync replaces quorum.expected_votes by the persisted barrier, even when that
        # is still 0 (first start): then the nodelist total counts, not expected_votes
        expected = ev_tracking_barrier or options.nodelist_votes + options.qdevice_votes
    us = NodeRecord(
        node_id=local_node_id,
        state=NodeState.MEMBER,
        votes=options.votes_of(local_node_id),
        expected_votes=expected,
        flags=NodeFlag.FIRST,
    )
    state = VotequorumState(
        options=options,
        local_node_id=local_node_id,
        nodes=(us,),
        qdevice_votes=options.qdevice_votes,
        two_node=options.two_node,
        wait_for_all_status=options.wait_for_all,
        last_man_standing=options.last_man_standing,
        ev_barrier=expected,
        ev_tracking_barrier=ev_tracking_barrier,
    )
    if options.wait_for_all:
        state = _set_us_flag(state, NodeFlag.WFASTATUS, True)
    return _recalculate(state, allow_decrease=False, by_current_nodes=False)


# --- transitions the runtime drives ----------------------------------------------------


def membership_changed(
    state: VotequorumState, members: tuple[int, ...] | list[int], now: float
) -> VotequorumState:
    """A new ring is installed (sync_init): mark leavers dead, (re)arm the LMS window."""
    ring = tuple(members)
    events: list[str] = []
    if len(ring) > 1:
        state = _set_us_flag(state, NodeFlag.FIRST, False)
    left = tuple(node_id for node_id in state.members if node_id not in ring)
    nodes = tuple(replace(n, state=NodeState.DEAD) if n.node_id in left else n for n in state.nodes)
    state = replace(state, nodes=nodes)
    deadline = state.lms_deadline
    if state.last_man_standing and (
        (len(ring) >= state.quorum and left)
        or (
            len(ring) <= state.quorum
            and state.options.auto_tie_breaker is not TieBreaker.NONE
            and _member_present(state, state.lowest_node_id)
        )
    ):
        deadline = now + state.options.last_man_standing_window_ms / 1000
        events.append(f"last_man_standing window armed until {deadline:.3f} s")
    return replace(
        state,
        previous_members=state.members,
        members=ring,
        lms_deadline=deadline,
        events=tuple(events),
    )


def local_nodeinfo(state: VotequorumState) -> NodeInfo:
    """What this node multicasts in sync_process and after any local change."""
    us = state.us
    return NodeInfo(us.node_id, us.votes, us.expected_votes, us.flags)


def local_qdevice_nodeinfo(state: VotequorumState) -> NodeInfo:
    """The second NODEINFO of sync_process: the quorum device's votes (node id 0)."""
    return NodeInfo(QDEVICE_NODE_ID, state.qdevice_votes, 0, NodeFlag.NONE)


def nodeinfo_received(
    state: VotequorumState, info: NodeInfo, sender_node_id: int | None = None
) -> VotequorumState:
    """A NODEINFO delivered in agreed order (our own included)."""
    if info.node_id == QDEVICE_NODE_ID:
        sender = state.node(sender_node_id) if sender_node_id is not None else None
        if not state.quorate and sender is not None and sender.flags & NodeFlag.QUORATE:
            votes = info.votes
        else:
            votes = max(state.qdevice_votes, info.votes)
        if votes == state.qdevice_votes:
            return state
        return _recalculate(replace(state, qdevice_votes=votes), False, False)

    old = state.node(info.node_id)
    is_us = info.node_id == state.local_node_id
    allow_decrease = False
    by_node = False
    node_state = NodeState.MEMBER
    if info.flags & NodeFlag.LEAVING:
        node_state = NodeState.LEAVING
        allow_decrease = True
        by_node = True
    if not state.quorate and info.flags & NodeFlag.QUORATE:
        allow_decrease = True
        state = _replace_node(state, replace(state.us, expected_votes=info.expected_votes))
    if info.flags & NodeFlag.QUORATE or state.options.expected_votes_tracking:
        node_expected = info.expected_votes
    else:
        node_expected = state.us.expected_votes
    flags = NodeFlag(info.flags)
    if is_us:
        # the local qdevice's bits are set here, at once (``set_qdevice``): an own NODEINFO
        # still in flight carries older ones and must not bring back a withdrawn vote
        flags = (flags & ~_QDEVICE_FLAGS) | (state.us.flags & _QDEVICE_FLAGS)
    record = NodeRecord(info.node_id, node_state, info.votes, node_expected, flags)
    state = _replace_node(state, record)
    if state.last_man_standing and info.votes > 1:
        state = replace(
            state,
            last_man_standing=False,
            lms_deadline=None,
            events=(*state.events, "last_man_standing disabled: a node has more than 1 vote"),
        )
    changed = (
        old is None
        or is_us
        or bool(info.flags & NodeFlag.FIRST)
        or old.votes != record.votes
        or old.expected_votes != record.expected_votes
        or old.flags != record.flags
        or old.state != record.state
    )
    if changed:
        state = _recalculate(state, allow_decrease, by_node)
    if (
        state.options.wait_for_all
        and not info.flags & NodeFlag.WFASTATUS
        and info.flags & NodeFlag.QUORATE
    ):
        state = _set_wfa_status(state, False)
    return state


def sync_completed(state: VotequorumState) -> VotequorumState:
    """sync_activate: the quorum decision every service now acts upon."""
    return _recalculate(state, allow_decrease=False, by_current_nodes=False)


def next_deadline(state: VotequorumState) -> float | None:
    """When the caller must call ``lms_timer_fired``, in seconds of its clock (None: no
    timer pending). Every pure core says when it next needs to be called this way."""
    return state.lms_deadline


def lms_timer_fired(state: VotequorumState, now: float) -> VotequorumState:
    """The last_man_standing window expired: if still quorate, shrink expected to the members."""
    if state.lms_deadline is None or now < state.lms_deadline:
        return state
    state = replace(state, lms_deadline=None)
    if state.quorate:
        state = _recalculate(state, allow_decrease=True, by_current_nodes=True)
    return state


_QDEVICE_FLAGS = NodeFlag.QDEVICE_REGISTERED | NodeFlag.QDEVICE_ALIVE | NodeFlag.QDEVICE_CAST_VOTE


def set_qdevice(
    state: VotequorumState, *, registered: bool, alive: bool, cast_vote: bool
) -> VotequorumState:
    """The local qdevice daemon registered/polled (or its poll timed out). The change takes
    effect when this node's next NODEINFO is delivered, as in corosync."""
    flags = state.us.flags & ~(
        NodeFlag.QDEVICE_REGISTERED | NodeFlag.QDEVICE_ALIVE | NodeFlag.QDEVICE_CAST_VOTE
    )
    if registered:
        flags |= NodeFlag.QDEVICE_REGISTERED
        if alive:
            flags |= NodeFlag.QDEVICE_ALIVE
            if cast_vote:
                flags |= NodeFlag.QDEVICE_CAST_VOTE
    return _replace_node(state, replace(state.us, flags=flags))


def leaving(state: VotequorumState) -> NodeInfo:
    """The NODEINFO a node sends on clean shutdown when allow_downscale is on."""
    info = local_nodeinfo(state)
    return replace(info, flags=info.flags | NodeFlag.LEAVING)


def cancel_wait_for_all(state: VotequorumState) -> VotequorumState:
    """``quorum.cancel_wait_for_all`` (the RECONFIGURE every node applies)."""
    return _recalculate(_set_wfa_status(state, False), False, False)


def check_set_expected(requested: int, total_votes: int, currently_quorate: bool) -> None:
    """corosync's setexpected guard, with a message saying why it refuses.

    corosync answers CS_ERR_INVALID_PARAM when the new expected votes are below the votes
    present, or when a quorate partition would become inquorate.
    """
    if requested < 1:
        raise CommandRefused(f"expected votes must be at least 1, got {requested}")
    if requested < total_votes:
        raise CommandRefused(
            f"{total_votes} votes are present in this partition: "
            f"expected votes cannot go below {total_votes}"
        )
    new_quorum = max(requested // 2 + 1, total_votes // 2 + 1)
    if currently_quorate and new_quorum > total_votes:
        raise CommandRefused(
            f"the partition is quorate and expected {requested} would make quorum "
            f"{new_quorum} > {total_votes} present votes: it would lose quorum"
        )


def expected_warning(requested: int, total_votes: int, expected_votes: int) -> str:
    """What users must know before lowering expected votes at runtime."""
    missing = max(expected_votes - total_votes, 0)
    return (
        f"expected votes {expected_votes} -> {requested} is a runtime change only: it is not "
        "written to corosync.conf (restarting corosync brings the configured value back), and "
        "it only rises again as votes return, so nodes that rejoin adopt the lower value. "
        f"Do it only if the {missing} missing vote(s) are really down (powered off or fenced): "
        "if they are alive on the other side of a network split, both sides can become "
        "quorate and write to the same guests and /etc/pve (split brain)."
    )


def set_expected(state: VotequorumState, requested: int) -> VotequorumState:
    """``corosync-quorumtool -e N`` on this node: guard, then apply as the RECONFIGURE would."""
    check_set_expected(requested, state.total_votes, state.quorate)
    return expected_reconfigured(state, requested)


def expected_reconfigured(state: VotequorumState, requested: int) -> VotequorumState:
    """A RECONFIGURE(EXPECTED_VOTES) delivered from any node (no guard: the sender checked)."""
    state = _set_members_expected(state, requested)
    state = replace(state, ev_barrier=requested)
    if state.options.expected_votes_tracking:
        us = state.us
        state = _replace_node(
            state, replace(us, expected_votes=max(us.expected_votes, state.ev_tracking_barrier))
        )
    return _recalculate(state, allow_decrease=True, by_current_nodes=False)


# --- the core formulas -------------------------------------------------------------------


def quorum_for(expected_votes: int, total_votes: int) -> int:
    """More than half of max(expected, present): the core of ``calculate_quorum``."""
    return max((expected_votes + 2) // 2, (total_votes + 2) // 2)


def calculate_quorum(
    state: VotequorumState, allow_decrease: bool, max_expected: int
) -> tuple[int, int]:
    """(quorum, total votes) from the member records: corosync's ``calculate_quorum``."""
    if state.options.allow_downscale and allow_decrease and max_expected:
        max_expected = max(state.ev_barrier, max_expected)
    highest_expected = 0
    total_votes = 0
    total_nodes = 0
    for node in state.nodes:
        if node.state is NodeState.MEMBER:
            highest_expected = max(highest_expected, node.expected_votes)
            total_votes += node.votes
            total_nodes += 1
    if state.us.flags & NodeFlag.QDEVICE_CAST_VOTE:
        total_votes += state.qdevice_votes
        total_nodes += 1
    if max_expected > 0:
        highest_expected = max_expected
    new_quorum = quorum_for(highest_expected, total_votes)
    if not allow_decrease:
        new_quorum = max(state.quorum, new_quorum)
    if state.two_node and total_nodes <= 2:
        new_quorum = 1
    return new_quorum, total_votes


def _recalculate(
    state: VotequorumState, allow_decrease: bool, by_current_nodes: bool
) -> VotequorumState:
    members = [n for n in state.nodes if n.state is NodeState.MEMBER]
    all_votes = sum(n.votes for n in members) + state.qdevice_votes
    member_count = len(members) + (1 if state.qdevice_votes else 0)
    if not by_current_nodes:
        member_count = 0
    if all_votes > state.us.expected_votes:  # keep expected at the highest votes seen
        state = _replace_node(state, replace(state.us, expected_votes=all_votes))
    tracking = state.options.expected_votes_tracking
    if tracking and state.us.expected_votes > state.ev_tracking_barrier:
        state = replace(state, ev_tracking_barrier=state.us.expected_votes)
    quorum, total_votes = calculate_quorum(state, allow_decrease, member_count)
    state = replace(state, quorum=quorum)
    state = _set_members_expected(state, member_count)
    return _are_we_quorate(state, total_votes)


def _are_we_quorate(state: VotequorumState, total_votes: int) -> VotequorumState:
    if state.options.wait_for_all and state.wait_for_all_status:
        if total_votes != state.us.expected_votes:
            return replace(state, quorate=False)  # still waiting for all
        state = _set_wfa_status(state, False)
    quorate = state.quorum <= total_votes
    if quorate:
        ids = [n.node_id for n in state.nodes if n.state is NodeState.MEMBER]
        state = replace(
            state,
            lowest_node_id=min([state.local_node_id, *ids]),
            highest_node_id=max([state.local_node_id, *ids]),
        )
    if (
        state.options.auto_tie_breaker is not TieBreaker.NONE
        and total_votes == state.us.expected_votes // 2
        and len(state.previous_members) - len(state.members) < state.quorum
        and _tie_breaker_passes(state)
    ):
        quorate = True
    state = replace(state, quorate=quorate)
    state = _set_us_flag(state, NodeFlag.QUORATE, quorate)
    if state.options.wait_for_all:
        state = _set_wfa_status(state, not quorate)
    return state


def _tie_breaker_passes(state: VotequorumState) -> bool:
    mode = state.options.auto_tie_breaker
    if mode is TieBreaker.LOWEST:
        return _member_present(state, state.lowest_node_id)
    if mode is TieBreaker.HIGHEST:
        return _member_present(state, state.highest_node_id)
    listed = state.options.auto_tie_breaker_nodes
    for index, node_id in enumerate(listed):
        if node_id in state.members:
            return not any(earlier in state.previous_members for earlier in listed[:index])
    return False


def _member_present(state: VotequorumState, node_id: int) -> bool:
    return any(n.node_id == node_id and n.state is NodeState.MEMBER for n in state.nodes)


# --- small helpers ------------------------------------------------------------------------


def _replace_node(state: VotequorumState, record: NodeRecord) -> VotequorumState:
    others = [n for n in state.nodes if n.node_id != record.node_id]
    nodes = tuple(sorted([*others, record], key=lambda n: n.node_id))
    return replace(state, nodes=nodes)


def _set_members_expected(state: VotequorumState, expected: int) -> VotequorumState:
    if not expected:
        return state
    nodes = tuple(
        replace(n, expected_votes=expected) if n.state is NodeState.MEMBER else n
        for n in state.nodes
    )
    return replace(state, nodes=nodes)


def _set_us_flag(state: VotequorumState, flag: NodeFlag, on: bool) -> VotequorumState:
    us = state.us
    flags = (us.flags | flag) if on else (us.flags & ~flag)
    if flags == us.flags:
        return state
    return _replace_node(state, replace(us, flags=flags))


def _set_wfa_status(state: VotequorumState, on: bool) -> VotequorumState:
    return _set_us_flag(replace(state, wait_for_all_status=on), NodeFlag.WFASTATUS, on)
