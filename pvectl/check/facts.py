"""Collecting ``pvectl check``'s facts on one node, wherever its commands run.

Each fact is fetched on its own, so a node where one tool fails still yields the
others, with the failure recorded as a problem rather than aborting the check.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from pvectl import corosync_conf, quorum_conf
from pvectl.check.rules import ConfigFacts, FsyncFigures, LinkStat, NodeFacts
from pvectl.errors import PvectlError
from pvectl.quorum import whatif
from pvectl.results import QuorumStatus
from pvectl.targets.probes import measure_fsync
from pvectl.targets.runner import CommandRunner

CONFIG_PATHS = corosync_conf.CONFIG_PATHS
_CMAP_LINE = re.compile(r"^(\S+) \((\w+)\) = ?(.*)$")
_LINK_KEY = re.compile(r"^stats\.knet\.node(\d+)\.link(\d+)\.(\w+)$")
_NO_SAMPLES = 4294967295  # knet's latency_min before any sample


def parse_cmap(text: str) -> dict[str, str]:
    """``key (type) = value`` lines of corosync-cmapctl into a dict."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        match = _CMAP_LINE.match(line.strip())
        if match:
            values[match.group(1)] = match.group(3).strip()
    return values


def link_stats(stats: dict[str, str]) -> tuple[LinkStat, ...]:
    """knet links per node from the stats map; latencies there are in microseconds."""
    fields: dict[tuple[int, int], dict[str, str]] = {}
    for key, value in stats.items():
        match = _LINK_KEY.match(key)
        if match:
            fields.setdefault((int(match.group(1)), int(match.group(2))), {})[match.group(3)] = (
                value
            )
    links: list[LinkStat] = []
    for (node_id, link), values in sorted(fields.items()):
        samples = _int(values.get("latency_samples")) or 0
        ave = _int(values.get("latency_ave"))
        high = _int(values.get("latency_max"))
        measured = samples > 0 and ave is not None and ave != _NO_SAMPLES
        links.append(
            LinkStat(
                node_id=node_id,
                link=link,
                connected=values.get("connected") == "1",
                latency_ave_ms=(ave / 1000) if measured and ave is not None else None,
                latency_max_ms=(high / 1000) if measured and high is not None else None,
            )
        )
    return tuple(links)


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        return None


def config_facts(root: corosync_conf.Section, path: str) -> ConfigFacts:
    quorum = root.section("quorum") or corosync_conf.Section("quorum")
    device = quorum.section("device")
    net = device.section("net") if device else None
    totem = root.section("totem") or corosync_conf.Section("totem")
    return ConfigFacts(
        nodes=tuple((n.node_id, n.name, n.votes) for n in corosync_conf.nodelist(root, path)),
        expected_votes=_int(quorum.get("expected_votes")),
        two_node=quorum.get("two_node") == "1",
        qdevice_model=device.get("model") if device else None,
        qdevice_algorithm=net.get("algorithm") if net else None,
        qdevice_votes=_int(device.get("votes")) if device else None,
        token_ms=_int(totem.get("token")),
        token_coefficient_ms=_int(totem.get("token_coefficient")),
        consensus_ms=_int(totem.get("consensus")),
        config_version=_int(totem.get("config_version")),
        what_if=_what_if(root, path),
    )


def _what_if(root: corosync_conf.Section, path: str) -> str | None:
    """The votequorum model's summary line (quorum, failures always survived)."""
    try:
        options = quorum_conf.options_from_config(root, path)
        names = {entry.node_id: entry.name for entry in corosync_conf.nodelist(root, path)}
        report = whatif.analyse(options, names)
    except PvectlError:
        return None
    return report.advice[0] if report.advice else None


def gather(
    runner: CommandRunner,
    host: str,
    status_of: Callable[[], QuorumStatus],
    *,
    fsync: bool = True,
    fsync_dir: str | None = None,
    fsync_seconds: float = 1.0,
) -> NodeFacts:
    """Every fact ``check`` uses, from one node. ``status_of`` asks the node's corosync
    target, which the caller picks (local, ssh, namespaced)."""
    problems: list[str] = []
    status: QuorumStatus | None = None
    try:
        status = status_of()
    except PvectlError as exc:
        problems.append(f"quorum status unavailable: {exc}")

    config: ConfigFacts | None = None
    for path in CONFIG_PATHS:
        try:
            text = runner.read_file(path)
        except PvectlError as exc:
            problems.append(f"cannot read {path}: {exc}")
            break
        if text is not None:
            try:
                config = config_facts(corosync_conf.parse(text, path), path)
            except PvectlError as exc:
                problems.append(f"corosync.conf unreadable: {exc}")
            break
    else:
        problems.append("no corosync.conf (looked in " + ", ".join(CONFIG_PATHS) + ")")

    runtime: dict[str, str] = {}
    stats: dict[str, str] = {}
    if status is not None:  # corosync answers: its maps are worth asking
        for argv, into in (
            (["corosync-cmapctl", "runtime.config.totem."], runtime),
            (["corosync-cmapctl", "-m", "stats", "stats."], stats),
        ):
            try:
                result = runner.run(argv, timeout=30)
            except PvectlError as exc:
                problems.append(f"{' '.join(argv)}: {exc}")
                continue
            if result.returncode != 0:
                problems.append(f"{' '.join(argv)} failed: {result.stderr.strip()}")
                continue
            into.update(parse_cmap(result.stdout))

    figures: FsyncFigures | None = None
    if fsync:
        try:
            figures = measure_fsync(runner, fsync_dir, fsync_seconds)
        except (PvectlError, ValueError, KeyError) as exc:
            problems.append(f"fsync not measured: {exc}")

    mtt = _int(stats.get("stats.srp.mtt_rx_token"))
    return NodeFacts(
        host=host,
        status=status,
        config=config,
        runtime_token_ms=_int(runtime.get("runtime.config.totem.token")),
        runtime_consensus_ms=_int(runtime.get("runtime.config.totem.consensus")),
        links=link_stats(stats),
        mtt_rx_token_ms=float(mtt) if mtt is not None else None,
        fsync=figures,
        problems=tuple(problems),
    )


def gather_lab(
    name: str,
    *,
    fsync: bool = True,
    fsync_dir: str | None = None,
    fsync_seconds: float = 1.0,
) -> list[NodeFacts]:
    """``check --target lab``: each running node's view through the lab target, the lab's
    own corosync.conf, and the node's effective token as the node reports it.

    A stopped node yields no facts of its own: the others' quorum findings name it as
    missing from the membership. The embedded engine has no knet links to report, and its
    store writes under the lab's directory, so that is where fsync is measured (once).
    """
    from pvectl.lab import state as lab_state
    from pvectl.lab.target import LabTarget
    from pvectl.targets.runner import LocalRunner

    state = lab_state.load(lab_state.check_lab_name(name))
    if state is None:
        from pvectl.errors import TargetUnavailable

        raise TargetUnavailable(f"no lab named {name!r} is up: start one with 'pvectl lab up 3'")
    if state.engine == "corosync":
        from pvectl.lab import corosync_engine, reports

        corosync_engine.require_root("check --target lab (corosync engine)")
        return [
            gather(
                corosync_engine.node_runner(node),
                f"node{node.node_id}",
                LabTarget(name, node.node_id).status,
                fsync=fsync and index == 0,
                fsync_dir=fsync_dir or state.state_dir,
                fsync_seconds=fsync_seconds,
            )
            for index, node in enumerate(reports.running_nodes(state, corosync_engine.node_pid))
        ]
    from pvectl.lab import embedded_engine

    config: ConfigFacts | None = None
    problems: list[str] = []
    conf_path = Path(state.state_dir) / "corosync.conf"
    try:
        text = conf_path.read_text(encoding="utf-8")
        config = config_facts(corosync_conf.parse(text, str(conf_path)), str(conf_path))
    except OSError as exc:
        problems.append(f"cannot read the lab's {conf_path}: {exc.strerror}")
    except PvectlError as exc:
        problems.append(f"the lab's corosync.conf is unreadable: {exc}")
    facts: list[NodeFacts] = []
    running = [n for n in state.nodes if embedded_engine.node_pid(n) is not None]
    for index, node in enumerate(running):
        label = f"node{node.node_id}" + (f"@{node.host}" if node.host else "")
        status: QuorumStatus | None = None
        node_problems = list(problems)
        try:
            status = LabTarget(name, node.node_id).status()
        except PvectlError as exc:
            node_problems.append(f"quorum status unavailable: {exc}")
        figures: FsyncFigures | None = None
        if fsync and index == 0 and not node.host:
            try:
                figures = measure_fsync(LocalRunner(), fsync_dir or node.dir, fsync_seconds)
            except (PvectlError, ValueError, KeyError) as exc:
                node_problems.append(f"fsync not measured: {exc}")
        facts.append(
            NodeFacts(
                host=label,
                status=status,
                config=config,
                runtime_token_ms=status.totem_token_ms if status else None,
                runtime_consensus_ms=status.totem_consensus_ms if status else None,
                fsync=figures,
                problems=tuple(node_problems),
            )
        )
    if not facts:
        from pvectl.errors import TargetUnavailable

        raise TargetUnavailable(
            f"no node of lab {name!r} is running: 'pvectl lab start NODE --name {name}'"
        )
    return facts
