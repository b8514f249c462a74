"""The replicated config store on a real embedded lab (processes, UDP, fsync on files)."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from pvectl.cli import sync_trace_text
from pvectl.errors import PvectlError
from pvectl.lab.sync_trace import SyncTrace
from pvectl.node import control_socket
from pvectl.results import from_jsonable, to_jsonable
from tests.conftest import run_cli

TOKEN_MS = 400


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[dict[str, str], Path]]:
    runtime = tmp_path / "xdg"
    runtime.mkdir()
    env = dict(os.environ, XDG_RUNTIME_DIR=str(runtime), NO_COLOR="1")
    yield env, runtime / "pvectl" / "lab"
    for name in ("tcfs", "tcfs4", "tcfsc"):
        run_cli("lab", "down", "--name", name, env=env)


def up(env: dict[str, str], name: str, nodes: int, *extra: str) -> None:
    run = run_cli(
        "lab", "up", str(nodes), "--name", name, "--token", str(TOKEN_MS), *extra, env=env
    )
    assert run.code == 0, run.stderr


def sock(root: Path, name: str, node: int) -> Path:
    return root / name / f"node{node}" / "control.sock"


def write(
    root: Path, name: str, node: int, path: str, data: bytes, level: str = "local"
) -> dict[str, Any]:
    try:
        return control_socket.call(
            sock(root, name, node),
            "write",
            timeout=30,
            path=path,
            data=base64.b64encode(data).decode(),
            level=level,
            op="put",
        )
    except PvectlError as exc:
        return {"ok": False, "error": str(exc)}


def read(root: Path, name: str, node: int, path: str) -> dict[str, Any]:
    return control_socket.call(sock(root, name, node), "read", path=path)


def store_hash(root: Path, name: str, node: int) -> str:
    return str(control_socket.call(sock(root, name, node), "info")["store_hash"])


def wait_converged(root: Path, name: str, nodes: list[int], timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    hashes: set[str] = set()
    while time.monotonic() < deadline:
        hashes = {store_hash(root, name, n) for n in nodes}
        if len(hashes) == 1:
            return hashes.pop()
        time.sleep(0.2)
    raise AssertionError(f"stores did not converge: {hashes}")


def db_rows(root: Path, name: str, node: int) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(root / name / f"node{node}" / "config.db")
    try:
        return db.execute("SELECT * FROM tree ORDER BY inode").fetchall()
    finally:
        db.close()


def test_writes_replicate_with_version_and_writer(lab: tuple[dict[str, str], Path]) -> None:
    env, root = lab
    up(env, "tcfs", 3)
    reply = write(root, "tcfs", 1, "nodes", b"")  # a file named nodes, then a directory
    assert reply["ok"], reply
    assert write(root, "tcfs", 2, "datacenter.cfg", b"keyboard: en-us\n", "all")["ok"]
    seen = [read(root, "tcfs", n, "datacenter.cfg") for n in (1, 2, 3)]
    assert {base64.b64decode(s["data"]) for s in seen} == {b"keyboard: en-us\n"}
    assert {(s["version"], s["writer"]) for s in seen} == {(seen[0]["version"], 2)}
    big = write(root, "tcfs", 1, "big.cfg", b"x" * (1024 * 1024 + 1))
    assert not big["ok"] and "EFBIG" in big["error"]


def test_concurrent_burst_identical_config_db_and_kill_9(
    lab: tuple[dict[str, str], Path],
) -> None:
    env, root = lab
    up(env, "tcfs", 3)
    acked: dict[int, list[str]] = {1: [], 2: [], 3: []}
    stop = threading.Event()

    def writer(node: int) -> None:
        for i in range(400):
            if stop.is_set() and node == 3:
                return
            path = f"n{node}-{i}"
            if write(root, "tcfs", node, path, f"{node}:{i}".encode())["ok"]:
                acked[node].append(path)
            elif node == 3:
                return

    threads = [threading.Thread(target=writer, args=(n,)) for n in (1, 2, 3)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    ls = json.loads(
        run_cli("lab", "ls", "--name", "tcfs", "--output-format", "json", env=env).stdout
    )
    os.kill(ls["labs"][0]["nodes"][2]["pid"], signal.SIGKILL)  # node 3, mid-burst
    stop.set()
    for thread in threads:
        thread.join(120)
    assert acked[1] and acked[2] and acked[3]
    assert run_cli("lab", "start", "3", "--name", "tcfs", env=env).code == 0
    wait_converged(root, "tcfs", [1, 2, 3])
    for node in (1, 2, 3):
        for path in acked[1] + acked[2] + acked[3]:
            assert read(root, "tcfs", node, path)["ok"], (node, path)
    time.sleep(0.5)  # the last group commit of the decoupled nodes
    rows = [db_rows(root, "tcfs", n) for n in (1, 2, 3)]
    assert rows[0] == rows[1] == rows[2]
    assert rows[0][0][6] == "__version__"


def test_partition_refuses_writes_then_heals(lab: tuple[dict[str, str], Path]) -> None:
    env, root = lab
    up(env, "tcfs4", 4)
    assert write(root, "tcfs4", 1, "before", b"1")["ok"]
    assert run_cli("lab", "partition", "1,2", "3,4", "--name", "tcfs4", env=env).code == 0
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        info = [control_socket.call(sock(root, "tcfs4", n), "info") for n in (1, 3)]
        if all(len(i["members"]) == 2 and not i["quorate"] for i in info):
            break
        time.sleep(0.2)
    for node in (1, 3):
        refused = write(root, "tcfs4", node, f"during{node}", b"x")
        assert not refused["ok"] and "EACCES" in refused["error"], refused
    assert run_cli("lab", "heal", "--name", "tcfs4", env=env).code == 0
    wait_converged(root, "tcfs4", [1, 2, 3, 4], timeout=30)
    deadline = time.monotonic() + 10
    while not (after := write(root, "tcfs4", 3, "after", b"2"))["ok"]:
        assert time.monotonic() < deadline, after
        time.sleep(0.2)
    wait_converged(root, "tcfs4", [1, 2, 3, 4])


SENDER_EVENTS = [
    "queued",
    "token arrived",
    "multicast",
    "delivered",
    "applied",
    "fsync done",
    "stable",  # level local: answered once durable on members holding quorum
    "committed",
]


def nondecreasing(values: list[float]) -> bool:
    """In order, up to float rounding of start + duration."""
    return all(b >= a - 1e-6 for a, b in pairwise(values))


def _event_times(node: dict[str, Any]) -> list[tuple[str, float, float]]:
    return [(p["ends_at"], p["start_ms"], p["start_ms"] + p["duration_ms"]) for p in node["phases"]]


def test_sync_trace_phases_are_causal_and_blame_the_slow_disk(
    lab: tuple[dict[str, str], Path],
) -> None:
    env, _ = lab
    up(env, "tcfs", 3)
    run = run_cli(
        "sync-trace", "--name", "tcfs", "--count", "5", "--output-format", "json", env=env
    )
    assert run.code == 0, run.stderr
    trace = json.loads(run.stdout)
    assert trace.pop("schema_version") == 1
    assert from_jsonable(SyncTrace, trace) == from_jsonable(
        SyncTrace, to_jsonable(from_jsonable(SyncTrace, trace))
    )
    assert to_jsonable(from_jsonable(SyncTrace, trace)) == trace  # the schema round-trips
    assert len(trace["writes"]) == 6  # a fresh path: the create, then five writes
    for item in trace["writes"]:
        assert {n["node_id"] for n in item["nodes"]} == {1, 2, 3}
        assert all(n["causal"] and n["same_clock"] for n in item["nodes"])
        sender = next(n for n in item["nodes"] if n["node_id"] == 1)
        times = _event_times(sender)
        assert [name for name, _, _ in times] == SENDER_EVENTS
        # queued <= token arrived <= multicast <= delivered <= applied <= fsync <= committed
        ends = [end for _, _, end in times]
        assert nondecreasing(ends)
        assert all(start <= end for _, start, end in times)
        multicast_end = times[2][2]
        for receiver in item["nodes"]:
            if receiver["node_id"] == 1:
                continue
            rtimes = _event_times(receiver)
            assert [name for name, _, _ in rtimes] == ["delivered", "applied", "fsync done"]
            # network time counts from the sender's multicast
            assert rtimes[0][1] == pytest.approx(multicast_end)
            assert nondecreasing([multicast_end] + [end for _, _, end in rtimes])
        assert {c["cost"] for c in item["costs"]} == {"token_wait", "network", "apply", "fsync"}
    assert {c["cost"] for c in trace["costs"]} == {"token_wait", "network", "apply", "fsync"}
    assert trace["ring_events"] == []  # a quiet ring
    assert run_cli("lab", "slow-disk", "3", "200", "--name", "tcfs", env=env).code == 0
    run = run_cli(
        "sync-trace",
        "--name",
        "tcfs",
        "--count",
        "3",
        "--level",
        "all",
        "--output-format",
        "json",
        env=env,
    )
    assert run.code == 0, run.stderr
    trace = json.loads(run.stdout)
    for item in trace["writes"]:
        node, phase, ms = item["slowest_phase"]
        assert (node, phase) == (3, "fsync") and ms >= 200
        assert item["total_ms"] >= 200
        fsync = next(c for c in item["costs"] if c["cost"] == "fsync")
        assert fsync["node_id"] == 3 and fsync["ms"] >= 200
    assert trace["dominant"] == "fsync"
    assert "fsync on node 3" in trace["verdict"]


def test_coupled_sync_trace_shows_the_token_held_and_node_3_leaving(
    lab: tuple[dict[str, str], Path],
) -> None:
    env, _ = lab
    up(env, "tcfsc", 3, "--coupling", "coupled")
    assert run_cli("lab", "slow-disk", "3", "3000", "--name", "tcfsc", env=env).code == 0
    run = run_cli(
        "sync-trace", "--name", "tcfsc", "--count", "2", "--output-format", "json", env=env
    )
    assert run.code == 0, run.stderr
    trace = json.loads(run.stdout)
    assert trace["coupling"] == "coupled"
    events = trace["ring_events"]
    left = [
        e for e in events if e["kind"] == "regular" and 3 in e["left"] and 3 not in e["members"]
    ]
    assert left and {e["node_id"] for e in left} <= {1, 2}
    assert any(e["kind"] == "token_lost" and e["node_id"] in (1, 2) for e in events)
    # node 3's fsync ran in its protocol loop: it started before the others gave up on it
    origin = min(w["origin_ns"] for w in trace["writes"])
    slow = [
        (w["origin_ns"] - origin) / 1e6 + p["start_ms"]
        for w in trace["writes"]
        for n in w["nodes"]
        if n["node_id"] == 3
        for p in n["phases"]
        if p["phase"] == "fsync" and p["duration_ms"] >= 3000
    ]
    assert slow and min(slow) < min(e["at_ms"] for e in left)
    assert "3 left" in trace["verdict"] and "coupled mode node 3's fsync" in trace["verdict"]
    # the picture: ring changes drawn on the same axis as the phases
    console = Console(record=True, width=140, file=io.StringIO())
    console.print(sync_trace_text.render(from_jsonable(SyncTrace, trace)))
    text = console.export_text()
    assert "token lost" in text
    assert re.search(r"\[1 2\] -3", text), text  # a ring without node 3, on the chart


def test_coupled_slow_disk_stalls_the_token_and_the_node_is_dropped(
    lab: tuple[dict[str, str], Path],
) -> None:
    env, root = lab
    up(env, "tcfsc", 3, "--coupling", "coupled")
    assert run_cli("lab", "slow-disk", "3", "3000", "--name", "tcfsc", env=env).code == 0
    # the write itself may fail with EAGAIN: the ring re-forms while it is in flight
    write(root, "tcfsc", 1, "domino", b"x")
    deadline = time.monotonic() + 15
    dropped = False
    while time.monotonic() < deadline and not dropped:
        members = control_socket.call(sock(root, "tcfsc", 1), "info")["members"]
        dropped = 3 not in members
        time.sleep(0.1)
    assert dropped, "node 3's fsync in the protocol loop should have cost it its place"


def test_corosync_conf_lives_in_the_store_and_reaches_every_node(
    lab: tuple[dict[str, str], Path],
) -> None:
    env, root = lab
    up(env, "tcfs", 3)
    lab_conf = (root / "tcfs" / "corosync.conf").read_text()
    for node in (1, 2, 3):  # imported at lab up, as pmxcfs imports it on first start
        stored = base64.b64decode(read(root, "tcfs", node, "corosync.conf")["data"]).decode()
        assert stored == lab_conf
    newer = lab_conf.replace("config_version: 1", "config_version: 2")
    newer = newer.replace("token_coefficient: 125", "token_coefficient: 125\n  token: 1234")
    assert write(root, "tcfs", 2, "corosync.conf", newer.encode(), "all")["ok"]
    for node in (1, 2, 3):  # every node writes it to its local copy (/etc/corosync)
        local = root / "tcfs" / f"node{node}" / "corosync.conf"
        deadline = time.monotonic() + 10
        while not (local.exists() and "token: 1234" in local.read_text()):
            assert time.monotonic() < deadline, node
            time.sleep(0.1)
    older = lab_conf.replace("config_version: 1", "config_version: 0") + "# older\n"
    assert write(root, "tcfs", 1, "corosync.conf", older.encode(), "all")["ok"]
    time.sleep(0.5)
    for node in (1, 2, 3):  # a lower config_version never overwrites the local copy
        local = (root / "tcfs" / f"node{node}" / "corosync.conf").read_text()
        assert "token: 1234" in local and "# older" not in local


def test_lab_fs_commands(lab: tuple[dict[str, str], Path], tmp_path: Path) -> None:
    env, _ = lab
    up(env, "tcfs", 3)
    put = subprocess.run(
        [
            sys.executable,
            "-m",
            "pvectl",
            "lab",
            "fs",
            "put",
            "1",
            "datacenter.cfg",
            "--name",
            "tcfs",
            "--level",
            "all",
        ],
        input=b"keyboard: de\n",
        capture_output=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert put.returncode == 0, put.stderr
    cat = run_cli("lab", "fs", "cat", "3", "datacenter.cfg", "--name", "tcfs", env=env)
    assert cat.code == 0 and cat.stdout == "keyboard: de\n"
    assert run_cli("lab", "fs", "mkdir", "2", "nodes", "--name", "tcfs", env=env).code == 0
    listing = run_cli(
        "lab", "fs", "ls", "1", "/", "--name", "tcfs", "--output-format", "json", env=env
    )
    names = {e["name"]: e for e in json.loads(listing.stdout)["entries"]}
    assert names["nodes"]["dir"] and names["datacenter.cfg"]["writer"] == 1
    big = tmp_path / "big"
    big.write_bytes(b"x" * (1024 * 1024 + 1))
    refused = run_cli("lab", "fs", "put", "1", "big", str(big), "--name", "tcfs", env=env)
    assert refused.code == 1 and "EFBIG" in refused.stderr
    assert run_cli("lab", "fs", "rm", "3", "nodes", "--name", "tcfs", env=env).code == 0
    missing = run_cli("lab", "fs", "cat", "1", "nodes", "--name", "tcfs", env=env)
    assert missing.code == 66 and "Traceback" not in missing.stderr


def test_sync_trace_draws_bars_and_saves_svg(
    lab: tuple[dict[str, str], Path], tmp_path: Path
) -> None:
    env, _ = lab
    up(env, "tcfs", 3)
    svg = tmp_path / "trace.svg"
    run = run_cli("sync-trace", "--name", "tcfs", "--count", "2", "--svg", str(svg), env=env)
    assert run.code == 0, run.stderr
    assert "timeline of write" in run.stdout and "█" in run.stdout
    assert svg.read_text().startswith("<svg") and "fsync" in svg.read_text()
    bad = run_cli(
        "sync-trace",
        "--name",
        "tcfs",
        "--count",
        "1",
        "--svg",
        str(tmp_path / "missing" / "x.svg"),
        env=env,
    )
    assert bad.code == 73 and "Traceback" not in bad.stderr


def test_oversize_input_is_refused_early_and_with_bounded_memory(
    lab: tuple[dict[str, str], Path],
) -> None:
    """Finding 6: ``lab fs put`` read all of standard input before any check (300 MB used
    352 MB of memory), and the node multicast an over-limit write round the whole ring
    before it failed with EFBIG on apply."""
    env, root = lab
    up(env, "tcfs", 2)
    feed_limit = 200 * 1024 * 1024
    put = subprocess.Popen(
        [sys.executable, "-m", "pvectl", "lab", "fs", "put", "1", "big", "--name", "tcfs"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert put.stdin is not None and put.stderr is not None
    fed = 0
    chunk = bytes(1024 * 1024)

    def feed() -> None:  # /dev/zero, bounded: the old code read all of it, then refused
        nonlocal fed
        try:
            while fed < feed_limit:
                put.stdin.write(chunk)  # type: ignore[union-attr]
                fed += len(chunk)
            put.stdin.close()  # type: ignore[union-attr]
        except (BrokenPipeError, ValueError):
            pass

    peak_kib = 0

    def watch_memory() -> None:
        """The child's own peak RSS (VmHWM of its exec'd image). Not wait4's ru_maxrss:
        that also counts the pages of the pytest worker it was forked from."""
        nonlocal peak_kib
        status_file = Path(f"/proc/{put.pid}/status")
        while put.poll() is None:
            try:
                for line in status_file.read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peak_kib = max(peak_kib, int(line.split()[1]))
            except (OSError, ValueError):
                pass
            time.sleep(0.005)

    feeder = threading.Thread(target=feed, daemon=True)
    watcher = threading.Thread(target=watch_memory, daemon=True)
    feeder.start()
    watcher.start()
    stderr = put.stderr.read().decode()
    put.wait(60)
    feeder.join(30)
    watcher.join(30)
    max_rss_mib = peak_kib / 1024
    assert put.returncode == 1, stderr
    assert "EFBIG" in stderr and "Traceback" not in stderr and len(stderr.splitlines()) == 1
    assert fed <= 8 * 1024 * 1024, f"the client read {fed} bytes before refusing"
    assert peak_kib > 0, "the child's memory was never read"
    assert max_rss_mib < 150, f"max RSS {max_rss_mib:.0f} MiB"
    # a direct write over the limit is refused at the submitting node, before the ring
    before = control_socket.call(sock(root, "tcfs", 1), "info")["stats"]["frames_sent"]
    big = write(root, "tcfs", 1, "big.cfg", b"x" * (4 * 1024 * 1024))
    after = control_socket.call(sock(root, "tcfs", 1), "info")["stats"]["frames_sent"]
    assert not big["ok"] and "EFBIG" in big["error"], big
    assert after - before < 50, f"{after - before} frames multicast for a refused write"
