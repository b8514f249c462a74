from __future__ import annotations

import os

from tests.conftest import run_cli


def _one_line(text: str) -> bool:
    return len(text.strip().splitlines()) == 1 and "Traceback" not in text


def test_unknown_option_is_usage_error_64() -> None:
    run = run_cli("status", "--no-such-option")
    assert run.code == 64
    assert _one_line(run.stderr)
    assert "--no-such-option" in run.stderr


def test_expected_rejects_non_numeric_and_non_positive() -> None:
    for bad in ("abc", "0", "-3", "1.5"):
        run = run_cli("expected", "--", bad) if bad.startswith("-") else run_cli("expected", bad)
        assert run.code == 64, (bad, run)
        assert _one_line(run.stderr), run.stderr


def test_bad_output_format_is_usage_error() -> None:
    run = run_cli("status", "--output-format", "xml")
    assert run.code == 64
    assert _one_line(run.stderr)


def test_no_cluster_names_the_other_targets() -> None:
    env = dict(os.environ, XDG_RUNTIME_DIR="/nonexistent-pvectl-test", PATH="/usr/bin:/bin")
    run = run_cli("status", "--target", "lab", "--name", "does-not-exist", env=env)
    assert run.code == 1
    assert _one_line(run.stderr)
    assert "lab up" in run.stderr


def test_debug_flag_shows_traceback_anywhere_on_the_line() -> None:
    run = run_cli("status", "--target", "lab", "--name", "does-not-exist", "--debug")
    assert run.code != 0
    assert "Traceback" in run.stderr


def test_version() -> None:
    run = run_cli("--version")
    assert run.code == 0
    assert run.stdout.startswith("pvectl ")


def test_an_option_the_engine_cannot_honour_is_refused_naming_the_engine() -> None:
    """The embedded engine used to run udpu silently when asked for knet."""
    run = run_cli("lab", "up", "3", "--transport", "knet", "--name", "tknet")
    assert run.code == 64, run.stderr
    assert "embedded engine speaks udpu only" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
