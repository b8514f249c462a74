"""The one interface every target (corosync, ssh, lab) implements."""

from __future__ import annotations

from typing import Protocol

from pvectl.results import ExpectedResult, NodeList, QuorumStatus


class ClusterTarget(Protocol):
    """Answers the pvecm questions from one node's point of view."""

    name: str

    def status(self) -> QuorumStatus: ...

    def nodes(self) -> NodeList: ...

    def set_expected(self, expected: int) -> ExpectedResult: ...
