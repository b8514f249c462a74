"""The corosync target: a real corosync on this machine (placeholder until the
corosync-target work lands; see issue 2)."""

from __future__ import annotations

import shutil

from pvectl.errors import TargetUnavailable
from pvectl.results import ExpectedResult, NodeList, QuorumStatus


def is_running() -> bool:
    return False


class CorosyncTarget:
    name = "corosync"

    def __init__(self) -> None:
        if shutil.which("corosync-quorumtool") is None:
            raise TargetUnavailable(
                "corosync-quorumtool not found: install the Debian package 'corosync', "
                "or use --target lab"
            )

    def status(self) -> QuorumStatus:
        raise TargetUnavailable("corosync target not implemented yet")

    def nodes(self) -> NodeList:
        raise TargetUnavailable("corosync target not implemented yet")

    def set_expected(self, expected: int) -> ExpectedResult:
        raise TargetUnavailable("corosync target not implemented yet")
