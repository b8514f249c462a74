"""Which engine runs a lab: chosen at ``lab up``, recorded in the lab's state, and looked
up by every later command."""

from __future__ import annotations

import os

from pvectl.errors import ExitCode, PvectlError
from pvectl.lab import state as lab_state
from pvectl.lab.engine import LabEngine

ENGINES = ("embedded", "corosync")


def choose(requested: str | None) -> str:
    """``--engine`` as given, or the default: the embedded engine (no root needed)."""
    return requested or "embedded"


def module_for(engine: str) -> LabEngine:
    if engine == "corosync":
        from pvectl.lab import corosync_engine

        return corosync_engine
    if engine == "embedded":
        from pvectl.lab import embedded_engine

        return embedded_engine
    raise PvectlError(
        f"lab engine {engine!r} is not available in this pvectl", ExitCode.UNAVAILABLE
    )


def for_lab(name: str) -> LabEngine:
    """The engine module of a recorded lab; without a state file (a crash), the engine
    whose leftovers are found: embedded node processes, else corosync namespaces."""
    state = lab_state.load(name)
    if state is not None:
        return module_for(state.engine)
    from pvectl.lab import embedded_engine

    if embedded_engine.leftovers(name) or os.geteuid() != 0:
        return embedded_engine
    return module_for("corosync")
