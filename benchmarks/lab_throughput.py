"""Agreed-delivery throughput and latency of a 3-node embedded lab, beside real corosync's CPG.

    python benchmarks/lab_throughput.py                 # both engines (corosync part: root)
    python benchmarks/lab_throughput.py --no-corosync   # embedded only, no root needed
    python benchmarks/lab_throughput.py --json out.json # the figures per size, as JSON

The headline is the lab at its defaults (netmtu 1400, as corosync), Totem's standard
ring; an Accelerated Ring lab (``totem { accelerated: yes }``) runs beside it, and
``--netmtu N`` adds one more embedded lab at that netmtu as an extra row (loopback carries
big datagrams; corosync's knet does not use them, so it is never the headline).

Embedded: node 1 multicasts a burst through the benchmark service (``bench_send``: as fast
as Totem's flow control and a bounded send queue allow), every node records its
deliveries and the one-way latency from the sender's CLOCK_MONOTONIC stamp (one kernel,
one clock). corosync: lab ``tperfc-bench`` (3 corosync nodes in network namespaces, knet);
a small CPG client (benchmarks/cpgbench.c, built here with gcc against libcpg) sends the
same burst from node 1 while nodes 2 and 3 receive. Both report rates between each node's
first and last delivery, the CPU the three node processes used per message, an idle
round trip (send one, wait for its own delivery), the embedded engines' latency when paced
at corosync's rate, and the failure-detection time of a kill -9 beside token + consensus.
Bursts alternate between the labs, so a busy moment on a shared machine hits all of them.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pvectl.errors import PvectlError
from pvectl.lab import corosync_engine, embedded_engine
from pvectl.lab import state as lab_state
from pvectl.node import control_socket
from pvectl.targets import corosync_parse
from pvectl.totem.srp import TotemConfig

EMBEDDED = "tperf-bench"
ACCELERATED = "tperfa-bench"
EXTRA_MTU = "tperfm-bench"
COROSYNC = "tperfc-bench"
HERE = Path(__file__).resolve().parent
DEFAULT_COUNTS = {64: 100_000, 1024: 50_000, 65536: 2_000}
CLIENT_PREFIX: list[str] = []  # ["chrt", "-r", "1"] with --realtime: the CPG client too


@dataclass
class Run:
    """One burst as seen by each node: node -> result dict (count, seconds, bytes, latency)."""

    size: int
    per_node: dict[int, dict[str, Any]]
    note: str = ""
    cpu_s: float = 0.0  # CPU seconds the 3 node processes used for the burst (embedded)

    def rate(self, node: int) -> float:
        r = self.per_node[node]
        return float(r["count"]) / r["seconds"] if r["seconds"] > 0 else 0.0

    def receivers_rate(self) -> float:
        """Messages/s at the receivers (nodes other than the sender), as corosync's figure."""
        rates = [self.rate(n) for n in self.per_node if n != 1] or [self.rate(1)]
        return statistics.mean(rates)

    def p(self, pct: str) -> float:
        """The worst node's percentile (ms)."""
        return max(float(r["latency_ms"][pct]) for r in self.per_node.values())

    def per_node_latency(self) -> str:
        return " ".join(
            f"n{n} {r['latency_ms']['p50']:.2f}/{r['latency_ms']['p99']:.1f}"
            for n, r in sorted(self.per_node.items())
        )


def median_run(runs: list[Run]) -> Run:
    """The run with the median rate, noting the range of all (this machine is shared)."""
    ordered = sorted(runs, key=Run.receivers_rate)
    chosen = ordered[(len(ordered) - 1) // 2]
    if len(ordered) > 1:
        low, high = ordered[0].receivers_rate(), ordered[-1].receivers_rate()
        chosen.note += f", median of {len(ordered)} ({low:.0f}-{high:.0f} msgs/s)"
    return chosen


# ---- the embedded lab ------------------------------------------------------------------


def embedded_socket(node: lab_state.LabNode) -> Path:
    return Path(node.dir) / "control.sock"


def embedded_burst(
    state: lab_state.LabState, size: int, count: int, queue_bytes: int, rate: float = 0.0
) -> Run:
    nodes = state.nodes
    for node in nodes:
        control_socket.call(embedded_socket(node), "bench_reset")
    processes = [psutil.Process(n.pid) for n in nodes if n.pid is not None]
    cpu_before = sum(sum(p.cpu_times()[:2]) for p in processes)
    sent = control_socket.call(
        embedded_socket(nodes[0]),
        "bench_send",
        timeout=600,
        count=count,
        size=size,
        queue_bytes=queue_bytes,
        rate=rate,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        counts = [
            control_socket.call(embedded_socket(n), "bench_result", count_only=True)["count"]
            for n in nodes
        ]
        if min(counts) >= count:
            break
        time.sleep(0.05)
    cpu_s = sum(sum(p.cpu_times()[:2]) for p in processes) - cpu_before
    results = {n.node_id: control_socket.call(embedded_socket(n), "bench_result") for n in nodes}
    orders = {r["order_sha256"] for r in results.values()}
    note = f"waits {sent['waits']}, node CPU {cpu_s / count * 1e6:.1f} us/msg"
    if len(orders) != 1:
        note += ", ORDER DIFFERS"
    return Run(size, results, note, cpu_s)


def embedded_echo(state: lab_state.LabState, size: int, count: int) -> dict[str, float]:
    reply = control_socket.call(
        embedded_socket(state.nodes[0]), "bench_echo", timeout=120, count=count, size=size
    )
    return {k: float(v) for k, v in reply["round_trip_ms"].items()}


def realtime(pids: list[int]) -> None:
    """SCHED_RR, as corosync runs itself (priority 99 there): on a busy machine each token
    hop otherwise waits for a CPU behind every other process."""
    for pid in pids:
        os.sched_setscheduler(pid, os.SCHED_RR, os.sched_param(1))


def embedded_failover(name: str) -> tuple[float | None, float, float]:
    change = embedded_engine.stop_node(name, 3, signal.SIGKILL)
    embedded_engine.start_node(name, 3)
    timeouts = TotemConfig(token_coefficient=125).timeouts(3)  # as the lab writes it
    return change.seconds, timeouts.token, timeouts.consensus


# ---- real corosync -----------------------------------------------------------------------


def corosync_missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    if corosync_engine.missing_tools():
        return "corosync is not installed"
    if shutil.which("gcc") is None:
        return "gcc is not installed"
    if not Path("/usr/include/corosync/cpg.h").exists():
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "libcpg-dev"], capture_output=True, check=False
        )
        if not Path("/usr/include/corosync/cpg.h").exists():
            return "libcpg-dev is not installed (apt-get install libcpg-dev)"
    return None


def build_client(workdir: Path) -> Path:
    binary = workdir / "cpgbench"
    subprocess.run(
        ["gcc", "-O2", "-o", str(binary), str(HERE / "cpgbench.c"), "-lcpg"],
        check=True,
        capture_output=True,
    )
    return binary


def in_node(state: lab_state.LabState, node_id: int, argv: list[str]) -> list[str]:
    return [*corosync_engine.node_prefix(state.node(node_id)), *argv]


def last_json(text: str) -> dict[str, Any]:
    lines = [line for line in text.splitlines() if line.startswith("{")]
    result: dict[str, Any] = json.loads(lines[-1]) if lines else {}
    return result


def corosync_cpu(state: lab_state.LabState) -> float:
    """CPU seconds used so far by the lab's corosync processes."""
    total = 0.0
    for node in state.nodes:
        pid = corosync_engine.node_pid(node)
        if pid is not None:
            with contextlib.suppress(psutil.Error):
                total += sum(psutil.Process(pid).cpu_times()[:2])
    return total


def corosync_burst(state: lab_state.LabState, binary: Path, size: int, count: int) -> Run:
    cpu_before = corosync_cpu(state)
    receivers = {
        n: subprocess.Popen(
            in_node(state, n, [*CLIENT_PREFIX, str(binary), "recv", str(count), "3"]),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in (2, 3)
    }
    sender = subprocess.run(
        in_node(state, 1, [*CLIENT_PREFIX, str(binary), "send", str(count), str(size), "3"]),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    results = {1: last_json(sender.stdout)}
    for n, proc in receivers.items():
        out, err = proc.communicate(timeout=120)
        results[n] = last_json(out)
        if not results[n]:
            raise PvectlError(f"cpgbench recv on node {n} failed: {err.strip()}")
    if not results[1]:
        raise PvectlError(f"cpgbench send failed: {sender.stderr.strip()}")
    cpu_s = corosync_cpu(state) - cpu_before
    note = f"TRY_AGAIN {results[1]['try_again']}, node CPU {cpu_s / count * 1e6:.1f} us/msg"
    return Run(size, results, note, cpu_s)


def corosync_echo(
    state: lab_state.LabState, binary: Path, size: int, count: int
) -> dict[str, float]:
    done = subprocess.run(
        in_node(state, 1, [*CLIENT_PREFIX, str(binary), "echo", str(count), str(size)]),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    result = last_json(done.stdout)
    if not result:
        raise PvectlError(f"cpgbench echo failed: {done.stderr.strip()}")
    return {k: float(v) for k, v in result["latency_ms"].items()}


def corosync_failover(name: str, state: lab_state.LabState) -> tuple[float | None, float, float]:
    cmap = corosync_parse.parse_cmap(
        subprocess.run(
            in_node(state, 1, ["corosync-cmapctl", "runtime.config.totem."]),
            capture_output=True,
            text=True,
            check=False,
        ).stdout
    )
    token = int(cmap["runtime.config.totem.token"]) / 1000
    consensus = int(cmap["runtime.config.totem.consensus"]) / 1000
    change = corosync_engine.stop_node(name, 3, signal.SIGKILL)
    corosync_engine.start_node(name, 3)
    return change.seconds, token, consensus


# ---- the run -----------------------------------------------------------------------------


@dataclass
class Engine:
    label: str
    bursts: dict[int, Run]
    echo: dict[int, dict[str, float]]
    failover: tuple[float | None, float, float] | None
    paced: dict[int, Run] = dataclasses.field(default_factory=dict)  # at corosync's rate
    key: str = ""  # its name in the JSON output


@dataclass
class Variant:
    """One embedded lab of the run."""

    engine: Engine
    lab: str
    options: embedded_engine.UpOptions
    state: lab_state.LabState | None = None


def variants(args: argparse.Namespace) -> list[Variant]:
    rt = ", RR" if args.realtime else ""
    out = [
        Variant(
            Engine(f"pvectl (defaults{rt})", {}, {}, None, key="pvectl"),
            EMBEDDED,
            embedded_engine.UpOptions(nodes=3),
        )
    ]
    if args.accelerated:
        out.append(
            Variant(
                Engine(f"pvectl accelerated ring{rt}", {}, {}, None, key="accelerated"),
                ACCELERATED,
                embedded_engine.UpOptions(nodes=3, accelerated=True),
            )
        )
    if args.netmtu:
        out.append(
            Variant(
                Engine(
                    f"pvectl netmtu {args.netmtu}{rt}", {}, {}, None, key=f"netmtu_{args.netmtu}"
                ),
                EXTRA_MTU,
                embedded_engine.UpOptions(nodes=3, netmtu=args.netmtu),
            )
        )
    return out


def run(args: argparse.Namespace, sizes: list[int], with_corosync: bool) -> list[Engine]:
    """All labs up side by side; bursts alternate between them, so a busy moment on this
    shared machine hits every engine rather than one."""
    ours = variants(args)
    theirs = Engine("corosync CPG (knet, RR)", {}, {}, None, key="corosync")
    with contextlib.ExitStack() as stack:
        for v in ours:
            embedded_engine.down(v.lab)
            stack.callback(embedded_engine.down, v.lab)
            v.state = embedded_engine.up(v.lab, v.options, report=print)
            if args.realtime:
                realtime([n.pid for n in v.state.nodes if n.pid is not None])
        binary = cstate = None
        if with_corosync:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tperf-cpg-")))
            binary = build_client(tmp)
            corosync_engine.down(COROSYNC)
            stack.callback(corosync_engine.down, COROSYNC)
            corosync_engine.up(COROSYNC, corosync_engine.UpOptions(nodes=3), report=print)
            cstate = corosync_engine.load_running(COROSYNC)
        for size in sizes:
            count = args.counts[size]
            runs: dict[str, list[Run]] = {v.lab: [] for v in ours}
            theirs_runs = []
            for _ in range(args.repeats):
                for v in ours:
                    assert v.state is not None
                    runs[v.lab].append(embedded_burst(v.state, size, count, args.queue_bytes))
                if binary is not None and cstate is not None:
                    theirs_runs.append(corosync_burst(cstate, binary, size, count))
            for v in ours:
                assert v.state is not None
                v.engine.bursts[size] = median_run(runs[v.lab])
                v.engine.echo[size] = embedded_echo(v.state, size, args.echo)
            if binary is not None and cstate is not None:
                theirs.bursts[size] = median_run(theirs_runs)
                theirs.echo[size] = corosync_echo(cstate, binary, size, args.echo)
                # latency at the same offered load: corosync's rate is set by its client
                rate = theirs.bursts[size].receivers_rate()
                paced = max(200, min(count, int(rate * 3)))
                for v in ours:
                    assert v.state is not None
                    v.engine.paced[size] = embedded_burst(
                        v.state, size, paced, args.queue_bytes, rate
                    )
        if not args.no_failover:
            ours[0].engine.failover = embedded_failover(EMBEDDED)
            if cstate is not None:
                theirs.failover = corosync_failover(COROSYNC, cstate)
    engines = [v.engine for v in ours]
    return [*engines, theirs] if with_corosync else engines


def cpu_us(run: Run, count: int) -> float:
    return run.cpu_s / count * 1e6 if count else 0.0


def report_json(
    engines: list[Engine], sizes: list[int], args: argparse.Namespace, loads: list[float]
) -> dict[str, Any]:
    """Per size: the headline pair and ratio, latency at corosync's rate, CPU per message,
    and the same for each other embedded variant."""
    corosync = next((e for e in engines if e.key == "corosync"), None)
    ours = [e for e in engines if e.key != "corosync"]
    out: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "load_1m_start": loads[0], "load_1m_end": loads[1]},
        "settings": {
            "nodes": 3,
            "netmtu": 1400,
            "realtime": args.realtime,
            "repeats": args.repeats,
            "counts": {str(k): v for k, v in args.counts.items()},
        },
        "sizes": {},
    }
    for size in sizes:
        count = args.counts[size]
        row: dict[str, Any] = {}
        theirs = corosync.bursts[size] if corosync is not None else None
        for engine in ours:
            run = engine.bursts[size]
            rate = run.receivers_rate()
            paced = engine.paced.get(size)
            fields: dict[str, Any] = {
                "msgs_per_s": round(rate),
                "p50_ms": run.p("p50"),
                "p99_ms": run.p("p99"),
                "node_cpu_us_per_msg": round(cpu_us(run, count), 2),
                "node_cpu_us_per_msg_per_node": round(cpu_us(run, count) / 3, 2),
                "ratio": round(rate / theirs.receivers_rate(), 3) if theirs else None,
                "p99_ms_at_corosync_rate": paced.p("p99") if paced else None,
                "msgs_per_s_at_corosync_rate": round(paced.receivers_rate()) if paced else None,
                "idle_round_trip_ms": engine.echo[size],
            }
            if engine.key == "pvectl":
                row.update({f"pvectl_{k}": v for k, v in fields.items() if k != "ratio"})
                row["ratio"] = fields["ratio"]
            else:
                row[engine.key] = fields
        if theirs is not None and corosync is not None:
            rate = theirs.receivers_rate()
            row.update(
                {
                    "corosync_msgs_per_s": round(rate),
                    "corosync_p50_ms": theirs.p("p50"),
                    "corosync_p99_ms": theirs.p("p99"),
                    "corosync_node_cpu_us_per_msg": round(cpu_us(theirs, count), 2),
                    "corosync_idle_round_trip_ms": corosync.echo[size],
                }
            )
        out["sizes"][str(size)] = row
    return out


def print_report(engines: list[Engine], sizes: list[int]) -> None:
    print(f"\nmachine: {os.cpu_count()} cpu(s), load {os.getloadavg()[0]:.1f}; 3 nodes, sender n1")
    head = f"{'size':>7}  {'engine':<28}{'msgs/s':>9}{'MB/s':>8}{'p50 ms':>8}{'p99 ms':>8}"
    print(head + "  per node p50/p99 ms, notes")
    corosync = next((e for e in engines if e.key == "corosync"), None)
    for size in sizes:
        for engine in engines:
            run = engine.bursts[size]
            rate = run.receivers_rate()
            print(
                f"{size:>7}  {engine.label:<28}{rate:>9.0f}{rate * size / 1e6:>8.2f}"
                f"{run.p('p50'):>8.2f}{run.p('p99'):>8.1f}  {run.per_node_latency()}; {run.note}"
            )
        if corosync is None:
            continue
        theirs = corosync.bursts[size]
        for engine in engines:
            if engine is corosync:
                continue
            ours = engine.bursts[size]
            print(
                f"{'':>7}  {'ratio ' + engine.key + '/corosync':<28}"
                f"{ours.receivers_rate() / theirs.receivers_rate():>8.2f}x"
                f"{'':>8}{ours.p('p50') / theirs.p('p50'):>7.2f}x"
                f"{ours.p('p99') / theirs.p('p99'):>7.2f}x"
            )
            paced = engine.paced.get(size)
            if paced is not None:
                rate = paced.receivers_rate()
                print(
                    f"{'':>7}  {engine.key + ' at corosync rate':<28}{rate:>9.0f}"
                    f"{rate * size / 1e6:>8.2f}{paced.p('p50'):>8.2f}{paced.p('p99'):>8.1f}  "
                    f"{paced.per_node_latency()}; p50 ratio "
                    f"{paced.p('p50') / theirs.p('p50'):.2f}x, p99 ratio "
                    f"{paced.p('p99') / theirs.p('p99'):.2f}x"
                )
    print("\nidle round trip (send one, wait for own agreed delivery), ms p50 / p99")
    for size in sizes:
        cells = [f"{e.key}: {e.echo[size]['p50']:.3f} / {e.echo[size]['p99']:.3f}" for e in engines]
        print(f"{size:>7}  " + "   ".join(cells))
    if any(e.failover for e in engines):
        print("\nfailure detection: kill -9 of node 3 until the survivors' new ring")
        for engine in engines:
            if engine.failover is None:
                continue
            seconds, token, consensus = engine.failover
            formula = token + consensus
            shown = f"{seconds:.2f} s" if seconds is not None else "did not settle"
            ratio = f" ({seconds / formula:.2f}x)" if seconds else ""
            print(
                f"  {engine.label:<28}{shown}  vs token {token:.2f} + consensus {consensus:.2f}"
                f" = {formula:.2f} s{ratio}"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="64,1024,65536")
    parser.add_argument("--count", action="append", default=[], help="SIZE=N, e.g. 64=200000")
    parser.add_argument(
        "--netmtu",
        type=int,
        default=0,
        help="also run an embedded lab at this totem netmtu (an extra row; the headline "
        "stays at the lab's default, 1400)",
    )
    parser.add_argument(
        "--accelerated",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run an Accelerated Ring lab (default: yes)",
    )
    parser.add_argument("--json", type=Path, help="write the figures per size to this file")
    parser.add_argument("--queue-bytes", type=int, default=0, help="embedded send queue bound")
    parser.add_argument("--repeats", type=int, default=3, help="bursts per size (median)")
    parser.add_argument("--echo", type=int, default=500, help="round trips per size")
    parser.add_argument(
        "--realtime",
        action=argparse.BooleanOptionalAction,
        default=os.geteuid() == 0,
        help="run the embedded nodes SCHED_RR like corosync (default: when root)",
    )
    parser.add_argument("--no-corosync", action="store_true")
    parser.add_argument("--no-failover", action="store_true")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    args.counts = {s: DEFAULT_COUNTS.get(s, 10_000) for s in sizes}
    for item in args.count:
        size, _, n = item.partition("=")
        args.counts[int(size)] = int(n)
    with_corosync = not args.no_corosync
    if with_corosync and (missing := corosync_missing()):
        print(f"corosync part skipped: {missing}")
        with_corosync = False
    if args.realtime:
        CLIENT_PREFIX[:] = ["chrt", "-r", "1"]
    load_start = os.getloadavg()[0]
    engines = run(args, sizes, with_corosync)
    print_report(engines, sizes)
    if args.json:
        figures = report_json(engines, sizes, args, [load_start, os.getloadavg()[0]])
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"\nfigures written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
