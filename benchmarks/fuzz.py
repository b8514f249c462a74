"""Long fuzz run over every decoder that reads outside input.

Runs each target of ``tests/fuzz/targets_*.py`` for ``--seconds`` and prints inputs per
second and crashes found; crashing inputs are kept in ``tests/fuzz/corpus/<target>/`` so
the CI budget replays them from then on.

    python benchmarks/fuzz.py --seconds 60            # every target, a minute each
    python benchmarks/fuzz.py --target totem_wire_keyed --seed 7
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fuzz.harness import FuzzTarget, all_targets, generate, keep


def run_one(target: FuzzTarget, seconds: float, seed: int) -> tuple[int, int, float]:
    rng = random.Random(f"{seed}:{target.name}")
    inputs = crashes = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for _ in range(64):
            data = generate(target, rng)
            inputs += 1
            try:
                target.run(data)
            except Exception as exc:  # a crash is what we look for
                crashes += 1
                path = keep(target, data)
                print(f"  crash in {target.name}: {type(exc).__name__}: {exc!s:.120} -> {path}")
    return inputs, crashes, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="per target")
    parser.add_argument("--seed", type=int, default=0, help="0 = a fresh seed")
    parser.add_argument("--target", action="append", default=[], help="only these targets")
    args = parser.parse_args()
    seed = args.seed or random.SystemRandom().randrange(1, 2**32)
    targets = [t for t in all_targets() if not args.target or t.name in args.target]
    if not targets:
        print(f"no such target: {args.target}", file=sys.stderr)
        return 64
    print(f"seed {seed} (replay: --seed {seed}), {args.seconds:g} s per target")
    print(f"{'target':<32} {'inputs':>10} {'inputs/s':>10} {'crashes':>8}")
    total_crashes = 0
    for target in targets:
        inputs, crashes, elapsed = run_one(target, args.seconds, seed)
        total_crashes += crashes
        print(f"{target.name:<32} {inputs:>10,} {inputs / elapsed:>10,.0f} {crashes:>8}")
    return 1 if total_crashes else 0


if __name__ == "__main__":
    sys.exit(main())
