"""The embedded node's control-socket commands, the benchmark service's among them.

Each ``cmd_<name>`` answers the control command ``<name>`` (``-`` read as ``_``) for one
``NodeRuntime``: it checks the request, reads or drives the runtime's parts (which keep
the protocol state) and shapes the reply.
"""

from __future__ import annotations

import base64
import errno
import os
import time
from typing import Any

from pvectl.cfs import memdb as mdb
from pvectl.cfs.dfsm import tree_hash
from pvectl.errors import CommandRefused, ExitCode, PvectlError, UsageError
from pvectl.node import bench
from pvectl.node.qdevice import client_task as qdevice_task
from pvectl.node.runtime import NodeRuntime
from pvectl.quorum import votequorum as vq
from pvectl.quorum.status_report import quorum_status
from pvectl.results import NodeList, QuorumStatus, to_jsonable
from pvectl.trace.spans import Phase


async def dispatch(node: NodeRuntime, request: dict[str, Any]) -> dict[str, Any]:
    """The control socket's entry: ``cmd`` names the ``cmd_`` function below."""
    cmd = str(request["cmd"])
    handler = globals().get(f"cmd_{cmd.replace('-', '_')}")
    if handler is None:
        raise UsageError(f"unknown control command {cmd!r}")
    result: dict[str, Any] = await handler(node, request)
    return result


# --- the benchmark service (service 4) ---


async def cmd_bench_send(node: NodeRuntime, request: dict[str, Any]) -> dict[str, Any]:
    """Multicast ``count`` messages of ``size`` bytes, at most ``rate`` per second if
    given; answers when all are queued."""
    if node.bench.burst is not None:
        raise CommandRefused("a benchmark burst is already being sent from this node")
    count, size = int(request["count"]), int(request["size"])
    rate = float(request.get("rate", 0.0))
    try:
        bench.check_burst(count, size)
        if rate < 0:
            raise ValueError(f"rate must be positive, got {rate:g}")
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    queue_limit = int(request.get("queue_bytes", 0)) or bench.default_queue_bytes(size)
    burst = bench.Burst(count, size, queue_limit, rate=rate, started_ns=time.monotonic_ns())
    await node.bench.send(burst)
    return {
        "ok": True,
        "sent": burst.sent,
        "waits": burst.waits,
        "seconds": (burst.finished_ns - burst.started_ns) / 1e9,
    }


async def cmd_bench_echo(node: NodeRuntime, request: dict[str, Any]) -> dict[str, Any]:
    """Round trips: send one message, wait for its own agreed delivery, ``count`` times."""
    if node.bench.busy:
        raise CommandRefused("a benchmark is already running on this node")
    count, size = int(request["count"]), int(request["size"])
    try:
        bench.check_burst(count, size)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    timeout = float(request.get("timeout", 5.0))
    burst = bench.Burst(count, size, 0)
    try:
        samples = await node.bench.echo(burst, timeout)
    except TimeoutError:
        raise PvectlError(
            f"own message not delivered within {timeout:g} s (is the ring formed?)",
            ExitCode.TEMP_FAIL,
        ) from None
    samples.sort()
    return {"ok": True, "count": len(samples), "round_trip_ms": bench.summary_ms(samples)}


async def cmd_bench_reset(node: NodeRuntime, _: dict[str, Any]) -> dict[str, Any]:
    node.bench.recorder = bench.Recorder()
    return {"ok": True}


async def cmd_bench_result(node: NodeRuntime, request: dict[str, Any]) -> dict[str, Any]:
    """Deliveries so far; ``count_only`` is the cheap form for polling during a run."""
    if request.get("count_only"):
        return {"ok": True, "node_id": node.node_id, "count": node.bench.recorder.count}
    result = node.bench.recorder.result(with_order=bool(request.get("order", False)))
    return {"ok": True, "node_id": node.node_id, **result}


# --- the control socket ---


async def cmd_ping(node: NodeRuntime, _: dict[str, Any]) -> dict[str, Any]:
    return {"ok": True, "node_id": node.node_id, "pid": os.getpid()}


async def cmd_info(node: NodeRuntime, _: dict[str, Any]) -> dict[str, Any]:
    return {
        "ok": True,
        "node_id": node.node_id,
        "pid": os.getpid(),
        "state": node.totem.srp.state.name,
        "ring_id": str(node.totem.srp.ring_id),
        "members": list(node.totem.srp.members),
        "quorate": node.services.quorum.quorate,
        "store_synced": node.services.store.synced,
        "store_version": node.memdb.version,
        "store_hash": tree_hash(node.memdb),
        "coupling": node.config.coupling,
        "durability": node.config.durability.value,
        "stats": {
            **node.totem.srp.stats,
            "store_malformed": node.services.store.malformed,
            "delivery_errors": node.totem.delivery_errors,
        },
        "dropped": node.faults.dropped,
        # for pvectl watch/exporter: token rotation before a second sample, and the
        # recent config.db group commits (fsync) each write waited for, in ms
        "uptime_s": (time.monotonic_ns() - node.started_ns) / 1e9,
        "fsync_ms": [s.duration_ms for s in node.trace.spans if s.phase is Phase.fsync][-256:],
    }


def quorum_status_of(node: NodeRuntime) -> QuorumStatus:
    return quorum_status(
        node.services.quorum,
        node.services.ring_id,
        node.config.names,
        node.config.cluster,
        source="lab",
        addresses={p.node_id: (p.address,) for p in node.config.peers},
        token_ms=round(node.totem.srp.timeouts.token * 1000),
        consensus_ms=round(node.totem.srp.timeouts.consensus * 1000),
    )


async def cmd_status(node: NodeRuntime, _: dict[str, Any]) -> dict[str, Any]:
    return {"ok": True, "status": to_jsonable(quorum_status_of(node))}


async def cmd_nodes(node: NodeRuntime, _: dict[str, Any]) -> dict[str, Any]:
    status = quorum_status_of(node)
    return {"ok": True, "nodes": to_jsonable(NodeList(status.members, status.qdevice, "lab"))}


async def cmd_expected(node: NodeRuntime, request: dict[str, Any]) -> dict[str, Any]:
    requested = int(request["votes"])
    before = node.services.quorum
    node._core(node.core.set_expected(requested))
    after = node.services.quorum
    return {
        "ok": True,
        "requested": requested,
        "previous_expected": before.expected_votes,
        "total_votes": after.total_votes,
        "quorum_before": before.quorum,
        "quorum_after": after.quorum,
        "quorate_after": after.quorate,
        "warnings": [vq.expected_warning(requested, after.total_votes, before.expected_votes)],
    }


async def cmd_faults(node: NodeRuntime, request: dict[str, Any]) -> dict[str, Any]:
    if "blocked" in request:
        node.faults.blocked = {int(n) for n in request["blocked"]}
    for key in ("loss_pct", "delay_ms", "duplicate_pct"):
        if key in request:
            setattr(node.faults, key, float(request[key]))
    return {
        "ok": True,
        "blocked": sorted(node.faults.blocked),
        "loss_pct": node.faults.loss_pct,
    }


async def cmd_slow_disk(node: NodeRuntime, request: dict[str, Any]) -> dict[str, Any]:
    node.backing.extra_delay_s = float(request["ms"]) / 1000.0
    return {"ok": True, "ms": float(request["ms"])}


async def cmd_write(node: NodeRuntime, request: dict[str, Any]) -> dict[str, Any]:
    path = str(request["path"])
    data = base64.b64decode(request.get("data", ""))
    level = str(request.get("level", "local"))
    kind = str(request.get("op", "put"))
    if kind == "put":  # create if needed, then replace the content (truncate)
        created: dict[str, Any] = {}  # sync-trace follows both writes of a put
        if node.memdb.lookup(path) is None:
            created = await node.write_path.store_write(mdb.Create(path), level)
            if not created["ok"] and created.get("errno") != errno.EEXIST:
                return created
        written = await node.write_path.store_write(mdb.Write(path, 0, data, truncate=True), level)
        if written["ok"] and created.get("ok"):
            written["write_ids"] = created["write_ids"] + written["write_ids"]
            written["retried"] = created["retried"] + written["retried"]
        return written
    operations: dict[str, mdb.Operation] = {
        "create": mdb.Create(path),
        "mkdir": mdb.Mkdir(path),
        "delete": mdb.Delete(path),
        "rename": mdb.Rename(path, str(request.get("to", ""))),
        "mtime": mdb.SetMtime(path, int(request.get("mtime", 0))),
        "pwrite": mdb.Write(
            path, int(request.get("offset", 0)), data, bool(request.get("truncate", False))
        ),
    }
    if kind not in operations:
        raise UsageError(f"unknown store operation {kind!r}")
    return await node.write_path.store_write(operations[kind], level)


async def cmd_read(node: NodeRuntime, request: dict[str, Any]) -> dict[str, Any]:
    entry = node.memdb.lookup(str(request["path"]))
    if entry is None:
        raise PvectlError(f"{request['path']}: no such file in the config store")
    if entry.is_dir:
        names = [
            e.name + ("/" if e.is_dir else "") for e in node.memdb.listdir(str(request["path"]))
        ]
        return {"ok": True, "dir": True, "entries": names}
    return {
        "ok": True,
        "dir": False,
        "data": base64.b64encode(entry.data or b"").decode(),
        "version": entry.version,
        "writer": entry.writer,
        "mtime": entry.mtime,
    }


def _stat(entry: mdb.Entry) -> dict[str, Any]:
    return {
        "name": entry.name,
        "inode": entry.inode,
        "dir": entry.is_dir,
        "size": entry.size,
        "mtime": entry.mtime,
        "version": entry.version,
        "writer": entry.writer,
    }


async def cmd_stat(node: NodeRuntime, request: dict[str, Any]) -> dict[str, Any]:
    """getattr for the FUSE layer: also says whether writes are allowed right now."""
    entry = node.memdb.lookup(str(request["path"]))
    if entry is None:
        return {"ok": True, "exists": False, "writable": node.services.quorum.quorate}
    return {
        "ok": True,
        "exists": True,
        "writable": node.services.quorum.quorate,
        **_stat(entry),
    }


async def cmd_readdir(node: NodeRuntime, request: dict[str, Any]) -> dict[str, Any]:
    entry = node.memdb.lookup(str(request["path"]))
    if entry is None or not entry.is_dir:
        return {"ok": False, "error": "ENOTDIR: not a directory", "errno": errno.ENOTDIR}
    return {
        "ok": True,
        "entries": [_stat(e) for e in node.memdb.listdir(str(request["path"]))],
    }


async def cmd_tree(node: NodeRuntime, _: dict[str, Any]) -> dict[str, Any]:
    rows = [
        [
            e.inode,
            e.parent,
            e.version,
            e.writer,
            e.mtime,
            e.type,
            e.name,
            base64.b64encode(e.data).decode() if e.data is not None else None,
        ]
        for e in node.memdb.entries()
    ]
    return {"ok": True, "rows": rows, "hash": tree_hash(node.memdb)}


async def cmd_spans(node: NodeRuntime, request: dict[str, Any]) -> dict[str, Any]:
    """The spans of the given writes, and the ring events since ``since_ns``."""
    wanted = set(request.get("write_ids", []))
    since = int(request.get("since_ns", 0))
    spans = [to_jsonable(s) for s in node.trace.spans if not wanted or s.write_id in wanted]
    events = [to_jsonable(e) for e in node.trace.ring_events if e.at_ns >= since]
    return {
        "ok": True,
        "spans": spans,
        "ring_events": events,
        "ring_id": str(node.totem.srp.ring_id),
        "state": node.totem.srp.state.name,
        "members": list(node.totem.srp.members),
    }


async def cmd_qdevice(node: NodeRuntime, _: dict[str, Any]) -> dict[str, Any]:
    if node.qdevice is None:
        return {"ok": True, "configured": False}
    return {"ok": True, "configured": True, **node.qdevice.describe()}


async def cmd_qdevice_daemon(node: NodeRuntime, request: dict[str, Any]) -> dict[str, Any]:
    """Start or stop this node's qdevice client, as corosync-qdevice.service would: a
    stop unregisters the device from votequorum (flags cleared, NODEINFO re-sent)."""
    action = request.get("action")
    if node.config.qdevice is None:
        return {"ok": False, "error": "corosync.conf has no quorum.device"}
    if action == "stop":
        task, node.qdevice = node.qdevice, None
        if task is not None:
            node.core.qdevice_stopped()
            await task.stop()
            node._services(
                node.services.set_qdevice(registered=False, alive=False, cast_vote=False)
            )
        return {"ok": True, "running": False}
    if action == "start":
        if node.qdevice is None:
            node.qdevice = qdevice_task.start(node, node.config, node.state_dir)
            assert node.qdevice is not None
            node._services([node.services.local_nodeinfo()])
            if node.last_regular is not None:
                node.qdevice.regular_configuration(*node.last_regular)
        return {"ok": True, "running": True}
    return {"ok": False, "error": f"qdevice_daemon: action start or stop, not {action!r}"}


async def cmd_leave(node: NodeRuntime, _: dict[str, Any]) -> dict[str, Any]:
    node.loop.call_soon(node.stopping.set)
    return {"ok": True}
