"""The human view of a what-if report: failure table, tolerance, splits, advice (rich)."""

from __future__ import annotations

from collections import defaultdict

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from pvectl.quorum.whatif import QNETD, FailureOutcome, WhatIfReport

FULL_TABLE_ROWS = 40  # beyond this, one summary row per number of failed nodes


def _yes(value: bool) -> Text:
    return Text("yes", style="green") if value else Text("no", style="bold red")


def _names(names: tuple[str, ...]) -> str:
    return ", ".join(names) if names else "-"


def _failure_table(report: WhatIfReport) -> Table:
    lms = any(f.quorate_one_at_a_time is not None for f in report.failures)
    table = Table(title="Failures (nodes down at the same time)", title_justify="left")
    if report.exhaustive and len(report.failures) <= FULL_TABLE_ROWS:
        table.add_column("failed")
        table.add_column("votes left", justify="right")
        table.add_column("quorum", justify="right")
        table.add_column("quorate")
        if lms:
            table.add_column("one at a time")
        for row in report.failures:
            cells: list[str | Text] = [
                _names(row.failed) if row.failed else "(none)",
                f"{row.total_votes}/{row.expected_votes}",
                str(row.quorum),
                _yes(row.quorate),
            ]
            if lms:
                cells.append(_yes(bool(row.quorate_one_at_a_time)))
            table.add_row(*cells)
        return table
    if not report.exhaustive:
        table.title = (
            "Failures (any nodes down at the same time: equal votes, only the count matters)"
        )
    table.add_column("nodes failed", justify="right")
    table.add_column("qnetd")
    table.add_column(
        "sets keeping quorum" if report.exhaustive else "keeps quorum", justify="right"
    )
    if report.exhaustive:
        table.add_column("example that loses quorum")
    groups: dict[tuple[int, bool], list[FailureOutcome]] = defaultdict(list)
    for row in report.failures:
        qnetd_down = QNETD in row.failed
        groups[(len(row.failed) - int(qnetd_down), qnetd_down)].append(row)
    for (count, qnetd_down), rows in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        kept = sum(1 for r in rows if r.quorate)
        lost = next((r for r in rows if not r.quorate), None)
        cells = [
            str(count),
            ("down" if qnetd_down else "up") if report.qdevice_votes else "-",
            f"{kept}/{len(rows)}" if report.exhaustive else ("yes" if kept else "no"),
        ]
        if report.exhaustive:
            cells.append(_names(tuple(n for n in lost.failed if n != QNETD)) if lost else "-")
        table.add_row(*cells)
    return table


def _split_lines(report: WhatIfReport) -> list[Text]:
    counts: dict[str, int] = defaultdict(int)
    for split in report.splits:
        counts[split.verdict] += 1
    lines = [
        Text(
            f"Network splits into two groups ({len(report.splits)}): "
            + ", ".join(f"{n} {verdict}" for verdict, n in sorted(counts.items()))
        )
    ]
    half = len(report.nodes) // 2
    for split in report.splits:
        even = len(split.side_a) == half and len(split.side_b) == len(report.nodes) - half
        if split.verdict == "split brain" or (even and len(report.nodes) % 2 == 0):
            lines.append(
                Text(
                    f"  {_names(split.side_a)} | {_names(split.side_b)}: {split.verdict}",
                    style="red" if split.verdict == "split brain" else "",
                )
            )
    return lines


def render(report: WhatIfReport) -> RenderableType:
    qdevice = (
        f", QDevice {report.qdevice_algorithm} {report.qdevice_votes} vote(s)"
        if report.qdevice_votes
        else ""
    )
    header = Text(
        f"What if: {len(report.nodes)} node(s) "
        f"({', '.join(f'{n.name}={n.votes}' for n in report.nodes)}), "
        f"expected votes {report.expected_votes}, quorum {report.quorum}{qdevice}",
        style="bold",
    )
    parts: list[RenderableType] = [header]
    if report.options:
        parts.append(Text("options: " + ", ".join(report.options)))
    parts.append(_failure_table(report))
    tolerance = f"Failures always survived: {report.max_failures_always_survived}"
    if report.max_failures_survivable > report.max_failures_always_survived:
        tolerance += f" (up to {report.max_failures_survivable} if the right nodes fail)"
    if report.max_failures_always_survived_qnetd_down is not None:
        down = report.max_failures_always_survived_qnetd_down
        tolerance += (
            f"; with qnetd down: {down}" if down >= 0 else "; losing qnetd alone loses quorum"
        )
    parts.append(Text(tolerance, style="bold"))
    if len(report.nodes) > 1:
        parts.extend(_split_lines(report))
    for note in report.notes:
        parts.append(Text(f"corosync: {note}", style="yellow"))
    parts.append(Text("Advice:", style="bold"))
    parts.extend(Text(f"  - {line}") for line in report.advice)
    return Group(*parts)
