"""Which engine runs a lab: chosen at ``lab up``, recorded in the lab's state, and looked
up by every later command."""

from __future__ import annotations

from types import ModuleType

from pvectl.errors import ExitCode, PvectlError
from pvectl.lab import state as lab_state

ENGINES = ("embedded", "corosync")
EMBEDDED_MISSING = (
    "the embedded engine is not available yet: use --engine corosync (needs root and the "
    "Debian package 'corosync')"
)


def choose(requested: str | None) -> str:
    """``--engine`` as given, or the default: corosync when it can run here."""
    from pvectl.lab import corosync_engine

    if requested == "corosync":
        return "corosync"
    if requested == "embedded":
        raise PvectlError(EMBEDDED_MISSING, ExitCode.UNAVAILABLE)
    if corosync_engine.available():
        return "corosync"
    raise PvectlError(
        "the embedded engine is not available yet, and the corosync engine needs root and "
        "the Debian package 'corosync': run as root with corosync installed, or pass "
        "--engine corosync to see what is missing",
        ExitCode.UNAVAILABLE,
    )


def module_for(engine: str) -> ModuleType:
    if engine == "corosync":
        from pvectl.lab import corosync_engine

        return corosync_engine
    raise PvectlError(
        f"lab engine {engine!r} is not available in this pvectl", ExitCode.UNAVAILABLE
    )


def for_lab(name: str) -> ModuleType:
    """The engine module of a recorded lab (corosync when only leftovers remain)."""
    state = lab_state.load(name)
    return module_for(state.engine if state is not None else "corosync")
