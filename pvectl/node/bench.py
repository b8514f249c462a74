"""The benchmark service (service id 4): multicast a burst as fast as Totem's flow control
allows, and record, on every node, what was delivered and how long it took.

Payload: ``service u8 (4) | send_ns u64 (the sender's CLOCK_MONOTONIC) | index u32`` then
zero padding up to the requested size. Lab nodes share one kernel, so a delivery time
minus ``send_ns`` is a one-way latency. Pure: the runtime passes in the clock readings.
"""

from __future__ import annotations

import hashlib
import struct
from array import array
from dataclasses import dataclass
from typing import Any

SERVICE_BENCH = 4
HEADER = struct.Struct("<BQI")
_STAMP = struct.Struct("<QI")
MIN_SIZE = HEADER.size
MAX_SIZE = 1 << 20
MAX_COUNT = 10_000_000
MIN_QUEUE_BYTES = 128 * 1024
MAX_QUEUE_BYTES = 1024 * 1024


def check_burst(count: int, size: int) -> None:
    if not 0 < count <= MAX_COUNT:
        raise ValueError(f"count must be in 1..{MAX_COUNT}, got {count}")
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(f"size must be in {MIN_SIZE}..{MAX_SIZE} bytes, got {size}")


def default_queue_bytes(size: int) -> int:
    """How much a burst keeps queued in Totem: 16 messages, within 128 KiB..1 MiB.

    Every token visit takes what is queued, so the bound trades latency (the queue drains
    once per rotation) for fewer rotations: on a busy machine each hop waits for a CPU,
    and big messages need a deep queue to fill a visit (max_messages frames)."""
    return min(MAX_QUEUE_BYTES, max(MIN_QUEUE_BYTES, 16 * size))


@dataclass
class Burst:
    """One node's outgoing burst: ``count`` messages of ``size`` bytes, pushed while the
    Totem send queue holds less than ``queue_limit`` bytes (corosync's TRY_AGAIN)."""

    count: int
    size: int
    queue_limit: int
    rate: float = 0.0  # messages per second; 0: as fast as flow control allows
    sent: int = 0
    waits: int = 0  # times the queue was full (like the CPG client's TRY_AGAIN count)
    started_ns: int = 0
    finished_ns: int = 0
    _pad: bytes = b""

    def __post_init__(self) -> None:
        check_burst(self.count, self.size)
        self._pad = bytes(self.size - HEADER.size)

    @property
    def done(self) -> bool:
        return self.sent >= self.count

    def allowed(self, now_ns: int) -> int:
        """How many messages may have been sent by ``now_ns``."""
        if not self.rate:
            return self.count
        return min(self.count, int((now_ns - self.started_ns) * self.rate / 1e9) + 1)

    def due_ns(self, index: int) -> int:
        """When message ``index`` may go (paced bursts)."""
        return self.started_ns + int(index * 1e9 / self.rate)

    def message(self, now_ns: int) -> bytes:
        index = self.sent
        self.sent += 1
        return HEADER.pack(SERVICE_BENCH, now_ns, index) + self._pad


class Recorder:
    """Deliveries of benchmark messages at this node, in delivery order.

    Recording is on the delivery path of every benchmark message, so it only appends raw
    fields; parsing and statistics wait for :meth:`result`."""

    __slots__ = ("_heads", "_senders", "_times", "total_bytes")

    def __init__(self) -> None:
        self._heads: list[bytes] = []  # send_ns u64 | index u32 of each delivery
        self._senders: list[int] = []
        self._times: list[int] = []
        self.total_bytes = 0

    @property
    def count(self) -> int:
        return len(self._times)

    def delivered(self, sender: int, payload: bytes, now_ns: int) -> None:
        if len(payload) < HEADER.size:
            return
        self._heads.append(payload[1 : HEADER.size])
        self._senders.append(sender)
        self._times.append(now_ns)
        self.total_bytes += len(payload)

    def result(self, with_order: bool = False) -> dict[str, Any]:
        heads = [_STAMP.unpack(h) for h in self._heads]
        times = self._times
        latencies = sorted(t - send_ns for t, (send_ns, _) in zip(times, heads, strict=True))
        order = array("Q", (s << 32 | i for s, (_, i) in zip(self._senders, heads, strict=True)))
        first, last = (times[0], times[-1]) if times else (0, 0)
        out: dict[str, Any] = {
            "count": len(times),
            "bytes": self.total_bytes,
            "first_ns": first,
            "last_ns": last,
            "seconds": (last - first) / 1e9,
            "latency_ms": summary_ms(latencies),
            "order_sha256": hashlib.sha256(order.tobytes()).hexdigest(),
        }
        if with_order:
            out["order"] = [[o >> 32, o & 0xFFFFFFFF] for o in order]
        return out


def summary_ms(ordered: list[int]) -> dict[str, float]:
    """p50/p90/p99/max in milliseconds of sorted nanosecond samples."""
    return {
        "p50": _percentile(ordered, 50) / 1e6,
        "p90": _percentile(ordered, 90) / 1e6,
        "p99": _percentile(ordered, 99) / 1e6,
        "max": (ordered[-1] if ordered else 0) / 1e6,
    }


def _percentile(ordered: list[int], pct: float) -> float:
    if not ordered:
        return 0.0
    rank = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return float(ordered[rank])
