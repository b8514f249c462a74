"""The probe on real files, as a library and as a standalone script (stdin, no pvectl)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pvectl.perf import probe
from pvectl.perf.report import parse_probe_output
from pvectl.perf.run import parse_progress_line, run_probe_locally

PROBE = Path(probe.__file__)
QUICK = ["--json", "--runtime", "0.8", "--file-size", "1m", "--skip", "dns"]


def test_quick_run_on_real_files_is_plausible_and_leaves_nothing(tmp_path: Path) -> None:
    report = parse_probe_output(run_probe_locally([*QUICK, str(tmp_path)]))
    assert list(tmp_path.iterdir()) == []
    assert report.mode == "honest"
    regex = report.figure("regex_per_second")
    assert regex is not None and regex.value is not None and regex.value > 1000
    assert regex.unit == "matches/s"
    fsyncs = report.figure("fsyncs_per_second")
    assert fsyncs is not None and fsyncs.value is not None and 1 < fsyncs.value < 10_000_000
    size = report.figure("hd_size")
    assert size is not None and size.value is not None and size.value > 0
    assert [d.kind for d in report.durable] == ["fsync", "fdatasync", "odsync"]
    for d in report.durable:
        assert d.rate > 1 and d.ops >= 1 and d.block_size == 4096
        lat = d.latency
        assert lat is not None
        assert 0 < lat.min <= lat.p50 <= lat.p90 <= lat.p99 <= lat.p99_9 <= lat.max
        # the rate and the latencies come from the same loop: the sync call is part of each op
        assert lat.mean <= 1e6 / d.rate * 1.05
        assert sum(b.count for b in lat.histogram) == lat.samples == d.ops
    for fig in report.figures:
        assert fig.unit and fig.method
    if "bogomips" in Path("/proc/cpuinfo").read_text().lower():
        cpu = report.figure("cpu_bogomips")
        assert cpu is not None and cpu.value is not None and cpu.value > 0


def test_block_size_and_same_offset_pattern(tmp_path: Path) -> None:
    args = [*QUICK, "--block-size", "8k", "--pattern", "same", "--skip", "fsync", str(tmp_path)]
    report = parse_probe_output(run_probe_locally(args))
    assert {d.block_size for d in report.durable} == {8192}
    assert {d.pattern for d in report.durable} == {"same"}
    assert "one offset" in report.durable[0].method


def test_runtime_option_bounds_the_run(tmp_path: Path) -> None:
    report = parse_probe_output(run_probe_locally([*QUICK, "--runtime", "0.5", str(tmp_path)]))
    assert report.elapsed_s < 5
    shares = report.settings["budget_s"]
    # --runtime is shared among the tests that ran (DNS, if it ran, takes its share too)
    assert abs(sum(shares.values()) - 0.5) < 0.01, shares
    for d in report.durable:  # the loop stops after the first call past its share
        assert d.latency is not None
        budget = shares[d.kind]
        assert budget - 0.001 <= d.seconds <= budget + d.latency.max / 1e6 + 0.01


def _run_script(args: list[str], stdin_source: bool, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The probe as the SSH helper will run it: isolated (-I), from a directory without pvectl."""
    if stdin_source:
        cmd = [sys.executable, "-I", "-", *args]
        return subprocess.run(
            cmd, input=PROBE.read_text(), capture_output=True, text=True, cwd=cwd, timeout=60
        )
    cmd = [sys.executable, "-I", str(PROBE), *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=60)


@pytest.mark.parametrize("stdin_source", [False, True], ids=["file", "stdin"])
def test_standalone_script_speaks_json(tmp_path: Path, stdin_source: bool) -> None:
    work = tmp_path / "work"
    work.mkdir()
    proc = _run_script([*QUICK, "--progress", "--skip", "regex", str(work)], stdin_source, tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = parse_probe_output(proc.stdout)
    assert report.durable and report.figure("fsyncs_per_second") is not None
    events = [e for e in map(parse_progress_line, proc.stderr.splitlines()) if e is not None]
    assert [e["test"] for e in events if e["event"] == "begin"][-3:] == [
        "fsync",
        "fdatasync",
        "odsync",
    ]
    assert events[-1] == {"event": "done"}
    assert list(work.iterdir()) == []


@pytest.mark.parametrize("stdin_source", [False, True], ids=["file", "stdin"])
def test_standalone_script_errors_are_json_with_exit_code(
    tmp_path: Path, stdin_source: bool
) -> None:
    proc = _run_script(["--json", str(tmp_path / "missing")], stdin_source, tmp_path)
    assert proc.returncode == 66
    assert json.loads(proc.stdout)["error"]["exit_code"] == 66
    proc = _run_script(["--json", "--block-size", "zz"], stdin_source, tmp_path)
    assert proc.returncode == 64
    assert "not a size" in json.loads(proc.stdout)["error"]["message"]


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace (Debian package)")
@pytest.mark.parametrize("compat", [False, True], ids=["honest", "compat"])
def test_fsync_syscall_order_honest_vs_pveperf_compat(tmp_path: Path, compat: bool) -> None:
    """pveperf fsyncs the just-truncated file and writes after; the honest loop writes first."""
    work = tmp_path / "w"
    work.mkdir()
    trace = tmp_path / "trace"
    args = ["--json", "--runtime", "0.3", "--skip", "dns", "--skip", "durable"]
    args += ["--skip", "regex", "--no-drop-caches"]
    if compat:
        args.append("--pveperf-compat")
    proc = subprocess.run(
        ["strace", "-f", "-o", str(trace), "-e", "trace=openat,write,fsync",
         sys.executable, "-I", str(PROBE), *args, str(work)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    calls = []
    fd_of_tf = None
    for line in trace.read_text().splitlines():
        body = line.split(None, 1)[1] if line[0].isdigit() else line
        if "openat(" in body and "/tf_" in body and "= " in body:
            fd_of_tf = body.rsplit("= ", 1)[1].split()[0]
            calls.append("open")
        elif fd_of_tf and body.startswith(f"fsync({fd_of_tf})"):
            calls.append("fsync")
        elif fd_of_tf and body.startswith(f"write({fd_of_tf},") and "4001" in body:
            calls.append("write")
    assert calls.count("open") >= 3
    cycle = calls[:3]
    assert cycle == (["open", "fsync", "write"] if compat else ["open", "write", "fsync"])


def test_compat_regex_is_a_count_over_three_seconds(tmp_path: Path) -> None:
    args = ["--json", "--pveperf-compat", "--runtime", "0.2", str(tmp_path)]
    for test in ("cpu", "hdsize", "reads", "seek", "fsync", "durable", "dns"):
        args += ["--skip", test]
    report = parse_probe_output(run_probe_locally(args))
    regex = report.figure("regex_per_second")
    assert regex is not None and regex.value is not None
    assert regex.details["seconds"] >= 3.0
    assert regex.value == int(regex.value) and "raw count" in regex.unit
    assert report.mode == "pveperf-compat"


class _FakeDns:
    """A real UDP DNS server on loopback answering NXDOMAIN to everything."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.names: list[str] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                data, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            labels, pos = [], 12
            while data[pos]:
                labels.append(data[pos + 1 : pos + 1 + data[pos]].decode())
                pos += 1 + data[pos]
            self.names.append(".".join(labels))
            reply = data[:2] + bytes.fromhex("8183000100000000") + data[12 : pos + 5]
            self.sock.sendto(reply, peer)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def fake_dns() -> Iterator[_FakeDns]:
    server = _FakeDns()
    yield server
    server.close()


def test_dns_ext_and_int_against_a_loopback_server(tmp_path: Path, fake_dns: _FakeDns) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("nameserver 127.0.0.1\nsearch lan.example\n")
    args = ["--json", "--resolv-conf", str(conf), "--dns-port", str(fake_dns.port)]
    for test in ("cpu", "regex", "hdsize", "reads", "seek", "fsync", "durable"):
        args += ["--skip", test]
    report = parse_probe_output(run_probe_locally([*args, str(tmp_path)]))
    ext, internal = report.figure("dns_ext"), report.figure("dns_int")
    assert ext is not None and internal is not None
    assert ext.details["queries"] == 101 and ext.details["failures"] == 0  # pveperf's cap
    assert ext.value is not None and 0 < ext.value < 1000
    assert internal.subject == "lan.example"
    assert sum(n.endswith(".lan.example") for n in fake_dns.names) == 101
    ext_names = [n for n in fake_dns.names if n.endswith(".com")]
    assert len(ext_names) == 101 and all(n.startswith("test") for n in ext_names)
    assert len({n.split(".", 1)[1] for n in ext_names}) == 1  # one nonexistent domain


def test_dns_int_left_out_with_several_search_domains(tmp_path: Path, fake_dns: _FakeDns) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("nameserver 127.0.0.1\nsearch a.example b.example\n")
    args = ["--json", "--resolv-conf", str(conf), "--dns-port", str(fake_dns.port)]
    args += ["--runtime", "1"]
    for test in ("cpu", "regex", "hdsize", "reads", "seek", "fsync", "durable"):
        args += ["--skip", test]
    report = parse_probe_output(run_probe_locally([*args, str(tmp_path)]))
    assert report.figure("dns_ext") is not None and report.figure("dns_int") is None


def test_dead_resolver_counts_failures_within_the_timeout(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("nameserver 127.0.0.1\n")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))  # receives, never answers
        args = ["--json", "--resolv-conf", str(conf), "--dns-port", str(silent.getsockname()[1])]
        args += ["--dns-timeout", "0.2", "--runtime", "8"]
        for test in ("cpu", "regex", "hdsize", "reads", "seek", "fsync", "durable"):
            args += ["--skip", test]
        report = parse_probe_output(run_probe_locally([*args, str(tmp_path)]))
    ext = report.figure("dns_ext")
    assert ext is not None and ext.value is not None
    assert ext.details["failures"] == ext.details["queries"] >= 1
    assert 150 <= ext.value <= 1000  # ~ the 0.2 s timeout per query


def test_tmpfs_gets_a_warning_and_memory_verdict() -> None:
    if not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm")
    work = Path(probe.tempfile.mkdtemp(dir="/dev/shm"))
    try:
        report = parse_probe_output(run_probe_locally([*QUICK, "--skip", "regex", str(work)]))
        if report.target.fs_type != "tmpfs":
            pytest.skip(f"/dev/shm is {report.target.fs_type} here")
        assert any("tmpfs" in w and "memory" in w for w in report.warnings)
        assert report.verdict.disk_class == "memory"
        assert list(work.iterdir()) == []
    finally:
        shutil.rmtree(work)


def _old_interpreters() -> list[str]:
    """Pythons older than ours that a node may have (PVE 6: 3.7, PVE 7: 3.9), if installed."""
    found = [shutil.which(f"python3.{minor}") for minor in (7, 8, 9, 10)]
    home = Path.home() / ".pyenv" / "versions"
    for minor in (7, 8, 9, 10):
        found += [str(p / "bin" / "python3") for p in sorted(home.glob(f"3.{minor}.*"))]
    return sorted({f for f in found if f and "/shims/" not in f and os.access(f, os.X_OK)})


@pytest.mark.parametrize("python", _old_interpreters() or [None])
def test_probe_runs_on_older_node_pythons(tmp_path: Path, python: str | None) -> None:
    if python is None:
        pytest.skip("no Python 3.7-3.10 interpreter installed here")
    proc = subprocess.run(
        [python, "-I", "-", *QUICK, "--runtime", "0.3", str(tmp_path)],
        input=PROBE.read_text(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = parse_probe_output(proc.stdout)
    assert report.durable and list(tmp_path.iterdir()) == []
