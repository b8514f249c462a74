"""The lab target: one node's view of a pvectl lab, whatever engine runs it.

The lab's state file records its engine; for ``corosync`` the node's view is a
``CorosyncTarget`` whose runner executes inside that node's namespaces. Another engine
plugs in by adding a branch to ``LabTarget.__init__`` (and ``is_running``).
"""

from __future__ import annotations

from pvectl.errors import PvectlError, TargetUnavailable
from pvectl.lab import state as lab_state
from pvectl.results import ExpectedResult, NodeList, QuorumStatus
from pvectl.targets.base import ClusterTarget


def is_running(name: str) -> bool:
    """Whether the named lab exists and at least one of its nodes runs."""
    try:
        state = lab_state.load(name)
    except PvectlError:
        return False
    if state is None:
        return False
    if state.engine == "corosync":
        from pvectl.lab import corosync_engine

        return corosync_engine.is_up(name)
    return False


def running_labs() -> list[str]:
    """Names of the labs that have at least one running node."""
    return [lab.name for lab in lab_state.all_labs() if is_running(lab.name)]


class LabTarget:
    """``ClusterTarget`` for node ``node`` (default: the first running one) of lab ``name``."""

    name = "lab"

    def __init__(self, name: str = "default", node: int | None = None) -> None:
        state = lab_state.load(lab_state.check_lab_name(name))
        if state is None:
            raise TargetUnavailable(
                f"no lab named {name!r} is up: start one with 'pvectl lab up 3 --name {name}', "
                "or use --target corosync (this machine) / --host NODE (SSH)"
            )
        self.lab = state
        self._inner: ClusterTarget
        if state.engine == "corosync":
            from pvectl.lab import corosync_engine
            from pvectl.targets.corosync import CorosyncTarget

            corosync_engine.require_root("the lab target (corosync engine)")
            lab_node = (
                state.node(node) if node is not None else corosync_engine.first_running(state)
            )
            self.node_id = lab_node.node_id
            self._inner = CorosyncTarget(
                corosync_engine.node_runner(lab_node),
                config_paths=("/etc/corosync/corosync.conf",),
                source=f"lab:{state.name}:node{lab_node.node_id}",
            )
        else:
            raise TargetUnavailable(
                f"lab {name!r} runs engine {state.engine!r}, which this pvectl cannot drive"
            )

    def status(self) -> QuorumStatus:
        return self._inner.status()

    def nodes(self) -> NodeList:
        return self._inner.nodes()

    def set_expected(self, expected: int) -> ExpectedResult:
        return self._inner.set_expected(expected)
