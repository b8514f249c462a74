"""Running pvectl's stdlib-only perf probe on a node: ``python3 - ARGS`` with the probe's
source on stdin, through any ``CommandRunner`` (SSH, this machine, a lab node).

Nothing is installed on the node; only python3 must be there (Proxmox VE ships it).
"""

from __future__ import annotations

import subprocess

from pvectl.errors import ExitCode, PvectlError
from pvectl.perf import probe
from pvectl.perf.report import FsyncFigures, PerfReport, parse_probe_output
from pvectl.perf.run import PROBE_SOURCE
from pvectl.targets.runner import CommandResult, CommandRunner, LocalRunner

# Where pmxcfs keeps config.db on Proxmox; elsewhere corosync's state dir, then /var/tmp
# (not /tmp: often tmpfs, where fsync costs nothing and proves nothing).
FSYNC_DIRS = ("/var/lib/pve-cluster", "/var/lib/corosync", "/var/tmp")
_NOT_DURABLE_TESTS = ("cpu", "regex", "hdsize", "reads", "seek", "fsync", "dns")


def run_python(
    runner: CommandRunner, source: str, args: list[str], timeout: float
) -> CommandResult:
    """``python3 - ARGS`` with ``source`` on stdin, where ``runner`` runs commands."""
    argv = ["python3", "-", *args]
    run_input = getattr(runner, "run_input", None)
    if run_input is not None:
        result: CommandResult = run_input(argv, source, timeout)
        return result
    prefix = runner.prefix if isinstance(runner, LocalRunner) else ()
    try:
        proc = subprocess.run(
            [*prefix, *argv],
            input=source,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise PvectlError(
            f"python3 probe timed out after {timeout:g} s", ExitCode.TEMP_FAIL
        ) from exc
    except FileNotFoundError as exc:
        raise PvectlError("python3: command not found", ExitCode.UNAVAILABLE) from exc
    return CommandResult(tuple(argv), proc.returncode, proc.stdout, proc.stderr)


def probe_timeout(runtime: float | None) -> float:
    """Generous: the timed tests, plus laying out files and DNS timeouts."""
    return 2 * (runtime if runtime is not None else probe.DEFAULT_RUNTIME) + 60


def run_perf_probe(runner: CommandRunner, args: list[str], timeout: float) -> PerfReport:
    """The probe's report from where ``runner`` runs; its own errors as PvectlError."""
    try:
        result = run_python(runner, PROBE_SOURCE.read_text(encoding="utf-8"), args, timeout)
    except PvectlError as exc:
        if "python3" in str(exc) and "not found" in str(exc):
            raise PvectlError(
                "python3 not found there: the perf probe needs python3 on the node",
                ExitCode.UNAVAILABLE,
            ) from exc
        raise
    if not result.stdout.strip():
        tail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise PvectlError(f"perf probe failed (exit {result.returncode}): {tail}")
    return parse_probe_output(result.stdout)


def fsync_probe_args(directory: str, seconds: float) -> list[str]:
    """Only the durable-write loops, each lasting about ``seconds``."""
    runtime = seconds * probe.DEFAULT_RUNTIME / probe.TEST_WEIGHTS["durable"]
    args = ["--json", "--runtime", f"{runtime:.3f}", "--file-size", "16m"]
    for test in _NOT_DURABLE_TESTS:
        args += ["--skip", test]
    return [*args, "--", directory]


def system_disk_dir(runner: CommandRunner) -> str:
    test = ["sh", "-c", 'for d in "$@"; do [ -d "$d" ] && { echo "$d"; exit 0; }; done', "sh"]
    result = runner.run([*test, *FSYNC_DIRS], timeout=15)
    return result.stdout.strip() or "/var/tmp"


def measure_fsync(runner: CommandRunner, directory: str | None, seconds: float) -> FsyncFigures:
    """The system disk's 4 KiB write+fsync rate and p99, measured on the node itself."""
    where = directory or system_disk_dir(runner)
    args = fsync_probe_args(where, seconds)
    report = run_perf_probe(runner, args, timeout=3 * seconds + 60)
    durable = report.durable_result("fsync")
    if durable is None:
        raise PvectlError(f"the perf probe measured no fsync in {where}")
    target = report.target
    return FsyncFigures(
        path=target.directory or where,
        fsyncs_per_second=durable.rate,
        p99_ms=(durable.latency.p99 / 1000) if durable.latency else 0.0,
        verdict=report.verdict.disk_class_label,
        fs_type=target.fs_type,
    )
