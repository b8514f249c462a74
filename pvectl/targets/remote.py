"""Asking several nodes the same question at once, over SSH, each failure kept per host.

``across_hosts`` runs one function per host in parallel threads, all sharing one
``SshSession`` (one connection per host), and returns every outcome in the order the
hosts were given: a result, or the one-line error that host produced.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

from pvectl.errors import ExitCode, PvectlError
from pvectl.targets.base import ClusterTarget
from pvectl.targets.hosts import HostSpec
from pvectl.targets.runner import CommandRunner
from pvectl.targets.ssh import SshError, SshRunner, SshSession

T = TypeVar("T")
MAX_PARALLEL = 16


@dataclass(frozen=True)
class HostOutcome(Generic[T]):
    host: str
    result: T | None = None
    error: str | None = None
    exit_code: int = 0


def corosync_target(runner: CommandRunner) -> ClusterTarget:
    """The corosync target with its tools run by ``runner`` (ssh, local, namespaced)."""
    from pvectl.targets.corosync import CorosyncTarget

    return CorosyncTarget(runner=runner)


def across_hosts(
    session: SshSession,
    hosts: list[HostSpec],
    job: Callable[[SshRunner], T],
) -> list[HostOutcome[T]]:
    def one(spec: HostSpec) -> HostOutcome[T]:
        runner = session.runner(spec)
        try:
            runner.connect()
            return HostOutcome(spec.text, result=job(runner))
        except SshError as exc:  # already names the host
            return HostOutcome(spec.text, error=str(exc), exit_code=int(exc.exit_code))
        except PvectlError as exc:
            return HostOutcome(spec.text, error=f"{spec.text}: {exc}", exit_code=int(exc.exit_code))
        except Exception as exc:  # a bug on one host must not hide the others' answers
            return HostOutcome(
                spec.text,
                error=f"{spec.text}: internal error: {type(exc).__name__}: {exc}",
                exit_code=int(ExitCode.SOFTWARE),
            )

    if len(hosts) == 1:
        return [one(hosts[0])]
    with ThreadPoolExecutor(max_workers=min(len(hosts), MAX_PARALLEL)) as pool:
        return list(pool.map(one, hosts))
