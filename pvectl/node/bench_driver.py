"""The benchmark service (service 4) on a running node: a burst pushed into Totem's send
queue as fast as flow control and a bounded queue allow (or paced), round trips timed on
own agreed delivery, and every delivery recorded (``bench.Recorder``).
"""

from __future__ import annotations

import asyncio
import time

from pvectl.node import bench
from pvectl.node.totem_binding import TotemBinding
from pvectl.totem import srp


class BenchDriver:
    def __init__(self, totem: TotemBinding, node_id: int) -> None:
        self.totem = totem
        self.loop = totem.loop
        self.node_id = node_id
        self.recorder = bench.Recorder()
        self.burst: bench.Burst | None = None
        self.burst_done: asyncio.Future[None] | None = None
        self.pace_timer: asyncio.TimerHandle | None = None
        self.echo_wait: asyncio.Future[int] | None = None  # own delivery time, for echo

    @property
    def busy(self) -> bool:
        return self.burst is not None or self.echo_wait is not None

    def delivered(self, sender: int, payload: bytes) -> None:
        now_ns = time.monotonic_ns()
        self.recorder.delivered(sender, payload, now_ns)
        waiter = self.echo_wait
        if waiter is not None and sender == self.node_id and not waiter.done():
            waiter.set_result(now_ns)

    async def send(self, burst: bench.Burst) -> None:
        """Send the whole burst; returns once its last message is queued in Totem."""
        self.burst = burst
        self.burst_done = self.loop.create_future()
        self.refill()
        await self.burst_done

    async def echo(self, burst: bench.Burst, timeout: float) -> list[int]:
        """Round trips in ns: one message, then wait for its own agreed delivery
        (``TimeoutError`` past ``timeout`` seconds)."""
        samples: list[int] = []
        try:
            while not burst.done:
                self.echo_wait = self.loop.create_future()
                sent_ns = time.monotonic_ns()
                self.totem.multicast(burst.message(sent_ns))
                delivered_ns = await asyncio.wait_for(self.echo_wait, timeout)
                samples.append(delivered_ns - sent_ns)
        finally:
            self.echo_wait = None
        return samples

    def refill(self) -> None:
        """Top the Totem send queue up to the burst's limit (called after every event);
        a paced burst only sends what its rate allows by now, and sets a timer for more."""
        burst = self.burst
        assert burst is not None
        machine = self.totem.srp
        handle = machine.handle
        execute = self.totem.execute
        queue_limit = burst.queue_limit
        now = self.loop.time()
        allowed = burst.allowed(time.monotonic_ns())
        pushed = False
        while burst.sent < allowed and machine.send_queue_bytes < queue_limit:
            commands = handle(srp.AppSend(burst.message(time.monotonic_ns())), now)
            if commands:
                execute(commands)
            pushed = True
        if burst.done:
            burst.finished_ns = time.monotonic_ns()
            self.burst = None
            if self.burst_done is not None and not self.burst_done.done():
                self.burst_done.set_result(None)
        elif burst.sent < allowed:
            if pushed:
                burst.waits += 1
        elif self.pace_timer is None:
            delay = (burst.due_ns(burst.sent) - time.monotonic_ns()) / 1e9
            self.pace_timer = self.loop.call_later(max(delay, 0.0), self._paced)

    def _paced(self) -> None:
        self.pace_timer = None
        if self.burst is not None:
            self.refill()
