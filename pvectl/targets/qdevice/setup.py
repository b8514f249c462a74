"""``pvectl qdevice setup/remove/status`` on a real cluster, over SSH, as ``pvecm qdevice``.

pvecm's sequence (PVE::CLI::pvecm's qdevice setup) with its gaps fixed: every guard runs before any
certificate work (a configured device, a used certificate store on *any* node, an odd node
count, a cluster name that differs between the hosts), qnetd's TCP port is probed from
every node first, and the plan is printed before it runs. The qnetd side is the real
``corosync-qnetd`` on a host reached over SSH (as with pvecm).

Services: systemd when the node runs it (``/run/systemd/system`` exists, sd_booted's test);
otherwise (containers, pvectl's namespace labs) the daemon is started directly and stopped
through its pid file. The same code path serves both; only ``ServiceManager`` differs.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial

from pvectl import corosync_conf
from pvectl.corosync_conf import QNETD_PORT, Section, qdevice_section
from pvectl.errors import ExitCode, PvectlError, UsageError
from pvectl.results import QuorumStatus
from pvectl.targets.corosync import CorosyncTarget
from pvectl.targets.hosts import HostSpec
from pvectl.targets.qdevice.plan import (
    PVE_CONF,
    NodeView,
    QdeviceChange,
    QdeviceSetupError,
    Survey,
    check_cluster,
    choose_algorithm,
    config_version,
    qnetd_tls_note,
    with_device,
    without_device,
)
from pvectl.targets.qdevice.status import QdeviceStatus, local_qdevice_status
from pvectl.targets.remote import across_hosts
from pvectl.targets.runner import CommandResult
from pvectl.targets.ssh import SshRunner, SshSession

NODE_DB = "/etc/corosync/qdevice/net/nssdb"
QNETD_DB = "/etc/corosync/qnetd/nssdb"
COROSYNC_CONF = "/etc/corosync/corosync.conf"
QDEVICE_PIDFILE = "/var/run/corosync-qdevice/corosync-qdevice.pid"
Report = Callable[[str], None]


# ---- remote primitives ------------------------------------------------------------------


def _ok(runner: SshRunner, argv: list[str], what: str, timeout: float = 60) -> CommandResult:
    result = runner.run(argv, timeout=timeout)
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines()
        raise PvectlError(
            f"{runner.spec.text}: {what} failed (exit {result.returncode}): "
            + (lines[-1] if lines else "no message")
        )
    return result


def _sh(runner: SshRunner, script: str, *args: str, timeout: float = 60) -> CommandResult:
    return runner.run(["sh", "-c", script, "sh", *args], timeout=timeout)


def _exists(runner: SshRunner, path: str) -> bool:
    return _sh(runner, 'test -e "$1"', path).returncode == 0


def copy_file(src: SshRunner, src_path: str, dst: SshRunner, dst_path: str) -> None:
    """Binary-safe copy between two hosts through pvectl (base64; no sftp needed)."""
    data = _ok(src, ["base64", "-w0", "--", src_path], f"reading {src_path}").stdout
    base64.b64decode(data, validate=True)  # a truncated read fails here, not on the node
    result = dst.run_input(
        ["sh", "-c", 'base64 -d > "$1.new" && mv -f "$1.new" "$1"', "sh", dst_path], data, 60
    )
    if result.returncode != 0:
        raise PvectlError(f"{dst.spec.text}: writing {dst_path} failed: {result.stderr.strip()}")


def write_text(runner: SshRunner, path: str, text: str) -> None:
    """Write then rename, as PVE's atomic_write_conf does."""
    result = runner.run_input(
        ["sh", "-c", 'cat > "$1.new" && mv -f "$1.new" "$1"', "sh", path], text, 30
    )
    if result.returncode != 0:
        raise PvectlError(f"{runner.spec.text}: writing {path} failed: {result.stderr.strip()}")


def make_temp_dir(runner: SshRunner) -> str:
    return _ok(runner, ["mktemp", "-d", "/tmp/pvectl-qdevice.XXXXXX"], "mktemp").stdout.strip()


def port_open(runner: SshRunner, address: str, port: int = QNETD_PORT) -> bool:
    """Whether ``runner``'s host can open TCP to address:port (bash's /dev/tcp, 3 s)."""
    script = 'exec 3<>"/dev/tcp/$0/$1"'
    result = runner.run(["timeout", "3", "bash", "-c", script, address, str(port)], timeout=10)
    return result.returncode == 0


class ServiceManager:
    """Start/stop corosync-qdevice: systemctl on systemd nodes, the daemon itself elsewhere."""

    def __init__(self, systemd: bool) -> None:
        self.systemd = systemd
        self.name = "systemd" if systemd else "direct (no systemd)"

    def start(self, runner: SshRunner) -> None:
        if self.systemd:
            _ok(runner, ["systemctl", "start", "corosync-qdevice"], "systemctl start")
            _ok(runner, ["systemctl", "enable", "corosync-qdevice"], "systemctl enable")
            return
        # corosync-qdevice daemonizes by itself; its pid file marks a running one
        script = (
            'p=$(cat "$0" 2>/dev/null) && kill -0 "$p" 2>/dev/null && exit 0; '
            'mkdir -p "$(dirname "$0")" && corosync-qdevice </dev/null >/dev/null 2>&1'
        )
        result = _sh(runner, script, QDEVICE_PIDFILE)
        if result.returncode != 0:
            raise PvectlError(
                f"{runner.spec.text}: corosync-qdevice did not start (exit {result.returncode})"
            )

    def stop(self, runner: SshRunner) -> None:
        if self.systemd:
            _ok(runner, ["systemctl", "stop", "corosync-qdevice"], "systemctl stop")
            _ok(runner, ["systemctl", "disable", "corosync-qdevice"], "systemctl disable")
            return
        script = (
            'p=$(cat "$0" 2>/dev/null) || exit 0; kill "$p" 2>/dev/null || exit 0; i=0; '
            'while kill -0 "$p" 2>/dev/null; do i=$((i+1)); [ $i -gt 100 ] && exit 1; '
            "sleep 0.1; done"
        )
        if _sh(runner, script, QDEVICE_PIDFILE, timeout=30).returncode != 0:
            raise PvectlError(f"{runner.spec.text}: corosync-qdevice did not stop within 10 s")

    def state(self, runner: SshRunner) -> str:
        if self.systemd:
            active = runner.run(["systemctl", "is-active", "corosync-qdevice"]).stdout.strip()
            enabled = runner.run(["systemctl", "is-enabled", "corosync-qdevice"]).stdout.strip()
            return f"{active or 'unknown'}, {enabled or 'unknown'} (systemd)"
        script = 'p=$(cat "$0" 2>/dev/null) && kill -0 "$p" 2>/dev/null && echo "$p"'
        pid = _sh(runner, script, QDEVICE_PIDFILE).stdout.strip()
        return f"running, pid {pid} (no systemd)" if pid else "not running (no systemd)"


def _survey_one(runner: SshRunner) -> NodeView:
    target = CorosyncTarget(runner=runner, source=f"ssh:{runner.spec.text}")
    path, text = COROSYNC_CONF, None
    for candidate in (PVE_CONF, COROSYNC_CONF):
        text = runner.read_file(candidate)
        if text is not None:
            path = candidate
            break
    if text is None:
        raise QdeviceSetupError(f"no corosync.conf ({PVE_CONF} or {COROSYNC_CONF})")
    status: QuorumStatus = target.status()
    return NodeView(
        host=runner.spec.text,
        node_id=status.node_id,
        config_path=path,
        config_text=text,
        membership=tuple(m.node_id for m in status.members),
        systemd=_exists(runner, "/run/systemd/system"),
        has_nssdb=_exists(runner, NODE_DB),
    )


def survey(session: SshSession, hosts: Sequence[HostSpec]) -> Survey:
    if not hosts:
        raise UsageError("name the cluster's nodes with --host NODE (repeat) or --cluster NAME")
    outcomes = across_hosts(session, list(hosts), _survey_one)
    for outcome in outcomes:
        if outcome.error is not None:
            code = ExitCode(outcome.exit_code) if outcome.exit_code else ExitCode.UNAVAILABLE
            offline = code in (ExitCode.UNAVAILABLE, ExitCode.TEMP_FAIL, ExitCode.ERROR)
            prefix = "All nodes must be online! " if offline else ""
            raise PvectlError(prefix + outcome.error, code)
    return check_cluster([o.result for o in outcomes if o.result is not None])


# ---- the plan runner ----------------------------------------------------------------------


def on_each(runners: Sequence[SshRunner], action: Callable[[SshRunner], object]) -> None:
    """``action`` on every host in parallel; the first host's error (in order) is raised."""
    errors: list[PvectlError | None] = []

    def one(runner: SshRunner) -> PvectlError | None:
        try:
            action(runner)
        except PvectlError as exc:
            return exc
        return None

    with ThreadPoolExecutor(max_workers=min(len(runners), 16)) as pool:
        errors = list(pool.map(one, runners))
    for error in errors:
        if error is not None:
            raise error


@dataclass
class _Plan:
    steps: list[tuple[str, Callable[[], object]]] = field(default_factory=list)

    def add(self, text: str, action: Callable[[], object]) -> None:
        self.steps.append((text, action))

    def add_each(
        self, text: str, runners: Sequence[SshRunner], action: Callable[[SshRunner], object]
    ) -> None:
        """One step on several hosts at once (each host's own commands stay in order)."""
        if not runners:
            return
        hosts = ", ".join(r.spec.text for r in runners)
        self.add(f"{hosts}: {text}", partial(on_each, runners, action))

    def texts(self) -> tuple[str, ...]:
        return tuple(text for text, _ in self.steps)

    def run(self, report: Report) -> tuple[tuple[str, ...], tuple[float, ...]]:
        """Run every step in order; returns the steps done and their seconds."""
        done: list[str] = []
        seconds: list[float] = []
        total = len(self.steps)
        for number, (text, action) in enumerate(self.steps, start=1):
            report(f"[{number}/{total}] {text}")
            started = time.monotonic()
            try:
                action()
            except PvectlError as exc:
                exc.args = (f"step {number}/{total} ({text}): {exc}",)
                raise
            done.append(text)
            seconds.append(round(time.monotonic() - started, 2))
        return tuple(done), tuple(seconds)


def _conf_writes(plan: _Plan, survey_: Survey, runners: dict[str, SshRunner], new: Section) -> None:
    text = corosync_conf.dump(new)
    version = config_version(new)
    if survey_.pve:
        first = survey_.nodes[0]
        plan.add(
            f"write {PVE_CONF} (config_version {version}) on {first.host}; pmxcfs copies it "
            "to every node",
            lambda: write_text(runners[first.host], PVE_CONF, text),
        )
        plan.add(
            f"wait until every node's {COROSYNC_CONF} has config_version {version}",
            lambda: _wait_conf_version(survey_, runners, version),
        )
        return
    plan.add_each(
        f"write {COROSYNC_CONF} (config_version {version}), identical on every node",
        [runners[n.host] for n in survey_.nodes],
        lambda runner: write_text(runner, COROSYNC_CONF, text),
    )


def _wait_conf_version(survey_: Survey, runners: dict[str, SshRunner], version: int) -> None:
    deadline = time.monotonic() + 30
    for node in survey_.nodes:
        while True:
            text = runners[node.host].read_file(COROSYNC_CONF) or ""
            if config_version(corosync_conf.parse(text)) >= version:
                break
            if time.monotonic() > deadline:
                raise PvectlError(
                    f"{node.host}: pmxcfs did not copy corosync.conf version {version} "
                    "within 30 s (is pve-cluster running and quorate?)",
                    ExitCode.TEMP_FAIL,
                )
            time.sleep(0.5)


def _reload(runner: SshRunner) -> None:
    _ok(runner, ["corosync-cfgtool", "-R"], "corosync-cfgtool -R")


def _device(config: Section) -> Section | None:
    quorum = config.section("quorum")
    return quorum.section("device") if quorum else None


def setup(
    session: SshSession,
    hosts: Sequence[HostSpec],
    qnetd: HostSpec,
    address: str,
    *,
    force: bool = False,
    algorithm: str | None = None,
    tls: str = "required",
    dry_run: bool = False,
    wait: float = 60.0,
    report: Report = lambda _: None,
) -> QdeviceChange:
    found = survey(session, hosts)
    existing = _device(found.config)
    if existing is not None:
        host = existing.lookup("net.host") or "?"
        raise QdeviceSetupError(
            f"QDevice already configured (quorum.device, qnetd {host}): remove it first with "
            f"'pvectl qdevice remove {' '.join('--host ' + n.host for n in found.nodes)}'"
        )
    chosen = choose_algorithm(len(found.nodelist), force, algorithm)
    if chosen == "ffsplit" and any(e.votes != 1 for e in found.nodelist):
        raise QdeviceSetupError("algorithm ffsplit needs every node to have quorum_votes 1")
    used = [n.host for n in found.nodes if n.has_nssdb]
    if used and not force:
        raise QdeviceSetupError(
            f"QDevice certificate store already initialised on {', '.join(used)} ({NODE_DB}): "
            "rerun with --force to delete it"
        )
    runners = {n.host: session.runner(parse_spec(n.host, hosts)) for n in found.nodes}
    qrunner = session.runner(qnetd)
    try:
        qrunner.connect()
    except PvectlError as exc:
        raise PvectlError(f"qnetd host: {exc}", ExitCode.UNAVAILABLE) from exc
    if qrunner.run(["sh", "-c", "command -v corosync-qnetd-certutil"]).returncode != 0:
        raise PvectlError(
            f"{qnetd.text}: corosync-qnetd-certutil not found: install the Debian package "
            "'corosync-qnetd' there",
            ExitCode.UNAVAILABLE,
        )
    with ThreadPoolExecutor(max_workers=min(len(found.nodes), 16)) as pool:
        reachable = list(pool.map(lambda n: port_open(runners[n.host], address), found.nodes))
    closed = [n.host for n, ok in zip(found.nodes, reachable, strict=True) if not ok]
    if closed:
        raise PvectlError(
            f"qnetd {address}:{QNETD_PORT} is not reachable from {', '.join(closed)}: is "
            "corosync-qnetd running there (systemctl status corosync-qnetd), and does its "
            "firewall allow TCP 5403?",
            ExitCode.UNAVAILABLE,
        )
    if tls != "off":
        tool = qrunner.run(["corosync-qnetd-tool", "-s"], timeout=15)
        note = qnetd_tls_note(tool.stdout, qnetd.text, tls) if tool.returncode == 0 else None
        if note:
            report(note)
    managers = {n.host: ServiceManager(n.systemd) for n in found.nodes}
    cluster = found.cluster_name
    new_config = with_device(found.config, qdevice_section(address, chosen, tls))
    first, *others = found.nodes
    first_runner = runners[first.host]
    all_runners = [runners[n.host] for n in found.nodes]
    temps: dict[str, str] = {}
    temps_lock = threading.Lock()

    def temp(runner: SshRunner) -> str:
        key = runner.spec.text
        with temps_lock:
            known = temps.get(key)
        if known is None:
            known = make_temp_dir(runner)
            with temps_lock:
                temps[key] = known
        return known

    plan = _Plan()
    qnetd_has_db = _exists(qrunner, f"{QNETD_DB}/cert9.db") or _exists(
        qrunner, f"{QNETD_DB}/cert8.db"
    )
    if qnetd_has_db:
        report(f"qnetd {qnetd.text}: certificate database exists ({QNETD_DB}), kept")
    else:
        plan.add(
            f"{qnetd.text}: corosync-qnetd-certutil -i (create the qnetd CA)",
            lambda: _ok(qrunner, ["corosync-qnetd-certutil", "-i"], "corosync-qnetd-certutil -i"),
        )
    plan.add_each(
        f"delete the old certificate store {NODE_DB} (--force)",
        [runners[n.host] for n in found.nodes if n.has_nssdb],
        lambda r: _ok(r, ["rm", "-rf", "--", NODE_DB], "rm"),
    )

    def init_node(r: SshRunner) -> None:
        ca = f"{temp(r)}/qnetd-cacert.crt"
        copy_file(qrunner, f"{QNETD_DB}/qnetd-cacert.crt", r, ca)
        _ok(r, ["corosync-qdevice-net-certutil", "-i", "-c", ca], "certutil -i")

    plan.add_each(
        "copy qnetd's CA, corosync-qdevice-net-certutil -i -c qnetd-cacert.crt",
        all_runners,
        init_node,
    )
    plan.add(
        f"{first.host}: corosync-qdevice-net-certutil -r -n {cluster} (certificate request)",
        lambda: _ok(
            first_runner, ["corosync-qdevice-net-certutil", "-r", "-n", cluster], "certutil -r"
        ),
    )

    def sign() -> None:
        crq = f"{temp(qrunner)}/qdevice-net-node.crq"
        copy_file(first_runner, f"{NODE_DB}/qdevice-net-node.crq", qrunner, crq)
        _ok(
            qrunner,
            ["corosync-qnetd-certutil", "-s", "-c", crq, "-n", cluster],
            "corosync-qnetd-certutil -s",
        )

    plan.add(
        f"{qnetd.text}: corosync-qnetd-certutil -s -c qdevice-net-node.crq -n {cluster} (sign)",
        sign,
    )

    def import_signed() -> None:
        crt = f"{NODE_DB}/cluster-{cluster}.crt"
        copy_file(qrunner, f"{QNETD_DB}/cluster-{cluster}.crt", first_runner, crt)
        _ok(first_runner, ["corosync-qdevice-net-certutil", "-M", "-c", crt], "certutil -M")

    plan.add(
        f"{first.host}: corosync-qdevice-net-certutil -M -c cluster-{cluster}.crt "
        "(import, export qdevice-net-node.p12)",
        import_signed,
    )

    def import_p12(r: SshRunner) -> None:
        p12 = f"{temp(r)}/qdevice-net-node.p12"
        copy_file(first_runner, f"{NODE_DB}/qdevice-net-node.p12", r, p12)
        _ok(r, ["corosync-qdevice-net-certutil", "-m", "-c", p12], "certutil -m")

    plan.add_each(
        "copy qdevice-net-node.p12, corosync-qdevice-net-certutil -m -c qdevice-net-node.p12",
        [runners[n.host] for n in others],
        import_p12,
    )
    _conf_writes(plan, found, runners, new_config)
    plan.add(
        f"{first.host}: corosync-cfgtool -R (reload on every node)", lambda: _reload(first_runner)
    )
    for systemd in (True, False):
        plan.add_each(
            "systemctl start + enable corosync-qdevice"
            if systemd
            else "start corosync-qdevice (no systemd there: not enabled at boot)",
            [runners[n.host] for n in found.nodes if n.systemd == systemd],
            ServiceManager(systemd).start,
        )
    votes: dict[str, str] = {}
    plan.add(
        f"wait until every node counts the QDevice's vote (up to {wait:g} s)",
        lambda: votes.update(wait_for_votes(runners, found, wait)),
    )
    change = QdeviceChange(
        action="setup",
        cluster=cluster,
        hosts=tuple(n.host for n in found.nodes),
        plan=plan.texts(),
        done=(),
        dry_run=dry_run,
        config_version_before=config_version(found.config),
        config_version_after=config_version(new_config),
        algorithm=chosen,
        qnetd=f"{address}:{QNETD_PORT}",
        service_manager=", ".join(sorted({m.name for m in managers.values()})),
    )
    if dry_run:
        return change
    try:
        done, seconds = plan.run(report)
    finally:
        for host, directory in temps.items():
            runner = qrunner if host == qnetd.text else runners.get(host, qrunner)
            runner.run(["rm", "-rf", "--", directory])
    return replace(change, done=done, votes=votes, seconds=seconds)


def parse_spec(text: str, hosts: Sequence[HostSpec]) -> HostSpec:
    return next(h for h in hosts if h.text == text)


def wait_for_votes(runners: dict[str, SshRunner], found: Survey, wait: float) -> dict[str, str]:
    """Every node's Qdevice column shows A,V (alive, voting), or the error says why not."""
    deadline = time.monotonic() + wait

    def view_of(host: str) -> QdeviceStatus | str:
        try:
            return local_qdevice_status(runners[host])
        except PvectlError as exc:
            return str(exc)

    while True:
        hosts = [n.host for n in found.nodes]
        with ThreadPoolExecutor(max_workers=min(len(hosts), 16)) as pool:
            views = dict(zip(hosts, pool.map(view_of, hosts), strict=True))
        flags = {
            host: (v.votequorum_flags or "") if isinstance(v, QdeviceStatus) else ""
            for host, v in views.items()
        }
        if all(f.startswith("A,V") for f in flags.values()):
            return flags
        if time.monotonic() > deadline:
            worst = next(h for h, f in flags.items() if not f.startswith("A,V"))
            view = views[worst]
            detail = (
                f"qdevice state {view.state!r}, Qdevice column {view.votequorum_flags or '-'}"
                if isinstance(view, QdeviceStatus)
                else view
            )
            raise PvectlError(
                f"{worst}: the QDevice gives no vote after {wait:g} s ({detail}); check the "
                f"certificates (the node's {NODE_DB} must hold a cluster certificate signed "
                "by this qnetd's CA) and corosync-qnetd's log; 'pvectl qdevice remove' "
                "undoes the setup",
                ExitCode.UNAVAILABLE,
            )
        time.sleep(1.0)


def remove(
    session: SshSession,
    hosts: Sequence[HostSpec],
    *,
    dry_run: bool = False,
    report: Report = lambda _: None,
) -> QdeviceChange:
    found = survey(session, hosts)
    existing = _device(found.config)
    if existing is None:
        raise QdeviceSetupError("No QDevice configured! (corosync.conf has no quorum.device)")
    runners = {n.host: session.runner(parse_spec(n.host, hosts)) for n in found.nodes}
    managers = {n.host: ServiceManager(n.systemd) for n in found.nodes}
    new_config = without_device(found.config)
    first = found.nodes[0]
    plan = _Plan()
    for systemd in (True, False):
        plan.add_each(
            "systemctl stop + disable corosync-qdevice" if systemd else "stop corosync-qdevice",
            [runners[n.host] for n in found.nodes if n.systemd == systemd],
            ServiceManager(systemd).stop,
        )
    _conf_writes(plan, found, runners, new_config)
    plan.add(
        f"{first.host}: corosync-cfgtool -R (reload on every node)",
        lambda: _reload(runners[first.host]),
    )
    plan.add_each(
        f"rm -rf {NODE_DB}",
        [runners[n.host] for n in found.nodes],
        lambda r: _ok(r, ["rm", "-rf", "--", NODE_DB], "rm"),
    )
    change = QdeviceChange(
        action="remove",
        cluster=found.cluster_name,
        hosts=tuple(n.host for n in found.nodes),
        plan=plan.texts(),
        done=(),
        dry_run=dry_run,
        config_version_before=config_version(found.config),
        config_version_after=config_version(new_config),
        algorithm=existing.lookup("net.algorithm"),
        qnetd=existing.lookup("net.host"),
        service_manager=", ".join(sorted({m.name for m in managers.values()})),
    )
    if dry_run:
        return change
    done, seconds = plan.run(report)
    return replace(change, done=done, seconds=seconds)


@dataclass(frozen=True)
class RemoteQdeviceStatus:
    """One host's qdevice: the daemon (service state) and votequorum's view of it."""

    host: str
    service: str
    status: QdeviceStatus | None = None
    error: str | None = None


def remote_status(session: SshSession, hosts: Sequence[HostSpec]) -> list[RemoteQdeviceStatus]:
    def one(runner: SshRunner) -> RemoteQdeviceStatus:
        manager = ServiceManager(_exists(runner, "/run/systemd/system"))
        service = manager.state(runner)
        try:
            return RemoteQdeviceStatus(runner.spec.text, service, local_qdevice_status(runner))
        except PvectlError as exc:
            return RemoteQdeviceStatus(runner.spec.text, service, error=str(exc))

    rows: list[RemoteQdeviceStatus] = []
    for outcome in across_hosts(session, list(hosts), one):
        if outcome.result is not None:
            rows.append(outcome.result)
        else:
            rows.append(RemoteQdeviceStatus(outcome.host, "unreachable", error=outcome.error))
    return rows


def all_voting(rows: Sequence[RemoteQdeviceStatus]) -> bool:
    return bool(rows) and all(
        r.status is not None and r.status.state == "Connected" and r.status.casting_vote
        for r in rows
    )
