"""The lab target: one node's view of a pvectl lab, whatever engine runs it.

The lab's state file records its engine; for ``corosync`` the node's view is a
``CorosyncTarget`` whose runner executes inside that node's namespaces. Another engine
plugs in by adding a branch to ``LabTarget.__init__`` (and ``is_running``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from pvectl.errors import PvectlError, TargetUnavailable
from pvectl.lab import state as lab_state
from pvectl.results import ExpectedResult, NodeList, QuorumStatus, from_jsonable
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
    if state.engine == "embedded":
        from pvectl.lab import embedded_engine

        return embedded_engine.is_up(name)
    return False


def running_labs() -> list[str]:
    """Names of the labs that have at least one running node."""
    return [lab.name for lab in lab_state.all_labs() if is_running(lab.name)]


def lab_nodes(name: str) -> list[tuple[int, str]]:
    """The (node id, name) of every node of lab ``name``, running or not."""
    state = lab_state.load(lab_state.check_lab_name(name))
    if state is None:
        raise TargetUnavailable(
            f"no lab named {name!r} is up: start one with 'pvectl lab up 3 --name {name}'"
        )
    return [(node.node_id, node.name) for node in state.nodes]


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
                not_running=(
                    f"corosync of node {lab_node.node_id} in lab {state.name!r} is not running: "
                    f"'pvectl lab start {lab_node.node_id} --name {state.name}', or ask "
                    "another node with --node"
                ),
            )
        elif state.engine == "embedded":
            self._inner = EmbeddedNodeTarget(state, node)
            self.node_id = self._inner.node_id
        else:
            raise TargetUnavailable(
                f"lab {name!r} runs engine {state.engine!r}, which this pvectl cannot drive"
            )

    @property
    def inner(self) -> ClusterTarget:
        """The engine's own target: a ``CorosyncTarget`` or an ``EmbeddedNodeTarget``."""
        return self._inner

    def status(self) -> QuorumStatus:
        return self._inner.status()

    def nodes(self) -> NodeList:
        return self._inner.nodes()

    def set_expected(self, expected: int) -> ExpectedResult:
        return self._inner.set_expected(expected)


class EmbeddedNodeTarget:
    """One embedded node's view, through its control socket."""

    name = "lab"

    def __init__(self, state: lab_state.LabState, node: int | None) -> None:
        from pvectl.lab import embedded_engine

        lab_node = state.node(node) if node is not None else embedded_engine.first_running(state)
        if embedded_engine.node_pid(lab_node) is None:
            raise TargetUnavailable(
                f"node {lab_node.node_id} of lab {state.name!r} is not running "
                f"('pvectl lab start {lab_node.node_id} --name {state.name}')"
            )
        self.lab = state
        self.node_id = lab_node.node_id
        self.source = f"lab:{state.name}:node{lab_node.node_id}"

    def _call(self, cmd: str, **args: Any) -> dict[str, Any]:
        from pvectl.lab import embedded_engine

        return embedded_engine.control_call(self.lab.name, self.node_id, cmd, **args)

    def info(self) -> dict[str, Any]:
        """The node's counters and state (its control socket's ``info`` reply)."""
        return self._call("info")

    def status(self) -> QuorumStatus:
        status = from_jsonable(QuorumStatus, self._call("status")["status"])
        return replace(status, source=self.source)

    def nodes(self) -> NodeList:
        return replace(from_jsonable(NodeList, self._call("nodes")["nodes"]), source=self.source)

    def set_expected(self, expected: int) -> ExpectedResult:
        reply = self._call("expected", votes=expected)
        reply.pop("ok", None)
        reply["source"] = self.source
        return from_jsonable(ExpectedResult, reply)
