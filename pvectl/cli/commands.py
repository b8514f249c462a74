"""The list of command modules; each module adds its own commands to the app."""

from __future__ import annotations

import importlib

import typer

COMMAND_MODULES = (
    "pvectl.cli.cmd_cluster",
    "pvectl.cli.cmd_quorum",
    "pvectl.cli.cmd_lab",
    "pvectl.cli.cmd_trace",
    "pvectl.cli.cmd_perf",
    "pvectl.cli.cmd_check",
    "pvectl.cli.cmd_qdevice",
    "pvectl.cli.cmd_watch",
    "pvectl.cli.cmd_exporter",
    "pvectl.cli.cmd_completion",
)

# Which module adds each top-level command, so a run of one command imports and builds
# only its module (tests/test_startup.py checks this matches what the modules register).
MODULE_OF = {
    "status": "pvectl.cli.cmd_cluster",
    "nodes": "pvectl.cli.cmd_cluster",
    "expected": "pvectl.cli.cmd_cluster",
    "quorum": "pvectl.cli.cmd_quorum",
    "lab": "pvectl.cli.cmd_lab",
    "sync-trace": "pvectl.cli.cmd_trace",
    "perf": "pvectl.cli.cmd_perf",
    "check": "pvectl.cli.cmd_check",
    "qdevice": "pvectl.cli.cmd_qdevice",
    "watch": "pvectl.cli.cmd_watch",
    "exporter": "pvectl.cli.cmd_exporter",
    "completion": "pvectl.cli.cmd_completion",
}


def register(app: typer.Typer, only: str | None = None) -> None:
    """Every module's commands, or with ``only`` the module of that command (all of them
    when it is not a known command, so click can suggest the right one)."""
    module = MODULE_OF.get(only) if only is not None else None
    for module_name in (module,) if module is not None else COMMAND_MODULES:
        importlib.import_module(module_name).register(app)
