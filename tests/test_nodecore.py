"""The pure node core: two cores joined by hand (what Totem would deliver, in agreed order),
so each decision of the commit pipeline and the QDevice hold is visible step by step."""

from __future__ import annotations

import errno

from pvectl.cfs import dfsm
from pvectl.cfs.memdb import ApplyResult, Create, MemDB
from pvectl.nodecore.commit import CommitPipeline, StartFsync, Votes, WriteDone
from pvectl.nodecore.core import Command, NodeCore
from pvectl.nodecore.services import (
    Multicast,
    NodeServices,
    QuorumChanged,
    Refused,
    StoreError,
    WriteApplied,
)
from pvectl.quorum import votequorum as vq
from pvectl.totem.ring_id import RingId

RING = RingId(1, 4)


def cores(n: int = 2, *, coupled: bool = False) -> dict[int, NodeCore]:
    options = vq.QuorumOptions.build([(i, 1) for i in range(1, n + 1)])
    return {
        i: NodeCore(i, vq.initial_state(options, i), MemDB(), coupled=coupled)
        for i in range(1, n + 1)
    }


class Ring:
    """Agreed order by hand: every multicast goes to every core, in send order."""

    def __init__(self, nodes: dict[int, NodeCore]) -> None:
        self.nodes = nodes
        self.fsyncs: dict[int, list[StartFsync]] = {i: [] for i in nodes}
        self.answers: dict[int, list[WriteDone]] = {i: [] for i in nodes}
        self.queue: list[tuple[int, bytes]] = []

    def run(self, node: int, commands: list[Command]) -> None:
        for command in commands:
            if isinstance(command, Multicast):
                self.queue.append((node, command.payload))
            elif isinstance(command, StartFsync):
                self.fsyncs[node].append(command)
            elif isinstance(command, WriteDone):
                self.answers[node].append(command)

    def deliver_all(self) -> None:
        while self.queue:
            sender, payload = self.queue.pop(0)
            for i, core in self.nodes.items():
                self.run(i, core.deliver(sender, payload, 0))

    def form(self, members: tuple[int, ...], ring: RingId = RING) -> None:
        for i in members:
            self.run(i, self.nodes[i].regular(members, ring, 0.0, 0))
        self.deliver_all()

    def fsync_done(self, node: int) -> None:
        self.fsyncs[node].pop(0)
        self.run(node, self.nodes[node].fsync_done())
        self.deliver_all()


def test_local_write_is_answered_once_durable_on_a_quorum() -> None:
    ring = Ring(cores(3))
    ring.form((1, 2, 3))
    count, out = ring.nodes[1].write(Create("a"), "local", 0)
    ring.run(1, out)
    ring.deliver_all()
    assert ring.answers[1] == []  # applied, not durable yet
    (batch,) = ring.fsyncs[1]
    assert [item.applied.count for item in batch.batch] == [count]  # type: ignore[union-attr]
    ring.fsync_done(1)
    assert ring.answers[1] == []  # durable on 1 vote of 3: a crash here could lose it
    ring.fsync_done(3)
    assert ring.answers[1] == [WriteDone(count, "local", 0)]  # 2 of 3 votes: quorum


def test_local_write_gets_eio_when_the_ring_changes_without_quorum() -> None:
    ring = Ring(cores(3))
    ring.form((1, 2, 3))
    count, out = ring.nodes[1].write(Create("a"), "local", 0)
    ring.run(1, out)
    ring.deliver_all()
    ring.fsync_done(1)
    ring.run(1, ring.nodes[1].transitional((1,)))  # cut off before anyone acknowledged
    ring.form((1,), RingId(1, 8))
    assert ring.answers[1] == [WriteDone(count, "local", errno.EIO)]


def test_local_write_keeps_waiting_when_a_quorum_moves_on_together() -> None:
    ring = Ring(cores(3))
    ring.form((1, 2, 3))
    count, out = ring.nodes[1].write(Create("a"), "local", 0)
    ring.run(1, out)
    ring.deliver_all()
    ring.fsync_done(1)
    for i in (1, 2):
        ring.run(i, ring.nodes[i].transitional((1, 2)))
    ring.form((1, 2), RingId(1, 8))
    assert ring.answers[1] == []  # {1, 2} hold quorum: node 2's copy may still come
    ring.fsync_done(2)
    assert ring.answers[1] == [WriteDone(count, "local", 0)]


def test_local_write_gets_eio_when_the_present_nodes_cannot_make_a_quorum() -> None:
    """Quorate only thanks to a quorum device's vote (2 nodes + qdevice, quorum 2, node 2
    down): no data lives on the device, so a quorum of durable copies cannot be reached."""
    pipeline = CommitPipeline(1)
    pipeline.submitted(1, "local")
    applied = dfsm.Applied(1, 1, Create("a"), ApplyResult(0, 2))
    (fsync,) = pipeline.applied(WriteApplied(applied, 0, 0), (1,))
    assert isinstance(fsync, StartFsync)
    votes = Votes({1: 1, 2: 1}, quorum=2)
    assert WriteDone(1, "local", errno.EIO) in pipeline.fsync_done((1,), votes)
    # with node 2 present it waits for node 2's copy instead
    pipeline = CommitPipeline(1)
    pipeline.submitted(1, "local")
    pipeline.applied(WriteApplied(applied, 0, 0), (1, 2))
    assert not [c for c in pipeline.fsync_done((1, 2), votes) if isinstance(c, WriteDone)]
    assert pipeline.acked_by(2, 1, 1, (1, 2), votes) == [WriteDone(1, "local", 0)]


def test_writes_stamp_the_store_with_the_ring_seq_they_were_applied_in() -> None:
    ring = Ring(cores(3))
    ring.form((1, 2, 3), RingId(1, 12))
    _, out = ring.nodes[1].write(Create("a"), "local", 0)
    ring.run(1, out)
    ring.deliver_all()
    assert [ring.nodes[i].memdb.epoch for i in (1, 2, 3)] == [12, 12, 12]
    assert ring.nodes[2].memdb.index().epoch == 12


def test_writes_delivered_in_a_quorate_transitional_configuration_take_the_next_epoch() -> None:
    """Ring 12 breaks: node 3 is cut off and may have delivered its own writes in ring 12
    before it knew. Nodes 1 and 2 (a quorum) deliver the rest of ring 12 in their
    transitional configuration: those writes carry the next ring's epoch (16), so this
    history outranks node 3's at the next sync even at an equal version (seed 7404)."""
    ring = Ring(cores(3))
    ring.form((1, 2, 3), RingId(1, 12))
    _, out = ring.nodes[1].write(Create("a"), "local", 0)
    ring.run(1, out)
    for i in (1, 2):
        ring.run(i, ring.nodes[i].transitional((1, 2), RingId(1, 16)))
    ring.nodes = {i: ring.nodes[i] for i in (1, 2)}
    ring.deliver_all()
    assert [ring.nodes[i].memdb.epoch for i in (1, 2)] == [16, 16]
    assert ring.nodes[1].memdb.lookup("a") is not None
    # a minority's transitional configuration keeps the old epoch (and refuses the write)
    lone = Ring(cores(3))
    lone.form((1, 2, 3), RingId(1, 12))
    _, out = lone.nodes[1].write(Create("b"), "local", 0)
    lone.run(1, out)
    lone.run(1, lone.nodes[1].transitional((1,), RingId(1, 16)))
    lone.nodes = {1: lone.nodes[1]}
    lone.deliver_all()
    assert lone.nodes[1].memdb.epoch == 0 and lone.nodes[1].memdb.lookup("b") is None


def test_all_write_waits_for_every_member_then_group_commits_queue_behind() -> None:
    ring = Ring(cores())
    ring.form((1, 2))
    first, out = ring.nodes[1].write(Create("a"), "all", 0)
    ring.run(1, out)
    ring.deliver_all()
    second, out = ring.nodes[1].write(Create("b"), "all", 0)
    ring.run(1, out)
    ring.deliver_all()
    assert len(ring.fsyncs[1]) == 1  # one group commit in flight, the second write waits
    ring.fsync_done(1)
    assert ring.answers[1] == []  # node 2 has not acknowledged yet
    assert len(ring.fsyncs[1]) == 1  # the next group commit started at once
    ring.fsync_done(2)
    assert ring.answers[1] == [WriteDone(first, "all", 0)]
    ring.fsync_done(1)
    ring.fsync_done(2)
    assert ring.answers[1][-1] == WriteDone(second, "all", 0)


def test_all_write_fails_with_eio_when_a_member_leaves_before_acknowledging() -> None:
    ring = Ring(cores(3))
    ring.form((1, 2, 3))
    count, out = ring.nodes[1].write(Create("a"), "all", 0)
    ring.run(1, out)
    ring.deliver_all()
    ring.fsync_done(1)
    ring.fsync_done(2)
    assert ring.answers[1] == []  # node 3 still owes its acknowledgement
    for i in (1, 2):
        ring.run(i, ring.nodes[i].transitional((1, 2)))
    ring.form((1, 2), RingId(1, 8))
    assert ring.answers[1] == [WriteDone(count, "all", errno.EIO)]


def test_coupled_mode_asks_for_the_fsync_inline() -> None:
    ring = Ring(cores(coupled=True))
    ring.form((1, 2))
    _, out = ring.nodes[1].write(Create("a"), "local", 0)
    ring.run(1, out)
    ring.deliver_all()
    assert [f.inline for f in ring.fsyncs[1]] == [True]


def test_qdevice_vote_is_held_until_qnetd_answers_or_the_sync_timeout() -> None:
    core = cores()[1]
    out = core.regular((1, 2), RING, 10.0, 0, hold_nodeinfo_s=2.0)
    assert not any(NodeServices.is_nodeinfo(c) for c in out)
    assert core.next_deadline() == 12.0
    assert core.qdevice_poll(True, answered=False) == []  # qnetd not yet for this ring
    assert core.timer_fired(11.0) == []
    released = core.qdevice_poll(True, answered=True)
    assert any(NodeServices.is_nodeinfo(c) for c in released)
    assert core.services.quorum.us.flags & vq.NodeFlag.QDEVICE_CAST_VOTE
    assert core.next_deadline() is None
    # a ring where qnetd never answers: the timeout sends the NODEINFO anyway
    core.regular((1, 2), RingId(1, 8), 20.0, 0, hold_nodeinfo_s=2.0)
    assert core.timer_fired(21.9) == []
    assert any(NodeServices.is_nodeinfo(c) for c in core.timer_fired(22.0))


def qdevice_core() -> tuple[NodeCore, Ring]:
    """Node 1 of a two-node cluster with an ffsplit qdevice (expected 3, quorum 2), alone
    in its ring: quorate exactly while it counts the device's vote."""
    options = vq.QuorumOptions.build([(1, 1), (2, 1)], qdevice_model="net", qdevice_votes=1)
    core = NodeCore(1, vq.initial_state(options, 1), MemDB())
    core.services.quorum = vq.set_qdevice(
        core.services.quorum, registered=True, alive=True, cast_vote=False
    )
    ring = Ring({1: core})
    ring.form((1,))
    assert not core.services.quorum.quorate
    return core, ring


def test_own_nodeinfo_in_flight_does_not_bring_back_a_withdrawn_vote() -> None:
    """ACK then NACK before the ACK's NODEINFO is delivered: that stale NODEINFO must not
    set the cast-vote flag again (qnetd may already give the vote to the other side).
    Found by the simulator (a seed where two disjoint partitions counted the vote)."""
    core, ring = qdevice_core()
    ring.run(1, core.qdevice_poll(True, answered=True))
    ring.run(1, core.qdevice_poll(False, answered=True))
    sender, stale = ring.queue.pop(0)  # the NODEINFO with the vote, delivered late
    ring.run(1, core.deliver(sender, stale, 0))
    assert not core.services.quorum.us.flags & vq.NodeFlag.QDEVICE_CAST_VOTE
    assert not core.services.quorum.quorate
    ring.deliver_all()
    assert not core.services.quorum.quorate


def test_nodeinfo_sent_for_a_withdrawn_vote_does_not_claim_quorum() -> None:
    """The NODEINFO that announces a NACK goes out after the node stopped counting the
    vote, so it must not carry the QUORATE flag of before: an inquorate member takes a
    quorate member's expected votes and may lower its quorum on that claim (simulator seed
    2624: node 5 became quorate with 3 votes on such a stale flag from node 6)."""
    core, ring = qdevice_core()
    ring.run(1, core.qdevice_poll(True, answered=True))
    ring.deliver_all()
    assert core.services.quorum.quorate
    out = core.qdevice_poll(False, answered=True)
    sent = [c.payload for c in out if isinstance(c, Multicast) and NodeServices.is_nodeinfo(c)]
    assert len(sent) == 1
    flags = vq.NodeFlag(int.from_bytes(sent[0][-4:], "little"))
    assert not flags & vq.NodeFlag.QDEVICE_CAST_VOTE
    assert not flags & vq.NodeFlag.QUORATE
    assert flags == core.services.quorum.us.flags  # what the node decided, no older state


def test_withdrawn_vote_ends_quorum_before_qnetd_hears_the_reply() -> None:
    """A NACK takes the device's vote away at once: the client answers qnetd's VOTE_INFO
    right away and qnetd then ACKs the other partition, so this node must not stay quorate
    (and accept writes) until its NODEINFO comes round. Found by the simulator."""
    core, ring = qdevice_core()
    ring.run(1, core.qdevice_poll(True, answered=True))
    ring.deliver_all()
    assert core.services.quorum.quorate
    out = core.qdevice_poll(False, answered=True)
    assert not core.services.quorum.quorate
    assert any(isinstance(c, QuorumChanged) and not c.quorate for c in out)
    try:
        core.write(Create("a"), "local", 0)
    except StoreError as exc:
        assert exc.errno_code == errno.EACCES
    else:
        raise AssertionError("an inquorate node accepted a write")


def test_writes_queued_during_a_sync_from_departed_senders_are_dropped() -> None:
    """A member still waiting for the leader's updates queues the writes delivered
    meanwhile (they belong on the leader's tree). If the ring then breaks and the node is
    left alone, it becomes synced on its own older tree: the queued writes of senders no
    longer members must be dropped (pmxcfs's queue delivery does so), not applied there,
    before its alone ring's quorum is even known. Simulator seed 2329: node 5 applied node
    3's write alone in ``[5]`` (1 of 5 votes)."""
    nodes = cores(3)
    pair = Ring({1: nodes[1], 2: nodes[2]})
    pair.form((1, 2))
    _, commands = nodes[1].write(Create("old"), "local", 0)
    pair.run(1, commands)
    pair.deliver_all()  # nodes 1 and 2 have "old", node 3 does not
    nodes[3].regular((3,), RingId(3, 4), 0.0, 0)
    ring = Ring(nodes)
    joined = RingId(1, 8)
    for i in (1, 2, 3):
        ring.run(i, nodes[i].regular((1, 2, 3), joined, 0.0, 0))
    # deliver the NODEINFOs, SYNC_START and the states, not yet the leader's updates
    while nodes[3].services.store.mode is not dfsm.Mode.UPDATE:
        sender, payload = ring.queue.pop(0)
        for i, core in nodes.items():
            ring.run(i, core.deliver(sender, payload, 0))
    assert nodes[2].services.store.synced  # node 2 had the leader's tree already
    ring.queue.clear()  # the leader's updates never arrive: the ring breaks
    _, commands = nodes[2].write(Create("new"), "local", 0)
    sender, payload = next((2, c.payload) for c in commands if isinstance(c, Multicast))
    nodes[2].deliver(sender, payload, 0)
    applied = [c for c in nodes[3].deliver(sender, payload, 0) if isinstance(c, WriteApplied)]
    assert applied == []  # queued behind the updates
    alone = nodes[3].regular((3,), RingId(3, 12), 0.0, 0)
    assert [c for c in alone if isinstance(c, WriteApplied) and c.applied.result.ok] == []
    assert nodes[3].memdb.lookup("new") is None
    assert nodes[2].memdb.lookup("new") is not None  # the same lookup finds it where applied


def _durable_write(pipeline: CommitPipeline, count: int, level: str, ring: tuple[int, ...]) -> None:
    pipeline.submitted(count, level)
    applied = dfsm.Applied(1, count, Create(f"f{count}"), ApplyResult(0, count + 1))
    pipeline.applied(WriteApplied(applied, 0, 0), ring)
    pipeline.fsync_done(ring, Votes({1: 1, 2: 1, 3: 1}, quorum=2))


def test_an_acknowledgement_from_a_member_that_left_first_does_not_count() -> None:
    """Write 54 was delivered in ring {1, 2, 3}; node 3 left before acknowledging it (it
    may never have delivered it), came back, and acknowledged a later write 57 of node 1:
    "durable up to 57" covers a gap at 54 (simulator seed 1066 answered a level-all write
    that no other node held)."""
    votes = Votes({1: 1, 2: 1, 3: 1}, quorum=2)
    everyone = (1, 2, 3)
    done = []
    for level in ("all", "local"):
        pipeline = CommitPipeline(1)
        _durable_write(pipeline, 54, level, everyone)
        pipeline.ring_changed(True, (1, 2))  # node 3 left; {1, 2} hold quorum
        answers = pipeline.acked_by(3, 1, 57, everyone, votes)  # node 3 is back
        done += [(level, c.errno_code) for c in answers if isinstance(c, WriteDone)]
        if level == "local":
            assert done[-1:] != [("local", 0)]  # one durable copy besides this one? no
            answers = pipeline.acked_by(2, 1, 54, everyone, votes)
            done += [(level, c.errno_code) for c in answers if isinstance(c, WriteDone)]
    assert done == [("all", errno.EIO), ("local", 0)]  # local: once node 2's copy is there


def test_a_writer_that_joins_again_starts_its_counts_afresh_here() -> None:
    """Node 3 made node 1's writes durable up to 290; node 1 restarts (its counts start at
    1 again) and joins. Node 3's acknowledgements must not tell the new node 1 that its
    write 54 is durable here, not even from a group commit of the old writes still in
    flight when node 1 joined."""
    pipeline = CommitPipeline(3)
    old = dfsm.Applied(1, 290, Create("old"), ApplyResult(0, 300))
    (fsync,) = pipeline.applied(WriteApplied(old, 0, 0), (1, 3))
    assert isinstance(fsync, StartFsync)
    pipeline.joined((1,))  # node 1 restarted and joined while that fsync ran
    out = pipeline.fsync_done((1, 3), Votes({1: 1, 3: 1}, quorum=2))
    assert not [c for c in out if isinstance(c, Multicast)], out  # no "durable up to 290"
    new = dfsm.Applied(1, 1, Create("new"), ApplyResult(0, 301))
    pipeline.applied(WriteApplied(new, 0, 0), (1, 3))
    (_ack,) = [
        c
        for c in pipeline.fsync_done((1, 3), Votes({1: 1, 3: 1}, quorum=2))
        if isinstance(c, Multicast)
    ]
    assert pipeline.durable_upto == {1: 1}


def test_a_member_that_refused_the_write_never_counts_for_it() -> None:
    """Nodes decide at a delivery position from their own quorum, and a QDevice vote is
    withdrawn node by node: node 2 (vote already withdrawn) refused node 3's write that
    node 3 applied. Node 2 says so; its "durable up to 17" later does not cover write 16
    (simulator seed 7120 lost a level-all write that way)."""
    votes = Votes({2: 1, 3: 1}, quorum=2)
    for level, expected in (("all", errno.EIO), ("local", errno.EIO)):
        pipeline = CommitPipeline(3)
        pipeline.submitted(16, level)
        applied = dfsm.Applied(3, 16, Create("f"), ApplyResult(0, 20))
        pipeline.applied(WriteApplied(applied, 0, 0), (2, 3))
        pipeline.fsync_done((2, 3), votes)
        assert pipeline.refused_by(2, 16, (2, 3), votes) == [WriteDone(16, level, expected)]
        assert pipeline.acked_by(2, 3, 17, (2, 3), votes) == []


def test_a_refused_write_is_announced_to_its_writer() -> None:
    services = NodeServices(
        2, vq.initial_state(vq.QuorumOptions.build([(2, 1), (3, 1)]), 2), MemDB()
    )
    _, raw = dfsm.Dfsm(3, MemDB()).write(Create("f"), 0)
    payload = bytes([2]) + (0).to_bytes(8, "little") + raw  # SERVICE_CFS, send_ns, op
    out = services.deliver(3, payload, 0, 0)  # not quorate: refused here
    refused = [o for o in out if isinstance(o, WriteApplied)]
    assert [o.applied.result.errno_code for o in refused] == [errno.EAGAIN]
    (notice,) = [o for o in out if isinstance(o, Multicast)]
    assert services.deliver(2, notice.payload, 0, 0) == [Refused(2, 3, 1)]
