"""A tiny stdlib-only fsync probe, sent to a node as ``python3 - DIR SECONDS``.

Used by ``pvectl check`` when the full perf probe (pvectl/perf/probe.py) is not
available. It measures what pmxcfs does on every config write: overwrite a small block
of a file and fsync it, timing each fsync. Prints one JSON object.
"""

import json
import os
import sys
import tempfile
import time


def measure(directory: str, seconds: float, max_count: int = 100000) -> dict[str, object]:
    fd, path = tempfile.mkstemp(prefix=".pvectl-fsync-", dir=directory)
    block = b"\0" * 4096
    latencies: list[float] = []
    try:
        os.write(fd, block)
        os.fsync(fd)
        started = time.perf_counter()
        while len(latencies) < max_count and time.perf_counter() - started < seconds:
            os.pwrite(fd, block, 0)
            before = time.perf_counter()
            os.fsync(fd)
            latencies.append(time.perf_counter() - before)
        elapsed = time.perf_counter() - started
    finally:
        os.close(fd)
        os.unlink(path)
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else 0.0
    return {
        "path": directory,
        "fsyncs": len(latencies),
        "seconds": round(elapsed, 3),
        "fsyncs_per_second": len(latencies) / elapsed if elapsed > 0 else 0.0,
        "p99_ms": p99 * 1000,
        "max_ms": (ordered[-1] * 1000) if ordered else 0.0,
    }


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else "/var/tmp"
    duration = float(sys.argv[2]) if len(sys.argv) > 2 else 2.0
    print(json.dumps(measure(target, duration)))
