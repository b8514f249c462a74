"""CPG over real Totem rings (in-memory network): joins, leaves, node down/up, messages."""

from __future__ import annotations

import pytest

from pvectl.totem.cpg import (
    Cpg,
    CpgConfChg,
    CpgDeliver,
    CpgError,
    CpgEvent,
    CpgReason,
    CpgTotemConfChg,
    Process,
)
from pvectl.totem.ring_id import RingId
from pvectl.totem.srp import Command, ConfigChange, ConfigKind, Deliver
from tests.helpers.totem_net import Net


class CpgNet(Net):
    """Every node runs a Cpg fed from its Srp's Deliver and ConfigChange commands."""

    def __init__(self, ids: list[int]) -> None:
        self.cpg = {i: Cpg(i) for i in ids}
        self.events: dict[int, list[CpgEvent]] = {i: [] for i in ids}
        super().__init__(ids)

    def boot(self, i: int) -> None:
        self.cpg[i] = Cpg(i)
        super().boot(i)

    def execute(self, i: int, cmds: list[Command]) -> None:
        super().execute(i, cmds)
        for c in cmds:
            if isinstance(c, Deliver):
                self.events[i] += self.cpg[i].on_deliver(c.sender, c.payload)
            elif isinstance(c, ConfigChange):
                evs, msgs = self.cpg[i].on_config_change(c)
                self.events[i] += evs
                for m in msgs:
                    self.send(i, m)

    def confchgs(self, i: int, group: str) -> list[CpgConfChg]:
        return [e for e in self.events[i] if isinstance(e, CpgConfChg) and e.group == group]

    def messages(self, i: int, group: str) -> list[tuple[Process, bytes]]:
        return [
            (e.sender, e.payload)
            for e in self.events[i]
            if isinstance(e, CpgDeliver) and e.group == group
        ]


def ring(ids: list[int]) -> CpgNet:
    net = CpgNet(ids)
    net.run_until(lambda: net.one_ring(ids), limit=5)
    net.run(0.2)
    return net


def test_join_mcast_leave_in_total_order() -> None:
    net = ring([1, 2, 3])
    net.send(1, net.cpg[1].join("pve_dcdb", 100))
    net.send(2, net.cpg[2].join("pve_dcdb", 200))
    net.run(0.5)
    for i in (1, 2):
        assert net.cpg[i].members("pve_dcdb") == (Process(1, 100), Process(2, 200))
    # node 3 has no local member: it tracks the group but gets no callbacks
    assert net.cpg[3].members("pve_dcdb") == (Process(1, 100), Process(2, 200))
    assert net.confchgs(3, "pve_dcdb") == []
    # the joiner sees its own join
    first = net.confchgs(1, "pve_dcdb")[0]
    assert first.joined == ((Process(1, 100), CpgReason.JOIN),) and first.local_pids == (100,)
    for k in range(3):
        net.send(1, net.cpg[1].mcast("pve_dcdb", 100, b"a%d" % k))
        net.send(2, net.cpg[2].mcast("pve_dcdb", 200, b"b%d" % k))
    net.run(0.5)
    assert net.messages(1, "pve_dcdb") == net.messages(2, "pve_dcdb")
    assert len(net.messages(1, "pve_dcdb")) == 6
    net.send(2, net.cpg[2].leave("pve_dcdb", 200))
    net.run(0.5)
    last = net.confchgs(1, "pve_dcdb")[-1]
    assert last.left == ((Process(2, 200), CpgReason.LEAVE),)
    assert last.members == (Process(1, 100),)
    assert net.confchgs(2, "pve_dcdb")[-1].local_pids == (200,)  # the leaver is told
    with pytest.raises(CpgError):
        net.cpg[2].mcast("pve_dcdb", 200, b"late")


def test_local_request_errors() -> None:
    cpg = Cpg(1)
    cpg.join("g", 1)
    with pytest.raises(CpgError):
        cpg.join("g", 1)
    with pytest.raises(CpgError):
        cpg.leave("g", 2)
    with pytest.raises(CpgError):
        cpg.join("x" * 200, 3)


def test_node_down_and_back_up() -> None:
    net = ring([1, 2, 3])
    for i in (1, 2, 3):
        net.send(i, net.cpg[i].join("grp", i * 10))
    net.run(0.5)
    net.crash(3)
    net.run_until(lambda: net.one_ring([1, 2]), limit=10)
    net.run(0.2)
    down = net.confchgs(1, "grp")[-1]
    assert down.left == ((Process(3, 30), CpgReason.NODEDOWN),)
    assert (
        net.cpg[1].members("grp")
        == net.cpg[2].members("grp")
        == (
            Process(1, 10),
            Process(2, 20),
        )
    )
    assert any(isinstance(e, CpgTotemConfChg) and e.members == (1, 2) for e in net.events[1])
    # node 3 restarts, its process joins again; 1 and 2 learn about it
    net.boot(3)
    net.run_until(lambda: net.one_ring([1, 2, 3]), limit=10)
    net.send(3, net.cpg[3].join("grp", 31))
    net.run(0.5)
    members = (Process(1, 10), Process(2, 20), Process(3, 31))
    assert net.cpg[1].members("grp") == members
    # the restarted node learns the others from their joinlists
    assert net.cpg[3].members("grp") == members
    # ... so its own join callback lists every member (it had no local member before)
    own = net.confchgs(3, "grp")[-1]
    assert own.members == members and own.joined == ((Process(3, 31), CpgReason.JOIN),)


def test_joinlist_from_a_merged_partition_reports_nodeup() -> None:
    ring_id = RingId(1, 8)
    a, b = Cpg(1), Cpg(9)
    a.on_deliver(1, a.join("grp", 1))
    b.on_deliver(9, b.join("grp", 70))
    b.on_config_change(ConfigChange(ConfigKind.TRANSITIONAL, (9,), (), (), ring_id))
    events, msgs = b.on_config_change(ConfigChange(ConfigKind.REGULAR, (1, 9), (), (1,), ring_id))
    assert [type(e) for e in events] == [CpgTotemConfChg] and len(msgs) == 1
    up = a.on_deliver(9, msgs[0])
    assert len(up) == 1 and isinstance(up[0], CpgConfChg)
    assert up[0].joined == ((Process(9, 70), CpgReason.NODEUP),)
    assert up[0].members == (Process(1, 1), Process(9, 70)) and up[0].local_pids == (1,)
    assert a.on_deliver(9, msgs[0]) == []  # already known: no second callback


def test_message_from_unknown_sender_is_dropped() -> None:
    cpg = Cpg(1)
    sender = Cpg(2)
    sender.join("g", 5)
    msg = sender.mcast("g", 5, b"x")
    assert cpg.on_deliver(2, msg) == []
    assert cpg.dropped == 1
    assert cpg.on_deliver(2, b"\x00garbage") == []
