"""Invariant checkers fed with every Deliver and ConfigChange the nodes emit.

Safety (checked on every command, so a run stops at the first bad step):

* agreed order: all nodes agree on which message is the i-th delivered in frame s of
  ring r; each node's deliveries in a ring strictly increase in (s, i): no duplicate,
  no disagreement;
* per-sender FIFO: a node never delivers an older message of a sender after a newer
  one, and a sender delivers its own messages exactly in send order, with no gap
  (self-delivery);
* EVS: nodes that move together from configuration C to C' (same old and new ring)
  list the same transitional members and delivered the same set of messages in C,
  and the same set in the transitional configuration;
* shape of configuration changes: TRANSITIONAL then REGULAR with the same ring id,
  the node itself a member, transitional members a subset of both old and new rings;
  a ring id names one member list everywhere, and a node's ring seq only grows.

Liveness (checked by the simulator after healing): one ring of all live nodes, and
every message a live node sent is delivered to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pvectl.results import RingId
from pvectl.totem.srp import ConfigChange, ConfigKind, Deliver


class InvariantViolation(Exception):
    """The protocol broke a guarantee; the message says which and where."""


def parse_msg_id(payload: bytes) -> tuple[int, int, int]:
    """Workload payloads start with ``node.incarnation.counter|``."""
    head, _, _ = payload.partition(b"|")
    node, inc, counter = head.split(b".")
    return int(node), int(inc), int(counter)


@dataclass
class NodeView:
    node: int
    incarnation: int
    ring: RingId | None = None  # current regular configuration
    in_transitional: bool = False
    trans_members: tuple[int, ...] = ()
    trans_ring: RingId | None = None
    last_pos: tuple[int, int] = (0, -1)
    frame_seq: int = -1
    frame_idx: int = -1
    regular_set: set[tuple[int, int, int]] = field(default_factory=set)
    trans_set: set[tuple[int, int, int]] = field(default_factory=set)
    members: tuple[int, ...] = ()
    fifo: dict[tuple[int, int], int] = field(default_factory=dict)
    own_next: int = 0
    final_log: list[tuple[int, int, int]] = field(default_factory=list)


class Checker:
    def __init__(self) -> None:
        self.views: dict[int, NodeView] = {}
        # ring -> (frame seq, index in frame) -> message: one agreed order per ring
        self.order: dict[RingId, dict[tuple[int, int], tuple[int, int, int]]] = {}
        self.evs: dict[
            tuple[RingId, RingId],
            tuple[
                tuple[int, ...], frozenset[tuple[int, int, int]], frozenset[tuple[int, int, int]]
            ],
        ] = {}
        self.rings: dict[RingId, tuple[int, ...]] = {}
        self.deliveries = 0
        self.config_changes = 0
        self._ids: dict[bytes, tuple[tuple[int, int, int], tuple[int, int]]] = {}
        self._last_ring: RingId | None = None
        self._last_order: dict[tuple[int, int], tuple[int, int, int]] = {}

    def node_started(self, node: int, incarnation: int) -> None:
        self.views[node] = NodeView(node, incarnation)

    def _fail(self, view: NodeView, text: str) -> InvariantViolation:
        return InvariantViolation(f"node {view.node} (incarnation {view.incarnation}): {text}")

    def on_deliver(self, node: int, d: Deliver) -> None:
        v = self.views[node]
        self.deliveries += 1
        sender, payload, ring, seq = d
        ids = self._ids
        found = ids.get(payload)  # every node delivers each message: parse it once
        if found is None:
            if len(ids) >= 4096:
                ids.clear()
            mid = parse_msg_id(payload)
            found = ids[payload] = (mid, (mid[0], mid[1]))
        mid, src = found
        if mid[0] != sender:
            raise self._fail(v, f"message {mid} delivered as sent by {sender}")
        if ring is not v.ring and (v.ring is None or ring != v.ring):
            raise self._fail(v, f"delivery in ring {ring} while in configuration {v.ring}")
        if seq != v.frame_seq:
            v.frame_seq = seq
            v.frame_idx = 0
        else:
            v.frame_idx += 1
        pos = (seq, v.frame_idx)
        if pos <= v.last_pos:
            raise self._fail(v, f"delivery position {pos} not after {v.last_pos} in {ring}")
        v.last_pos = pos
        if ring is self._last_ring:  # interned ring ids: skip hashing the key
            ring_order = self._last_order
        else:
            ring_order = self.order.setdefault(ring, {})
            self._last_ring, self._last_order = ring, ring_order
        prev = ring_order.setdefault(pos, mid)
        if prev != mid:
            raise self._fail(v, f"ring {ring} seq {seq}.{v.frame_idx}: {mid} != {prev}")
        counter = mid[2]
        fifo = v.fifo
        last = fifo.get(src, -1)
        if counter <= last:  # a sender's counters only grow: this also catches duplicates
            if counter == last:
                raise self._fail(v, f"duplicate delivery of {mid}")
            raise self._fail(v, f"FIFO: {mid} after counter {last} of the same sender")
        fifo[src] = counter
        if mid[0] == v.node and mid[1] == v.incarnation:
            if counter != v.own_next:
                raise self._fail(v, f"self-delivery gap: got own {counter}, expected {v.own_next}")
            v.own_next += 1
        if v.in_transitional:
            v.trans_set.add(mid)
        else:
            v.regular_set.add(mid)
        v.final_log.append(mid)

    def on_config_change(self, node: int, c: ConfigChange) -> None:
        v = self.views[node]
        self.config_changes += 1
        if node not in c.members:
            raise self._fail(v, f"not a member of its own {c.kind} configuration {c.members}")
        if list(c.members) != sorted(set(c.members)):
            raise self._fail(v, f"member list not sorted/unique: {c.members}")
        if c.kind is ConfigKind.TRANSITIONAL:
            if v.in_transitional:
                raise self._fail(v, "two transitional configurations in a row")
            if v.ring is not None and not set(c.members) <= set(v.members):
                raise self._fail(v, f"transitional {c.members} not within {v.members}")
            v.in_transitional = True
            v.trans_members = c.members
            v.trans_ring = c.ring_id
            return
        if not v.in_transitional or v.trans_ring != c.ring_id:
            raise self._fail(v, f"regular configuration {c.ring_id} without its transitional")
        if not set(v.trans_members) <= set(c.members):
            raise self._fail(v, f"transitional {v.trans_members} not within {c.members}")
        if v.ring is not None and c.ring_id.seq <= v.ring.seq:
            raise self._fail(v, f"ring seq went from {v.ring} to {c.ring_id}")
        known = self.rings.setdefault(c.ring_id, c.members)
        if known != c.members:
            raise self._fail(v, f"ring {c.ring_id} has members {c.members} here, {known} elsewhere")
        if v.ring is not None:
            key = (v.ring, c.ring_id)
            rec = (v.trans_members, frozenset(v.regular_set), frozenset(v.trans_set))
            prev = self.evs.setdefault(key, rec)
            if prev[0] != rec[0]:
                raise self._fail(v, f"EVS: moved {key} with {rec[0]}, another node with {prev[0]}")
            if prev[1] != rec[1]:
                diff = sorted(prev[1] ^ rec[1])[:5]
                raise self._fail(v, f"EVS: different messages delivered in {v.ring}: {diff}")
            if prev[2] != rec[2]:
                diff = sorted(prev[2] ^ rec[2])[:5]
                raise self._fail(v, f"EVS: different transitional deliveries in {v.ring}: {diff}")
        v.ring = c.ring_id
        v.members = c.members
        v.in_transitional = False
        v.regular_set = set()
        v.trans_set = set()
        v.last_pos = (0, -1)
        v.frame_seq = -1
        v.final_log = []
