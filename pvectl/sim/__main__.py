"""``python -m pvectl.sim``: run the Totem simulator over a swarm of seeds, or replay one.

Exit status 0 when every seed passed, 1 on the first violation (its seed, options and
the last events are printed; ``--seed N`` replays it exactly), 64 on bad usage.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from pvectl.cli.progress import Bar, bar
from pvectl.sim.checker import InvariantViolation
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
        "--accelerated", action="store_true", help="run the Accelerated Ring (totem accelerated)"
    )
    try:
        args = p.parse_args(argv)
    except SystemExit as exc:
        return 0 if exc.code == 0 else 64
    if args.nodes is not None and not 1 <= args.nodes <= 64:
        print("python -m pvectl.sim: error: --nodes must be 1..64", file=sys.stderr)
        return 64
    seeds = (
        [args.seed]
        if args.seed is not None
        else range(args.seed_start, args.seed_start + args.seeds)
    )
    trace = args.seed is not None
    with bar(f"simulating {len(seeds)} seed(s)", len(seeds)) as shown:
        return _swarm(args, seeds, trace, shown)


def _swarm(args: argparse.Namespace, seeds: Sequence[int], trace: bool, shown: Bar) -> int:
    """Every seed in turn; a violation stops the swarm with its replay command."""
    started = time.perf_counter()
    simulated = 0.0
    done = 0
    for seed in seeds:
        opts = Options.draw(seed, args.nodes, safety_s=args.safety, accelerated=args.accelerated)
        sim = Simulator(seed, opts, trace=True, trace_len=400 if trace else 60)
        try:
            result = sim.run()
        except InvariantViolation as exc:
            print(f"VIOLATION {exc}", file=sys.stderr)
            print(
                f"replay: python -m pvectl.sim --seed {seed} --safety {args.safety}"
                + (f" --nodes {args.nodes}" if args.nodes else "")
                + (" --accelerated" if args.accelerated else ""),
                file=sys.stderr,
            )
            return 1
        done += 1
        simulated += result.simulated_s
        shown.advance()
        if trace:
            shown.echo("\n".join(sim.trace))
        if trace or not args.quiet:
            shown.echo(
                f"seed {seed}: ok nodes={opts.nodes} converged {result.converge_s:.2f}s after "
                f"healing, {result.deliveries} deliveries, {result.simulated_s:.1f}s simulated"
            )
    elapsed = time.perf_counter() - started
    rate = done / elapsed * 60 if elapsed > 0 else 0.0
    shown.echo(
        f"{done} seeds passed in {elapsed:.1f}s: {rate:.0f} seeds/minute, "
        f"{simulated / max(elapsed, 1e-9):.0f} simulated s per wall s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
