"""pvectl's pydantic-free value parsing agrees with typer's own on every CLI parameter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer import _click as click
from typer._coercion import build_runtime_param

from pvectl.cli import coerce, docs

INPUTS = (
    "5",
    "-3",
    "+7",
    " 8 ",
    "0",
    "1.5",
    "0.1",
    "0.05",
    "60",
    "61",
    "1e3",
    "1_000",
    "0x10",
    "inf",
    "nan",
    "65535",
    "65536",
    "abc",
    "",
    "true",
    "No",
    "on",
    "local",
    "ALL",
    "json",
    "Json",
    "json-pretty",
    "lms",
    "ffsplit",
    "wal-normal",
    "stop",
    "/tmp/x",
    "rel/path",
    ["1", "2"],
    ["cpu", "dns"],
    ["cpu", "nope"],
)


def _params() -> list[Any]:
    found: list[Any] = []
    root = docs.build_command()

    def walk(command: Any, ctx: click.Context) -> None:
        found.extend(p for p in command.params if hasattr(p, "type_descriptor"))
        found.append(command.get_help_option(ctx))
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, click.Context(sub, info_name=name, parent=ctx))

    walk(root, click.Context(root, info_name="pvectl"))
    return found


def _outcome(runtime: Any, value: Any, param: Any, ctx: click.Context) -> Any:
    try:
        return ("ok", runtime._coerce_value(value, param=param, ctx=ctx))
    except click.exceptions.BadParameter:
        return ("bad parameter",)


def test_every_parameter_parses_as_typer_would() -> None:
    params = _params()
    assert len(params) > 100
    ctx = click.Context(docs.build_command(), info_name="pvectl")
    fast_count = 0
    for param in params:
        fast = coerce.fast_runtime_param(param.type_descriptor)
        if fast is None:
            continue
        fast_count += 1
        reference = build_runtime_param(param.type_descriptor)  # typer's, with pydantic
        for value in INPUTS:
            if isinstance(value, list) != bool(param.multiple or param.nargs == -1):
                continue
            expected = _outcome(reference, value, param, ctx)
            got = _outcome(fast, value, param, ctx)
            assert repr(got) == repr(expected), (
                param.name,
                param.type_descriptor.annotation,
                value,
            )
            if got[0] == "ok":
                assert type(got[1]) is type(expected[1]), (param.name, value)
    assert fast_count == len(params), "a parameter would fall back to pydantic"


def test_installed_on_the_commands() -> None:
    for param in _params():
        param.get_runtime_param()
        assert isinstance(param._runtime_param, coerce._Parsed), param.name


def test_out_of_range_is_a_one_line_usage_error() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "pvectl", "status", "--host", "h", "--connect-timeout", "0.01"],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert run.returncode == 64
    assert run.stderr.count("\n") == 1 and "--connect-timeout" in run.stderr, run.stderr
    assert "0.01 is smaller than the minimum 0.1" in run.stderr


def test_a_quick_command_does_not_load_pydantic() -> None:
    code = (
        "import sys\n"
        "from pvectl.cli.main import main\n"
        "main(['quorum', 'what-if', '--nodes', '3', '--output-format', 'json'])\n"
        "assert 'pydantic' not in sys.modules, 'pydantic was imported'\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr


@pytest.mark.parametrize("bad", ["abc", "1.5", "0"])
def test_expected_rejects_bad_votes(bad: str) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "pvectl", "expected", bad],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 64, run
