"""Several nodes' views of one cluster, compared: do they see the same ring and members?

Every node of a healthy cluster reports the same ring id and member list. Two groups of
nodes that report different rings are two partitions: the cluster is split right now,
which no single ``pvecm status`` shows. Pure: the SSH fan-out lives in targets/remote.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from pvectl.results import QuorumStatus, RingId


@dataclass(frozen=True)
class HostView:
    """One host's answer, or why there is none."""

    host: str
    status: QuorumStatus | None = None
    error: str | None = None


@dataclass(frozen=True)
class Partition:
    """Hosts that report the same ring id and member list."""

    ring_id: RingId
    member_ids: tuple[int, ...]
    hosts: tuple[str, ...]
    quorate: bool


@dataclass(frozen=True)
class ViewComparison:
    views: tuple[HostView, ...]
    partitions: tuple[Partition, ...]
    agree: bool
    # two quorate partitions with no member in common: each goes on writing on its own.
    # Overlapping quorate views are one stale view (a node that has not yet noticed the
    # ring change, still listing the others), not two clusters.
    split_brain: bool
    verdict: str


def compare_views(views: list[HostView]) -> ViewComparison:
    groups: dict[tuple[RingId, tuple[int, ...]], list[HostView]] = {}
    for view in views:
        if view.status is None:
            continue
        members = tuple(sorted(m.node_id for m in view.status.members))
        groups.setdefault((view.status.ring_id, members), []).append(view)
    partitions = tuple(
        Partition(
            ring_id=ring,
            member_ids=members,
            hosts=tuple(v.host for v in grouped),
            quorate=any(v.status is not None and v.status.quorate for v in grouped),
        )
        for (ring, members), grouped in groups.items()
    )
    quorate_parts = [p for p in partitions if p.quorate]
    split_brain = any(
        not set(a.member_ids) & set(b.member_ids)
        for i, a in enumerate(quorate_parts)
        for b in quorate_parts[i + 1 :]
    )
    agree = len(partitions) <= 1
    failed = [v.host for v in views if v.status is None]
    return ViewComparison(
        views=tuple(views),
        partitions=partitions,
        agree=agree,
        split_brain=split_brain,
        verdict=_verdict(partitions, split_brain, failed),
    )


def _verdict(partitions: tuple[Partition, ...], split_brain: bool, failed: list[str]) -> str:
    unreachable = f" ({len(failed)} host(s) did not answer: {', '.join(failed)})" if failed else ""
    if not partitions:
        return "no host answered" + unreachable
    if len(partitions) == 1:
        part = partitions[0]
        state = "quorate" if part.quorate else "NOT quorate"
        return f"all answering hosts agree: ring {part.ring_id}, {state}" + unreachable
    described = "; ".join(
        f"{', '.join(p.hosts)} see ring {p.ring_id} with nodes "
        f"{', '.join(str(n) for n in p.member_ids)} ({'quorate' if p.quorate else 'not quorate'})"
        for p in partitions
    )
    if split_brain:
        head = "SPLIT-BRAIN: more than one partition with disjoint members is quorate"
    else:
        head = (
            "views DISAGREE: the cluster is partitioned (split-brain in progress, or a "
            "membership change; rerun in a few seconds)"
        )
    return f"{head}: {described}" + unreachable
