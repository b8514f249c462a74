"""Options shared by every command, declared once so they read the same everywhere."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from pvectl.cli.output import OutputFormat


class TargetKind(StrEnum):
    auto = "auto"
    corosync = "corosync"
    lab = "lab"


OutputFormatOption = Annotated[
    OutputFormat,
    typer.Option(
        "--output-format",
        help="text (default, human), json, json-pretty or yaml (Proxmox's option name).",
        case_sensitive=False,
    ),
]

TargetOption = Annotated[
    TargetKind,
    typer.Option(
        "--target",
        help="Where the facts come from: corosync (this machine), lab (embedded), "
        "auto (corosync if running, else a running lab).",
        case_sensitive=False,
    ),
]

LabNameOption = Annotated[
    str,
    typer.Option("--name", help="Lab name (several labs can run side by side)."),
]

LabNodeOption = Annotated[
    int | None,
    typer.Option("--node", help="Lab node whose view to show (default: first running node)."),
]
