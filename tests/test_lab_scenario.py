"""Scenario files (``pvectl lab run`` / ``lab compare``): the strict parser, the pure
comparison, bad input from the command line, and real runs on the embedded engine."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pvectl.errors import ConfigError, ExitCode
from pvectl.lab import scenario as sc
from pvectl.lab import scenario_run
from tests.conftest import run_cli

REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted(p.stem for p in (REPO / "scenarios").glob("*.yaml"))
ROOT = os.geteuid() == 0


def _env(tmp_path: Path) -> dict[str, str]:
    xdg = tmp_path / "xdg"
    xdg.mkdir(exist_ok=True)
    return dict(os.environ, XDG_RUNTIME_DIR=str(xdg))


# ---- parsing -----------------------------------------------------------------------------


def test_every_shipped_scenario_parses_and_the_seed_cases_are_there() -> None:
    assert {
        "three-lose-one",
        "four-split-two-two",
        "five-lose-two",
        "two-node-expected-one",
        "two-node-two_node",
        "two-node-qdevice",
    } <= set(SHIPPED)
    for name in SHIPPED:
        parsed = sc.load(scenario_run.resolve(name))
        assert parsed.name == name and parsed.steps and parsed.description
        assert any(s.action == "expect" for s in parsed.steps), name


def test_parse_every_step_kind() -> None:
    text = """\
up: {nodes: 4, token: 1000, votes: [1, 1, 1, 2], wait_for_all: false}
steps:
  - kill: 1
  - stop: 2
  - start: 2
  - pause: {node: 3, seconds: 1.5}
  - partition: [[1, 2], [3]]
  - heal
  - expected: {node: 3, votes: 2}
  - expected: 4
  - wait: 2
  - wait: {node: 2, members: [2, 1], timeout: 5}
  - expect: {node: 2, quorate: false, flags: [Quorate, 2Node], quorum: 3}
"""
    parsed = sc.parse(text, "x.yaml")
    assert parsed.up == sc.UpSpec(4, 1000, False, False, (1, 1, 1, 2))
    kinds = [s.action for s in parsed.steps]
    assert kinds == [
        "kill",
        "stop",
        "start",
        "pause",
        "partition",
        "heal",
        "expected",
        "expected",
        "wait",
        "wait",
        "expect",
    ]
    assert [s.line for s in parsed.steps] == list(range(3, 14))
    # nodes left out of a partition form their own group, as on a real network split
    assert parsed.steps[4].groups == ((1, 2), (3,), (4,))
    assert parsed.steps[6].node == 3 and parsed.steps[6].votes == 2
    assert parsed.steps[7].node == 1 and parsed.steps[7].votes == 4
    assert parsed.steps[8].seconds == 2.0 and parsed.steps[8].timeout is None
    assert parsed.steps[9].members == (1, 2) and parsed.steps[9].timeout == 5.0
    assert parsed.steps[10].flags == ("2Node", "Quorate")


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("up: 3\nsteps:\n  - kill: 1\n  - explode: 2\n", 4, "unknown step 'explode'"),
        ("up: 3\nsteps:\n  - reboot\n", 3, "unknown step 'reboot'"),
        ("up: 3\nsteps:\n  - expect: {node: 1, quorat: true}\n", 3, "unknown key 'quorat'"),
        ("up: {nodes: 3, tokn: 5}\nsteps: [heal]\n", 1, "unknown key 'tokn'"),
        ("up: 17\nsteps: [heal]\n", 1, "between 1 and 16"),
        ("up: {nodes: 0}\nsteps: [heal]\n", 1, "between 1 and 16"),
        ("up: 3\nsteps:\n  - heal\n  - kill: 4\n", 4, "between 1 and 3"),
        ("up: 3\nsteps:\n  - partition: [[1, 2], [2, 3]]\n", 3, "must not overlap"),
        ("up: 3\nsteps:\n  - pause: {node: 1}\n", 3, "pause needs 'seconds'"),
        ("up: 3\nsteps:\n  - kill: 1\n  - kill: [1\n", 5, "not valid YAML"),
        ("up: 3\nextra: 1\nsteps: [heal]\n", 2, "unknown key 'extra'"),
    ],
)
def test_bad_scenarios_name_the_line(text: str, line: int, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        sc.parse(text, "bad.yaml")
    message = str(caught.value)
    assert message.startswith(f"bad.yaml:{line}: "), message
    assert words in message and "\n" not in message
    assert caught.value.exit_code == ExitCode.DATA


# ---- the pure comparison -----------------------------------------------------------------


def _state(node: int, members: tuple[int, ...], quorate: bool, total: int) -> sc.NodeState:
    flags = ("Quorate",) if quorate else ()
    return sc.node_state(node, members, quorate, total, 3, 2, flags)


def test_compare_marks_every_decision_that_differs() -> None:
    scenario = sc.parse("up: 3\nsteps:\n  - kill: 3\n", "s.yaml")
    healthy = tuple(_state(n, (1, 2, 3), True, 3) for n in (1, 2, 3))
    left = sc.EngineRun(
        "embedded",
        "a",
        steps=(
            sc.StepResult(0, 0, "up", 1.0, healthy),
            sc.StepResult(
                1, 3, "kill 3", 2.0, (_state(1, (1, 2), True, 2), _state(2, (1, 2), True, 2))
            ),
        ),
    )
    right = sc.EngineRun(
        "corosync",
        "b",
        steps=(
            sc.StepResult(0, 0, "up", 5.0, healthy),
            sc.StepResult(1, 3, "kill 3", 9.0, (_state(1, (1,), False, 1),)),
        ),
    )
    result = sc.compare(scenario, [left, right])
    assert result.steps[0].differences == ()  # timing alone is no difference
    keys = {(d.node_id, d.key) for d in result.steps[1].differences}
    assert keys == {
        (1, "members"),
        (1, "quorate"),
        (1, "total_votes"),
        (1, "flags"),
        (2, "running"),
    }
    assert not result.agree and result.exit_code() == 1
    same = sc.compare(scenario, [left, sc.EngineRun("corosync", "b", steps=left.steps)])
    assert same.agree and same.exit_code() == 0


def test_expect_checks_and_settled_views() -> None:
    scenario = sc.parse(
        "up: 3\nsteps:\n  - expect: {node: 1, quorate: true, members: [1, 2], quorum: 2}\n"
        "  - expect: {node: 3, quorate: true}\n"
    )
    views = (_state(1, (1, 2), True, 2), _state(2, (1, 2), True, 2))
    assert all(c.ok for c in sc.check_expect(scenario.steps[0], views))
    (missing,) = sc.check_expect(scenario.steps[1], views)
    assert not missing.ok and missing.got == "not running"
    assert sc.settled(views, [1, 2])
    assert not sc.settled(views, [1, 2, 3])  # node 3 runs but does not answer
    assert not sc.settled((_state(1, (1, 2), True, 2), _state(2, (2,), False, 1)), [1, 2])
    assert not sc.settled((_state(1, (1, 2), True, 2), _state(2, (1, 2), False, 2)), [1, 2])


# ---- bad input on the command line -------------------------------------------------------


def test_cli_unknown_step_names_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("up: 3\nsteps:\n  - kill: 1\n  - smash: 2\n")
    for command in ("compare", "run"):
        run = run_cli("lab", command, str(bad), env=_env(tmp_path))
        assert run.code == ExitCode.DATA, run.stderr
        assert run.stderr.strip() == (
            f"pvectl: error: {bad}:4: unknown step 'smash' "
            "(known: kill, stop, start, pause, partition, heal, expected, wait, expect, "
            "qdevice, qnetd)"
        )


def test_cli_missing_file_and_n_out_of_range(tmp_path: Path) -> None:
    run = run_cli("lab", "compare", str(tmp_path / "nope.yaml"), env=_env(tmp_path))
    assert run.code == ExitCode.NO_INPUT and "no such scenario file" in run.stderr
    run = run_cli("lab", "run", "no-such-scenario", env=_env(tmp_path))
    assert run.code == ExitCode.NO_INPUT and "three-lose-one" in run.stderr
    big = tmp_path / "big.yaml"
    big.write_text("up: {nodes: 40}\nsteps: [heal]\n")
    run = run_cli("lab", "compare", str(big), env=_env(tmp_path))
    assert run.code == ExitCode.DATA
    assert (
        run.stderr.strip() == f"pvectl: error: {big}:1: up nodes must be between 1 and 16, got 40"
    )
    run = run_cli(
        "lab", "compare", "three-lose-one", "--engines", "embedded,xen", env=_env(tmp_path)
    )
    assert run.code == ExitCode.USAGE and "unknown engine 'xen'" in run.stderr


# ---- real runs on the embedded engine ----------------------------------------------------

SHORT = """\
description: two nodes, one crashes
up: {nodes: 2, token: 1000}
steps:
  - kill: 2
  - expect: {node: 1, quorate: %s, members: [1], total_votes: 1, quorum: 2}
"""


def test_run_embedded_reports_a_failed_expectation(tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(SHORT % "true")  # 1 vote of 2 is not quorate: this must fail
    run = run_cli(
        "lab", "run", str(wrong), "--name", "tcmpw", "--output-format", "json", env=_env(tmp_path)
    )
    assert run.code == 1, run.stderr
    data = json.loads(run.stdout)
    (engine_run,) = data["runs"]
    checks = {c["key"]: c for s in engine_run["steps"] for c in s["checks"]}
    assert checks["quorate"] == {"key": "quorate", "want": "yes", "got": "no", "ok": False}
    assert checks["members"]["ok"] and checks["quorum"]["ok"]
    assert not (Path(tmp_path) / "xdg" / "pvectl" / "lab" / "tcmpw-e").exists()


def _as_nobody() -> list[str] | None:
    setpriv = shutil.which("setpriv")
    if not ROOT or setpriv is None:
        return None
    prefix = [
        setpriv,
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=+dac_read_search",
        "--ambient-caps=+dac_read_search",
    ]
    probe = subprocess.run(
        [*prefix, sys.executable, "-c", "import pvectl"], capture_output=True, cwd=REPO, check=False
    )
    return prefix if probe.returncode == 0 else None


def _nobody_cli(prefix: list[str], tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    xdg = tmp_path / "nobody"
    xdg.mkdir(exist_ok=True)
    os.chown(xdg, 65534, 65534)
    return subprocess.run(
        [*prefix, sys.executable, "-m", "pvectl", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=dict(os.environ, XDG_RUNTIME_DIR=str(xdg)),
        timeout=120,
        check=False,
    )


@pytest.mark.skipif(_as_nobody() is None, reason="needs root and setpriv to become nobody")
def test_without_root_compare_runs_the_embedded_side_and_says_so(tmp_path: Path) -> None:
    prefix = _as_nobody()
    assert prefix is not None
    good = tmp_path / "good.yaml"
    good.write_text(SHORT % "false")
    os.chmod(tmp_path, 0o755)
    asked = _nobody_cli(prefix, tmp_path, "lab", "compare", str(good), "--engines", "corosync")
    assert asked.returncode == ExitCode.NO_PERMISSION, asked.stderr
    assert "corosync engine needs root" in asked.stderr
    default = _nobody_cli(prefix, tmp_path, "lab", "compare", str(good), "--name", "tcmpn")
    assert default.returncode == 0, default.stdout + default.stderr
    assert "corosync side not run: the corosync engine needs root" in default.stderr
    assert "embedded: 4/4 expectations met" in default.stdout
    assert "note: corosync side not run" in default.stdout
