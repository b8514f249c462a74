"""Choosing where the facts come from: ``--target corosync|lab|auto``."""

from __future__ import annotations

from pvectl.errors import TargetUnavailable
from pvectl.targets.base import ClusterTarget

NO_CLUSTER_HINT = (
    "no cluster found: corosync is not running on this machine and no pvectl lab is up; "
    "start an embedded one with 'pvectl lab up 3', or use --target lab / --host NODE"
)


def resolve_target(
    kind: str, lab_name: str = "default", lab_node: int | None = None
) -> ClusterTarget:
    if kind in ("corosync", "auto"):
        from pvectl.targets import corosync

        if kind == "corosync" or corosync.is_running():
            return corosync.CorosyncTarget()
    if kind in ("lab", "auto"):
        import importlib

        try:  # the lab target arrives with the embedded cluster (issue 4)
            lab = importlib.import_module("pvectl.targets.lab")
        except ImportError:
            lab = None
        if lab is not None and kind == "auto" and not lab.is_running(lab_name):
            # no lab of that name: with the default name, the only running lab will do
            running = lab.running_labs() if lab_name == "default" else []
            lab_name = running[0] if len(running) == 1 else lab_name
        if lab is not None and (kind == "lab" or lab.is_running(lab_name)):
            found: ClusterTarget = lab.LabTarget(lab_name, lab_node)
            return found
    raise TargetUnavailable(NO_CLUSTER_HINT)
