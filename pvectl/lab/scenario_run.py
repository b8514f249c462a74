"""Running a scenario on a lab engine: start the lab, apply each step, wait until every
running node's view has settled, record what each node decided, and always take the lab
down again. The format and the comparison are in ``scenario.py`` (pure)."""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pvectl
from pvectl.errors import ExitCode, PermissionNeeded, PvectlError
from pvectl.lab import engines
from pvectl.lab import scenario as sc
from pvectl.lab import state as lab_state
from pvectl.lab.engine import LabEngine
from pvectl.lab.options import DEFAULT_PORT, UpOptions
from pvectl.lab.state import LabNode, LabState
from pvectl.results import QuorumStatus

Report = Callable[[str], None]
SETTLE_TIMEOUT = 30.0
POLL = 0.1
CLEAN_START = 1.0  # the lab 'up' already waited for the ring; views settle right after
STABLE_WINDOW = 1.5  # members that disagree must keep their views this long to count


def _quiet(_: str) -> None:
    pass


# ---- finding scenarios ------------------------------------------------------------------


def scenario_dirs() -> list[Path]:
    """Shipped scenarios: inside the installed package, or at the root of a checkout."""
    package = Path(pvectl.__file__).resolve().parent
    return [d for d in (package / "scenarios", package.parent / "scenarios") if d.is_dir()]


def shipped() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for directory in scenario_dirs():
        for path in sorted(directory.glob("*.yaml")):
            found.setdefault(path.stem, path)
    return found


def resolve(name_or_path: str) -> Path:
    """A file path, or the name of a shipped scenario (``three-lose-one``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    known = shipped()
    if name_or_path in known:
        return known[name_or_path]
    if path.exists():
        return path  # a directory, a device...: load() says what it is, with its exit code
    if path.suffix or os.sep in name_or_path:
        raise PvectlError(f"{name_or_path}: no such scenario file", ExitCode.NO_INPUT)
    raise PvectlError(
        f"no scenario file or shipped scenario named {name_or_path!r} "
        f"(shipped: {', '.join(known) or 'none'})",
        ExitCode.NO_INPUT,
    )


# ---- engines ----------------------------------------------------------------------------


def unsupported(module: LabEngine, spec: sc.UpSpec) -> str | None:
    """Why this engine cannot run the scenario's cluster, or None."""
    if spec.qdevice and module.ENGINE == "corosync" and not _qdevice_tools():
        return "corosync-qdevice is not installed (Debian package 'corosync-qdevice')"
    return None


def _qdevice_tools() -> bool:
    return shutil.which("corosync-qdevice") is not None


def _free_loopback_subnet(nodes: int) -> str | None:
    """A 127.79.x.0/24 where every node's port is free: the embedded engine's own choice
    probes only the first address, and labs of other users (other XDG_RUNTIME_DIRs) may
    take the others in between."""
    import socket

    used = {lab.subnet for lab in lab_state.all_labs()}
    # A probe is released before the lab binds, so two runs probing at once could pick the
    # same subnet: each process starts its search at its own place (pid) to keep them apart.
    start = os.getpid() % 254
    for offset in range(254):
        third = 1 + (start + offset) % 254
        subnet = f"127.79.{third}.0/24"
        if subnet in used:
            continue
        probes = []
        try:
            for host in range(1, nodes + 1):
                probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                probes.append(probe)
                probe.bind((f"127.79.{third}.{host}", DEFAULT_PORT))
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()
        return subnet
    return None


def up_options(module: LabEngine, spec: sc.UpSpec) -> UpOptions:
    extra: dict[str, Any] = {}
    if spec.qdevice:
        extra.update(
            qdevice=True,
            qdevice_algorithm=spec.qdevice_algorithm,
            qdevice_votes=spec.qdevice_votes,
            qdevice_start=spec.qdevice_start,
        )
    if spec.quorum:
        extra["quorum"] = spec.quorum
    if spec.start is not None:
        extra["start"] = spec.start
    if module.ENGINE == "embedded":
        extra["subnet"] = _free_loopback_subnet(spec.nodes)
    return UpOptions(
        nodes=spec.nodes,
        token=spec.token,
        two_node=spec.two_node,
        wait_for_all=spec.wait_for_all,
        votes=spec.votes,
        **extra,
    )


def choose_engines(requested: Sequence[str] | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The engines to run and notes for the user. Without root the corosync side cannot
    run: dropped with a note when it was only the default, an error (77) when asked for."""
    wanted = tuple(requested) if requested else ("embedded", "corosync")
    for engine in wanted:
        if engine not in engines.ENGINES:
            raise PvectlError(
                f"unknown engine {engine!r} (known: {', '.join(engines.ENGINES)})",
                ExitCode.USAGE,
            )
    if len(set(wanted)) != len(wanted):
        raise PvectlError("--engines lists an engine twice", ExitCode.USAGE)
    if "corosync" not in wanted:
        return wanted, ()
    from pvectl.lab import corosync_engine

    if os.geteuid() != 0:
        if requested:
            raise PermissionNeeded(
                "the corosync engine needs root (network namespaces, nftables): run as root, "
                "or compare with --engines embedded"
            )
        kept = tuple(e for e in wanted if e != "corosync")
        return kept, ("corosync side not run: the corosync engine needs root",)
    corosync_engine.require_corosync()
    return wanted, ()


# ---- observing --------------------------------------------------------------------------


def _status(module: LabEngine, state: LabState, node: LabNode) -> QuorumStatus | None:
    if module.ENGINE == "corosync":
        from pvectl.lab import corosync_engine

        return corosync_engine.quorum_view(node)
    from pvectl.lab.target import EmbeddedNodeTarget

    try:
        return EmbeddedNodeTarget(state, node.node_id).status()
    except PvectlError:
        return None


def running(module: LabEngine, state: LabState) -> list[int]:
    return [n.node_id for n in state.nodes if module.node_pid(n) is not None]


def snapshot(module: LabEngine, name: str) -> tuple[list[int], list[sc.NodeState]]:
    """The running nodes and the quorum decision of each one that answers."""
    state = lab_state.load(name)
    if state is None:
        raise PvectlError(f"lab {name!r} disappeared during the scenario")
    ids = running(module, state)
    states = []
    for node_id in ids:
        status = _status(module, state, state.node(node_id))
        if status is not None:
            states.append(
                sc.node_state(
                    node_id,
                    [m.node_id for m in status.members],
                    status.quorate,
                    status.total_votes,
                    status.expected_votes,
                    status.quorum,
                    status.flags,
                )
            )
    return ids, states


def wait_settled(
    module: LabEngine,
    name: str,
    started: float,
    extra: Callable[[list[sc.NodeState]], bool] = lambda _: True,
    timeout: float = SETTLE_TIMEOUT,
    window: float = 0.0,
) -> tuple[float | None, tuple[sc.NodeState, ...]]:
    """Seconds from ``started`` until the views have settled (and ``extra`` holds), with
    those views; None and the last views after ``timeout``.

    Settled: every running node answers, the membership has re-formed, and the views no
    longer change: two polls in a row when the members of each ring decide alike, else
    (corosync can stay so: a legitimate outcome) the same views for ``STABLE_WINDOW``.
    ``window``: a step whose effect comes late asks the views to hold this long anyway."""
    deadline = time.monotonic() + timeout
    previous: list[sc.NodeState] | None = None
    first_seen = 0.0
    states: list[sc.NodeState] = []
    while True:
        ids, states = snapshot(module, name)
        now = time.monotonic()
        if sc.formed(states, ids) and extra(states):
            if states == previous:
                hold = max(window, STABLE_WINDOW if sc.disagreements(states) else 0.0)
                if now - first_seen >= hold:
                    return first_seen - started, tuple(states)
            else:
                previous, first_seen = states, now
        else:
            previous = None
        if now >= deadline:
            return None, tuple(states)
        time.sleep(POLL)


# ---- running ----------------------------------------------------------------------------


def run(
    scenario: sc.Scenario,
    engine: str,
    lab: str,
    report: Report = _quiet,
    progress: Report = _quiet,
) -> sc.EngineRun:
    """The whole scenario on one engine, in lab ``lab``, which is removed afterwards.
    ``progress`` hears which step runs now (a terminal's spinner); ``report`` what each did."""
    module = engines.module_for(engine)
    why = unsupported(module, scenario.up)
    if why is not None:
        report(f"[{engine}] skipped: {why}")
        return sc.EngineRun(engine, lab, skipped=why)
    lab_state.check_lab_name(lab)
    results: list[sc.StepResult] = []
    up_seconds: float | None = None
    error: str | None = None
    try:
        started = time.monotonic()
        progress(f"[{engine}] up: starting {scenario.up.nodes} nodes")
        module.up(lab, up_options(module, scenario.up))
        up_seconds = time.monotonic() - started
        _, views = wait_settled(module, lab, time.monotonic())
        results.append(
            sc.StepResult(0, 0, "up", up_seconds, views, disagreements=sc.disagreements(views))
        )
        report(f"[{engine}] up: {scenario.up.nodes} nodes in {up_seconds:.2f} s")
        for index, step in enumerate(scenario.steps, start=1):
            progress(
                f"[{engine}] step {index}/{len(scenario.steps)} (line {step.line}) "
                f"{step.describe()}"
            )
            result = _step(module, lab, index, step, late_votes=scenario.up.qdevice)
            result = dataclasses.replace(result, disagreements=sc.disagreements(result.nodes))
            results.append(result)
            report(
                f"[{engine}] step {index} (line {step.line}) {step.describe()}: " + _brief(result)
            )
            if result.error is not None:
                error = f"step {index} (line {step.line}): {result.error}"
                break
    except PvectlError as exc:
        error = str(exc)
        report(f"[{engine}] stopped: {error}")
    finally:
        try:
            module.down(lab)
        except PvectlError as exc:
            report(f"[{engine}] lab down {lab}: {exc}")
    return sc.EngineRun(engine, lab, None, up_seconds, tuple(results), error)


def _brief(result: sc.StepResult) -> str:
    if result.error:
        return f"ERROR {result.error}"
    parts = []
    if result.seconds is not None and result.step != "expect":
        parts.append(f"settled after {result.seconds:.2f} s")
    failed = [c for c in result.checks if not c.ok]
    if result.checks:
        parts.append(
            "expect ok"
            if not failed
            else "expect FAILED: " + ", ".join(f"{c.key} {c.got} (want {c.want})" for c in failed)
        )
    if result.refused:
        parts.append(f"refused: {result.refused}")
    if result.disagreements:
        parts.append("members disagree: " + "; ".join(result.disagreements))
    return "; ".join(parts) or "done"


def _step(
    module: LabEngine, lab: str, index: int, step: sc.Step, late_votes: bool = False
) -> sc.StepResult:
    """``late_votes``: a QDevice's vote follows a ring change only once qnetd answered,
    so the views must hold for ``STABLE_WINDOW`` before the step counts as settled."""
    started = time.monotonic()
    hold = STABLE_WINDOW if late_votes else 0.0
    action = step.action
    node = step.node or 0

    def settle(
        extra: Callable[[list[sc.NodeState]], bool] = lambda _: True,
        dropped_after: float | None = None,
    ) -> sc.StepResult:
        seconds, views = wait_settled(module, lab, started, extra, window=hold)
        error = None if seconds is not None else f"views had not settled after {SETTLE_TIMEOUT:g} s"
        return sc.StepResult(
            index,
            step.line,
            step.describe(),
            seconds,
            views,
            error=error,
            dropped_after=dropped_after,
        )

    try:
        if action in ("kill", "stop"):
            sig = signal.SIGKILL if action == "kill" else signal.SIGTERM
            module.stop_node(lab, node, sig)
            return settle(lambda views: all(node not in v.members for v in views))
        if action == "start":
            module.start_node(lab, node)
            return settle()
        if action == "pause":
            assert step.seconds is not None
            change = module.pause_node(lab, node, step.seconds)
            return settle(dropped_after=change.dropped_after)
        if action == "partition":
            module.partition(lab, [",".join(map(str, g)) for g in step.groups])
            side = {n: set(g) for g in step.groups for n in g}
            return settle(lambda views: all(set(v.members) <= side[v.node_id] for v in views))
        if action == "heal":
            module.heal(lab)
            return settle(
                lambda views: all(set(v.members) == {w.node_id for w in views} for v in views)
            )
        if action == "expected":
            return _expected(module, lab, index, step, started)
        if action == "qdevice":
            module.qdevice_action(lab, step.word)
            want = step.word == "start"

            def registered(views: list[sc.NodeState]) -> bool:
                return all(("Qdevice" in v.flags) == want for v in views)

            seconds, views = wait_settled(module, lab, started, registered, window=STABLE_WINDOW)
            return sc.StepResult(
                index,
                step.line,
                step.describe(),
                seconds,
                views,
                error=None if seconds is not None else "views had not settled",
            )
        if action == "qnetd":
            module.qnetd_action(lab, step.word)
            return settle()
        if action == "wait" and step.timeout is None:
            assert step.seconds is not None
            time.sleep(step.seconds)
            return settle()
        if action == "wait":
            return _wait_for(module, lab, index, step, started)
        seconds, views = wait_settled(module, lab, started)
        return sc.StepResult(
            index, step.line, step.describe(), seconds, views, sc.check_expect(step, views)
        )
    except PvectlError as exc:
        return sc.StepResult(index, step.line, step.describe(), None, (), error=str(exc))


def _expected(
    module: LabEngine, lab: str, index: int, step: sc.Step, started: float
) -> sc.StepResult:
    from pvectl.lab.target import LabTarget

    assert step.node is not None and step.votes is not None
    votes = step.votes
    refused: str | None = None
    try:
        LabTarget(lab, step.node).set_expected(step.votes)
    except PvectlError as exc:  # refused by votequorum (or by pvectl's guard that mirrors it)
        refused = str(exc)
    node = step.node

    def applied(views: list[sc.NodeState]) -> bool:
        own = next((v for v in views if v.node_id == node), None)
        return refused is not None or (own is not None and own.expected_votes <= votes)

    seconds, views = wait_settled(module, lab, started, applied)
    return sc.StepResult(
        index,
        step.line,
        step.describe(),
        seconds,
        views,
        error=None if seconds is not None else "views had not settled",
        refused=refused,
    )


def _wait_for(
    module: LabEngine, lab: str, index: int, step: sc.Step, started: float
) -> sc.StepResult:
    node = step.node

    def wanted(views: list[sc.NodeState]) -> bool:
        own = next((v for v in views if v.node_id == node), None)
        if own is None:
            return False
        if step.members is not None and own.members != step.members:
            return False
        return step.quorate is None or own.quorate == step.quorate

    assert step.timeout is not None
    seconds, views = wait_settled(module, lab, started, wanted, timeout=step.timeout)
    error = None if seconds is not None else f"not reached within {step.timeout:g} s"
    return sc.StepResult(index, step.line, step.describe(), seconds, views, error=error)


def lab_names(prefix: str, chosen: Sequence[str]) -> dict[str, str]:
    return {engine: lab_state.check_lab_name(f"{prefix}-{engine[0]}") for engine in chosen}


def compare(
    scenario: sc.Scenario,
    chosen: Sequence[str],
    prefix: str,
    parallel: bool = True,
    report: Report = _quiet,
    progress: Report = _quiet,
) -> sc.Comparison:
    """Run the scenario on each engine (at once, or one after the other) and compare."""
    names = lab_names(prefix, chosen)
    lacking = {e: why for e in chosen if (why := unsupported(engines.module_for(e), scenario.up))}
    if lacking:  # a side-by-side view with one side missing compares nothing: run neither
        for engine, why in lacking.items():
            report(f"[{engine}] skipped: {why}")
        skipped = [
            sc.EngineRun(e, names[e], skipped=lacking.get(e, "not run: another engine cannot"))
            for e in chosen
        ]
        return sc.compare(scenario, skipped)
    runs: dict[str, sc.EngineRun] = {}

    def one(engine: str) -> None:
        runs[engine] = run(scenario, engine, names[engine], report, progress)

    if parallel and len(chosen) > 1:
        threads = [threading.Thread(target=one, args=(e,), daemon=True) for e in chosen]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    else:
        for engine in chosen:
            one(engine)
    return sc.compare(scenario, [runs[e] for e in chosen])
