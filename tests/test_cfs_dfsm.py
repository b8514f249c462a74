"""DFSM driven over a tiny agreed-order bus: every member sees the same stream."""

from __future__ import annotations

import errno
import random

import pytest

from pvectl.cfs import messages
from pvectl.cfs.dfsm import Applied, Dfsm, Failed, Malformed, Mode, Send, SyncDone
from pvectl.cfs.dfsm import _decode_index as dfsm_decode_index
from pvectl.cfs.memdb import Create, MemDB, Mkdir, Operation, Write
from pvectl.nodecore.services import Multicast
from pvectl.totem.ring_id import RingId


class Bus:
    """Total order: one global queue; a message is delivered to every current member."""

    def __init__(self, ids: list[int]) -> None:
        self.nodes = {i: Dfsm(i, MemDB(), pid=100 + i) for i in ids}
        self.members: tuple[int, ...] = ()
        self.pending: list[tuple[int, bytes]] = []
        self.applied: dict[int, list[Applied]] = {i: [] for i in ids}
        self.failures: list[str] = []
        self.now = 1000

    def _run(self, node: int, commands: list[object]) -> None:
        for command in commands:
            if isinstance(command, Send):
                self.pending.append((node, command.payload))
            elif isinstance(command, Applied):
                self.applied[node].append(command)
            elif isinstance(command, Failed):
                self.failures.append(f"{node}: {command.reason}")

    def change(self, members: tuple[int, ...], ring_seq: int | None = None) -> None:
        self.pending = [(s, m) for s, m in self.pending if s in members]
        self.members = members
        for node in members:
            self._run(node, self.nodes[node].membership_changed(members, self.now, ring_seq))

    def write(self, node: int, op: Operation) -> int:
        count, raw = self.nodes[node].write(op, self.now)
        self.pending.append((node, raw))
        return count

    def settle(self) -> None:
        while self.pending:
            sender, raw = self.pending.pop(0)
            self.now += 1
            for node in self.members:
                self._run(node, self.nodes[node].deliver(sender, raw, self.now))

    def checksums(self, nodes: tuple[int, ...]) -> set[str]:
        return {self.nodes[n].memdb.checksum() for n in nodes}


def test_writes_apply_in_the_same_order_everywhere() -> None:
    bus = Bus([1, 2, 3])
    bus.change((1, 2, 3))
    bus.settle()
    assert all(n.mode == Mode.SYNCED for n in bus.nodes.values())
    bus.write(1, Mkdir("nodes"))
    bus.write(2, Create("nodes/a"))
    bus.write(3, Write("nodes/a", 0, b"three"))
    bus.write(1, Write("nodes/a", 0, b"one"))
    bus.settle()
    assert len(bus.checksums((1, 2, 3))) == 1
    assert bus.nodes[3].memdb.read("nodes/a") == b"oneee"
    # the sender sees its own write applied, with writer = sender
    mine = [a for a in bus.applied[1] if a.sender == 1]
    assert [a.count for a in mine] == [1, 2] and all(a.result.ok for a in mine)
    entry = bus.nodes[2].memdb.lookup("nodes/a")
    assert entry is not None and entry.writer == 1


def test_node_that_was_down_catches_up_on_rejoin() -> None:
    bus = Bus([1, 2, 3])
    bus.change((1, 2, 3))
    bus.settle()
    bus.write(1, Create("a"))
    bus.settle()
    bus.change((1, 2))  # node 3 goes down
    bus.settle()
    for i in range(20):
        bus.write(1 + i % 2, Create(f"f{i}"))
    bus.settle()
    stale = bus.nodes[3].memdb.checksum()
    bus.change((1, 2, 3))
    bus.write(2, Write("a", 0, b"during sync"))  # queued while syncing, applied after
    bus.settle()
    assert not bus.failures
    assert len(bus.checksums((1, 2, 3))) == 1
    assert bus.nodes[3].memdb.checksum() != stale
    assert bus.nodes[3].memdb.read("a") == b"during sync"
    assert bus.nodes[3].memdb.read("f19") == b""


def test_leader_is_highest_version_then_mtime_then_lowest_id() -> None:
    bus = Bus([1, 2])
    bus.change((1,))
    bus.settle()
    bus.members = (1,)
    bus.write(1, Create("x"))
    bus.settle()
    bus.change((2,))
    for i in range(3):
        bus.write(2, Create(f"y{i}"))
    bus.settle()
    events: list[object] = []
    bus.members = (1, 2)
    for node in (1, 2):
        events += bus.nodes[node].membership_changed((1, 2), bus.now)
        bus._run(node, events)
    bus.settle()
    # node 2 had the higher version: its tree wins on both
    assert bus.nodes[1].memdb.read("y2") == b""
    assert bus.nodes[1].memdb.lookup("x") is None
    assert bus.nodes[1].leader == 2


def test_leader_is_the_newest_epoch_before_the_highest_version() -> None:
    """Node 1 wrote once in ring 20, node 2 three times in the older ring 12 (e.g. before it
    crashed): ring 20's history is the newer quorate one and wins, whatever the versions."""
    bus = Bus([1, 2])
    bus.change((2,), ring_seq=12)
    for i in range(3):
        bus.write(2, Create(f"old{i}"))
    bus.settle()
    bus.change((1,), ring_seq=20)
    bus.write(1, Create("new"))
    bus.settle()
    assert bus.nodes[2].memdb.version > bus.nodes[1].memdb.version
    bus.change((1, 2), ring_seq=24)
    bus.settle()
    assert not bus.failures
    assert bus.nodes[1].leader == 1
    assert bus.nodes[2].memdb.read("new") == b""
    assert bus.nodes[2].memdb.lookup("old0") is None
    # the installed tree carries the leader's epoch: identical stores, identical checksums
    assert bus.nodes[2].memdb.epoch == 20
    assert len(bus.checksums((1, 2))) == 1


def test_state_index_carries_the_epoch_and_rejects_a_short_one() -> None:
    memdb = MemDB()
    memdb.apply(Create("a"), 1, 0, epoch=7)
    index = memdb.index()
    assert dfsm_decode_index(index.encode()) == index and index.epoch == 7
    with pytest.raises(messages.MessageError):
        dfsm_decode_index(index.encode()[:-1])


def test_random_membership_churn_converges() -> None:
    seed = random.randrange(2**32)
    print(f"seed={seed}")
    rng = random.Random(seed)
    bus = Bus([1, 2, 3, 4])
    bus.change((1, 2, 3, 4))
    bus.settle()
    for _ in range(30):
        members = tuple(sorted(rng.sample([1, 2, 3, 4], rng.randint(1, 4))))
        bus.change(members)
        for _ in range(rng.randint(0, 5)):
            node = rng.choice(members)
            bus.write(node, Create(f"n{node}-{rng.randrange(1000)}"))
        bus.settle()
        assert not bus.failures, (seed, bus.failures)
        assert len(bus.checksums(members)) == 1, seed
    bus.change((1, 2, 3, 4))
    bus.settle()
    assert len(bus.checksums((1, 2, 3, 4))) == 1, seed


def test_verify_detects_divergence() -> None:
    bus = Bus([1, 2])
    bus.change((1, 2))
    bus.settle()
    bus.nodes[2].memdb.apply(Create("rogue"), 2, 5)  # a change that bypassed the protocol
    bus._run(1, bus.nodes[1].request_verify(bus.now))
    bus.settle()
    assert any("wrong checksum" in f for f in bus.failures)
    assert bus.nodes[2].mode == Mode.ERROR


def test_sync_done_reported_once_per_change() -> None:
    node = Dfsm(1, MemDB())
    out = node.membership_changed((1,), 5)
    assert [c for c in out if isinstance(c, SyncDone)] == [SyncDone(1, False)]


def test_malformed_verify_is_dropped_and_counted_and_the_batch_goes_on() -> None:
    """Finding 5: a VERIFY_REQUEST/VERIFY of the wrong size used to raise MessageError out of
    ``deliver``; the writes delivered after it in the same batch were lost on every node."""
    bus = Bus([1, 2, 3])
    bus.change((1, 2, 3))
    bus.settle()
    epoch = bus.nodes[1].epoch
    bad_request = messages.encode_state(messages.VERIFY_REQUEST, epoch, bus.now, b"\x01\x02\x03")
    bad_verify = messages.encode_state(messages.VERIFY, epoch, bus.now, b"\x00" * 9)
    bus.write(1, Create("before"))
    bus.pending.append((2, bad_request))
    bus.pending.append((3, bad_verify))
    bus.write(2, Create("after"))
    bus.settle()
    # node 3 ignores its own VERIFY, as pmxcfs does, so it sees one malformed message
    assert {i: node.malformed for i, node in bus.nodes.items()} == {1: 2, 2: 2, 3: 1}
    for node in bus.nodes.values():
        assert node.mode == Mode.SYNCED
        assert node.memdb.lookup("before") is not None
        assert node.memdb.lookup("after") is not None
    assert len(bus.checksums((1, 2, 3))) == 1
    assert not bus.failures
    # an undecodable message is dropped the same way, and never raises
    out = bus.nodes[1].deliver(2, b"\xff" * 7, bus.now)
    assert out == [Malformed(2, "message shorter than its header", 3)]
    assert bus.nodes[1].mode == Mode.SYNCED


def test_services_log_a_malformed_store_message_once() -> None:
    from pvectl.nodecore.services import SERVICE_CFS, NodeServices, ServiceLog
    from pvectl.quorum import votequorum as vq

    services = NodeServices(1, vq.initial_state(vq.QuorumOptions.build([(1, 1)]), 1), MemDB())
    services.regular_configuration((1,), RingId(1, 4), 0, 0)
    bad = bytes([SERVICE_CFS]) + b"\0" * 8 + b"\xff\xff"
    first = services.deliver(1, bad, 0, 0)
    second = services.deliver(1, bad, 0, 0)
    assert [type(o) for o in first] == [ServiceLog] and "malformed" in first[0].text  # type: ignore[union-attr]
    assert second == []
    assert services.store.malformed == 2


def test_oversize_write_is_refused_before_it_is_multicast() -> None:
    """Finding 6: an 8 MB write used to travel the whole ring before EFBIG at apply time."""
    import errno

    import pytest

    from pvectl.cfs.memdb import MAX_FILE_SIZE
    from pvectl.nodecore.services import NodeServices, StoreError
    from pvectl.quorum import votequorum as vq

    services = NodeServices(1, vq.initial_state(vq.QuorumOptions.build([(1, 1)]), 1), MemDB())
    out = services.regular_configuration((1,), RingId(1, 4), 0, 0)
    nodeinfo = out[0]
    assert isinstance(nodeinfo, Multicast)
    services.deliver(1, nodeinfo.payload, 0, 0)
    assert services.quorum.quorate and services.store.synced
    with pytest.raises(StoreError) as refused:
        services.write(Write("big", 0, b"x" * (MAX_FILE_SIZE + 1)), 0, 0)
    assert refused.value.errno_code == errno.EFBIG and "EFBIG" in str(refused.value)
    with pytest.raises(StoreError):
        services.write(Write("big", MAX_FILE_SIZE, b"x"), 0, 0)
    count, fits = services.write(Write("big", 0, b"x" * MAX_FILE_SIZE), 0, 0)
    assert count == 1 and len(fits) == 1


def test_writes_queued_in_a_sync_that_never_ended_are_refused_on_the_next_change() -> None:
    """Nodes 2 and 3 queue node 3's write while their sync runs; the ring changes before it
    ends and node 1 (which never saw the write) joins. Applying the old queue after the new
    sync would give nodes 2 and 3 a write node 1 lacks (simulator seed 2641): it is refused
    with EAGAIN on both, applied nowhere."""
    bus = Bus([1, 2, 3])
    bus.change((2, 3))
    count = bus.write(3, Create("queued"))
    # node 3's write arrives before the sync's state messages: both queue it
    bus.pending.sort(key=lambda item: item[0] != 3)
    sender, raw = bus.pending.pop(0)
    for node in (2, 3):
        bus._run(node, bus.nodes[node].deliver(sender, raw, bus.now))
    assert all(bus.nodes[n].mode != Mode.SYNCED for n in (2, 3))
    bus.pending.clear()  # the ring breaks before the sync ends
    bus.change((1, 2, 3))
    bus.settle()
    assert not bus.failures
    refused = [a for a in bus.applied[3] if a.sender == 3 and a.count == count]
    assert [a.result.errno_code for a in refused] == [errno.EAGAIN]
    assert all(bus.nodes[n].memdb.lookup("queued") is None for n in (1, 2, 3))
    assert len(bus.checksums((1, 2, 3))) == 1
