"""Text for several nodes' answers side by side (``status``/``nodes`` with several hosts)."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from pvectl.cli import pvecm_text
from pvectl.cli.perf_text import format_us, format_value
from pvectl.perf.report import PerfReport
from pvectl.quorum.partitions import ViewComparison
from pvectl.results import Member, NodeList, QuorumStatus
from pvectl.targets.remote import HostOutcome


def _members(members: tuple[Member, ...]) -> str:
    return ", ".join(f"{m.node_id}:{m.name}" for m in members)


def _status_rows(status: QuorumStatus) -> list[str]:
    return [
        "Yes" if status.quorate else "No",
        str(status.node_id),
        str(status.ring_id),
        str(status.nodes),
        _members(status.members),
        str(status.expected_votes),
        str(status.highest_expected),
        str(status.total_votes),
        str(status.quorum),
        " ".join(status.flags),
    ]


_LABELS = (
    "Quorate",
    "Node ID",
    "Ring ID",
    "Nodes",
    "Members",
    "Expected votes",
    "Highest expected",
    "Total votes",
    "Quorum",
    "Flags",
)


def status_side_by_side(comparison: ViewComparison) -> RenderableType:
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("")
    columns: list[list[str]] = []
    for view in comparison.views:
        table.add_column(view.host, overflow="fold")
        if view.status is not None:
            columns.append(_status_rows(view.status))
        else:
            columns.append(["error"] + [""] * (len(_LABELS) - 1))
    for index, label in enumerate(_LABELS):
        table.add_row(label, *(col[index] for col in columns))
    answered = any(view.status is not None for view in comparison.views)
    parts: list[RenderableType] = [table, Text("")] if answered else []
    for view in comparison.views:
        if view.error is not None:
            parts.append(Text(f"error: {view.error}", style="red"))
    style = "bold red" if (comparison.split_brain or not comparison.agree) else "green"
    parts.append(Text(comparison.verdict, style=style))
    return Group(*parts)


def nodes_per_host(outcomes: list[HostOutcome[NodeList]]) -> str:
    chunks: list[str] = []
    for outcome in outcomes:
        chunks.append(f"== {outcome.host} ==\n")
        if outcome.result is not None:
            chunks.append(pvecm_text.pvecm_nodes(outcome.result))
        else:
            chunks.append(f"error: {outcome.error}\n")
        chunks.append("\n")
    return "".join(chunks)


def perf_side_by_side(outcomes: list[HostOutcome[PerfReport]]) -> RenderableType:
    """pveperf's figures, the durable-write loops and the verdict, one column per host."""
    reports = [o.result for o in outcomes if o.result is not None]
    rows: dict[str, dict[str, str]] = {}

    def put(label: str, host: str, value: str) -> None:
        rows.setdefault(label, {})[host] = value

    for outcome in outcomes:
        report = outcome.result
        if report is None:
            continue
        where = report.target.directory or report.target.argument
        put("target", outcome.host, f"{where} ({report.target.fs_type or '?'})")
        for fig in report.figures:
            put(fig.label, outcome.host, format_value(fig.value, fig.unit))
        for durable in report.durable:
            put(f"{durable.kind} ops/s", outcome.host, f"{durable.rate:,.0f}")
            if durable.latency is not None:
                put(f"{durable.kind} p99", outcome.host, format_us(durable.latency.p99))
        put("disk class", outcome.host, report.verdict.disk_class_label)
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("")
    for outcome in outcomes:
        table.add_column(outcome.host, justify="right")
    for label, values in rows.items():
        table.add_row(label, *(values.get(o.host, "-") for o in outcomes))
    parts: list[RenderableType] = [table] if reports else []
    for outcome in outcomes:
        if outcome.result is not None:
            parts.append(Text(f"{outcome.host}: {outcome.result.verdict.sentence}"))
        else:
            parts.append(Text(f"error: {outcome.error}", style="red"))
    return Group(*parts)
