"""The benchmark service: bursts from two senders on a real 3-node lab are delivered whole,
in one agreed order, on every node. Counts and order only: timings belong in benchmarks/."""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pvectl.errors import ExitCode, PvectlError
from pvectl.node import bench, control_socket
from tests.conftest import run_cli

NAME = "tperft"


def test_burst_messages_carry_stamp_index_and_size() -> None:
    burst = bench.Burst(3, 40, queue_limit=0)
    messages = [burst.message(1000 + i) for i in range(3)]
    assert burst.done and [len(m) for m in messages] == [40, 40, 40]
    recorder = bench.Recorder()
    for i, message in enumerate(messages):
        recorder.delivered(7, message, 1500 + 2 * i)
    result = recorder.result(with_order=True)
    assert result["count"] == 3 and result["bytes"] == 120
    assert result["order"] == [[7, 0], [7, 1], [7, 2]]
    assert result["latency_ms"]["p50"] == pytest.approx(501 / 1e6)
    assert result["latency_ms"]["max"] == pytest.approx(502 / 1e6)


def test_bad_burst_sizes_are_refused() -> None:
    with pytest.raises(ValueError):
        bench.Burst(0, 64, 0)
    with pytest.raises(ValueError):
        bench.Burst(1, bench.MIN_SIZE - 1, 0)


@pytest.fixture(scope="module")
def sockets() -> Iterator[dict[int, Path]]:
    # a short runtime dir: control socket paths must fit in sun_path (108 bytes)
    with tempfile.TemporaryDirectory(prefix="tperf", dir="/tmp") as runtime:
        env = dict(os.environ, XDG_RUNTIME_DIR=runtime, NO_COLOR="1")
        up = run_cli("lab", "up", "3", "--name", NAME, "--token", "400", env=env)
        try:
            assert up.code == 0, up.stderr
            listing = run_cli("lab", "ls", "--name", NAME, "--output-format", "json", env=env)
            (lab,) = json.loads(listing.stdout)["labs"]
            yield {int(n["node_id"]): Path(n["state_dir"]) / "control.sock" for n in lab["nodes"]}
        finally:
            run_cli("lab", "down", "--name", NAME, env=env)


def _call(sock: Path, cmd: str, **args: Any) -> dict[str, Any]:
    return control_socket.call(sock, cmd, timeout=60, **args)


def test_bursts_from_two_senders_arrive_in_one_order_everywhere(
    sockets: dict[int, Path],
) -> None:
    for sock in sockets.values():
        _call(sock, "bench_reset")
    # node 1: small messages (packed several to a frame); node 2: bigger than a frame
    bursts = {1: (300, 200), 2: (40, 3000)}
    replies: dict[int, dict[str, Any]] = {}

    def send(node: int) -> None:
        count, size = bursts[node]
        replies[node] = _call(sockets[node], "bench_send", count=count, size=size)

    threads = [threading.Thread(target=send, args=(n,)) for n in bursts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert {n: r["sent"] for n, r in replies.items()} == {1: 300, 2: 40}
    total = sum(count for count, _ in bursts.values())
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        counts = [_call(s, "bench_result", count_only=True)["count"] for s in sockets.values()]
        if min(counts) >= total:
            break
        time.sleep(0.1)
    results = {n: _call(s, "bench_result", order=True) for n, s in sockets.items()}
    assert {n: r["count"] for n, r in results.items()} == {1: total, 2: total, 3: total}
    assert {r["bytes"] for r in results.values()} == {300 * 200 + 40 * 3000}
    orders = {n: [tuple(o) for o in r["order"]] for n, r in results.items()}
    assert orders[1] == orders[2] == orders[3]
    for sender, (count, _) in bursts.items():
        assert [i for s, i in orders[1] if s == sender] == list(range(count))
    assert len({r["order_sha256"] for r in results.values()}) == 1


def test_a_paced_burst_takes_at_least_count_over_rate(sockets: dict[int, Path]) -> None:
    reply = _call(sockets[2], "bench_send", count=30, size=64, rate=100.0)
    # message i may leave at i / rate: the last one not before 0.29 s
    assert reply["sent"] == 30 and reply["seconds"] >= 0.29


def test_echo_and_bad_requests(sockets: dict[int, Path]) -> None:
    echo = _call(sockets[3], "bench_echo", count=5, size=64)
    assert echo["count"] == 5 and echo["round_trip_ms"]["p50"] > 0
    with pytest.raises(PvectlError) as refused:
        _call(sockets[1], "bench_send", count=0, size=64)
    assert refused.value.exit_code == ExitCode.USAGE
