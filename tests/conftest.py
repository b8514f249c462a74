"""Shared fixtures: running the CLI in-process and as a real subprocess."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class CliRun:
    code: int
    stdout: str
    stderr: str


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> CliRun:
    """Run ``python -m pvectl`` as a user would: a real process, real exit code."""
    proc = subprocess.run(
        [sys.executable, "-m", "pvectl", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )
    return CliRun(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def cli() -> type[CliRun]:
    return CliRun
