"""Totem's ring id: which ring a message, a membership or a quorum decision belongs to."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class RingId:
    """Totem ring id: the representative's node id and the ring sequence number."""

    rep_node_id: int
    seq: int

    def __str__(self) -> str:
        return f"{self.rep_node_id:x}.{self.seq:x}"

    @classmethod
    def parse(cls, text: str) -> RingId:
        rep, _, seq = text.strip().partition(".")
        if not seq:
            return cls(0, int(rep, 16))
        return cls(int(rep, 16), int(seq, 16))
