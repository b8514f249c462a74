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


class CommitLevel(StrEnum):
    """When a config-store write counts as done: on this node, or on every member."""

    local = "local"
    all = "all"


OutputFormatOption = Annotated[
    OutputFormat,
    typer.Option(
        "--output-format",
        help="text for people; json, json-pretty or yaml for scripts (Proxmox's name).",
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
    typer.Option("--name", metavar="NAME", help="Lab name (several labs can run side by side)."),
]

LabNodeOption = Annotated[
    int | None,
    typer.Option(
        "--node", metavar="NODE", help="Lab node whose view to show (default: first running node)."
    ),
]

HostsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--host",
        metavar="HOST",
        help="Run on this node over SSH: [user@]host[:port] or a ~/.ssh/config alias. "
        "Repeat for several nodes (they run in parallel).",
        show_default=False,
    ),
]

ClusterNameOption = Annotated[
    str | None,
    typer.Option(
        "--cluster",
        metavar="NAME",
        help="Run on all hosts of this cluster (named in ~/.config/pvectl/config.yaml).",
        show_default=False,
    ),
]

AcceptNewHostKeyOption = Annotated[
    bool,
    typer.Option(
        "--accept-new-host-key",
        help="Record the host key of a node not yet in known_hosts (OpenSSH's accept-new). "
        "A changed key is refused even so.",
    ),
]

ConnectTimeoutOption = Annotated[
    float,
    typer.Option(
        "--connect-timeout",
        metavar="SECONDS",
        min=0.1,
        help="Seconds to wait for each SSH connection.",
    ),
]
