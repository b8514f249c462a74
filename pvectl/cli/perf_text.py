"""The human view of a perf report: figures, durable writes, a latency histogram, verdict."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from pvectl.perf.report import HistogramBucket, Latency, PerfReport

KIND_LABELS = {
    "fsync": "write + fsync",
    "fdatasync": "write + fdatasync",
    "odsync": "O_DSYNC write",
}


def format_us(us: float) -> str:
    if us >= 1_000_000:
        return f"{us / 1_000_000:.2f} s"
    if us >= 10_000:
        return f"{us / 1000:.1f} ms"
    if us >= 1000:
        return f"{us / 1000:.2f} ms"
    return f"{us:.0f} µs" if us >= 10 else f"{us:.1f} µs"


def format_value(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit in ("matches/s", "fsyncs/s") or unit.startswith("matches per"):
        return f"{value:,.0f} {unit}" if value >= 1000 else f"{value:.2f} {unit}"
    return f"{value:,.2f} {unit}"


def latency_histogram(latency: Latency, width: int = 40, max_rows: int = 16) -> str:
    """One line per log-spaced bucket: range, bar scaled to the fullest bucket, count, %."""
    buckets = list(latency.histogram)
    if not buckets:
        return ""
    while len(buckets) > max_rows:  # halve the resolution until it fits
        merged = []
        for i in range(0, len(buckets), 2):
            pair = buckets[i : i + 2]
            merged.append(
                HistogramBucket(pair[0].low_us, pair[-1].high_us, sum(b.count for b in pair))
            )
        buckets = merged
    peak = max(b.count for b in buckets)
    total = sum(b.count for b in buckets) or 1
    lines = []
    for bucket in buckets:
        cells = bucket.count * width / peak
        bar = "█" * int(cells) + ("▌" if cells - int(cells) >= 0.5 else "")
        if not bar and bucket.count:
            bar = "▏"
        span = f"{format_us(bucket.low_us):>9} - {format_us(bucket.high_us):<9}"
        lines.append(
            f"{span} │{bar:<{width + 1}} {bucket.count:>7} {100 * bucket.count / total:5.1f}%"
        )
    return "\n".join(lines)


def render(report: PerfReport, show_histogram: bool = True) -> RenderableType:
    parts: list[RenderableType] = []
    t = report.target
    where = t.directory or t.argument
    on = f"{t.fs_type} on {t.device}" if t.fs_type else (t.device or "?")
    mode = (
        "pveperf-compat (pveperf's quirks reproduced: fsync before write, regex count over ~3 s)"
        if report.mode == "pveperf-compat"
        else "honest (write then fsync; true per-second rates)"
    )
    parts.append(Text(f"pvectl perf on {report.host}: {where} ({on}); mode: {mode}"))

    figures = Table(title="pveperf figures", title_justify="left", show_lines=False)
    figures.add_column("figure", no_wrap=True)
    figures.add_column("value", justify="right", no_wrap=True)
    figures.add_column("ran", justify="right", no_wrap=True)
    figures.add_column("method", overflow="fold")
    for fig in report.figures:
        value = format_value(fig.value, fig.unit)
        if fig.subject:
            value += f" ({fig.subject})"
        ran = fig.details.get("seconds")
        figures.add_row(fig.label, value, f"{ran:.2f} s" if ran else "", fig.method)
    parts.append(figures)

    if report.durable:
        bs = report.durable[0].block_size
        durable = Table(
            title=f"Durable writes: {bs} B blocks, pattern {report.durable[0].pattern}, "
            + ", ".join(f"{d.kind} ran {d.seconds:.2f} s" for d in report.durable),
            title_justify="left",
        )
        for name in ("sync", "ops/s", "p50", "p90", "p99", "p99.9", "max"):
            durable.add_column(name, justify="left" if name == "sync" else "right", no_wrap=True)
        for d in report.durable:
            lat = d.latency
            cells = (
                [format_us(v) for v in (lat.p50, lat.p90, lat.p99, lat.p99_9, lat.max)]
                if lat
                else ["-"] * 5
            )
            durable.add_row(KIND_LABELS.get(d.kind, d.kind), f"{d.rate:,.0f}", *cells)
        parts.append(durable)

    if show_histogram:
        source = report.durable_result("fsync")
        latency = source.latency if source else None
        title = f"fsync latency ({source.block_size} B write + fsync)" if source else ""
        if latency is None:
            pveperf_fig = report.figure("fsyncs_per_second")
            latency = pveperf_fig.latency if pveperf_fig else None
            title = "fsync latency (pveperf loop)"
        if latency is not None:
            parts.append(Text(f"{title}, {latency.samples} calls:", style="bold"))
            parts.append(Text(latency_histogram(latency)))

    for warning in report.warnings:
        parts.append(Text(f"warning: {warning}", style="yellow"))
    parts.append(Text(f"Verdict: {report.verdict.sentence}", style="bold"))
    return Group(*parts)


def render_side_by_side(reports: list[PerfReport]) -> RenderableType:
    """One column per host (for ``--host A --host B``): pveperf lines, sync rates, p99, class."""
    table = Table(title="pvectl perf", title_justify="left")
    table.add_column("figure", no_wrap=True)
    for report in reports:
        table.add_column(report.host or report.target.argument, justify="right", no_wrap=True)
    keys: list[str] = []
    for report in reports:
        keys += [f.key for f in report.figures if f.key not in keys]
    for key in keys:
        cells = []
        label = key
        for report in reports:
            fig = report.figure(key)
            if fig is not None:
                label = fig.label
            cells.append(format_value(fig.value, fig.unit) if fig is not None else "-")
        table.add_row(label, *cells)
    for kind, name in KIND_LABELS.items():
        results = [r.durable_result(kind) for r in reports]
        if not any(results):
            continue
        table.add_row(f"{name} ops/s", *(f"{d.rate:,.0f}" if d else "-" for d in results))
        table.add_row(
            f"{name} p99",
            *(format_us(d.latency.p99) if d and d.latency else "-" for d in results),
        )
    table.add_row("verdict", *(r.verdict.disk_class_label for r in reports))
    return table
