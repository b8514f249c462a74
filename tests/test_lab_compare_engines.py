"""``pvectl lab compare`` on the real thing: every shipped scenario runs on real corosync 3
in namespaces and on the embedded engine at once; the scenario's expectations must hold on
corosync, and the embedded engine must reach the same quorum decisions at every step.
Timing differences are reported by the command, not asserted here."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from pvectl.errors import ExitCode
from pvectl.lab import embedded_engine, scenario_run
from pvectl.lab import scenario as sc
from tests.conftest import run_cli

REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted(p.stem for p in (REPO / "scenarios").glob("*.yaml"))


def _corosync_ready() -> bool:
    from pvectl.lab import corosync_engine

    return corosync_engine.available()


pytestmark = [
    pytest.mark.root,
    pytest.mark.corosync,
    pytest.mark.slow,
    pytest.mark.skipif(not _corosync_ready(), reason="needs root and the corosync package"),
]


def _lab_namespaces(prefix: str) -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    return [line.split()[0] for line in out.stdout.splitlines() if prefix in line]


def _runnable_on_both(name: str) -> str | None:
    from pvectl.lab import corosync_engine

    spec = sc.load(scenario_run.resolve(name)).up
    for module in (embedded_engine, corosync_engine):
        why = scenario_run.unsupported(module, spec)
        if why is not None:
            return why
    return None


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_scenario_agrees_between_engines(name: str, tmp_path: Path) -> None:
    env = dict(os.environ, XDG_RUNTIME_DIR=str(tmp_path))
    lab = f"tcmp{SHIPPED.index(name)}"
    run = run_cli("lab", "compare", name, "--name", lab, "--output-format", "json", env=env)
    why = _runnable_on_both(name)
    if why is not None:
        assert run.code == ExitCode.UNAVAILABLE, run.stderr
        assert why in run.stderr and "skipped" in run.stderr
        pytest.skip(f"{name}: {why}")
    data = json.loads(run.stdout)
    runs = {r["engine"]: r for r in data["runs"]}
    failed = [
        (r["engine"], s["step"], c)
        for r in data["runs"]
        for s in r["steps"]
        for c in s["checks"]
        if not c["ok"]
    ]
    assert runs["corosync"]["error"] is None and runs["embedded"]["error"] is None, run.stderr
    assert not failed, failed
    assert data["differences"] == [], data["differences"]
    assert data["agree"] and run.code == 0
    steps = sc.load(scenario_run.resolve(name)).steps
    for engine_run in data["runs"]:  # every step ran, and each settled
        assert len(engine_run["steps"]) == len(steps) + 1
        assert all(s["seconds"] is not None for s in engine_run["steps"])
    timing = [
        (row["step"], *(r["seconds"] if r else None for r in (row["left"], row["right"])))
        for row in data["steps"]
    ]
    print(f"\n{name}: settle seconds (embedded, corosync): {timing}")
    assert _lab_namespaces(f"pvcl-{lab}-c-") == []
    assert not (tmp_path / "pvectl" / "lab" / f"{lab}-e").exists()
    assert not (tmp_path / "pvectl" / "lab" / f"{lab}-c").exists()


def test_qdevice_scenario_on_corosync_alone(tmp_path: Path) -> None:
    from pvectl.lab import corosync_engine

    spec = sc.load(scenario_run.resolve("two-node-qdevice")).up
    why = scenario_run.unsupported(corosync_engine, spec)
    env = dict(os.environ, XDG_RUNTIME_DIR=str(tmp_path))
    run = run_cli(
        "lab", "run", "two-node-qdevice", "--engine", "corosync", "--name", "tcmpq", env=env
    )
    if why is not None:
        assert run.code == ExitCode.UNAVAILABLE and why in run.stderr
        pytest.skip(why)
    assert run.code == 0, run.stdout + run.stderr
    assert "result: PASS" in run.stdout
