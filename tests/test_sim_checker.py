"""The simulator's delivery checker on hand-made histories: each guarantee it claims is
shown catching a history that breaks it, and a correct history passes."""

from __future__ import annotations

import pytest

from pvectl.sim.checker import Checker, InvariantViolation
from pvectl.totem.ring_id import RingId
from pvectl.totem.srp import ConfigChange, ConfigKind, Deliver

RING = RingId(1, 4)


def _joined(checker: Checker, node: int, members: tuple[int, ...] = (1, 2)) -> None:
    checker.node_started(node, 1)
    for kind in (ConfigKind.TRANSITIONAL, ConfigKind.REGULAR):
        shown = (node,) if kind is ConfigKind.TRANSITIONAL else members
        checker.on_config_change(node, ConfigChange(kind, shown, (), (), RING))


def _msg(sender: int, counter: int) -> bytes:
    return b"%d.1.%d|payload" % (sender, counter)


def test_a_correct_history_passes() -> None:
    checker = Checker()
    for node in (1, 2):
        _joined(checker, node)
        for seq, (sender, counter) in enumerate([(1, 0), (2, 0), (1, 1)], start=1):
            checker.on_deliver(node, Deliver(sender, _msg(sender, counter), RING, seq))
    assert checker.deliveries == 6


@pytest.mark.parametrize(
    ("history", "caught"),
    [
        ([(1, 0, 1), (1, 0, 2)], "duplicate delivery"),  # the same message twice
        ([(2, 1, 1), (2, 0, 2)], "FIFO"),  # a sender's older message after a newer one
        ([(1, 1, 1)], "self-delivery gap"),  # own message 0 never delivered
        ([(1, 0, 2), (2, 0, 1)], "not after"),  # positions go backwards
        ([(2, 0, 1)], None),  # (then node 2 delivers another message at that position)
    ],
)
def test_each_broken_history_is_caught(
    history: list[tuple[int, int, int]], caught: str | None
) -> None:
    checker = Checker()
    _joined(checker, 1)
    _joined(checker, 2)
    if caught is None:  # agreed order: two nodes, two messages, one position
        checker.on_deliver(1, Deliver(2, _msg(2, 0), RING, 1))
        with pytest.raises(InvariantViolation, match="!="):
            checker.on_deliver(2, Deliver(1, _msg(1, 0), RING, 1))
        return
    with pytest.raises(InvariantViolation, match=caught):
        for sender, counter, seq in history:
            checker.on_deliver(1, Deliver(sender, _msg(sender, counter), RING, seq))


def test_a_message_claiming_another_sender_is_caught() -> None:
    checker = Checker()
    _joined(checker, 1)
    with pytest.raises(InvariantViolation, match="delivered as sent by 2"):
        checker.on_deliver(1, Deliver(2, _msg(1, 0), RING, 1))
