"""Text layout of ``lab compare`` / ``lab run``: each step, the engines side by side, every
difference in quorum decisions marked with ``!``."""

from __future__ import annotations

from pvectl.lab import scenario as sc

COLUMN = 52


def _view(state: sc.NodeState | None) -> str:
    if state is None:
        return "(not running)"
    quorate = "quorate" if state.quorate else "NOT quorate"
    members = ",".join(map(str, state.members))
    flags = " ".join(state.flags) or "-"
    return (
        f"[{members}] votes {state.total_votes}/{state.expected_votes} q {state.quorum} "
        f"{quorate} {flags}"
    )


def _seconds(result: sc.StepResult | None) -> str:
    if result is None:
        return "(not reached)"
    if result.error:
        return "ERROR"
    if result.step.startswith("expect "):
        return "-"
    text = "-" if result.seconds is None else f"{result.seconds:.2f} s"
    if result.dropped_after is not None:
        text += f" (dropped after {result.dropped_after:.2f} s)"
    if result.refused:
        text += " refused"
    return text


def render(comparison: sc.Comparison) -> str:
    out = [f"scenario {comparison.scenario} ({comparison.path})\n"]
    if comparison.description:
        out.append(f"  {comparison.description}\n")
    for note in comparison.notes:
        out.append(f"note: {note}\n")
    for run in comparison.runs:
        if run.skipped:
            out.append(f"{run.engine}: skipped: {run.skipped}\n")
    if comparison.skipped is not None:
        out.append("nothing run: the scenario needs what no chosen engine offers\n")
        return "".join(out)
    active = [r for r in comparison.runs if r.skipped is None]
    head = "".join(f"{r.engine + ' (lab ' + r.lab + ')':<{COLUMN}}" for r in active)
    out.append(f"\n{'':<12}{head}\n")
    for row in comparison.steps:
        results = [row.left, row.right][: len(active)]
        where = f" (line {row.line})" if row.line else ""
        out.append(f"{row.index}. {row.step}{where}\n")
        out.append(f"  {'settled':<10}" + "".join(f"{_seconds(r):<{COLUMN}}" for r in results))
        out.append("\n")
        ids = sorted({s.node_id for r in results if r is not None for s in r.nodes})
        diff_nodes = {d.node_id for d in row.differences}
        for node_id in ids:
            views = []
            for result in results:
                found = None
                if result is not None:
                    found = next((s for s in result.nodes if s.node_id == node_id), None)
                views.append(_view(found))
            mark = "!" if node_id in diff_nodes else " "
            out.append(f"{mark} node {node_id:<5}" + "".join(f"{v:<{COLUMN}}" for v in views))
            out.append("\n")
        for diff in row.differences:
            who = f"node {diff.node_id} " if diff.node_id else ""
            out.append(
                f"  ! {who}{diff.key}: {active[0].engine} {diff.left}, "
                f"{active[1].engine if len(active) > 1 else '-'} {diff.right}\n"
            )
        for engine_run, result in zip(active, results, strict=False):
            if result is None:
                continue
            for check in result.checks:
                if not check.ok:
                    out.append(
                        f"  x {engine_run.engine}: expect {check.key} {check.want}, "
                        f"got {check.got}\n"
                    )
            if result.error:
                out.append(f"  x {engine_run.engine}: {result.error}\n")
            for line in result.disagreements:
                out.append(f"  ~ {engine_run.engine}: members disagree: {line}\n")
    out.append("\n")
    for engine_run in active:
        if engine_run.error:
            out.append(f"{engine_run.engine}: stopped: {engine_run.error}\n")
        failed = sum(1 for s in engine_run.steps for c in s.checks if not c.ok)
        checks = sum(len(s.checks) for s in engine_run.steps)
        out.append(f"{engine_run.engine}: {checks - failed}/{checks} expectations met\n")
    if len(active) > 1:
        count = len(comparison.differences)
        out.append(
            "quorum decisions agree on every step\n"
            if count == 0
            else f"{count} difference(s) in quorum decisions (marked !)\n"
        )
    out.append("result: " + ("PASS" if comparison.agree else "FAIL") + "\n")
    return "".join(out)
