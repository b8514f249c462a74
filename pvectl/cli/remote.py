"""Glue between the SSH options and the SSH session: one place, so every command that
takes ``--host`` reads them the same way.

paramiko (through pvectl.targets.ssh) is imported only when a command opens a session:
it is deferred for start-up time, so ``pvectl --help`` and local commands never load it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from pvectl.errors import ExitCode, PvectlError
from pvectl.targets.hosts import DEFAULT_CONNECT_TIMEOUT

if TYPE_CHECKING:
    from pvectl.targets.hosts import HostSpec
    from pvectl.targets.remote import HostOutcome
    from pvectl.targets.ssh import SshSession

__all__ = ["DEFAULT_CONNECT_TIMEOUT", "only_result", "open_session", "remote_hosts"]

T = TypeVar("T")


def remote_hosts(hosts: list[str] | None, cluster: str | None) -> list[HostSpec]:
    from pvectl.targets.hosts import select_hosts

    return select_hosts(hosts, cluster)


def open_session(accept_new_host_key: bool, connect_timeout: float) -> SshSession:
    from pvectl.targets.ssh import SshSession, SshSettings  # deferred: imports paramiko

    return SshSession(
        SshSettings(accept_new_host_key=accept_new_host_key, connect_timeout=connect_timeout)
    )


def only_result(outcome: HostOutcome[T]) -> T:
    """The one host's result, or its error raised as the command's own."""
    if outcome.result is None:
        message = outcome.error or f"{outcome.host}: no answer"
        raise PvectlError(message, ExitCode(outcome.exit_code))
    return outcome.result
