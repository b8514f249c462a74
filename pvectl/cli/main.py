"""Entry point: builds the command tree and turns failures into one line and an exit code.

Usage errors exit 64 (EX_USAGE) rather than click's 2, which ``status`` reserves for
"not quorate" as corosync-quorumtool does. ``--debug`` anywhere on the command line (or
PVECTL_DEBUG=1) shows tracebacks.
"""

from __future__ import annotations

import os
import sys

import typer
from typer import _click as click  # typer >= 0.29 vendors click

from pvectl import __version__
from pvectl.cli.helpfmt import PvectlTyper
from pvectl.errors import ExitCode, PvectlError


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"pvectl {__version__}")
        raise typer.Exit()


def root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version."
    ),
    debug: bool = typer.Option(
        False, "--debug", help="Show tracebacks on errors (also accepted after the subcommand)."
    ),
) -> None:
    """pvectl: status, nodes, expected, qdevice, perf, sync-trace and lab."""


def build_app(only: str | None = None) -> typer.Typer:
    """The command tree; with ``only`` (a top-level command name) just that command's
    part of it, which is all a run of that command needs (for start-up time)."""
    from pvectl.cli import commands

    app = PvectlTyper(
        name="pvectl",
        help="Proxmox VE / corosync cluster toolkit: pvecm and pveperf, measured honestly, "
        "plus an embedded cluster to rehearse failures.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    app.callback()(root)
    commands.register(app, only)
    return app


def _command_name(args: list[str]) -> str | None:
    """The top-level command on the line (the root's own options are all flags)."""
    return next((arg for arg in args if not arg.startswith("-")), None)


def _error(message: str) -> None:
    from pvectl.cli.output import stderr_console  # rich: loaded only to print

    stderr_console().print(f"pvectl: error: {message}", markup=False, highlight=False)


def _split_debug(argv: list[str]) -> tuple[list[str], bool]:
    """Accept ``--debug`` anywhere before ``--``, so every command takes it."""
    out: list[str] = []
    debug = os.environ.get("PVECTL_DEBUG", "") not in ("", "0")
    passthrough = False
    for arg in argv:
        if not passthrough and arg == "--debug":
            debug = True
            continue
        if arg == "--":
            passthrough = True
        out.append(arg)
    return out, debug


def main(argv: list[str] | None = None) -> int:
    args, debug = _split_debug(list(sys.argv[1:] if argv is None else argv))
    command = typer.main.get_command(build_app(_command_name(args)))
    try:
        result = command.main(args=args, prog_name="pvectl", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        typer.echo(exc.format_message())  # a group without its command: its help
        return int(ExitCode.USAGE)
    except click.exceptions.UsageError as exc:
        if debug:
            raise
        hint = (
            f" (try 'pvectl {exc.ctx.command_path.split(' ', 1)[1]} --help')"
            if (exc.ctx is not None and " " in exc.ctx.command_path)
            else " (try 'pvectl --help')"
        )
        _error(exc.format_message().replace("\n", " ") + hint)
        return int(ExitCode.USAGE)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        _error("interrupted")
        return int(ExitCode.INTERRUPTED)
    except KeyboardInterrupt:
        _error("interrupted")
        return int(ExitCode.INTERRUPTED)
    except PvectlError as exc:
        if debug:
            raise
        _error(str(exc))
        return int(exc.exit_code)
    except BrokenPipeError:
        # `pvectl status | head -1`: quietly stop, as coreutils do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return int(ExitCode.OK)
    except Exception as exc:  # a bug: say so in one line unless --debug
        if debug:
            raise
        _error(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for details)")
        return int(ExitCode.SOFTWARE)
    return int(result) if isinstance(result, int) else int(ExitCode.OK)
