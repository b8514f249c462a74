"""Running a command "on a node": locally, inside a lab node's namespaces, or over SSH.

The corosync target parses the output of corosync's own tools; where those tools run is
a ``CommandRunner``'s business, so one parser serves this machine, a remote node and a
namespaced lab node alike.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from typing import Protocol

from pvectl.errors import ExitCode, PvectlError


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


class CommandRunner(Protocol):
    """Where commands run; ``describe`` names it in messages ("local", "ssh:pve1")."""

    describe: str

    def run(self, argv: list[str], timeout: float = 30.0) -> CommandResult: ...

    def read_file(self, path: str) -> str | None:
        """The file's text, or None when it does not exist."""
        ...


class LocalRunner:
    describe = "local"

    def __init__(self, prefix: tuple[str, ...] = ()) -> None:
        # prefix: e.g. ("nsenter", "--net=/run/netns/x", "--mount=...") for lab nodes
        self.prefix = prefix

    def run(self, argv: list[str], timeout: float = 30.0) -> CommandResult:
        full = [*self.prefix, *argv]
        try:
            proc = subprocess.run(
                full, capture_output=True, text=True, timeout=timeout, check=False
            )
        except FileNotFoundError as exc:
            raise PvectlError(f"{argv[0]}: command not found", ExitCode.UNAVAILABLE) from exc
        except subprocess.TimeoutExpired as exc:
            raise PvectlError(
                f"{' '.join(argv)}: timed out after {timeout:g} s", ExitCode.TEMP_FAIL
            ) from exc
        return CommandResult(tuple(full), proc.returncode, proc.stdout, proc.stderr)

    def read_file(self, path: str) -> str | None:
        if not self.prefix:
            try:
                with open(path, encoding="utf-8") as handle:
                    return handle.read()
            except FileNotFoundError:
                return None
        result = self.run(["cat", path])
        return result.stdout if result.returncode == 0 else None
