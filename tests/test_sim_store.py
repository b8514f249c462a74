"""The config store under the deterministic simulator: crashes, restarts, partitions, pauses,
slow disks; nothing acknowledged is lost and every live store converges."""

from __future__ import annotations

import os

import pytest

from pvectl.nodecore.services import NodeServices
from pvectl.sim.checker import InvariantViolation
from pvectl.sim.store import StoreSimulator, main

SEEDS = int(os.environ.get("PVECTL_STORE_SEEDS", "60"))


def test_store_swarm_keeps_every_acknowledged_write() -> None:
    acknowledged = 0
    for seed in range(1, SEEDS + 1):
        print(f"seed={seed}")
        result = StoreSimulator(seed).run_store()
        acknowledged += result.acknowledged
    assert acknowledged > SEEDS  # the runs did write


def test_the_checker_catches_a_store_that_applies_writes_without_quorum(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Mutation check: drop the quorum gate at delivery and the swarm must find a loss."""
    monkeypatch.setattr(NodeServices, "_may_apply_writes", lambda self: True)
    found = None
    for seed in range(1, 41):
        try:
            StoreSimulator(seed).run_store()
        except InvariantViolation as exc:
            found = str(exc)
            break
    assert found is not None and f"seed {seed}" in found


def test_replay_is_deterministic() -> None:
    first = StoreSimulator(7).run_store()
    second = StoreSimulator(7).run_store()
    assert first == second


def test_cli_reports_seeds(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--seeds", "3", "--seed-start", "100"]) == 0
    assert "3 seeds ok" in capsys.readouterr().out
