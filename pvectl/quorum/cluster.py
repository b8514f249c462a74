"""Several votequorum nodes driven together, the way corosync's sync round delivers them.

A pure harness over ``votequorum``: every partition installs its ring, every member's
NODEINFO is delivered to every member in node-id order (agreed order), then each node
activates. It answers "what does each node decide" for what-if tables and tests, and is
the same sequence the embedded runtime performs over CPG.

The quorum device's vote per partition is a simplified qnetd (the real ffsplit/lms
algorithms live with the QDevice code): the only connected partition gets the vote;
among several, the one with most nodes, a tie going to the partition holding the
tie-breaker node (lowest node id by default).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, replace

from pvectl.quorum.votequorum import (
    QuorumOptions,
    VotequorumState,
    initial_state,
    lms_timer_fired,
    local_nodeinfo,
    local_qdevice_nodeinfo,
    membership_changed,
    nodeinfo_received,
    set_qdevice,
    sync_completed,
)


@dataclass(frozen=True)
class ClusterModel:
    options: QuorumOptions
    states: tuple[VotequorumState, ...]  # running nodes, by node id
    partitions: tuple[tuple[int, ...], ...]
    qnetd_up: bool = True
    now: float = 0.0

    def state_of(self, node_id: int) -> VotequorumState:
        for state in self.states:
            if state.local_node_id == node_id:
                return state
        raise KeyError(node_id)

    @property
    def running(self) -> tuple[int, ...]:
        return tuple(state.local_node_id for state in self.states)


def start(
    options: QuorumOptions,
    node_ids: Iterable[int] | None = None,
    now: float = 0.0,
    qnetd_up: bool = True,
) -> ClusterModel:
    """Boot ``node_ids`` (default: the whole nodelist) into one ring."""
    ids = tuple(sorted(options.node_ids if node_ids is None else node_ids))
    model = ClusterModel(options, (), (), qnetd_up, now)
    return reform(model, [ids], now, qnetd_up)


def reform(
    model: ClusterModel,
    partitions: Sequence[Iterable[int]],
    now: float,
    qnetd_up: bool | None = None,
    observers: Collection[int] | None = None,
) -> ClusterModel:
    """Install new rings: nodes in no partition are down (their state is dropped), nodes
    seen for the first time boot fresh.

    ``observers``: only these nodes process the sync round (a what-if shortcut: every
    member decides alike); the others' states are then stale and must not be read.
    """
    groups = tuple(tuple(sorted(group)) for group in partitions if tuple(group))
    qnetd = model.qnetd_up if qnetd_up is None else qnetd_up
    existing = {state.local_node_id: state for state in model.states}
    states: dict[int, VotequorumState] = {}
    for group in groups:
        for node_id in group:
            states[node_id] = existing.get(node_id) or initial_state(model.options, node_id)
    winner = _qdevice_winner(model.options, groups, qnetd)
    for group in groups:
        for node_id in group:
            state = membership_changed(states[node_id], group, now)
            if model.options.has_qdevice:
                keeps_vote = (
                    not qnetd
                    and model.options.qdevice_algorithm == "lms"
                    and model.options.wait_for_all
                    and state.quorate
                )
                state = set_qdevice(
                    state,
                    registered=True,
                    alive=qnetd or keeps_vote,
                    cast_vote=group == winner or keeps_vote,
                )
            states[node_id] = state
        messages = [
            (node_id, info)
            for node_id in group
            for info in (local_nodeinfo(states[node_id]), local_qdevice_nodeinfo(states[node_id]))
        ]
        receivers = [n for n in group if observers is None or n in observers]
        for sender, info in messages:
            for node_id in receivers:
                states[node_id] = nodeinfo_received(states[node_id], info, sender)
        for node_id in receivers:
            states[node_id] = sync_completed(states[node_id])
    ordered = tuple(states[node_id] for node_id in sorted(states))
    return ClusterModel(model.options, ordered, groups, qnetd, now)


def advance(model: ClusterModel, now: float) -> ClusterModel:
    """Let time pass: fire the last_man_standing timers that are due."""
    states = tuple(lms_timer_fired(state, now) for state in model.states)
    return replace(model, states=states, now=now)


def _qdevice_winner(
    options: QuorumOptions, groups: tuple[tuple[int, ...], ...], qnetd_up: bool
) -> tuple[int, ...] | None:
    if not options.has_qdevice or not qnetd_up or not groups:
        return None
    if len(groups) == 1:
        return groups[0]
    largest = max(len(group) for group in groups)
    tied = [group for group in groups if len(group) == largest]
    if len(tied) == 1:
        return tied[0]
    breaker = _tie_breaker_node(options)
    for group in tied:
        if breaker in group:
            return group
    return None


def _tie_breaker_node(options: QuorumOptions) -> int:
    ids = options.node_ids
    if options.qdevice_tie_breaker == "highest":
        return max(ids, default=0)
    if options.qdevice_tie_breaker.isdigit():
        return int(options.qdevice_tie_breaker)
    return min(ids, default=0)
