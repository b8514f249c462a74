"""Glue between the SSH options and the SSH session: one place, so every command that
takes ``--host`` reads them the same way."""

from __future__ import annotations

from typing import TypeVar

from pvectl.errors import ExitCode, PvectlError
from pvectl.targets.hosts import HostSpec, select_hosts
from pvectl.targets.remote import HostOutcome
from pvectl.targets.ssh import DEFAULT_CONNECT_TIMEOUT, SshSession, SshSettings

__all__ = ["DEFAULT_CONNECT_TIMEOUT", "only_result", "open_session", "remote_hosts"]

T = TypeVar("T")


def remote_hosts(hosts: list[str] | None, cluster: str | None) -> list[HostSpec]:
    return select_hosts(hosts, cluster)


def open_session(accept_new_host_key: bool, connect_timeout: float) -> SshSession:
    return SshSession(
        SshSettings(accept_new_host_key=accept_new_host_key, connect_timeout=connect_timeout)
    )


def only_result(outcome: HostOutcome[T]) -> T:
    """The one host's result, or its error raised as the command's own."""
    if outcome.result is None:
        message = outcome.error or f"{outcome.host}: no answer"
        raise PvectlError(message, ExitCode(outcome.exit_code))
    return outcome.result
