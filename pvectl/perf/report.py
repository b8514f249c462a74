"""What ``pvectl perf`` found, as frozen dataclasses, and the verdict on the disk.

The probe (local or remote) speaks JSON; ``parse_probe_output`` turns that into a
``PerfReport`` so every host goes through the same code. The verdict is a pure function
of the figures, so tests drive it with injected timings instead of real disks.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pvectl.errors import ExitCode, PvectlError
from pvectl.perf.probe import summarize_latencies

# The seed article's table, as bands of 4 KiB write+fsync per second (lower bounds).
# A USB stick did 30-50/s there, an SSD 3,000+; flushes acknowledged from a
# power-safe cache (PLP, RAID BBU, a hypervisor's write-back cache) go far beyond.
DISK_CLASSES: tuple[tuple[float, str, str], ...] = (
    (0.0, "usb-sd", "USB stick / SD card"),
    (60.0, "hdd", "HDD"),
    (500.0, "ssd", "SATA/NVMe SSD"),
    (5000.0, "ssd-plp", "enterprise SSD with PLP"),
)
PVEPERF_MIN_FSYNCS = 200.0  # pveperf docs: FSYNCS/SECOND "should be greater than 200"
ETCD_MAX_FDATASYNC_P99_MS = 10.0  # etcd: 99th percentile of WAL fdatasync under 10 ms
MEMORY_FS_TYPES = frozenset({"tmpfs", "ramfs", "devtmpfs", "hugetlbfs"})


@dataclass(frozen=True)
class FsyncFigures:
    """A short durable-write measurement of one directory: what ``check`` judges a disk by."""

    path: str
    fsyncs_per_second: float
    p99_ms: float
    verdict: str | None = None  # the perf probe's disk class for this rate
    fs_type: str | None = None


@dataclass(frozen=True)
class HistogramBucket:
    low_us: float
    high_us: float
    count: int


@dataclass(frozen=True)
class Latency:
    """Distribution of one call's duration, in microseconds (nearest-rank percentiles)."""

    samples: int
    min: float
    mean: float
    p50: float
    p90: float
    p99: float
    p99_9: float
    max: float
    unit: str = "us"
    histogram: tuple[HistogramBucket, ...] = ()


@dataclass(frozen=True)
class Figure:
    """One pveperf line: its value, unit and how it was measured."""

    key: str
    label: str
    value: float | None
    unit: str
    method: str
    subject: str | None = None  # HD SIZE's device, DNS INT's domain
    latency: Latency | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DurableResult:
    """A durable-write loop: block writes made durable by fsync, fdatasync or O_DSYNC."""

    kind: str  # fsync | fdatasync | odsync
    rate: float
    rate_unit: str
    ops: int
    seconds: float
    block_size: int
    pattern: str
    method: str
    latency: Latency | None


@dataclass(frozen=True)
class TargetInfo:
    argument: str
    kind: str
    directory: str | None
    device: str | None
    read_device: str | None
    mountpoint: str | None
    fs_type: str | None
    size_bytes: int
    available_bytes: int


@dataclass(frozen=True)
class Verdict:
    disk_class: str  # usb-sd | hdd | ssd | ssd-plp | memory | unknown
    disk_class_label: str
    fsync_rate: float | None
    fsync_rate_source: str
    pveperf_fsyncs: float | None
    pveperf_ok: bool | None  # FSYNCS/SECOND > 200
    fdatasync_p99_ms: float | None
    etcd_ok: bool | None  # fdatasync p99 < 10 ms
    sentence: str


@dataclass(frozen=True)
class PerfReport:
    host: str
    mode: str  # honest | pveperf-compat
    probe_version: int
    target: TargetInfo
    settings: dict[str, Any]
    figures: tuple[Figure, ...]
    durable: tuple[DurableResult, ...]
    warnings: tuple[str, ...]
    verdict: Verdict
    elapsed_s: float
    # --format pveperf only: why the run stopped where pveperf stops (exit 1), else None
    stopped: str | None = None

    def figure(self, key: str) -> Figure | None:
        return next((f for f in self.figures if f.key == key), None)

    def durable_result(self, kind: str) -> DurableResult | None:
        return next((d for d in self.durable if d.kind == kind), None)


# ---------------------------------------------------------------- verdict (pure)


def classify_rate(rate: float) -> tuple[str, str]:
    key, label = DISK_CLASSES[0][1], DISK_CLASSES[0][2]
    for lower, band_key, band_label in DISK_CLASSES:
        if rate >= lower:
            key, label = band_key, band_label
    return key, label


def _fmt_rate(rate: float) -> str:
    return f"{rate:,.0f}" if rate >= 100 else f"{rate:.1f}"


def make_verdict(
    durable_fsync_rate: float | None,
    pveperf_fsyncs: float | None,
    fdatasync_p99_ms: float | None,
    fs_type: str | None,
    compat: bool = False,
    block_size: int = 4096,
) -> Verdict:
    """Place the disk in the seed's table and against pveperf's and etcd's thresholds.

    The class uses the fio-equivalent 4 KiB write+fsync rate when measured, else
    pveperf's FSYNCS/SECOND (a compat-mode figure is an fsync of an empty file and
    only stands in when nothing better was measured).
    """
    if durable_fsync_rate is not None:
        rate: float | None = durable_fsync_rate
        size = f"{block_size // 1024} KiB" if block_size % 1024 == 0 else f"{block_size} B"
        source = f"{size} write + fsync"
    elif pveperf_fsyncs is not None:
        rate = pveperf_fsyncs
        source = "pveperf FSYNCS/SECOND" + (" (compat: fsync of an empty file)" if compat else "")
    else:
        rate, source = None, "none"
    pveperf_ok = None if pveperf_fsyncs is None else pveperf_fsyncs > PVEPERF_MIN_FSYNCS
    etcd_ok = None if fdatasync_p99_ms is None else fdatasync_p99_ms < ETCD_MAX_FDATASYNC_P99_MS
    if fs_type in MEMORY_FS_TYPES:
        return Verdict(
            "memory",
            f"memory ({fs_type})",
            rate,
            source,
            pveperf_fsyncs,
            pveperf_ok,
            fdatasync_p99_ms,
            etcd_ok,
            f"{fs_type} keeps files in RAM and fsync returns at once, so these figures say "
            "nothing about a disk: run pvectl perf on the system disk's filesystem instead.",
        )
    if rate is None:
        return Verdict(
            "unknown",
            "unknown",
            None,
            source,
            pveperf_fsyncs,
            pveperf_ok,
            fdatasync_p99_ms,
            etcd_ok,
            "No fsync test ran, so the disk cannot be placed (the read tests alone say little "
            "about cluster stability).",
        )
    key, label = classify_rate(rate)
    checks = []
    if pveperf_ok is not None:
        checks.append(
            f"{'passes' if pveperf_ok else 'fails'} pveperf's > {PVEPERF_MIN_FSYNCS:.0f} "
            f"fsyncs/s ({pveperf_fsyncs or 0.0:,.2f})"
        )
    if etcd_ok is not None:
        checks.append(
            f"{'meets' if etcd_ok else 'misses'} etcd's fdatasync p99 < "
            f"{ETCD_MAX_FDATASYNC_P99_MS:.0f} ms ({fdatasync_p99_ms:.2f} ms)"
        )
    tail = (" and " + " and ".join(checks)) if checks else ""
    sentence = f"{_fmt_rate(rate)} syncs/s ({source}) puts this disk in the {label} class{tail}."
    if key == "ssd-plp":
        sentence = sentence[:-1] + (
            " (a RAID BBU or a hypervisor's write-back cache acknowledging flushes looks the same)."
        )
    return Verdict(
        key,
        label,
        rate,
        source,
        pveperf_fsyncs,
        pveperf_ok,
        fdatasync_p99_ms,
        etcd_ok,
        sentence,
    )


def verdict_for(
    figures: Sequence[Figure], durable: Sequence[DurableResult], fs_type: str | None, mode: str
) -> Verdict:
    fsync = next((d for d in durable if d.kind == "fsync"), None)
    fdatasync = next((d for d in durable if d.kind == "fdatasync"), None)
    pveperf = next((f for f in figures if f.key == "fsyncs_per_second"), None)
    p99_ms = (
        fdatasync.latency.p99 / 1000.0
        if fdatasync is not None and fdatasync.latency is not None
        else None
    )
    return make_verdict(
        fsync.rate if fsync is not None else None,
        pveperf.value if pveperf is not None else None,
        p99_ms,
        fs_type,
        compat=mode == "pveperf-compat",
        block_size=fsync.block_size if fsync is not None else 4096,
    )


# ---------------------------------------------------------------- building results


def latency_from_dict(data: dict[str, Any] | None) -> Latency | None:
    if not data or not data.get("samples"):
        return None
    return Latency(
        samples=int(data["samples"]),
        min=float(data["min"]),
        mean=float(data["mean"]),
        p50=float(data["p50"]),
        p90=float(data["p90"]),
        p99=float(data["p99"]),
        p99_9=float(data["p99_9"]),
        max=float(data["max"]),
        unit=str(data.get("unit", "us")),
        histogram=tuple(
            HistogramBucket(float(lo), float(hi), int(n)) for lo, hi, n in data.get("histogram", ())
        ),
    )


def durable_from_timings(
    kind: str,
    latencies_ns: Sequence[int],
    elapsed_s: float,
    block_size: int = 4096,
    pattern: str = "seq",
) -> DurableResult:
    """A DurableResult from raw timings (what the probe measures, or a test injects)."""
    return DurableResult(
        kind=kind,
        rate=round(len(latencies_ns) / elapsed_s, 2) if elapsed_s > 0 else 0.0,
        rate_unit="ops/s",
        ops=len(latencies_ns),
        seconds=elapsed_s,
        block_size=block_size,
        pattern=pattern,
        method="injected timings",
        latency=latency_from_dict(summarize_latencies(latencies_ns)),
    )


_FIGURE_KEYS = {"key", "label", "value", "unit", "method", "latency"}


def _figure(data: dict[str, Any]) -> Figure:
    details = {k: v for k, v in data.items() if k not in _FIGURE_KEYS}
    subject = details.get("device") if data["key"] == "hd_size" else details.get("domain")
    value = data.get("value")
    return Figure(
        key=str(data["key"]),
        label=str(data["label"]),
        value=None if value is None else float(value),
        unit=str(data["unit"]),
        method=str(data["method"]),
        subject=None if subject is None else str(subject),
        latency=latency_from_dict(data.get("latency")),
        details=details,
    )


def _durable(data: dict[str, Any]) -> DurableResult:
    return DurableResult(
        kind=str(data["kind"]),
        rate=float(data["rate"]),
        rate_unit=str(data["rate_unit"]),
        ops=int(data["ops"]),
        seconds=float(data["seconds"]),
        block_size=int(data["block_size"]),
        pattern=str(data["pattern"]),
        method=str(data["method"]),
        latency=latency_from_dict(data.get("latency")),
    )


def report_from_dict(doc: dict[str, Any]) -> PerfReport:
    t = doc["target"]
    target = TargetInfo(
        argument=str(t["argument"]),
        kind=str(t["kind"]),
        directory=t.get("directory"),
        device=t.get("device"),
        read_device=t.get("read_device"),
        mountpoint=t.get("mountpoint"),
        fs_type=t.get("fs_type"),
        size_bytes=int(t.get("size_bytes", 0)),
        available_bytes=int(t.get("available_bytes", 0)),
    )
    figures = tuple(_figure(f) for f in doc.get("figures", ()))
    durable = tuple(_durable(d) for d in doc.get("durable", ()))
    mode = str(doc["mode"])
    return PerfReport(
        host=str(doc.get("hostname", "")),
        mode=mode,
        probe_version=int(doc["probe_version"]),
        target=target,
        settings=dict(doc.get("settings", {})),
        figures=figures,
        durable=durable,
        warnings=tuple(str(w) for w in doc.get("warnings", ())),
        verdict=verdict_for(figures, durable, target.fs_type, mode),
        elapsed_s=float(doc.get("elapsed_s", 0.0)),
        stopped=str(doc["stopped"]) if doc.get("stopped") else None,
    )


def parse_probe_output(json_text: str) -> PerfReport:
    """The probe's stdout (local or remote) as a report; its error document as PvectlError."""
    try:
        doc = json.loads(json_text)
    except json.JSONDecodeError as exc:
        raise PvectlError(
            f"perf probe output is not JSON ({exc.msg} at char {exc.pos})", ExitCode.DATA
        ) from None
    if not isinstance(doc, dict):
        raise PvectlError("perf probe output is not a JSON object", ExitCode.DATA)
    error = doc.get("error")
    if isinstance(error, dict):
        code = int(error.get("exit_code", 1))
        try:
            exit_code = ExitCode(code)
        except ValueError:
            exit_code = ExitCode.ERROR
        raise PvectlError(str(error.get("message", "perf probe failed")), exit_code)
    try:
        return report_from_dict(doc)
    except (KeyError, TypeError, ValueError) as exc:
        raise PvectlError(f"perf probe output is incomplete: {exc!r}", ExitCode.DATA) from None
