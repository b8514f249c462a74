"""What-if: for one configuration, which failures and splits keep quorum, and what to change.

Every answer comes from running the votequorum model (``cluster``): the cluster starts
whole and quorate, then the failed nodes (and optionally the qnetd host) vanish at once.
With last_man_standing the table also says what happens when the same nodes fail one at
a time, each after the window has expired.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import combinations

from pvectl.errors import ExitCode, PvectlError
from pvectl.quorum import cluster
from pvectl.quorum.votequorum import QuorumOptions, TieBreaker
from pvectl.results import QuorumStatus

QNETD = "qnetd"
MAX_NODES = 32  # corosync's own limit is higher, but beyond this the advice is moot
EXHAUSTIVE_MAX = 10  # every failure set up to here; above, one set per count (needs symmetry)


class WhatIfUnsupported(PvectlError):
    """A configuration the what-if cannot enumerate in reasonable time: a limit of the
    tool, not a fault of the configuration, so exit 64 (as ``--nodes`` beyond the limit)."""

    exit_code = ExitCode.USAGE


@dataclass(frozen=True)
class NodeSpec:
    node_id: int
    name: str
    votes: int


@dataclass(frozen=True)
class FailureOutcome:
    """The survivors' view after ``failed`` went down together."""

    failed: tuple[str, ...]  # node names, plus "qnetd" when the QDevice host is down too
    survivors: tuple[str, ...]
    total_votes: int
    expected_votes: int
    quorum: int
    quorate: bool
    quorate_one_at_a_time: bool | None = None  # LMS only: failures spaced beyond the window


@dataclass(frozen=True)
class SplitOutcome:
    """A network split into two sides that both keep running."""

    side_a: tuple[str, ...]
    side_b: tuple[str, ...]
    quorate_a: bool
    quorate_b: bool
    verdict: str  # "split brain" | "one side continues" | "whole cluster blocked"


def _verdict(quorate_a: bool, quorate_b: bool) -> str:
    if quorate_a and quorate_b:
        return "split brain"
    if quorate_a or quorate_b:
        return "one side continues"
    return "whole cluster blocked"


@dataclass(frozen=True)
class WhatIfReport:
    nodes: tuple[NodeSpec, ...]
    options: tuple[str, ...]  # the options that change the answers, as corosync.conf keys
    qdevice_algorithm: str
    qdevice_votes: int
    expected_votes: int
    quorum: int
    failures: tuple[FailureOutcome, ...]
    max_failures_always_survived: int
    max_failures_survivable: int  # best case: the right nodes fail
    max_failures_always_survived_qnetd_down: int | None
    splits: tuple[SplitOutcome, ...]
    advice: tuple[str, ...]
    notes: tuple[str, ...] = ()
    exhaustive: bool = True  # False: one representative set per failure count (symmetric)


def _failure_sets(options: QuorumOptions) -> list[tuple[int, ...]]:
    """Every subset of nodes, or, for large symmetric clusters, one per size (the highest
    ids fail: with equal votes and no auto_tie_breaker only the count matters)."""
    ids = options.node_ids
    if len(ids) <= EXHAUSTIVE_MAX:
        return [failed for count in range(len(ids) + 1) for failed in combinations(ids, count)]
    if len({options.votes_of(n) for n in ids}) > 1 or options.auto_tie_breaker.value != "none":
        raise WhatIfUnsupported(
            f"what-if enumerates every failure set only up to {EXHAUSTIVE_MAX} nodes; "
            f"{len(ids)} nodes need equal votes and no auto_tie_breaker"
        )
    return [tuple(ids[len(ids) - count :]) for count in range(len(ids) + 1)]


def analyse(options: QuorumOptions, names: dict[int, str] | None = None) -> WhatIfReport:
    """The full what-if for ``options`` (node names default to ``node<id>``)."""
    ids = options.node_ids
    if not ids:
        raise WhatIfUnsupported("what-if needs a nodelist")
    if len(ids) > MAX_NODES:
        raise WhatIfUnsupported(f"what-if handles up to {MAX_NODES} nodes, got {len(ids)}")
    failure_sets = _failure_sets(options)
    label = {node_id: (names or {}).get(node_id) or f"node{node_id}" for node_id in ids}
    specs = tuple(NodeSpec(node_id, label[node_id], options.votes_of(node_id)) for node_id in ids)
    whole = cluster.start(options)
    first = whole.states[0]

    failures: list[FailureOutcome] = []
    qnetd_cases = (True, False) if options.has_qdevice else (True,)
    for qnetd_up in qnetd_cases:
        for failed in failure_sets:
            failures.append(_failure(options, whole, failed, qnetd_up, label))

    up_rows = [f for f in failures if QNETD not in f.failed]
    survivable = max((len(f.failed) for f in up_rows if f.quorate), default=0)
    report_without_advice = WhatIfReport(
        nodes=specs,
        options=_option_keys(options),
        qdevice_algorithm=options.qdevice_algorithm,
        qdevice_votes=options.qdevice_votes,
        expected_votes=first.expected_votes,
        quorum=first.quorum,
        failures=tuple(failures),
        max_failures_always_survived=_always(up_rows, len(ids)),
        max_failures_survivable=survivable,
        max_failures_always_survived_qnetd_down=(
            _always([f for f in failures if QNETD in f.failed], len(ids), qnetd_row=True)
            if options.has_qdevice
            else None
        ),
        splits=_splits(options, whole, label),
        advice=(),
        notes=options.notes,
        exhaustive=len(ids) <= EXHAUSTIVE_MAX,
    )
    return _with_advice(report_without_advice, options)


def _always(rows: list[FailureOutcome], node_count: int, qnetd_row: bool = False) -> int:
    """Largest k such that every set of up to k failed nodes keeps quorum."""
    best = 0
    for count in range(1, node_count + 1):
        same = [f for f in rows if len(f.failed) - (1 if qnetd_row else 0) == count]
        if same and all(f.quorate for f in same):
            best = count
        else:
            break
    baseline = [f for f in rows if len(f.failed) == (1 if qnetd_row else 0)]
    if baseline and not all(f.quorate for f in baseline):
        return -1 if qnetd_row else 0
    return best


def _failure(
    options: QuorumOptions,
    whole: cluster.ClusterModel,
    failed: tuple[int, ...],
    qnetd_up: bool,
    label: dict[int, str],
) -> FailureOutcome:
    survivors = tuple(node_id for node_id in options.node_ids if node_id not in failed)
    failed_names = tuple(label[node_id] for node_id in failed) + (() if qnetd_up else (QNETD,))
    if not survivors:
        return FailureOutcome(failed_names, (), 0, whole.states[0].expected_votes, 0, False)
    after = cluster.reform(
        whole, [survivors], now=1.0, qnetd_up=qnetd_up, observers=(survivors[0],)
    )
    view = after.state_of(survivors[0])
    one_at_a_time: bool | None = None
    if options.last_man_standing:
        one_at_a_time = _one_at_a_time(options, whole, failed, qnetd_up)
    return FailureOutcome(
        failed=failed_names,
        survivors=tuple(label[node_id] for node_id in survivors),
        total_votes=view.total_votes,
        expected_votes=view.expected_votes,
        quorum=view.quorum,
        quorate=view.quorate,
        quorate_one_at_a_time=one_at_a_time,
    )


def _one_at_a_time(
    options: QuorumOptions, whole: cluster.ClusterModel, failed: tuple[int, ...], qnetd_up: bool
) -> bool:
    model = whole
    remaining = list(options.node_ids)
    now = 0.0
    step = options.last_man_standing_window_ms / 1000 + 1.0
    for node_id in failed:
        remaining.remove(node_id)
        if not remaining:
            return False
        now += 1.0
        model = cluster.reform(model, [remaining], now=now, qnetd_up=qnetd_up)
        now += step
        model = cluster.advance(model, now)
    return model.state_of(remaining[0]).quorate


def _splits(
    options: QuorumOptions, whole: cluster.ClusterModel, label: dict[int, str]
) -> tuple[SplitOutcome, ...]:
    ids = options.node_ids
    first, rest = ids[0], ids[1:]
    if len(ids) <= EXHAUSTIVE_MAX:
        sides: list[tuple[int, ...]] = [
            (first, *others) for size in range(len(rest)) for others in combinations(rest, size)
        ]
    else:  # symmetric: one split per size, the side with the lowest id first
        sides = [tuple(ids[:size]) for size in range(1, len(ids))]
    outcomes: list[SplitOutcome] = []
    for side_a in sides:
        side_b = tuple(node_id for node_id in ids if node_id not in side_a)
        after = cluster.reform(whole, [side_a, side_b], now=1.0, observers=(side_a[0], side_b[0]))
        quorate_a = after.state_of(side_a[0]).quorate
        quorate_b = after.state_of(side_b[0]).quorate
        outcomes.append(
            SplitOutcome(
                side_a=tuple(label[n] for n in side_a),
                side_b=tuple(label[n] for n in side_b),
                quorate_a=quorate_a,
                quorate_b=quorate_b,
                verdict=_verdict(quorate_a, quorate_b),
            )
        )
    return tuple(outcomes)


def _option_keys(options: QuorumOptions) -> tuple[str, ...]:
    keys: list[str] = []
    if options.expected_votes:
        keys.append(f"expected_votes: {options.expected_votes}")
    if options.two_node:
        keys.append("two_node: 1")
    if options.wait_for_all:
        keys.append("wait_for_all: 1")
    if options.last_man_standing:
        keys.append("last_man_standing: 1")
        keys.append(f"last_man_standing_window: {options.last_man_standing_window_ms}")
    if options.auto_tie_breaker is not TieBreaker.NONE:
        keys.append("auto_tie_breaker: 1")
        node = (
            " ".join(str(n) for n in options.auto_tie_breaker_nodes)
            if options.auto_tie_breaker is TieBreaker.LIST
            else options.auto_tie_breaker.value
        )
        keys.append(f"auto_tie_breaker_node: {node}")
    if options.allow_downscale:
        keys.append("allow_downscale: 1")
    if options.has_qdevice:
        keys.append(f"device.votes: {options.qdevice_votes}")
        keys.append(f"device.net.algorithm: {options.qdevice_algorithm}")
    return tuple(keys)


# --- advice ---------------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _quick_tolerance(options: QuorumOptions) -> tuple[int, int | None]:
    """(failures always survived with qnetd up, with qnetd down) without building a report."""
    whole = cluster.start(options)
    ids = options.node_ids
    label = {node_id: str(node_id) for node_id in ids}
    sets = _failure_sets(options)
    up = [_failure(options, whole, failed, True, label) for failed in sets]
    down: int | None = None
    if options.has_qdevice:
        rows = [_failure(options, whole, failed, False, label) for failed in sets]
        down = _always(rows, len(ids), qnetd_row=True)
    return _always(up, len(ids)), down


def _with_qdevice(options: QuorumOptions, algorithm: str) -> QuorumOptions | None:
    try:
        return QuorumOptions.build(
            options.node_votes,
            qdevice_model="net",
            qdevice_votes=1 if algorithm == "ffsplit" else None,
            qdevice_algorithm=algorithm,
        )
    except PvectlError:
        return None


def _plain(options: QuorumOptions) -> QuorumOptions:
    return QuorumOptions.build(options.node_votes)


def _n(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def _with_advice(report: WhatIfReport, options: QuorumOptions) -> WhatIfReport:
    advice: list[str] = []
    count = len(report.nodes)
    even_votes = options.nodelist_votes % 2 == 0
    uniform = all(spec.votes == 1 for spec in report.nodes)
    tolerated = report.max_failures_always_survived
    advice.append(
        f"{_n(count, 'node')}, {_n(options.nodelist_votes, 'vote')}"
        + (f" + {_n(options.qdevice_votes, 'QDevice vote')}" if options.has_qdevice else "")
        + f": quorum is {report.quorum} of {report.expected_votes}; "
        + (
            f"any {_n(tolerated, 'node failure')} always survived"
            if tolerated
            else "a single node failure can stop it"
        )
        + (
            f", and up to {report.max_failures_survivable} if the right nodes fail"
            if report.max_failures_survivable > tolerated
            else ""
        )
        + "."
    )
    if count == 1:
        advice.append("A single node has no redundancy; quorum only matters once a second joins.")
    plain_tolerance = (
        _quick_tolerance(_plain(options))[0]
        if (options.has_qdevice or options.two_node or options.auto_tie_breaker.value != "none")
        else tolerated
    )
    if count == 2 and not options.has_qdevice:
        if options.two_node:
            advice.append(
                "two_node keeps the survivor quorate when one node fails, but on a network "
                "split both nodes stay quorate: only fencing decides who wins, and a node booting "
                "alone waits for its peer (wait_for_all). Proxmox VE prefers a QDevice: "
                "two_node and a QDevice cannot be combined."
            )
        else:
            advice.append(
                "With 2 nodes, losing either one stops the cluster (quorum 2 of 2); "
                "'pvectl expected 1' is the manual way out. Add a QDevice (ffsplit, 1 vote) on a "
                "third machine: the survivor then keeps quorum and a split has exactly one winner."
            )
    if not options.has_qdevice and count >= 2 and uniform and even_votes and count > 2:
        with_ffsplit = _with_qdevice(options, "ffsplit")
        gain = _quick_tolerance(with_ffsplit)[0] if with_ffsplit else None
        advice.append(
            f"An even node count survives no more failures than {count - 1} nodes would "
            f"({plain_tolerance}), and a {count // 2}:{count // 2} split blocks both halves. "
            + (
                f"A QDevice with ffsplit (1 vote) raises that to {gain} and gives a 50:50 split "
                "to one side (the one with the lowest node id by default)."
                if gain is not None
                else "A QDevice with ffsplit (1 vote) decides 50:50 splits."
            )
        )
    if not options.has_qdevice and count >= 3 and not even_votes:
        with_lms = _with_qdevice(options, "lms") if uniform else None
        lms_up, lms_down = _quick_tolerance(with_lms) if with_lms else (None, None)
        advice.append(
            "An odd vote count already breaks ties; a QDevice is not recommended here."
            + (
                f" With lms ({count - 1} votes) the cluster would survive {_n(lms_up, 'failure')} "
                "(down to one node) while qnetd is reachable, but "
                + (
                    f"only {lms_down} if qnetd is down: the qnetd host becomes almost a "
                    "single point of failure, and the last node gets every HA recovery."
                    if lms_down is not None and lms_down >= 0
                    else "none at all if qnetd is down."
                )
                if lms_up is not None
                else ""
            )
        )
    if options.has_qdevice:
        down = report.max_failures_always_survived_qnetd_down
        if options.qdevice_algorithm == "ffsplit" and not even_votes:
            advice.append(
                "ffsplit is meant for even node counts: on this odd cluster the QDevice vote "
                f"adds no failure tolerance ({plain_tolerance} without it) and, with qnetd "
                f"down, the cluster survives {_n(max(down or 0, 0), 'failure')}."
            )
        elif options.qdevice_algorithm == "lms":
            advice.append(
                f"lms gives the QDevice {options.qdevice_votes} votes: with qnetd up the cluster "
                f"survives {_n(tolerated, 'failure')}, with qnetd down only "
                f"{max(down or 0, 0)}. Use it on odd clusters only with care: qnetd becomes "
                "nearly a single point of failure."
            )
        else:
            advice.append(
                f"With the QDevice the cluster survives {_n(tolerated, 'failure')} "
                f"({plain_tolerance} without it); if qnetd is down it survives "
                f"{max(down or 0, 0)}."
            )
    if not uniform:
        advice.append(
            "Nodes have different vote counts: failure tolerance depends on which nodes fail "
            "(see the table); last_man_standing and automatic QDevice votes need 1 vote per node."
        )
    if options.last_man_standing:
        advice.append(
            "last_man_standing: after each failure, once the "
            f"{options.last_man_standing_window_ms} ms window passes with quorum held, expected "
            "votes shrink to the nodes present, so failures one at a time can go further than "
            "simultaneous ones (column 'one at a time')."
        )
    if options.auto_tie_breaker is not TieBreaker.NONE:
        advice.append(
            "auto_tie_breaker: on an exact half split the half holding the tie-breaker node "
            f"({options.auto_tie_breaker.value}) keeps quorum, the other half stops."
        )
    brain = [s for s in report.splits if s.quorate_a and s.quorate_b]
    if brain:
        advice.append(
            f"{len(brain)} network split(s) leave both sides quorate: make sure fencing works."
        )
    return WhatIfReport(**{**report.__dict__, "advice": tuple(advice)})


# --- building options from what a target reports ------------------------------------------------


def options_for_nodes(
    node_count: int,
    votes: Iterable[int] | None = None,
    *,
    two_node: bool = False,
    qdevice: str | None = None,
    last_man_standing: bool = False,
    auto_tie_breaker: bool = False,
    wait_for_all: bool | None = None,
) -> QuorumOptions:
    """A nodelist of ``node_count`` nodes with ids 1..N (for ``pvectl quorum what-if``)."""
    vote_list = list(votes) if votes is not None else [1] * node_count
    if len(vote_list) != node_count:
        raise ValueError(f"{len(vote_list)} vote values given for {node_count} nodes")
    return QuorumOptions.build(
        [(index + 1, v) for index, v in enumerate(vote_list)],
        two_node=two_node,
        wait_for_all=wait_for_all,
        last_man_standing=last_man_standing,
        auto_tie_breaker=auto_tie_breaker,
        qdevice_model="net" if qdevice else "",
        qdevice_votes=1 if qdevice == "ffsplit" else None,
        qdevice_algorithm=qdevice or "ffsplit",
    )


def options_from_status(status: QuorumStatus) -> tuple[QuorumOptions, dict[int, str]]:
    """The configuration behind a status, inferred from the members, flags and expected
    votes (missing votes counted as 1-vote nodes); with a corosync.conf at hand,
    ``pvectl.quorum_conf.options_from_status`` reads it instead."""
    names = {m.node_id: m.name for m in status.members}
    node_votes = [(m.node_id, m.votes) for m in status.members]
    qdevice_votes = status.qdevice.votes if status.qdevice else 0
    missing = max(status.expected_votes - sum(v for _, v in node_votes) - qdevice_votes, 0)
    next_id = max((node_id for node_id, _ in node_votes), default=0) + 1
    for offset in range(missing):
        node_votes.append((next_id + offset, 1))
        names[next_id + offset] = f"missing{offset + 1}"
    algorithm = "ffsplit" if qdevice_votes == 1 else "lms"
    return (
        QuorumOptions.build(
            node_votes,
            two_node="2Node" in status.flags,
            wait_for_all="WaitForAll" in status.flags,
            last_man_standing="LastManStanding" in status.flags,
            auto_tie_breaker="AutoTieBreaker" in status.flags,
            allow_downscale="AllowDownscale" in status.flags,
            qdevice_model="net" if status.qdevice else "",
            qdevice_votes=qdevice_votes if status.qdevice else None,
            qdevice_algorithm=algorithm,
        ),
        names,
    )
