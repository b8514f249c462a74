"""Start-up stays light: building the CLI loads none of the heavy libraries that only
some commands need (paramiko ~80 ms, cryptography, asyncio, pydantic)."""

from __future__ import annotations

import subprocess
import sys

HEAVY = (
    "paramiko",
    "cryptography",
    "asyncio",
    "pydantic",
    "invoke",
    "unittest.mock",
    "prometheus_client",
    "pvectl.monitor.collect",  # watch/exporter's collectors: only when they run
    "pvectl.quorum.votequorum",  # the quorum maths: only for the commands that compute
)


def _loaded_after(code: str) -> list[str]:
    probe = code + f"\nimport sys\nprint('LOADED:', *(m for m in {HEAVY!r} if m in sys.modules))\n"
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    return run.stdout.splitlines()[-1].split()[1:]


def test_building_the_cli_and_its_help_imports_no_heavy_library() -> None:
    loaded = _loaded_after(
        "import os\n"
        "os.environ['COLUMNS'] = '80'\n"
        "from pvectl.cli import docs\n"
        "from pvectl.cli.main import main\n"
        "paths = [d.path for d in docs.walk()]\n"  # every command, built by typer
        "for path in paths:\n"
        "    assert main([*path, '--help']) == 0\n"
    )
    assert loaded == [], f"imported at start-up: {loaded}"


def test_a_local_command_imports_no_ssh() -> None:
    loaded = _loaded_after(
        "from pvectl.cli.main import main\n"
        "assert main(['quorum', 'what-if', '--nodes', '5', '--output-format', 'json']) == 0\n"
    )
    assert "paramiko" not in loaded and "asyncio" not in loaded, loaded


def test_a_command_builds_only_its_module_and_the_map_is_complete() -> None:
    import typer

    from pvectl.cli import commands
    from pvectl.cli.main import build_app

    def top_level(only: str | None) -> set[str]:
        return set(typer.main.get_command(build_app(only)).commands)  # type: ignore[attr-defined]

    assert top_level(None) == set(commands.MODULE_OF)
    for name, module in commands.MODULE_OF.items():
        assert top_level(name) == {n for n, m in commands.MODULE_OF.items() if m == module}
    assert top_level("no-such-command") == set(commands.MODULE_OF)  # for click's suggestion
