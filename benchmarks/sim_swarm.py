"""A long whole-node simulator run: many seeds over several processes, every violation
listed (``python -m pvectl.sim`` stops at the first one).

    python benchmarks/sim_swarm.py                       # 10,000 seeds, 3-7 nodes, 2 processes
    python benchmarks/sim_swarm.py --seeds 2000 --jobs 2 --safety 6

Each seed is what ``python -m pvectl.sim --seed N --safety S`` runs (the default swarm: its
own node count, faults, QDevice or not). Prints one line per violation with its replay
command, then the totals: seeds, violations, acknowledged writes (all levels, and level
``all``), writes lost, seeds with a split brain after ``pvecm expected`` (and the writes
the sync overruled there, as that command warns), the node counts and QDevice seeds run,
and seeds per minute of wall time and of CPU time (all processes).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

from pvectl.sim.swarm import SeedJob, SeedOutcome, outcomes


@dataclass
class Totals:
    seeds: int = 0
    acknowledged: int = 0
    acknowledged_all: int = 0
    split_brains: int = 0
    overruled: int = 0
    qdevice_seeds: int = 0
    cpu_s: float = 0.0
    sizes: Counter[int] = field(default_factory=Counter)
    violations: list[SeedOutcome] = field(default_factory=list)

    def add(self, out: SeedOutcome) -> None:
        self.seeds += 1
        self.sizes[out.nodes] += 1
        self.qdevice_seeds += out.qdevice
        self.cpu_s += out.cpu_s
        if out.violation:
            self.violations.append(out)
            return
        self.acknowledged += out.acknowledged
        self.acknowledged_all += out.acknowledged_all
        self.split_brains += out.split_brain
        self.overruled += out.overruled


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=10_000)
    p.add_argument("--seed-start", type=int, default=0)
    p.add_argument("--safety", type=float, default=6.0, help="simulated seconds with faults")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = p.parse_args()
    if args.seeds < 1 or args.jobs < 1 or args.safety <= 0:
        p.error("--seeds and --jobs must be at least 1, --safety above 0")
    jobs = [
        SeedJob(s, safety_s=args.safety)
        for s in range(args.seed_start, args.seed_start + args.seeds)
    ]
    totals = Totals()
    started = time.perf_counter()
    for out in outcomes(jobs, args.jobs, ordered=False):
        totals.add(out)
        if out.violation:
            print(
                f"VIOLATION {out.headline}\n  replay: python -m pvectl.sim --seed "
                f"{out.seed} --safety {args.safety}",
                flush=True,
            )
        if totals.seeds % 500 == 0:
            print(f"  {totals.seeds} seeds done", file=sys.stderr, flush=True)
    wall = time.perf_counter() - started
    lost = sum("lost" in v.headline for v in totals.violations)
    sizes = ", ".join(f"{n} nodes: {c}" for n, c in sorted(totals.sizes.items()))
    print(
        f"{totals.seeds} seeds (from {args.seed_start}, --safety {args.safety}), "
        f"{len(totals.violations)} violation(s)\n"
        f"acknowledged writes: {totals.acknowledged} (level all: {totals.acknowledged_all}), "
        f"seeds that lost one: {lost} (outside split brains)\n"
        f"split history after pvecm expected or a moved quorum device vote: "
        f"{totals.split_brains} seed(s), "
        f"{totals.overruled} acknowledged write(s) overruled there\n"
        f"seeds run: {sizes}; with a QDevice: {totals.qdevice_seeds}\n"
        f"{wall:.0f} s wall on {args.jobs} process(es): {totals.seeds / wall * 60:.0f} seeds/min "
        f"wall, {totals.seeds / max(totals.cpu_s, 1e-9) * 60:.0f} seeds/min per CPU"
    )
    return 1 if totals.violations else 0


if __name__ == "__main__":
    sys.exit(main())
