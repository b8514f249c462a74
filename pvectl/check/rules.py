"""``pvectl check``: a homelab's health from facts gathered on its nodes. Pure.

Each rule turns facts (quorum status, corosync.conf, corosync's runtime config and link
statistics, the system disk's fsync figures) into findings: a severity, one line saying
what is, and one line of advice. Thresholds are Proxmox's documented guidance (latency
under 5 ms, more than 200 fsyncs/s, HA self-fencing after about 60 s without quorum) and
the seed article's disk classes. Gathering is in check/facts.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from pvectl.perf.report import FsyncFigures as FsyncFigures  # a node fact: its disk
from pvectl.results import QuorumStatus

# Proxmox: "latencies under 5 ms"; "rather unlikely with more than three nodes and
# latencies above around 10 ms".
LATENCY_OK_MS = 5.0
LATENCY_BAD_MS = 10.0
# pveperf doc: FSYNCS/SECOND should be > 200. Seed: USB stick 30-50, SSD 3000+.
FSYNC_MIN_RATE = 200.0
FSYNC_GOOD_RATE = 1000.0
FSYNC_P99_WARN_MS = 50.0
# HA: a node with active HA services self-fences about 60 s after losing quorum.
HA_WATCHDOG_S = 60.0
TOKEN_DEFAULT_MS = 3000
MEMORY_FS_TYPES = frozenset({"tmpfs", "ramfs", "devtmpfs", "hugetlbfs"})
TOKEN_COEFFICIENT_DEFAULT_MS = 650


class Severity(StrEnum):
    """Also the exit code of ``check``: ok 0, warning 1, critical 2."""

    ok = "ok"
    warning = "warning"
    critical = "critical"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Severity.ok: 0, Severity.warning: 1, Severity.critical: 2}


@dataclass(frozen=True)
class ConfigFacts:
    """What corosync.conf says, as far as the checks need it."""

    nodes: tuple[tuple[int, str, int], ...]  # (node id, name, votes)
    expected_votes: int | None = None  # quorum.expected_votes, when set explicitly
    two_node: bool = False
    qdevice_model: str | None = None
    qdevice_algorithm: str | None = None
    qdevice_votes: int | None = None
    token_ms: int | None = None
    token_coefficient_ms: int | None = None
    consensus_ms: int | None = None
    config_version: int | None = None
    # pvectl's votequorum model on this config (quorum/whatif.py): its one-line summary
    what_if: str | None = None

    def name_of(self, node_id: int) -> str:
        return next((name for nid, name, _ in self.nodes if nid == node_id), f"node {node_id}")

    @property
    def node_votes(self) -> int:
        return sum(votes for _, _, votes in self.nodes)

    @property
    def device_votes(self) -> int:
        if self.qdevice_model is None:
            return 0
        if self.qdevice_votes is not None:
            return self.qdevice_votes
        return max(len(self.nodes) - 1, 1)  # votequorum's default: N - 1

    @property
    def configured_expected(self) -> int:
        return self.expected_votes or (self.node_votes + self.device_votes)


@dataclass(frozen=True)
class LinkStat:
    """One knet link to one node, from ``corosync-cmapctl -m stats``."""

    node_id: int
    link: int
    connected: bool
    latency_ave_ms: float | None
    latency_max_ms: float | None


@dataclass(frozen=True)
class NodeFacts:
    host: str
    status: QuorumStatus | None = None
    config: ConfigFacts | None = None
    runtime_token_ms: int | None = None
    runtime_consensus_ms: int | None = None
    links: tuple[LinkStat, ...] = ()
    mtt_rx_token_ms: float | None = None
    fsync: FsyncFigures | None = None
    problems: tuple[str, ...] = ()  # facts that could not be collected, and why
    error: str | None = None  # the host could not be checked at all


@dataclass(frozen=True)
class Finding:
    severity: Severity
    check: str
    host: str  # the node it concerns, or "cluster"
    message: str
    advice: str


@dataclass(frozen=True)
class CheckReport:
    findings: tuple[Finding, ...]
    worst: Severity
    exit_code: int
    hosts: tuple[str, ...]


def evaluate(facts: list[NodeFacts]) -> CheckReport:
    findings: list[Finding] = []
    for node in facts:
        findings.extend(_reach(node))
        if node.status is not None:
            findings.extend(_quorum(node))
            findings.extend(_expected(node))
        findings.extend(_links(node))
        findings.extend(_fsync(node))
    findings.extend(_agreement(facts))
    config = next((n.config for n in facts if n.config is not None), None)
    if config is not None:
        findings.extend(_node_count(config))
        findings.extend(_token(config, facts))
    worst = max((f.severity for f in findings), key=lambda s: s.rank, default=Severity.ok)
    return CheckReport(
        findings=tuple(findings),
        worst=worst,
        exit_code=worst.rank,
        hosts=tuple(n.host for n in facts),
    )


def _agreement(facts: list[NodeFacts]) -> list[Finding]:
    """Several nodes asked: do they see one ring? Two quorate sides with no member in
    common are a split brain; other differences are a partition or a ring still settling."""
    seen = [(n.host, n.status) for n in facts if n.status is not None]
    if len(seen) < 2:
        return []
    views = {(str(s.ring_id), tuple(m.node_id for m in s.members)) for _, s in seen}
    if len(views) == 1:
        ring, members = next(iter(views))
        return [
            Finding(
                Severity.ok,
                "membership",
                "cluster",
                f"all {len(seen)} nodes asked see one ring ({ring}): members "
                + ",".join(map(str, members)),
                "nothing to do",
            )
        ]
    described = "; ".join(
        f"{host} sees {','.join(str(m.node_id) for m in s.members)} (ring {s.ring_id}"
        f"{', quorate' if s.quorate else ', not quorate'})"
        for host, s in seen
    )
    quorate_sides = [{m.node_id for m in s.members} for _, s in seen if s.quorate]
    split = any(not a & b for i, a in enumerate(quorate_sides) for b in quorate_sides[i + 1 :])
    if split:
        return [
            Finding(
                Severity.critical,
                "membership",
                "cluster",
                f"split brain: two quorate sides with no member in common: {described}",
                "stop one side now (expected votes were lowered on a side, or the nodes run "
                "different corosync.conf files)",
            )
        ]
    return [
        Finding(
            Severity.warning,
            "membership",
            "cluster",
            f"the nodes disagree on the membership: {described}",
            "a partition or a ring still forming: rerun in a few seconds; if it stays, "
            "check the network between the sides",
        )
    ]


def _reach(node: NodeFacts) -> list[Finding]:
    out: list[Finding] = []
    if node.error is not None:
        out.append(
            Finding(
                Severity.critical,
                "reach",
                node.host,
                f"could not be checked: {node.error}",
                "fix access as the message says, then rerun; an unreachable node may also be "
                "a down node",
            )
        )
    for problem in node.problems:
        about_corosync = "corosync" in problem or "quorum status" in problem
        out.append(
            Finding(
                Severity.critical if about_corosync else Severity.warning,
                "facts",
                node.host,
                problem,
                "is corosync installed and running there (systemctl status corosync)? the "
                "checks that need this were skipped"
                if about_corosync
                else "the checks that need this were skipped",
            )
        )
    return out


def _missing(node: NodeFacts) -> list[str]:
    if node.status is None or node.config is None:
        return []
    present = {m.node_id for m in node.status.members}
    return [f"{name} (id {nid})" for nid, name, _ in node.config.nodes if nid not in present]


def _quorum(node: NodeFacts) -> list[Finding]:
    status = node.status
    assert status is not None
    missing = _missing(node)
    gone = f"; not in the membership: {', '.join(missing)}" if missing else ""
    margin = status.total_votes - status.quorum
    if not status.quorate:
        return [
            Finding(
                Severity.critical,
                "quorum",
                node.host,
                f"NOT quorate: {status.total_votes} of {status.expected_votes} expected votes, "
                f"quorum needs {status.quorum}{gone}. /etc/pve is read-only here and HA "
                "nodes self-fence",
                "bring the missing nodes back; only if they are gone for good, "
                f"'pvectl expected {status.total_votes}' on this side alone",
            )
        ]
    configured = node.config.configured_expected if node.config else status.expected_votes
    if status.total_votes < configured:
        lost = configured - status.total_votes
        consequence = (
            "one more lost vote stops the cluster (read-only /etc/pve, HA fencing)"
            if margin == 0
            else f"{margin} more vote(s) can be lost before quorum goes"
        )
        return [
            Finding(
                Severity.warning,
                "quorum",
                node.host,
                f"quorate, but {lost} vote(s) lost: {status.total_votes} of {configured} "
                f"votes, quorum {status.quorum}{gone}; {consequence}",
                "bring the missing node(s) back soon, or remove them for good with 'pvecm delnode'",
            )
        ]
    return [
        Finding(
            Severity.ok,
            "quorum",
            node.host,
            f"quorate: {status.total_votes} of {configured} votes, quorum {status.quorum}; "
            f"can lose {margin} vote(s)",
            "nothing to do",
        )
    ]


def _expected(node: NodeFacts) -> list[Finding]:
    status = node.status
    if status is None or node.config is None:
        return []
    configured = node.config.configured_expected
    runtime = status.expected_votes
    if runtime < configured:
        config_quorum = configured // 2 + 1
        if status.quorate and status.total_votes < config_quorum:
            return [
                Finding(
                    Severity.critical,
                    "expected-votes",
                    node.host,
                    f"expected votes lowered at runtime to {runtime} (corosync.conf: "
                    f"{configured}): this partition is quorate with {status.total_votes} "
                    f"votes only because of that; by the config it would need {config_quorum}",
                    "make sure the other nodes are really down: if they come back as their "
                    "own partition, both sides can be quorate (split-brain)",
                )
            ]
        return [
            Finding(
                Severity.warning,
                "expected-votes",
                node.host,
                f"expected votes changed at runtime: {runtime} (corosync.conf: {configured})",
                "it returns to the config value when nodes rejoin; set it back with "
                f"'pvectl expected {configured}' once they have",
            )
        ]
    if runtime > configured:
        return [
            Finding(
                Severity.warning,
                "expected-votes",
                node.host,
                f"expected votes {runtime} exceed corosync.conf's {configured}",
                "a node runs with a different corosync.conf (compare config_version on every "
                "node), or expected_votes_tracking remembers an older, larger cluster",
            )
        ]
    return [
        Finding(
            Severity.ok,
            "expected-votes",
            node.host,
            f"expected votes {runtime} match corosync.conf",
            "nothing to do",
        )
    ]


def _node_count(config: ConfigFacts) -> list[Finding]:
    """The node-count finding, with the quorum model's tolerance summary appended."""
    found = _node_count_only(config)
    if config.what_if is None:
        return found
    return [
        Finding(f.severity, f.check, f.host, f"{f.message}. Model: {config.what_if}", f.advice)
        for f in found
    ]


def _node_count_only(config: ConfigFacts) -> list[Finding]:
    count = len(config.nodes)
    algorithm = config.qdevice_algorithm or ("ffsplit" if config.qdevice_model else None)
    if count <= 1:
        return [
            Finding(
                Severity.ok,
                "node-count",
                "cluster",
                f"{count} node: no quorum to lose, and no redundancy",
                "add nodes (3 for HA) when you need failover",
            )
        ]
    if count % 2 == 1:
        if config.qdevice_model:
            return [
                Finding(
                    Severity.warning,
                    "node-count",
                    "cluster",
                    f"{count} nodes (odd) with a QDevice ({algorithm}, "
                    f"{config.device_votes} votes)",
                    "Proxmox discourages a QDevice on odd clusters: it needs lms with N-1 "
                    "votes, which makes qnetd nearly a single point of failure; remove it",
                )
            ]
        return [
            Finding(
                Severity.ok,
                "node-count",
                "cluster",
                f"{count} nodes (odd): survives {(count - 1) // 2} node failure(s), "
                "no 50/50 split possible",
                "nothing to do; a QDevice would not help an odd cluster",
            )
        ]
    if config.qdevice_model:
        if algorithm == "ffsplit":
            return [
                Finding(
                    Severity.ok,
                    "node-count",
                    "cluster",
                    f"{count} nodes (even) + QDevice (ffsplit, {config.device_votes} vote): "
                    "a 50/50 split keeps one half running",
                    "keep qnetd on a third machine outside the cluster",
                )
            ]
        return [
            Finding(
                Severity.warning,
                "node-count",
                "cluster",
                f"{count} nodes (even) + QDevice with algorithm {algorithm}",
                "for even clusters Proxmox uses ffsplit with 1 vote; lms gives N-1 votes and "
                "makes qnetd nearly a single point of failure",
            )
        ]
    if count == 2:
        detail = (
            "two_node is set: both must be up at start (wait_for_all), and a network split "
            "leaves each node thinking it is the survivor"
            if config.two_node
            else "losing either node loses quorum (then 'pvecm expected 1' is the way out)"
        )
        return [
            Finding(
                Severity.warning,
                "node-count",
                "cluster",
                f"2 nodes: {detail}",
                "add a QDevice (algorithm ffsplit, 1 vote) on a third small machine such as "
                "a Raspberry Pi: 'pvectl qdevice setup HOST'",
            )
        ]
    return [
        Finding(
            Severity.warning,
            "node-count",
            "cluster",
            f"{count} nodes (even): a {count // 2}/{count // 2} split stops both halves; "
            f"survives {count // 2 - 1} failure(s), no more than {count - 1} nodes would",
            "add a QDevice (algorithm ffsplit, 1 vote) as a tie-breaker, or make the node "
            "count odd",
        )
    ]


def effective_token_ms(config: ConfigFacts) -> int:
    """corosync: token + (N - 2) x token_coefficient when the nodelist has N >= 3 nodes."""
    token = config.token_ms if config.token_ms is not None else TOKEN_DEFAULT_MS
    coefficient = (
        config.token_coefficient_ms
        if config.token_coefficient_ms is not None
        else TOKEN_COEFFICIENT_DEFAULT_MS
    )
    return token + max(len(config.nodes) - 2, 0) * coefficient


def _token(config: ConfigFacts, facts: list[NodeFacts]) -> list[Finding]:
    runtime = next((n for n in facts if n.runtime_token_ms is not None), None)
    computed = effective_token_ms(config)
    token = runtime.runtime_token_ms if runtime and runtime.runtime_token_ms else computed
    consensus = (
        runtime.runtime_consensus_ms
        if runtime and runtime.runtime_consensus_ms
        else (config.consensus_ms or int(1.2 * token))
    )
    source = "corosync's runtime values" if runtime else "corosync.conf and corosync's defaults"
    total_s = (token + consensus) / 1000
    count = len(config.nodes)
    base = (
        f"token {token} ms, consensus {consensus} ms for {count} node(s) ({source}): a failed "
        f"node is detected and the ring re-formed after about {total_s:.1f} s"
    )
    if total_s >= HA_WATCHDOG_S * 0.8:
        return [
            Finding(
                Severity.critical,
                "token",
                "cluster",
                base + f", close to or past HA's ~{HA_WATCHDOG_S:.0f} s self-fencing window",
                "lower token_coefficient (new Proxmox clusters use 125) or token in corosync.conf",
            )
        ]
    if count >= 3 and consensus <= token:
        return [
            Finding(
                Severity.warning,
                "token",
                "cluster",
                base + "; consensus is not above token",
                "remove 'consensus' from corosync.conf (default 1.2 x token) or raise it",
            )
        ]
    if token < 1000:
        return [
            Finding(
                Severity.warning,
                "token",
                "cluster",
                base + "; a token under 1 s turns short stalls (a slow fsync, a busy CPU) "
                "into membership changes",
                "use corosync's default token (3000 ms) unless you measured a reason",
            )
        ]
    return [Finding(Severity.ok, "token", "cluster", base, "nothing to do")]


def _links(node: NodeFacts) -> list[Finding]:
    if not node.links:
        return []
    local = node.status.node_id if node.status else None
    config = node.config
    findings: list[Finding] = []
    measured: list[str] = []
    worst_ave = 0.0
    worst_max = 0.0
    for link in sorted(node.links, key=lambda s: (s.node_id, s.link)):
        if link.node_id == local:
            continue
        name = config.name_of(link.node_id) if config else f"node {link.node_id}"
        if not link.connected:
            member = node.status is not None and any(
                m.node_id == link.node_id for m in node.status.members
            )
            findings.append(
                Finding(
                    Severity.warning,
                    "link",
                    node.host,
                    f"link{link.link} to {name} is down"
                    + (" (still a member over another link)" if member else ""),
                    "check that node, its NIC and switch port, and that UDP 5405-5412 passes",
                )
            )
            continue
        if link.latency_ave_ms is None:
            continue
        worst_ave = max(worst_ave, link.latency_ave_ms)
        worst_max = max(worst_max, link.latency_max_ms or 0.0)
        measured.append(
            f"{name} link{link.link} {link.latency_ave_ms:.2f} ms avg / "
            f"{(link.latency_max_ms or 0.0):.2f} max"
        )
    if measured:
        rotation = (
            f"; mean token rotation {node.mtt_rx_token_ms:.0f} ms"
            if node.mtt_rx_token_ms is not None
            else ""
        )
        text = "corosync round-trip latency: " + ", ".join(measured) + rotation
        count = len(config.nodes) if config else 0
        if worst_ave > LATENCY_BAD_MS:
            severity = Severity.critical if count > 3 else Severity.warning
            advice = (
                f"Proxmox: above ~{LATENCY_BAD_MS:.0f} ms a cluster of more than three nodes "
                "is unlikely to work; give corosync its own quiet network"
            )
        elif worst_ave > LATENCY_OK_MS:
            severity = Severity.warning
            advice = (
                f"Proxmox asks for under {LATENCY_OK_MS:.0f} ms: keep backups and migrations "
                "off corosync's link, or add a dedicated link"
            )
        elif worst_max > LATENCY_BAD_MS:
            severity = Severity.warning
            advice = "average fine but spikes seen: look for saturation (backups, migrations)"
        else:
            severity = Severity.ok
            advice = f"under Proxmox's {LATENCY_OK_MS:.0f} ms guidance"
        findings.append(Finding(severity, "latency", node.host, text, advice))
    return findings


def disk_class(rate: float) -> str:
    """The seed article's table: USB stick 30-50 fsync/s, SSD 3000+."""
    if rate < 100:
        return "USB-stick / SD-card class"
    if rate < FSYNC_GOOD_RATE:
        return "spinning-disk class"
    return "SSD class"


def _fsync(node: NodeFacts) -> list[Finding]:
    figures = node.fsync
    if figures is None:
        return []
    rate = figures.fsyncs_per_second
    where = f"{figures.path}, {figures.fs_type}" if figures.fs_type else figures.path
    text = (
        f"system disk ({where}): {rate:.0f} fsyncs/s (4 KiB write + fsync), "
        f"p99 {figures.p99_ms:.2f} ms: {figures.verdict or disk_class(rate)}"
    )
    if figures.fs_type in MEMORY_FS_TYPES:
        return [
            Finding(
                Severity.warning,
                "fsync",
                node.host,
                text + f"; {figures.fs_type} is memory, so this says nothing about a disk",
                "rerun with --fsync-dir on the system disk (e.g. /var/lib/pve-cluster)",
            )
        ]
    if rate < FSYNC_MIN_RATE:
        return [
            Finding(
                Severity.critical,
                "fsync",
                node.host,
                text + f"; below Proxmox's {FSYNC_MIN_RATE:.0f}",
                "pmxcfs fsyncs every config write; a disk this slow stalls corosync and can get "
                "the node declared dead: move the system to an SSD",
            )
        ]
    if rate < FSYNC_GOOD_RATE or figures.p99_ms > FSYNC_P99_WARN_MS:
        return [
            Finding(
                Severity.warning,
                "fsync",
                node.host,
                text,
                "okay-ish: watch for latency spikes under load; an SSD (ideally with power-loss "
                "protection) keeps the cluster steadier",
            )
        ]
    return [Finding(Severity.ok, "fsync", node.host, text, "nothing to do")]
