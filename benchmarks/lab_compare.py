"""Detection and settle times of the embedded engine beside real corosync 3, per step of
every shipped scenario (root). Each scenario runs ``pvectl lab compare`` ROUNDS times;
the table shows the median seconds from the start of a step until every running node's
view had settled, for each engine, and their ratio.

    python benchmarks/lab_compare.py [--rounds 3] [--sequential] [SCENARIO ...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(name: str, lab: str, sequential: bool, xdg: str) -> dict[str, object]:
    argv = [sys.executable, "-m", "pvectl", "lab", "compare", name, "--name", lab]
    argv += ["--output-format", "json", *(["--sequential"] if sequential else [])]
    proc = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        cwd=REPO,
        env=dict(os.environ, XDG_RUNTIME_DIR=xdg),
        check=False,
    )
    if proc.returncode == 69:
        return {"skipped": proc.stderr.strip().splitlines()[-1]}
    data: dict[str, object] = json.loads(proc.stdout)
    data["exit"] = proc.returncode
    return data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("scenarios", nargs="*")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sequential", action="store_true")
    args = parser.parse_args()
    names = args.scenarios or sorted(p.stem for p in (REPO / "scenarios").glob("*.yaml"))
    xdg = tempfile.mkdtemp(prefix="tcmp-bench-")
    print(f"{'scenario / step':<58}{'embedded s':>11}{'corosync s':>11}{'ratio':>7}  agree")
    for name in names:
        rounds = [run(name, "tcmpbench", args.sequential, xdg) for _ in range(args.rounds)]
        if rounds[0].get("skipped"):
            print(f"{name:<58}skipped: {rounds[0]['skipped']}")
            continue
        agree = all(r["agree"] for r in rounds)
        print(f"{name}  ({args.rounds} rounds, {'all agree' if agree else 'DIFFERENCES'})")
        steps = rounds[0]["steps"]
        assert isinstance(steps, list)
        for index, row in enumerate(steps):
            if row["step"].startswith("expect "):
                continue
            per_engine = []
            for side in ("left", "right"):
                values = [
                    r["steps"][index][side]["seconds"]  # type: ignore[index]
                    for r in rounds
                    if r["steps"][index][side] is not None  # type: ignore[index]
                    and r["steps"][index][side]["seconds"] is not None  # type: ignore[index]
                ]
                per_engine.append(statistics.median(values) if values else None)
            left, right = per_engine
            ratio = f"{left / right:7.2f}" if left and right else f"{'-':>7}"
            shown = [f"{v:11.2f}" if v is not None else f"{'-':>11}" for v in per_engine]
            print(f"  {row['step']:<56}{shown[0]}{shown[1]}{ratio}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
