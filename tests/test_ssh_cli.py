"""The CLI over SSH, as a user runs it: real processes, a real sshd on 127.0.0.1."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import CliRun, run_cli
from tests.helpers.json_schema import validated
from tests.helpers.sshd_harness import SshClientHome, Sshd, free_port, keygen, sshd_skip_reason

pytestmark = pytest.mark.skipif(sshd_skip_reason() is not None, reason=str(sshd_skip_reason()))


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[Sshd]:
    server = Sshd(tmp_path / "sshd")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def home(tmp_path: Path, sshd: Sshd) -> SshClientHome:
    client = SshClientHome(tmp_path / "home")
    sshd.authorize(client.pubkey)
    client.add_alias("node1", sshd)
    return client


def cli(home: SshClientHome, *args: str) -> CliRun:
    return run_cli(*args, env=home.env(), timeout=120)


def test_unknown_key_via_cli_then_accepted_with_the_flag(home: SshClientHome, sshd: Sshd) -> None:
    refused = cli(home, "check", "--host", "node1", "--no-fsync", "--output-format", "json")
    assert refused.code == 2
    doc = json.loads(refused.stdout)
    reach = [f for f in doc["findings"] if f["check"] == "reach"]
    assert reach and sshd.fingerprint() in reach[0]["message"]
    assert "--accept-new-host-key" in reach[0]["message"]

    cli(home, "nodes", "--host", "node1", "--accept-new-host-key")
    assert sshd.host_public_key() in home.known_hosts.read_text()


def test_status_errors_are_one_line_per_host_and_others_carry_on(
    home: SshClientHome, sshd: Sshd
) -> None:
    home.trust(sshd)
    dead = free_port()
    started = time.monotonic()
    result = cli(
        home,
        "status",
        "--host",
        "node1",
        "--host",
        f"root@127.0.0.1:{dead}",
        "--connect-timeout",
        "3",
        "--output-format",
        "json",
    )
    assert time.monotonic() - started < 60
    assert result.code == 1
    doc = validated(result.stdout, "status-hosts")
    views = {v["host"]: v for v in doc["views"]}
    assert "connection refused" in views[f"root@127.0.0.1:{dead}"]["error"]
    # node1 answered over SSH: its error (if any) is about corosync, not about SSH
    node1 = views["node1"]
    assert node1["status"] is not None or "corosync" in node1["error"]
    assert "Traceback" not in result.stderr
    listed = cli(
        home, "nodes", "--host", "node1", "--host", f"root@127.0.0.1:{dead}",
        "--connect-timeout", "3", "--output-format", "json",
    )  # fmt: skip
    assert listed.code == 1
    rows = {row["host"]: row for row in validated(listed.stdout, "nodes-hosts")["hosts"]}
    assert rows[f"root@127.0.0.1:{dead}"]["result"] is None


def test_single_host_error_is_one_line_with_exit_code(home: SshClientHome, sshd: Sshd) -> None:
    sshd.stop()
    result = cli(home, "status", "--host", "node1", "--connect-timeout", "2")
    assert result.code == 69
    assert result.stderr.startswith("pvectl: error: node1: connection refused")
    assert result.stderr.count("\n") == 1


def test_expected_refuses_several_hosts(home: SshClientHome) -> None:
    result = cli(home, "expected", "1", "--host", "a", "--host", "b")
    assert result.code == 64
    assert "split-brain" in result.stderr


def test_check_measures_fsync_on_the_remote_node(home: SshClientHome, sshd: Sshd) -> None:
    home.trust(sshd)
    fsync_dir = sshd.root / "disk"
    fsync_dir.mkdir()
    result = cli(
        home,
        "check",
        "--host",
        "node1",
        "--fsync-dir",
        str(fsync_dir),
        "--fsync-seconds",
        "0.5",
        "--output-format",
        "json",
    )
    doc = json.loads(result.stdout)
    fsync = [f for f in doc["findings"] if f["check"] == "fsync"]
    assert len(fsync) == 1 and fsync[0]["host"] == "node1"
    assert f"system disk ({fsync_dir}, " in fsync[0]["message"]
    assert "fsyncs/s (4 KiB write + fsync), p99" in fsync[0]["message"]
    assert list(fsync_dir.iterdir()) == []  # the probe cleans up after itself


def test_no_key_material_in_any_output_or_log(
    home: SshClientHome, sshd: Sshd, tmp_path: Path
) -> None:
    outputs: list[str] = []
    runs = [
        ("status", "--host", "node1"),  # unknown host key
        ("status", "--host", "node1", "--accept-new-host-key", "--debug"),
        ("nodes", "--host", "node1", "--output-format", "json"),
        ("check", "--host", "node1", "--fsync-seconds", "0.2", "--output-format", "yaml"),
        ("check", "--host", "node1", "--no-fsync", "--debug"),
    ]
    for args in runs:
        result = cli(home, *args)
        outputs += [result.stdout, result.stderr]
    fragments = home.private_key_fragments()
    # auth failure path: a key the server does not know replaces the user's key
    home.key.unlink()
    home.pubkey.unlink()
    keygen(home.key, "stranger")
    fragments += home.private_key_fragments()
    result = cli(home, "status", "--host", "node1", "--debug")
    outputs += [result.stdout, result.stderr, sshd.log()]
    assert len(fragments) > 4
    combined = "\n".join(outputs)
    assert "authentication failed" in combined
    for fragment in fragments:
        assert fragment not in combined, "private key material leaked into output"
    assert "PRIVATE KEY" not in combined


def test_perf_on_remote_hosts_side_by_side(home: SshClientHome, sshd: Sshd) -> None:
    home.trust(sshd)
    disk = sshd.root / "disk"
    disk.mkdir()
    quick = ["--runtime", "0.4", "--skip", "dns", "--skip", "reads", "--skip", "seek"]
    single = cli(home, "perf", "--host", "node1", *quick, str(disk), "--output-format", "json")
    assert single.code == 0, single.stderr
    report = validated(single.stdout, "perf")
    assert report["target"]["directory"] == str(disk)
    assert {d["kind"] for d in report["durable"]} == {"fsync", "fdatasync", "odsync"}
    assert report["verdict"]["fsync_rate"] > 0

    dead = free_port()
    both = cli(
        home,
        "perf",
        "--host",
        "node1",
        "--host",
        f"root@127.0.0.1:{dead}",
        *quick,
        str(disk),
        "--output-format",
        "json",
    )
    assert both.code == 1
    rows = {row["host"]: row for row in validated(both.stdout, "perf-hosts")["hosts"]}
    assert rows["node1"]["result"]["durable"] and rows["node1"]["error"] is None
    assert "connection refused" in rows[f"root@127.0.0.1:{dead}"]["error"]
    text = cli(home, "perf", "--host", "node1", "--host", f"127.0.0.1:{dead}", *quick, str(disk))
    assert "disk class" in text.stdout and "fsync p99" in text.stdout
    assert f"error: 127.0.0.1:{dead}: connection refused" in text.stdout
    assert list(disk.iterdir()) == []  # the probe removed its files on every host


def test_qdevice_status_over_ssh_reports_the_missing_daemon(
    home: SshClientHome, sshd: Sshd
) -> None:
    home.trust(sshd)
    result = cli(home, "qdevice", "status", "--host", "node1")
    assert result.code == 1
    assert result.stderr.startswith("pvectl: error: ")
    assert "corosync-qdevice-tool on ssh:node1" in result.stderr
    assert "is corosync-qdevice running?" in result.stderr
