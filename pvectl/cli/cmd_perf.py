"""``pvectl perf``: pveperf's figures, measured honestly, plus durable-write latency.

Thin: the probe measures, the report judges, this module only wires options, the
progress display and the output. Remote hosts (``--host``, added with the SSH
transport) feed their probe's stdout to the same ``parse_probe_output``.
"""

from __future__ import annotations

import argparse
import signal
import sys
from enum import StrEnum
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pvectl.cli.options import (
    AcceptNewHostKeyOption,
    ClusterNameOption,
    ConnectTimeoutOption,
    HostsOption,
    OutputFormatOption,
)
from pvectl.cli.output import OutputFormat, emit, stderr_console
from pvectl.cli.remote import DEFAULT_CONNECT_TIMEOUT, only_result, open_session, remote_hosts
from pvectl.errors import ExitCode, PvectlError, UsageError

if TYPE_CHECKING:
    from rich.progress import TaskID

    from pvectl.perf.report import PerfReport
    from pvectl.perf.run import PerfOptions
    from pvectl.targets.hosts import HostSpec
    from pvectl.targets.ssh import SshRunner

# The probe, the report, rich and the SSH targets are imported inside the functions
# (deferred for start-up time: building the command tree must not load them).


class PerfLayout(StrEnum):
    pvectl = "pvectl"
    pveperf = "pveperf"


class Pattern(StrEnum):
    seq = "seq"
    same = "same"


class SyncKind(StrEnum):
    fsync = "fsync"
    fdatasync = "fdatasync"
    odsync = "odsync"


class Test(StrEnum):
    cpu = "cpu"
    regex = "regex"
    hdsize = "hdsize"
    reads = "reads"
    seek = "seek"
    fsync = "fsync"
    durable = "durable"
    dns = "dns"


class _ProgressDisplay:
    """One line per test on stderr, advanced by the probe's begin/done events."""

    def __init__(self, enabled: bool) -> None:
        from rich.progress import (
            BarColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        console = stderr_console()
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[budget]}"),
            console=console,
            transient=True,
            disable=not (enabled and console.is_terminal),
        )
        self._current: TaskID | None = None

    def __enter__(self) -> _ProgressDisplay:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def __call__(self, event: dict[str, Any]) -> None:
        if self._current is not None:
            self._progress.update(self._current, completed=1, total=1)
        if event.get("event") != "begin":
            self._current = None
            return
        seconds = float(event.get("seconds", 0))
        self._current = self._progress.add_task(
            str(event.get("label", event.get("test", ""))),
            total=None,
            budget=f"~{seconds:.1f} s" if seconds else "",
        )


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _check_size(text: str, option: str) -> str:
    from pvectl.perf import probe

    parse = probe.parse_block_size if option == "--block-size" else probe.parse_size
    try:
        parse(text)
    except argparse.ArgumentTypeError as exc:
        raise UsageError(f"{option}: {exc}") from None
    return text


def perf(
    target: Annotated[
        str,
        typer.Argument(
            metavar="PATH", help="Directory to test (default /, as pveperf) or a block device."
        ),
    ] = "/",
    layout: Annotated[
        PerfLayout,
        typer.Option(
            "--format", help="pveperf: print exactly pveperf's lines.", case_sensitive=False
        ),
    ] = PerfLayout.pvectl,
    output_format: OutputFormatOption = OutputFormat.text,
    pveperf_compat: Annotated[
        bool,
        typer.Option(
            "--pveperf-compat",
            help="Reproduce pveperf's quirks (fsync before the write; regex count over ~3 s).",
        ),
    ] = False,
    quick: Annotated[bool, typer.Option("--quick", help="Whole run under 5 s.")] = False,
    runtime: Annotated[
        float | None,
        typer.Option(
            "--runtime",
            metavar="SECONDS",
            help="Seconds of timed tests (default 16, --quick 3).",
            min=0.05,
        ),
    ] = None,
    block_size: Annotated[
        str,
        typer.Option(
            "--block-size", metavar="SIZE", help="Durable-write block size (4k, 8k, 1m...)."
        ),
    ] = "4k",
    file_size: Annotated[
        str | None,
        typer.Option(
            "--file-size",
            metavar="SIZE",
            help="Fallocated file for the durable writes (64m; --quick 16m).",
        ),
    ] = None,
    pattern: Annotated[
        Pattern,
        typer.Option("--pattern", help="seq: sequential as fio rw=write; same: one offset."),
    ] = Pattern.seq,
    direct: Annotated[
        bool, typer.Option("--direct", help="Read tests with O_DIRECT (no page cache).")
    ] = False,
    skip: Annotated[
        list[Test] | None,
        typer.Option("--skip", metavar="TEST", help="Leave a test out (repeatable)."),
    ] = None,
    sync: Annotated[
        list[SyncKind] | None,
        typer.Option(
            "--sync", metavar="KIND", help="Durable-write kinds to run (repeatable; default all)."
        ),
    ] = None,
    resolv_conf: Annotated[
        str | None,
        typer.Option("--resolv-conf", metavar="PATH", help="Resolver config for the DNS tests."),
    ] = None,
    dns_timeout: Annotated[
        float | None,
        typer.Option("--dns-timeout", metavar="SECONDS", help="Seconds per DNS query (default 2)."),
    ] = None,
    dns_port: Annotated[int | None, typer.Option("--dns-port", hidden=True)] = None,
    drop_caches: Annotated[
        bool,
        typer.Option(
            "--drop-caches/--no-drop-caches",
            help="With --pveperf-compat: write 3 to /proc/sys/vm/drop_caches as pveperf.",
        ),
    ] = True,
    progress: Annotated[
        bool, typer.Option("--progress/--no-progress", help="Progress on stderr (terminal).")
    ] = True,
    show_histogram: Annotated[
        bool, typer.Option("--histogram/--no-histogram", help="Draw the fsync latency histogram.")
    ] = True,
    host: HostsOption = None,
    cluster: ClusterNameOption = None,
    accept_new_host_key: AcceptNewHostKeyOption = False,
    connect_timeout: ConnectTimeoutOption = DEFAULT_CONNECT_TIMEOUT,
) -> None:
    """CPU, regex, disk, fsync and DNS figures as pveperf, plus fsync latency and a verdict.

    Writes only in a temporary subdirectory of PATH (removed afterwards, also on
    Ctrl-C); a block device is only read, its mounted filesystem gets the fsync tests.
    """
    from pvectl.perf.report import parse_probe_output
    from pvectl.perf.run import PerfOptions, local_probe_args, run_probe_locally

    if layout is PerfLayout.pveperf and output_format is not OutputFormat.text:
        raise UsageError("--format pveperf is a text layout; drop --output-format")
    _check_size(block_size, "--block-size")
    if file_size is not None:
        _check_size(file_size, "--file-size")
    opts = PerfOptions(
        target=target,
        compat=pveperf_compat,
        quick=quick,
        runtime=runtime,
        block_size=block_size,
        file_size=file_size,
        pattern=pattern.value,
        direct=direct,
        skip=tuple(t.value for t in (skip or [])),
        sync_kinds=tuple(k.value for k in (sync or [])),
        resolv_conf=resolv_conf,
        dns_port=dns_port,
        dns_timeout=dns_timeout,
        drop_caches=drop_caches,
        pveperf_layout=layout is PerfLayout.pveperf,
    )
    hosts = remote_hosts(host, cluster)
    if hosts:
        _perf_remote(
            opts,
            hosts,
            (accept_new_host_key, connect_timeout),
            layout,
            output_format,
            show_histogram,
        )
        return
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        with _ProgressDisplay(progress) as display:
            text = run_probe_locally(local_probe_args(opts), display)
    except KeyboardInterrupt:
        raise PvectlError(
            "interrupted (the test directory has been removed)", ExitCode.INTERRUPTED
        ) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    report = parse_probe_output(text)
    _emit(report, layout, output_format, show_histogram)


def _emit(
    report: PerfReport, layout: PerfLayout, output_format: OutputFormat, show_histogram: bool
) -> None:
    from pvectl.cli import perf_text
    from pvectl.perf.pveperf_format import format_pveperf, mode_note

    if layout is PerfLayout.pveperf:
        stderr_console().print(f"pvectl: {mode_note(report)}", markup=False)
        for warning in report.warnings:
            stderr_console().print(f"pvectl: warning: {warning}", markup=False)
        sys.stdout.write(format_pveperf(report))
        sys.stdout.flush()
        if report.stopped is not None:  # where pveperf dies: its lines so far, exit 1
            stderr_console().print(f"pvectl: {report.stopped}", markup=False)
            raise typer.Exit(int(ExitCode.ERROR))
        return
    emit(report, output_format, lambda: perf_text.render(report, show_histogram), kind="perf")


def _perf_remote(
    opts: PerfOptions,
    hosts: list[HostSpec],
    ssh_options: tuple[bool, float],
    layout: PerfLayout,
    output_format: OutputFormat,
    show_histogram: bool,
) -> None:
    """The probe on each host (in parallel: separate machines, separate disks)."""
    from pvectl.cli import side_by_side_text
    from pvectl.perf.pveperf_format import format_pveperf
    from pvectl.perf.run import probe_args
    from pvectl.targets.probes import probe_timeout, run_perf_probe
    from pvectl.targets.remote import across_hosts

    args = probe_args(opts)  # a device's mountpoint is the probe's business there
    runtime = opts.runtime if opts.runtime is not None else (3.5 if opts.quick else None)
    timeout = probe_timeout(runtime)

    def job(runner: SshRunner) -> PerfReport:
        return run_perf_probe(runner, args, timeout)

    with open_session(*ssh_options) as ssh:
        outcomes = across_hosts(ssh, hosts, job)
    if len(outcomes) == 1:
        _emit(only_result(outcomes[0]), layout, output_format, show_histogram)
        return
    if layout is PerfLayout.pveperf:
        for outcome in outcomes:
            sys.stdout.write(f"== {outcome.host} ==\n")
            if outcome.result is not None:
                sys.stdout.write(format_pveperf(outcome.result))
                if outcome.result.stopped is not None:
                    stderr_console().print(
                        f"pvectl: {outcome.host}: {outcome.result.stopped}", markup=False
                    )
            else:
                sys.stdout.write(f"error: {outcome.error}\n")
        sys.stdout.flush()
    else:
        emit(
            outcomes,
            output_format,
            lambda: side_by_side_text.perf_side_by_side(outcomes),
            kind="perf-hosts",
        )
    stopped = any(o.result is not None and o.result.stopped for o in outcomes)
    if stopped or any(o.error is not None for o in outcomes):
        raise typer.Exit(int(ExitCode.ERROR))


def register(app: typer.Typer) -> None:
    app.command()(perf)
