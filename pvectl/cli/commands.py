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
)


def register(app: typer.Typer) -> None:
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(app)
