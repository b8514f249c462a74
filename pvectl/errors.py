"""Errors every layer may raise, each carrying the exit code the CLI returns for it.

The CLI turns any ``PvectlError`` into one line on stderr and its exit code; anything
else is a bug and is reported as such (``--debug`` shows the traceback).
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Documented exit codes (README, man page). 0/1/2 follow corosync-quorumtool."""

    OK = 0
    ERROR = 1
    NOT_QUORATE = 2
    USAGE = 64  # EX_USAGE: never collides with "not quorate"
    DATA = 65  # EX_DATAERR: input data (a config file, a scenario) is malformed
    NO_INPUT = 66  # EX_NOINPUT: a file or path named on the command line is missing
    UNAVAILABLE = 69  # EX_UNAVAILABLE: a required service or package is not there
    SOFTWARE = 70  # EX_SOFTWARE: internal error (a bug)
    CANT_CREATE = 73  # EX_CANTCREAT: cannot write where asked
    IO = 74  # EX_IOERR: an I/O error (disk full, device unreadable)
    TEMP_FAIL = 75  # EX_TEMPFAIL: timed out, try again
    NO_PERMISSION = 77  # EX_NOPERM: needs root or another permission
    CONFIG = 78  # EX_CONFIG: a configuration that cannot work
    INTERRUPTED = 130  # Ctrl-C


class PvectlError(Exception):
    """A failure the user can act on; ``str(err)`` is the one-line message."""

    exit_code: ExitCode = ExitCode.ERROR

    def __init__(self, message: str, exit_code: ExitCode | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(PvectlError):
    exit_code = ExitCode.USAGE


class ConfigError(PvectlError):
    """A configuration file that cannot be read; the message names file and line."""

    exit_code = ExitCode.DATA

    def __init__(self, message: str, path: str = "", line: int = 0) -> None:
        where = f"{path}:{line}: " if path and line else (f"{path}: " if path else "")
        super().__init__(f"{where}{message}")
        self.path = path
        self.line = line


class TargetUnavailable(PvectlError):
    """No cluster (or tool) where the target looked."""

    exit_code = ExitCode.ERROR


class PermissionNeeded(PvectlError):
    exit_code = ExitCode.NO_PERMISSION


class CommandRefused(PvectlError):
    """The cluster (or our guard that mirrors it) refused the request."""

    exit_code = ExitCode.ERROR
