"""pveperf's exact output layout, line by line, from a report.

Labels are padded to 19 columns, formats are pveperf's printf formats, "GB" and "MB"
are pveperf's names for GiB and MiB, and a line is left out exactly when pveperf leaves
it out (no block device behind the path, no fsync test, no one-domain search line),
or when pvectl skipped that test.
"""

from __future__ import annotations

from pvectl.perf.report import Figure, PerfReport


def _line(figure: Figure) -> str | None:
    value = figure.value
    if value is None:
        return None
    key = figure.key
    if key == "cpu_bogomips":
        return f"CPU BOGOMIPS:      {value:.2f}"
    if key == "regex_per_second":
        return f"REGEX/SECOND:      {int(value)}"  # Perl's %d truncates
    if key == "hd_size":
        return f"HD SIZE:           {value:.2f} GB ({figure.subject})"
    if key == "buffered_reads":
        return f"BUFFERED READS:    {value:.2f} MB/sec"
    if key == "average_seek_time":
        return f"AVERAGE SEEK TIME: {value:.2f} ms"
    if key == "fsyncs_per_second":
        return f"FSYNCS/SECOND:     {value:.2f}"
    if key == "dns_ext":
        return f"DNS EXT:           {value:0.2f} ms"
    if key == "dns_int":
        return f"DNS INT:           {value:0.2f} ms ({figure.subject})"
    return None


PVEPERF_ORDER = (
    "cpu_bogomips",
    "regex_per_second",
    "hd_size",
    "buffered_reads",
    "average_seek_time",
    "fsyncs_per_second",
    "dns_ext",
    "dns_int",
)


def format_pveperf(report: PerfReport) -> str:
    lines = []
    for key in PVEPERF_ORDER:
        figure = report.figure(key)
        line = _line(figure) if figure is not None else None
        if line is not None:
            lines.append(line + "\n")
    return "".join(lines)


def mode_note(report: PerfReport) -> str:
    """What the numbers mean: said on stderr so stdout stays pveperf's layout."""
    if report.mode == "pveperf-compat":
        return (
            "pveperf-compat: FSYNCS/SECOND fsyncs a just-truncated file before writing and "
            "REGEX/SECOND is a count over ~3 s, as pveperf does"
        )
    return (
        "honest mode: FSYNCS/SECOND writes then fsyncs and REGEX/SECOND is a true per-second "
        "rate; --pveperf-compat reproduces pveperf's numbers"
    )
