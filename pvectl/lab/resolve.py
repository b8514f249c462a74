"""Choosing where the facts come from: ``--target corosync|lab|auto``."""

from __future__ import annotations

from pvectl.errors import TargetUnavailable
from pvectl.targets.base import ClusterTarget

NO_CLUSTER_HINT = (
    "no cluster found: corosync is not running on this machine and no pvectl lab is up; "
    "start an embedded one with 'pvectl lab up 3', or use --target lab / --host NODE"
)


def choose(kind: str, lab_name: str = "default") -> tuple[str, str]:
    """``("corosync", "")`` or ``("lab", NAME)``: which source ``--target KIND`` means here.

    Without ``--name`` (the name ``default``) and no lab of that name up, the only running
    lab is used; with several running, the error names them.
    """
    if kind in ("corosync", "auto"):
        from pvectl.targets import corosync

        if kind == "corosync" or corosync.is_running():
            return "corosync", ""
    from pvectl.lab import target as lab

    if lab_name == "default" and not lab.is_running(lab_name):
        running = lab.running_labs()
        if len(running) == 1:
            return "lab", running[0]
        if len(running) > 1:
            raise TargetUnavailable(
                "no lab named 'default' is up; running labs: "
                + ", ".join(running)
                + ": choose one with --name"
            )
    if kind == "lab" or lab.is_running(lab_name):
        return "lab", lab_name
    raise TargetUnavailable(NO_CLUSTER_HINT)


def resolve_target(
    kind: str, lab_name: str = "default", lab_node: int | None = None
) -> ClusterTarget:
    chosen, name = choose(kind, lab_name)
    if chosen == "corosync":
        from pvectl.targets import corosync

        return corosync.CorosyncTarget()
    from pvectl.lab import target as lab

    found: ClusterTarget = lab.LabTarget(name, lab_node)
    return found
