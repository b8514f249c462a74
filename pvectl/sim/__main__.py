"""``python -m pvectl.sim``: simulate whole nodes (Totem, votequorum, the config store with
its commit pipeline, concurrent writers at levels local and all) over a swarm of seeds, or
replay one. ``--totem-only`` runs Totem alone (faster, no store).

Exit status 0 when every seed passed, 1 on the first violation (its seed, options and
the last events are printed, then one replay command), 64 on bad usage.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from pvectl.progress import Bar, bar
from pvectl.sim.store import NodeSimulator
from pvectl.sim.swarm import SeedJob, outcomes, run_seed
from pvectl.sim.world import Options, Simulator


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pvectl.sim", description=__doc__)
    p.add_argument("--nodes", type=int, default=None, help="nodes per run (default: 3-7 by seed)")
    p.add_argument("--seeds", type=int, default=100, help="how many seeds to run")
    p.add_argument("--seed-start", type=int, default=0, help="first seed of the swarm")
    p.add_argument("--seed", type=int, default=None, help="replay exactly this seed, traced")
    p.add_argument("--safety", type=float, default=6.0, help="simulated seconds with faults on")
    p.add_argument("--quiet", action="store_true", help="print only the summary")
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help="run the seeds in N processes (0: one per core); the lowest failing seed is "
        "reported whatever N",
    )
    p.add_argument(
        "--accelerated", action="store_true", help="run the Accelerated Ring (totem accelerated)"
    )
    p.add_argument(
        "--totem-only", action="store_true", help="simulate Totem alone (no quorum, no store)"
    )
    p.add_argument(
        "--shrink",
        action="store_true",
        help="with --seed: drop faults while the seed still fails, print the minimal schedule",
    )
    p.add_argument(
        "--skip-faults",
        default="",
        metavar="IDS",
        help="comma-separated fault ids that do not happen (what --shrink prints)",
    )
    try:
        args = p.parse_args(argv)
    except SystemExit as exc:
        return 0 if exc.code == 0 else 64
    if args.jobs < 0:
        print(
            "python -m pvectl.sim: error: --jobs must be 0 (one per core) or more", file=sys.stderr
        )
        return 64
    args.jobs = args.jobs or os.cpu_count() or 1
    if args.nodes is not None and not 1 <= args.nodes <= 64:
        print("python -m pvectl.sim: error: --nodes must be 1..64", file=sys.stderr)
        return 64
    try:
        args.skip = frozenset(int(x) for x in args.skip_faults.split(",") if x.strip())
    except ValueError:
        print("python -m pvectl.sim: error: --skip-faults takes ids like 0,3,4", file=sys.stderr)
        return 64
    if args.shrink:
        if args.seed is None:
            print("python -m pvectl.sim: error: --shrink needs --seed", file=sys.stderr)
            return 64
        return _shrink(args)
    seeds = (
        [args.seed]
        if args.seed is not None
        else range(args.seed_start, args.seed_start + args.seeds)
    )
    trace = args.seed is not None
    with bar(f"simulating {len(seeds)} seed(s)", len(seeds)) as shown:
        return _swarm(args, seeds, trace, shown)


def _commit() -> str:
    """The commit of the code that failed, so a replay runs the same simulator."""
    try:
        found = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except OSError:
        return "unknown"
    return found.stdout.strip() or "unknown"


def _job(args: argparse.Namespace, seed: int, skip: frozenset[int], trace: bool = False) -> SeedJob:
    return SeedJob(
        seed,
        args.nodes,
        args.safety,
        accelerated=args.accelerated,
        totem_only=args.totem_only,
        skip_faults=skip,
        trace=trace,
    )


def _fails(args: argparse.Namespace, seed: int, skip: frozenset[int]) -> str:
    """One seed without the faults ``skip``: its violation's first line ("" if it passes)."""
    return run_seed(_job(args, seed, skip)).headline


def _replay(args: argparse.Namespace, seed: int, skip: frozenset[int]) -> str:
    return (
        f"python -m pvectl.sim --seed {seed} --safety {args.safety}"
        + (f" --nodes {args.nodes}" if args.nodes else "")
        + (" --accelerated" if args.accelerated else "")
        + (" --totem-only" if args.totem_only else "")
        + (f" --skip-faults {','.join(map(str, sorted(skip)))}" if skip else "")
    )


def _shrink(args: argparse.Namespace) -> int:
    """Greedy: drop each fault in turn, keep it dropped while the seed still fails."""
    seed = args.seed
    skip: frozenset[int] = args.skip
    faults = _run_faults(args, seed)
    if not _fails(args, seed, skip):
        print(f"seed {seed} passes: nothing to shrink ({len(faults)} faults)")
        return 0
    changed = True
    while changed:
        changed = False
        for fid in range(len(faults)):
            if fid not in skip and _fails(args, seed, skip | {fid}):
                skip = skip | {fid}
                changed = True
    first = _fails(args, seed, skip) or "passed?"
    kept = [f"  {fid}: {faults[fid]}" for fid in range(len(faults)) if fid not in skip]
    print(f"seed {seed} still fails with {len(kept)} of {len(faults)} faults: {first}")
    print("\n".join(kept) if kept else "  (no scheduled fault: network faults alone)")
    print(f"replay: {_replay(args, seed, skip)}  # code {_commit()}")
    return 1


def _run_faults(args: argparse.Namespace, seed: int) -> list[str]:
    """The seed's fault schedule (drawn before anything runs)."""
    opts = Options.draw(seed, args.nodes, safety_s=args.safety, accelerated=args.accelerated)
    sim = Simulator(seed, opts) if args.totem_only else NodeSimulator(seed, opts)
    sim._schedule_faults()
    return sim.faults


def _swarm(args: argparse.Namespace, seeds: Sequence[int], trace: bool, shown: Bar) -> int:
    """Every seed (over ``--jobs`` processes); the lowest failing seed stops the swarm
    with its replay command."""
    started = time.perf_counter()
    simulated = 0.0
    done = 0
    acknowledged = 0
    split_brains = 0  # seeds where two disjoint sides were quorate (see NodeSimulator)
    lost_to_split_brain = 0
    jobs = (_job(args, seed, args.skip, trace) for seed in seeds)
    processes = min(args.jobs, len(seeds))
    running = outcomes(jobs, processes)
    for out in running:
        if out.violation:
            running.close()  # stop the other workers
            print(f"VIOLATION {out.violation}", file=sys.stderr)
            print(
                f"replay: {_replay(args, out.seed, args.skip)}  # {out.nodes} nodes, "
                f"code {_commit()}; shrink: add --shrink",
                file=sys.stderr,
            )
            return 1
        done += 1
        simulated += out.simulated_s
        acknowledged += out.acknowledged
        split_brains += out.split_brain
        lost_to_split_brain += out.overruled
        shown.advance()
        if trace:
            shown.echo(out.trace)
        if trace or not args.quiet:
            shown.echo(
                f"seed {out.seed}: ok nodes={out.nodes} converged {out.converge_s:.2f}s after "
                f"healing, {out.deliveries} deliveries, {out.simulated_s:.1f}s simulated"
            )
    elapsed = time.perf_counter() - started
    rate = done / elapsed * 60 if elapsed > 0 else 0.0
    shown.echo(
        f"{done} seeds passed in {elapsed:.1f}s: {rate:.0f} seeds/minute"
        + (f" on {processes} processes" if processes > 1 else "")
        + f", {simulated / max(elapsed, 1e-9):.0f} simulated s per wall s"
        + ("" if args.totem_only else f", acknowledged writes: {acknowledged}, lost: 0")
        + (
            f" (split history after pvecm expected or a moved quorum device vote in "
            f"{split_brains} seed(s): {lost_to_split_brain} acknowledged writes overruled "
            f"there, as corosync does)"
            if split_brains
            else ""
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
