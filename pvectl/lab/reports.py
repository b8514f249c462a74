"""What lab commands report, whatever engine runs the lab."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from pvectl.errors import TargetUnavailable
from pvectl.lab.state import LabNode, LabState


@dataclass(frozen=True)
class NodeView:
    """One node as ``lab ls`` shows it: process facts plus its own quorum view."""

    node_id: int
    name: str
    address: str
    namespace: str
    pid: int | None
    running: bool
    paused: bool
    ring_id: str | None
    quorate: bool | None
    members: tuple[int, ...]
    state_dir: str
    files: tuple[str, ...]
    host: str = ""  # lab up --host: the SSH host running the node ("" = this machine)
    # why the node's host could not be asked; ``running`` is then False but unknown
    unreachable: str | None = None


@dataclass(frozen=True)
class LabView:
    name: str
    engine: str
    state_dir: str
    subnet: str
    transport: str
    cluster_name: str
    nodes: tuple[NodeView, ...]
    qnetd: str | None = None  # the lab's qnetd, when it has a qdevice (lab up --qdevice)


@dataclass(frozen=True)
class RingChange:
    """What a fault did to the ring, as seen from the surviving nodes."""

    action: str
    node_id: int
    seconds: float | None  # None: the ring did not settle within the timeout
    survivors: tuple[int, ...]
    members: tuple[int, ...]
    quorate: bool | None
    dropped_after: float | None = None  # pause: when the others had removed the node


@dataclass(frozen=True)
class GroupRing:
    """One side of a partition: the ring its running nodes formed."""

    group: tuple[int, ...]
    members: tuple[int, ...]  # as the group's first running node sees them
    quorate: bool | None


@dataclass(frozen=True)
class PartitionChange:
    """What a partition did: each group's ring, and how long after the split it formed."""

    groups: tuple[tuple[int, ...], ...]
    seconds: float | None  # None: some group had not settled when pvectl stopped waiting
    rings: tuple[GroupRing, ...]


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def lab_view(state: LabState, rows: list[NodeView], qnetd: str | None = None) -> LabView:
    """A lab's view from its state and one row per node."""
    return LabView(
        name=state.name,
        engine=state.engine,
        state_dir=state.state_dir,
        subnet=state.subnet,
        transport=state.transport,
        cluster_name=state.cluster_name,
        nodes=tuple(rows),
        qnetd=qnetd,
    )


def running_nodes(
    state: LabState, pid_of: Callable[[LabNode], int | None], exclude: int | None = None
) -> list[LabNode]:
    """The nodes whose process runs, but ``exclude``."""
    return [n for n in state.nodes if n.node_id != exclude and pid_of(n) is not None]


def first_running(state: LabState, pid_of: Callable[[LabNode], int | None]) -> LabNode:
    """The first node whose process runs: the default ``--node``."""
    for node in state.nodes:
        if pid_of(node) is not None:
            return node
    raise TargetUnavailable(
        f"no node of lab {state.name!r} is running: 'pvectl lab start NODE --name {state.name}'"
    )


def settle(
    observers: list[LabNode],
    node_id: int,
    action: str,
    expect: Callable[[tuple[int, ...]], bool],
    timeout: float,
    membership: Callable[[LabNode], tuple[int, ...] | None],
    final_view: Callable[[LabNode], tuple[tuple[int, ...], bool] | None],
    started: float | None = None,
) -> RingChange:
    """Time until every observer's membership satisfies ``expect``, then one observer's
    members and quorate flag: what a fault did to the ring, whatever the engine.

    ``started`` is the ``time.monotonic()`` of the signal or spawn: the clock must not start
    after waiting for the process, or a fast ring reads as 0.00 s."""
    if started is None:
        started = time.monotonic()

    def settled() -> bool:
        return all((m := membership(n)) is not None and expect(m) for n in observers)

    ok = wait_until(settled, timeout)
    seconds = time.monotonic() - started if ok else None
    seen = final_view(observers[0]) if observers else None
    members, quorate = seen if seen is not None else ((), None)
    return RingChange(
        action, node_id, seconds, tuple(n.node_id for n in observers), members, quorate
    )


def settle_partition(
    groups: list[list[int]],
    running: list[LabNode],
    started: float,
    timeout: float,
    membership: Callable[[LabNode], tuple[int, ...] | None],
    final_view: Callable[[LabNode], tuple[tuple[int, ...], bool] | None],
) -> PartitionChange:
    """Wait until every running node sees exactly the running nodes of its own group, and
    report each group's ring (as ``kill`` reports the survivors' ring)."""
    up = {n.node_id: n for n in running}
    sides = [[up[i] for i in group if i in up] for group in groups]

    def settled() -> bool:
        for side in sides:
            want = tuple(sorted(n.node_id for n in side))
            for node in side:
                seen = membership(node)
                if seen is None or tuple(sorted(seen)) != want:
                    return False
        return True

    ok = wait_until(settled, timeout)
    seconds = time.monotonic() - started if ok else None
    rings = []
    for group, side in zip(groups, sides, strict=True):
        seen = final_view(side[0]) if side else None
        members, quorate = seen if seen is not None else ((), None)
        rings.append(GroupRing(tuple(group), members, quorate))
    return PartitionChange(tuple(tuple(g) for g in groups), seconds, tuple(rings))
