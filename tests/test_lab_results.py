"""What lab commands say: real times, the lab's own token, errors that name the fix, check
on a lab. Real embedded node processes on loopback (no root needed)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pvectl.quorum.votequorum import NodeFlag
from tests.conftest import CliRun, run_cli

TAG = os.getpid() % 100000
LAB = f"tlr{TAG}"
OTHER = f"tlo{TAG}"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    runtime = tmp_path_factory.mktemp("xdg")
    environ = dict(os.environ, XDG_RUNTIME_DIR=str(runtime), NO_COLOR="1")
    up = run_cli("lab", "up", "3", "--name", LAB, "--token", "400", env=environ)
    assert up.code == 0, up.stderr
    yield environ
    for name in (LAB, OTHER):
        run_cli("lab", "down", "--name", name, env=environ)


def cli(env: dict[str, str], *args: str) -> CliRun:
    return run_cli(*args, env=env)


def test_fs_errors_name_the_path_and_the_fix(env: dict[str, str], tmp_path: Path) -> None:
    data = tmp_path / "x.cfg"
    data.write_text("x\n")
    missing = cli(env, "lab", "fs", "put", "1", "/bar/x.cfg", str(data), "--name", LAB)
    assert missing.code != 0
    assert missing.stderr == (
        f"pvectl: error: /bar: no such directory in the store; create it with "
        f"'pvectl lab fs mkdir 1 /bar --name {LAB}', then write /bar/x.cfg\n"
    )
    assert cli(env, "lab", "fs", "mkdir", "1", "/bar", "--name", LAB).code == 0
    assert cli(env, "lab", "fs", "put", "1", "/bar/x.cfg", str(data), "--name", LAB).code == 0
    full = cli(env, "lab", "fs", "rm", "1", "/bar", "--name", LAB)
    assert "/bar: directory not empty" in full.stderr
    assert f"'pvectl lab fs ls 1 /bar --name {LAB}'" in full.stderr
    gone = cli(env, "lab", "fs", "rm", "1", "/nothing", "--name", LAB)
    assert "/nothing: no such file or directory in the store" in gone.stderr
    twice = cli(env, "lab", "fs", "mkdir", "1", "/bar", "--name", LAB)
    assert "/bar: already exists" in twice.stderr


def test_the_lab_reports_its_own_token_and_consensus(env: dict[str, str]) -> None:
    run = cli(env, "status", "--target", "lab", "--name", LAB, "--output-format", "json")
    doc = json.loads(run.stdout)
    # token 400 + (3 - 2) x the coefficient the lab writes (125); consensus 1.2 x token
    assert (doc["totem_token_ms"], doc["totem_consensus_ms"]) == (525, 630)
    assert doc["activity_blocked"] is False


def test_stop_and_start_report_the_real_time_to_the_new_ring(env: dict[str, str]) -> None:
    stop = json.loads(cli(env, "lab", "stop", "3", "--name", LAB, "--output-format", "json").stdout)
    start = json.loads(
        cli(env, "lab", "start", "3", "--name", LAB, "--output-format", "json").stdout
    )
    assert stop["members"] == [1, 2] and start["members"] == [1, 2, 3]
    # a start spawns a Python process and joins the ring: never "after 0.00 s"
    assert start["seconds"] >= 0.05, start
    assert stop["seconds"] > 0, stop
    print(f"\nstop: {stop['seconds']:.3f} s, start: {start['seconds']:.3f} s")


def test_partition_waits_for_and_reports_the_rings(env: dict[str, str]) -> None:
    cut = cli(env, "lab", "partition", "1,2", "3", "--name", LAB)
    try:
        assert cut.code == 0, cut.stderr
        assert "partitioned: 1,2 | 3; new rings after " in cut.stdout
        assert "  group 1,2: members 1,2, quorate\n" in cut.stdout
        assert "  group 3: members 3, NOT quorate\n" in cut.stdout
        # it returned once the rings were there: node 3 sees itself alone right away
        alone = cli(env, "status", "--target", "lab", "--name", LAB, "--node", "3")
        assert alone.code == 2
    finally:
        assert cli(env, "lab", "heal", "--name", LAB).code == 0
    help_text = cli(env, "lab", "partition", "--help").stdout
    assert "embedded engine's nodes drop" in " ".join(help_text.split())


def _wait_members(env: dict[str, str], members: list[int]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        run = cli(env, "lab", "ls", "--name", LAB, "--output-format", "json")
        nodes = json.loads(run.stdout)["labs"][0]["nodes"]
        if all(n["members"] == members for n in nodes):
            return
        time.sleep(0.2)
    raise AssertionError(f"never settled on {members}")


def test_check_takes_target_lab_and_checks_every_node(env: dict[str, str]) -> None:
    _wait_members(env, [1, 2, 3])
    run = cli(env, "check", "--target", "lab", "--name", LAB, "--no-fsync", "--output-format",
              "json")  # fmt: skip
    doc = json.loads(run.stdout)
    assert doc["hosts"] == ["node1", "node2", "node3"]
    by_check = {(f["check"], f["host"]): f for f in doc["findings"]}
    assert by_check[("quorum", "node2")]["severity"] == "ok"
    assert by_check[("membership", "cluster")]["severity"] == "ok"
    token = by_check[("token", "cluster")]
    assert "token 525 ms, consensus 630 ms" in token["message"]
    # nothing about a missing local corosync: the lab is what was checked
    assert not [f for f in doc["findings"] if "corosync is not running" in f["message"]]
    assert run.code == 1  # a token under 1 s is a warning, nothing critical


def test_check_auto_uses_the_lab_when_no_corosync_runs(env: dict[str, str]) -> None:
    from pvectl.targets import corosync

    if corosync.is_running():
        pytest.skip("corosync runs on this machine: auto means corosync here")
    run = cli(env, "check", "--no-fsync", "--output-format", "json", "--name", LAB)
    doc = json.loads(run.stdout)
    assert doc["hosts"] == ["node1", "node2", "node3"], doc


def test_status_without_name_uses_the_only_lab_or_names_the_running_ones(
    env: dict[str, str],
) -> None:
    from pvectl.targets import corosync

    if corosync.is_running():
        pytest.skip("corosync runs here")
    only = cli(env, "status", "--target", "lab", "--output-format", "json")
    assert only.code == 0, only.stderr
    assert json.loads(only.stdout)["source"].startswith(f"lab:{LAB}:")
    assert cli(env, "lab", "up", "1", "--name", OTHER).code == 0
    try:
        several = cli(env, "status", "--target", "lab")
        assert several.code == 1
        assert f"running labs: {', '.join(sorted([LAB, OTHER]))}: choose one with --name" in (
            several.stderr
        ), several.stderr
        assert "--name" in several.stderr
    finally:
        cli(env, "lab", "down", "--name", OTHER)


def test_ctrl_c_during_lab_up_says_what_it_cleaned(tmp_path: Path) -> None:
    runtime = tmp_path / "xdg"
    runtime.mkdir()
    environ = dict(os.environ, XDG_RUNTIME_DIR=str(runtime), NO_COLOR="1")
    name = f"tlc{TAG}"
    state = runtime / "pvectl" / "lab" / name / "lab.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pvectl", "lab", "up", "16", "--name", name],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not state.exists():  # nodes are being started from here on
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        run_cli("lab", "down", "--name", name, env=environ)
    if proc.returncode == 0:
        pytest.skip("the lab was up before the signal arrived (a very fast machine)")
    assert proc.returncode == 130, err
    assert f"lab {name!r}: interrupted; cleaning up" in err
    assert f"lab {name!r}: removed " in err and "nothing of it is left" in err
    assert not state.exists()


def test_activity_blocked_comes_from_votequorum_s_flag() -> None:
    from dataclasses import replace

    from pvectl.quorum.status_report import quorum_status
    from pvectl.quorum.votequorum import QuorumOptions, initial_state
    from pvectl.totem.ring_id import RingId

    state = initial_state(QuorumOptions(node_votes=((1, 1),)), 1)

    def with_flag(on: bool, quorate: bool) -> object:
        nodes = tuple(
            replace(n, flags=(n.flags | NodeFlag.QUORATE) if on else (n.flags & ~NodeFlag.QUORATE))
            for n in state.nodes
        )
        return replace(state, nodes=nodes, quorate=quorate)

    # the quorate answer and votequorum's flag for this node disagree: the flag decides,
    # as corosync-quorumtool's "Activity blocked" does
    blocked = quorum_status(with_flag(False, True), RingId(1, 1))  # type: ignore[arg-type]
    assert blocked.activity_blocked is True and blocked.quorate is True
    free = quorum_status(with_flag(True, False), RingId(1, 1))  # type: ignore[arg-type]
    assert free.activity_blocked is False
