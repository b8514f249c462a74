"""Issue 12 on the real thing: each votequorum option rehearsed through ``lab compare`` on
real corosync 3 (namespaces, root) and the embedded engine at once. The expectations in
the scenarios were read off corosync; the embedded engine must reach the same decision on
every node at every step, members that stay in disagreement included."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pvectl.lab import scenario as sc
from tests.conftest import run_cli

HERE = Path(__file__).resolve().parent / "scenarios_quorum"
SCENARIOS = sorted(p.stem for p in HERE.glob("*.yaml"))


def _corosync_ready() -> bool:
    from pvectl.lab import corosync_engine

    return corosync_engine.available()


pytestmark = [
    pytest.mark.root,
    pytest.mark.corosync,
    pytest.mark.slow,
    pytest.mark.skipif(not _corosync_ready(), reason="needs root and the corosync package"),
]


@pytest.mark.parametrize("name", SCENARIOS)
def test_quorum_option_agrees_with_corosync(name: str, tmp_path: Path) -> None:
    path = HERE / f"{name}.yaml"
    if sc.load(path).up.qdevice:
        import shutil

        if shutil.which("corosync-qdevice") is None:
            pytest.skip("corosync-qdevice is not installed")
    env = dict(os.environ, XDG_RUNTIME_DIR=str(tmp_path))
    lab = f"tq{SCENARIOS.index(name)}"
    run = run_cli("lab", "compare", str(path), "--name", lab, "--output-format", "json", env=env)
    data = json.loads(run.stdout)
    runs = {r["engine"]: r for r in data["runs"]}
    assert runs["corosync"]["error"] is None and runs["embedded"]["error"] is None, run.stderr
    failed = [
        (r["engine"], s["step"], c)
        for r in data["runs"]
        for s in r["steps"]
        for c in s["checks"]
        if not c["ok"]
    ]
    assert not failed, failed
    assert data["differences"] == [], data["differences"]
    assert data["agree"] and run.code == 0
    steps = sc.load(path).steps
    for engine_run in data["runs"]:
        assert len(engine_run["steps"]) == len(steps) + 1
        assert all(s["seconds"] is not None for s in engine_run["steps"])
