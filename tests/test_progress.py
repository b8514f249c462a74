"""Progress on a terminal, and nothing extra anywhere else.

Real processes: stderr is a pipe (a script, a log) or a real pseudo-terminal (a person).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

TAG = os.getpid() % 100000
ESCAPE = "\x1b["


def _env(tmp_path: Path) -> dict[str, str]:
    runtime = tmp_path / "xdg"
    runtime.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "PVECTL_NO_PROGRESS"}
    env.update(XDG_RUNTIME_DIR=str(runtime), TERM="xterm-256color", COLUMNS="100")
    return env


def _piped(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=env, timeout=300
    )


def _stderr_on_a_terminal(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """(exit code, stdout from a pipe, everything written to the terminal on stderr)."""
    master, slave = os.openpty()
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the last writer closed the terminal
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    proc = subprocess.Popen(
        [sys.executable, *args], stdout=subprocess.PIPE, stderr=slave, env=env, text=True
    )
    os.close(slave)
    out, _ = proc.communicate(timeout=300)
    reader.join(10)
    os.close(master)
    return proc.returncode, out, b"".join(chunks).decode("utf-8", "replace")


def test_simulator_prints_only_its_lines_without_a_terminal(tmp_path: Path) -> None:
    run = _piped(_env(tmp_path), "-m", "pvectl.sim", "--seeds", "3", "--quiet")
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
    assert re.fullmatch(r"3 seeds passed in [\d.]+s: .*\n", run.stdout), run.stdout


def test_simulator_shows_a_bar_on_a_terminal_and_keeps_stdout_clean(tmp_path: Path) -> None:
    code, out, terminal = _stderr_on_a_terminal(
        _env(tmp_path), "-m", "pvectl.sim", "--seeds", "40", "--quiet"
    )
    assert code == 0, terminal
    assert "simulating 40 seed(s)" in terminal and ESCAPE in terminal
    assert re.fullmatch(r"40 seeds passed in [\d.]+s: .*\n", out), out


def test_lab_up_and_run_print_only_their_report_lines_without_a_terminal(tmp_path: Path) -> None:
    env = _env(tmp_path)
    name = f"tpg{TAG}"
    try:
        up = _piped(env, "-m", "pvectl", "lab", "up", "2", "--name", name)
        assert up.returncode == 0, up.stderr
        assert re.fullmatch(
            rf"lab '{name}': 2 embedded node\(s\) up on \S+ \(udp \d+\); ring formed in "
            r"[\d.]+ s\n",
            up.stderr,
        ), up.stderr
        assert up.stdout == f"lab '{name}' is up: state in {tmp_path}/xdg/pvectl/lab/{name}\n"
    finally:
        _piped(env, "-m", "pvectl", "lab", "down", "--name", name)
    run = _piped(env, "-m", "pvectl", "lab", "run", "three-lose-one", "--name", f"tpr{TAG}")
    assert run.returncode == 0, run.stderr
    assert ESCAPE not in run.stderr and ESCAPE not in run.stdout
    lines = run.stderr.splitlines()
    assert lines and all(line.startswith("[embedded] ") for line in lines), run.stderr
    assert not any(re.search(r"step \d+/\d+", line) for line in lines)  # the spinner's text


def test_lab_run_shows_each_step_on_a_terminal(tmp_path: Path) -> None:
    env = _env(tmp_path)
    code, out, terminal = _stderr_on_a_terminal(
        env, "-m", "pvectl", "lab", "run", "three-lose-one", "--name", f"tpt{TAG}"
    )
    assert code == 0, terminal
    assert re.search(r"\[embedded\] step 1/\d+ \(line \d+\)", terminal), terminal
    assert "[embedded] up: 3 nodes in" in terminal  # the report lines stay
    assert ESCAPE not in out and "step 1/" not in out


@pytest.mark.root
@pytest.mark.corosync
@pytest.mark.slow
@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("corosync") is None, reason="needs root and corosync"
)
def test_corosync_lab_up_progress_only_on_a_terminal(tmp_path: Path) -> None:
    env = _env(tmp_path)
    name = f"tpc{TAG}"
    try:
        code, out, terminal = _stderr_on_a_terminal(
            env, "-m", "pvectl", "lab", "up", "2", "--engine", "corosync", "--name", name
        )
        assert code == 0, terminal
        assert "starting corosync on node" in terminal or "waiting for" in terminal, terminal
        assert ESCAPE not in out
    finally:
        _piped(env, "-m", "pvectl", "lab", "down", "--name", name)
    try:
        up = _piped(env, "-m", "pvectl", "lab", "up", "2", "--engine", "corosync", "--name", name)
        assert up.returncode == 0, up.stderr
        assert ESCAPE not in up.stderr
        assert "starting corosync on node" not in up.stderr
        assert re.search(r"2 corosync node\(s\) up .* ring formed in [\d.]+ s\n\Z", up.stderr)
    finally:
        _piped(env, "-m", "pvectl", "lab", "down", "--name", name)
