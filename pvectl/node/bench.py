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
from dataclasses import dataclass, field
from typing import Any

SERVICE_BENCH = 4
HEADER = struct.Struct("<BQI")
MIN_SIZE = HEADER.size
MAX_SIZE = 1 << 20
MAX_COUNT = 10_000_000
DEFAULT_QUEUE_BYTES = 128 * 1024


def check_burst(count: int, size: int) -> None:
    if not 0 < count <= MAX_COUNT:
        raise ValueError(f"count must be in 1..{MAX_COUNT}, got {count}")
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(f"size must be in {MIN_SIZE}..{MAX_SIZE} bytes, got {size}")


@dataclass
class Burst:
    """One node's outgoing burst: ``count`` messages of ``size`` bytes, pushed while the
    Totem send queue holds less than ``queue_limit`` bytes (corosync's TRY_AGAIN)."""

    count: int
    size: int
    queue_limit: int
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

    def message(self, now_ns: int) -> bytes:
        index = self.sent
        self.sent += 1
        return HEADER.pack(SERVICE_BENCH, now_ns, index) + self._pad


@dataclass
class Recorder:
    """Deliveries of benchmark messages at this node, in delivery order."""

    count: int = 0
    total_bytes: int = 0
    first_ns: int = 0
    last_ns: int = 0
    latencies_ns: array[int] = field(default_factory=lambda: array("q"))
    order: array[int] = field(default_factory=lambda: array("Q"))  # sender << 32 | index

    def delivered(self, sender: int, payload: bytes, now_ns: int) -> None:
        if len(payload) < HEADER.size:
            return
        _, send_ns, index = HEADER.unpack_from(payload)
        if not self.count:
            self.first_ns = now_ns
        self.count += 1
        self.total_bytes += len(payload)
        self.last_ns = now_ns
        self.latencies_ns.append(now_ns - send_ns)
        self.order.append(sender << 32 | index)

    def result(self, with_order: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "count": self.count,
            "bytes": self.total_bytes,
            "first_ns": self.first_ns,
            "last_ns": self.last_ns,
            "seconds": (self.last_ns - self.first_ns) / 1e9,
            "latency_ms": summary_ms(sorted(self.latencies_ns)),
            "order_sha256": hashlib.sha256(self.order.tobytes()).hexdigest(),
        }
        if with_order:
            out["order"] = [[o >> 32, o & 0xFFFFFFFF] for o in self.order]
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
