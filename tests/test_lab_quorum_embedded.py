"""Issue 12 without root: the option scenarios whose expectations were read off real
corosync, run on the embedded engine alone (``lab run``), so a machine without corosync
still checks them. The comparison with corosync itself is test_lab_quorum_compare."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import run_cli

HERE = Path(__file__).resolve().parent / "scenarios_quorum"


@pytest.mark.parametrize("name", ["downscale-expected", "wfa-cold-start", "two-node-three"])
def test_option_scenario_on_the_embedded_engine(name: str, tmp_path: Path) -> None:
    env = dict(os.environ, XDG_RUNTIME_DIR=str(tmp_path))
    run = run_cli(
        "lab", "run", str(HERE / f"{name}.yaml"), "--engine", "embedded", "--name", "tqe", env=env
    )
    assert run.code == 0, run.stdout + run.stderr
    assert "result: PASS" in run.stdout
