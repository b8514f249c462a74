"""Totem's commands carried out on the event loop: datagrams sent at once, timers as loop
callbacks, the ring sequence fsynced to the state dir; deliveries and configuration
changes held until the receive batch they came in is over.

The node runtime owns one ``TotemBinding``; the transport calls ``on_datagram`` and
``on_batch_end``, the runtime's ``deliver`` takes what Totem delivered, in agreed order.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from pathlib import Path

from pvectl.node.tracing import Tracer
from pvectl.node.transport import UdpTransport
from pvectl.totem import srp


def load_ring_seq(ring_file: Path, log: logging.Logger) -> int:
    """The ring sequence the last run reached (corosync's ringid_<nodeid> file)."""
    try:
        return int(ring_file.read_text().strip() or "0", 16)
    except FileNotFoundError:
        return 0
    except ValueError:
        log.warning("ignoring a corrupt ring id file %s", ring_file)
        return 0


def persist_ring_seq(ring_file: Path, seq: int) -> None:
    tmp = ring_file.with_suffix(".tmp")
    with open(tmp, "w") as handle:
        handle.write(f"{seq:x}\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, ring_file)


class TotemBinding:
    """``srp`` driven by the loop. ``drained`` runs after a batch or a timer (room in the
    send queue)."""

    def __init__(
        self,
        machine: srp.Srp,
        loop: asyncio.AbstractEventLoop,
        log: logging.Logger,
        ring_file: Path,
        other_nodes: tuple[int, ...],
        tracer: Tracer,
        *,
        deliver: Callable[[srp.Deliver | srp.ConfigChange], None],
        drained: Callable[[], None],
    ) -> None:
        self.srp = machine
        self.loop = loop
        self.log = log
        self.ring_file = ring_file
        self.other_nodes = other_nodes
        self.tracer = tracer
        self.deliver = deliver
        self.drained = drained
        self.transport: UdpTransport | None = None
        self.timers: dict[srp.TimerKind, asyncio.TimerHandle] = {}
        self.pending: list[srp.Deliver | srp.ConfigChange] = []
        self.receiving = False  # inside a receive batch: deliveries wait for its end
        self.flushing = False
        # sync-trace: when the event being handled reached the machine (loop.time(), the
        # same CLOCK_MONOTONIC as monotonic_ns)
        self.event_time = 0.0
        self.delivery_errors = 0  # deliveries whose handling raised (a bug; logged once)

    def on_datagram(self, _peer: int, data: bytes) -> None:
        self.receiving = True
        self.event_time = now = self.loop.time()
        self.execute(self.srp.receive(data, now))

    def on_batch_end(self) -> None:
        """The socket is drained: now deliver what the batch brought (tokens went on)."""
        self.receiving = False
        if self.pending:
            self._flush()
        self.drained()

    def _on_timer(self, kind: srp.TimerKind) -> None:
        self.timers.pop(kind, None)
        self.event_time = now = self.loop.time()
        if kind is srp.TimerKind.TOKEN_LOSS and self.srp.state is not srp.State.GATHER:
            self.tracer.ring_event("token_lost", self.srp.members)
        self.execute(self.srp.handle(srp.TimerFired(kind), now))
        self.drained()

    def multicast(self, payload: bytes, tag: int | None = None) -> None:
        self.event_time = now = self.loop.time()
        self.execute(self.srp.handle(srp.AppSend(payload, tag), now))

    def execute(self, commands: list[srp.Command]) -> None:
        """Run the machine's commands: network and timers at once; deliveries and
        configuration changes (in their order) once the current receive batch is over,
        so a token is forwarded before this node works through the frames it came with."""
        transport = self.transport
        assert transport is not None
        for command in commands:
            kind = type(command)
            if kind is srp.Deliver or kind is srp.ConfigChange:
                self.pending.append(command)  # type: ignore[arg-type]
            elif kind is srp.SendAll:
                transport.send_many(self.other_nodes, command.data)  # type: ignore[union-attr]
            elif kind is srp.SendTo:
                transport.send(command.node, command.data)  # type: ignore[union-attr]
            elif kind is srp.SetTimer:
                assert isinstance(command, srp.SetTimer)
                old = self.timers.pop(command.kind, None)
                if old is not None:
                    old.cancel()
                self.timers[command.kind] = self.loop.call_at(
                    command.deadline, self._on_timer, command.kind
                )
            elif kind is srp.CancelTimer:
                assert isinstance(command, srp.CancelTimer)
                handle = self.timers.pop(command.kind, None)
                if handle is not None:
                    handle.cancel()
            elif kind is srp.PersistRingSeq:
                assert isinstance(command, srp.PersistRingSeq)
                persist_ring_seq(self.ring_file, command.seq)
            elif kind is srp.Log:
                assert isinstance(command, srp.Log)
                getattr(
                    self.log,
                    command.level
                    if command.level in ("debug", "info", "warning", "error")
                    else "info",
                )("[TOTEM ] %s", command.text)
            elif kind is srp.Multicasted or kind is srp.MulticastStarted:
                self.tracer.sent(command, self.event_time)  # type: ignore[arg-type]
        if self.pending and not self.receiving:
            self._flush()

    def _flush(self) -> None:
        """Hand deliveries and configuration changes over, in agreed order. Re-entrant
        calls (a service multicasting) only queue; the outer loop drains."""
        if self.flushing:
            return
        self.flushing = True
        try:
            pending = self.pending
            while pending:
                batch, self.pending = pending, []
                for command in batch:
                    try:
                        self.deliver(command)
                    except Exception:  # one bad delivery must not lose the rest of the batch
                        self.delivery_errors += 1
                        if self.delivery_errors == 1:
                            self.log.exception("[MAIN  ] handling a delivery failed")
                pending = self.pending
        finally:
            self.flushing = False
