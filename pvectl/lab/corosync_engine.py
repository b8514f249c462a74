"""The corosync lab engine: N real corosync 3 nodes on this machine, one network
namespace each, broken on purpose with signals and nftables.

Each node gets its own directories for corosync's fixed paths (config and authkey, the
pid lock under /run, the state dir, the log); commands run "on" a node through
``netns.node_context`` so corosync's own tools behave as on a real node.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from pvectl.errors import (
    CommandRefused,
    ExitCode,
    PermissionNeeded,
    PvectlError,
    TargetUnavailable,
    UsageError,
)
from pvectl.lab import fuse_mounts, netns, reports
from pvectl.lab import state as lab_state
from pvectl.lab.corosync_config import UpOptions as UpOptions  # the engine's up options
from pvectl.lab.corosync_config import build_conf, check_options
from pvectl.lab.qdevice import corosync as corosync_qdevice
from pvectl.lab.qdevice import qnetd as lab_qnetd
from pvectl.lab.reports import LabView, NodeView, RingChange, lab_view, wait_until
from pvectl.lab.state import LabNode, LabState
from pvectl.results import NodeList, QuorumStatus
from pvectl.targets import corosync_parse
from pvectl.targets.runner import LocalRunner

ENGINE = "corosync"
SUBNET_POOL = "10.99.0.0/16"
TOOLS = ("corosync", "corosync-keygen", "corosync-quorumtool", "corosync-cmapctl")
Report = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


# ---- preconditions ------------------------------------------------------------------


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise PermissionNeeded(
            f"{what} needs root (network namespaces, bind mounts, nftables): "
            "run it with sudo or as root"
        )


def missing_tools() -> list[str]:
    return [tool for tool in (*TOOLS, "ip", "unshare") if shutil.which(tool) is None]


def require_corosync() -> None:
    for tool in missing_tools():
        netns.require_program(tool, "corosync" if tool.startswith("corosync") else "iproute2")


def available() -> bool:
    """Whether this machine can run the corosync engine for the current user."""
    return os.geteuid() == 0 and not missing_tools()


# ---- node context -------------------------------------------------------------------


def node_prefix(node: LabNode) -> tuple[str, ...]:
    return netns.node_context(node.namespace, node.dir, node.name)


def node_runner(node: LabNode) -> LocalRunner:
    runner = LocalRunner(prefix=node_prefix(node))
    runner.describe = f"lab node {node.node_id}"
    return runner


def node_pid(node: LabNode) -> int | None:
    """The node's corosync pid if it still runs (checked against pid reuse)."""
    if node.pid is not None and netns.process_in_namespace(node.pid, node.namespace, "corosync"):
        return node.pid
    return None


def _quorumtool(node: LabNode, option: str, ok: tuple[int, ...]) -> str | None:
    """The tool's output on the node, or None when its corosync does not answer (stopped,
    or frozen by ``lab pause``: hence the short timeout)."""
    try:
        proc = netns.run(
            [*netns.net_only(node.namespace), "corosync-quorumtool", option],
            check=False,
            timeout=5,
        )
    except PvectlError:
        return None
    return proc.stdout if proc.returncode in ok else None


def membership(node: LabNode) -> tuple[int, ...] | None:
    """Node ids in this node's current view, or None when its corosync does not answer."""
    listing = node_list_view(node)
    return tuple(sorted(m.node_id for m in listing.members)) if listing else None


def quorum_view(node: LabNode) -> QuorumStatus | None:
    text = _quorumtool(node, "-s", (0, 2))
    try:
        return corosync_parse.parse_status(text) if text is not None else None
    except PvectlError:
        return None


def node_list_view(node: LabNode) -> NodeList | None:
    text = _quorumtool(node, "-l", (0,))
    try:
        return corosync_parse.parse_node_list(text) if text is not None else None
    except PvectlError:
        return None


# ---- configuration ------------------------------------------------------------------


def host_networks() -> dict[ipaddress.IPv4Network, str]:
    """IPv4 networks on this machine's own interfaces, by interface name."""
    proc = netns.run(["ip", "-o", "-4", "addr", "show"], check=False)
    found: dict[ipaddress.IPv4Network, str] = {}
    for line in proc.stdout.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[2] == "inet":
            try:
                found[ipaddress.IPv4Network(fields[3], strict=False)] = fields[1]
            except ValueError:
                continue
    return found


def _allocate_subnet(requested: str | None, lab_name: str) -> ipaddress.IPv4Network:
    """The requested /24 if neither another lab nor this machine uses it, else the first
    free one in the pool."""
    used = {lab.subnet for lab in lab_state.all_labs() if lab.name != lab_name}
    host = host_networks()
    if requested is not None:
        try:
            net = ipaddress.ip_network(requested, strict=False)
        except ValueError as exc:
            raise UsageError(f"--subnet {requested!r}: {exc}") from exc
        if not isinstance(net, ipaddress.IPv4Network) or net.prefixlen != 24:
            raise UsageError(f"--subnet {requested!r}: give an IPv4 /24, e.g. 10.99.7.0/24")
        if str(net) in used:
            owner = next(lab.name for lab in lab_state.all_labs() if lab.subnet == str(net))
            raise CommandRefused(f"subnet {net} is already used by lab {owner!r}")
        for other, interface in host.items():
            if net.overlaps(other):
                raise CommandRefused(
                    f"subnet {net} overlaps {other} on this machine's interface {interface}: "
                    "choose another --subnet"
                )
        return net
    pool = ipaddress.IPv4Network(SUBNET_POOL)
    for candidate in pool.subnets(new_prefix=24):
        if candidate.network_address.packed[2] == 0:
            continue  # 10.99.0.0/24 is the reference lab's
        if str(candidate) not in used and not any(candidate.overlaps(n) for n in host):
            return candidate
    raise CommandRefused("no free /24 left in 10.99.0.0/16 for another lab")


# ---- lifecycle ----------------------------------------------------------------------


def is_up(name: str) -> bool:
    state = lab_state.load(name)
    if state is None or state.engine != ENGINE:
        return False
    return any(node_pid(node) is not None for node in state.nodes)


def load_running(name: str) -> LabState:
    state = lab_state.load(name)
    if state is None:
        leftovers = netns.lab_namespaces(name) if os.geteuid() == 0 else []
        hint = f"; 'pvectl lab down --name {name}' removes its leftovers" if leftovers else ""
        raise TargetUnavailable(
            f"no lab named {name!r} is up (start one with 'pvectl lab up 3 --name {name}')" + hint
        )
    return state


def up(
    name: str, options: UpOptions, report: Report = _quiet, progress: Report = _quiet
) -> LabState:
    check_options(options)  # usage errors first: they do not depend on who runs it
    require_root("pvectl lab up --engine corosync")
    require_corosync()
    if options.qdevice:
        corosync_qdevice.require_tools(options.qnetd)
    with lab_state.locked(name):
        return _up(name, options, report, progress)


def _up(name: str, options: UpOptions, report: Report, progress: Report) -> LabState:
    if shutil.which("nft") is None:
        report("note: nft not found (Debian package 'nftables'): partition/loss will not work")
    existing = lab_state.load(name)
    leftovers = netns.lab_namespaces(name)
    if existing is not None and (leftovers or any(node_pid(n) for n in existing.nodes)):
        running = sum(1 for n in existing.nodes if node_pid(n) is not None)
        raise CommandRefused(
            f"lab {name!r} is already up ({len(existing.nodes)} nodes, {running} running, "
            f"engine {existing.engine}): 'pvectl lab down --name {name}' first"
        )
    if existing is not None or leftovers:
        _down(name, _quiet)  # a state without namespaces, or namespaces without a state
    subnet = _allocate_subnet(options.subnet, name)
    directory = lab_state.lab_dir(name)
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True, mode=0o700)
    hosts = list(subnet.hosts())
    votes = options.votes or (1,) * options.nodes
    nodes = tuple(
        LabNode(
            node_id=node_id,
            name=options.name_of(index),
            namespace=netns.node_namespace(name, node_id),
            address=str(hosts[index]),
            dir=str(directory / f"node{node_id}"),
            votes=votes[index],
        )
        for index, node_id in enumerate(options.ids())
    )
    state = LabState(
        name=name,
        engine=ENGINE,
        state_dir=str(directory),
        namespace_prefix=netns.lab_prefix(name),
        hub_namespace=netns.hub_namespace(name),
        subnet=str(subnet),
        cluster_name=name,
        transport=options.transport,
        nodes=nodes,
        options={
            "token": options.token,
            "two_node": options.two_node,
            "wait_for_all": options.wait_for_all,
            "quorum": options.quorum_values(),
            "votes": list(votes),
        },
        created=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    lab_state.save(state)  # first, so a crash from here on is found by 'lab down'
    try:
        state = _build_and_start(state, options, report, progress)
    except PvectlError as exc:
        raise PvectlError(
            f"{exc}; the lab is left as it is for inspection, 'pvectl lab down --name {name}' "
            "removes it",
            exc.exit_code,
        ) from exc
    return state


def _build_and_start(
    state: LabState, options: UpOptions, report: Report, progress: Report = _quiet
) -> LabState:
    directory = Path(state.state_dir)
    nodes = state.nodes
    progress(f"lab {state.name!r}: network namespaces for {len(nodes)} node(s)")
    netns.create_hub(state.hub_namespace)
    for node in nodes:
        netns.create_node_namespace(
            node.namespace, state.hub_namespace, f"v{node.node_id}", f"{node.address}/24"
        )
    authkey = directory / "authkey"
    netns.run(["corosync-keygen", "-k", str(authkey)])
    conf = build_conf(state.cluster_name, nodes, options, subnet=state.subnet)
    for node in nodes:
        base = Path(node.dir)
        for sub, _ in netns.NODE_MOUNTS:
            (base / sub).mkdir(parents=True, exist_ok=True)
        (base / "etc" / "corosync.conf").write_text(conf, encoding="utf-8")
        shutil.copyfile(authkey, base / "etc" / "authkey")
        os.chmod(base / "etc" / "authkey", 0o400)
    check = netns.run([*node_prefix(nodes[0]), "corosync", "-t"], check=False)
    if check.returncode != 0:
        detail = (check.stderr or check.stdout).strip().splitlines()
        raise PvectlError(
            "corosync -t rejected the generated corosync.conf: "
            + (detail[-1] if detail else f"exit {check.returncode}")
        )
    started = time.monotonic()
    want = options.start or tuple(n.node_id for n in nodes)
    for node in nodes:
        if node.node_id in want:
            progress(f"lab {state.name!r}: starting corosync on node {node.node_id}/{len(nodes)}")
            state = _start_process(state, node.node_id)
    started_nodes = [n for n in state.nodes if n.node_id in want]
    for node in started_nodes:
        progress(f"lab {state.name!r}: waiting for node {node.node_id}'s corosync to answer")
        _wait_ipc(node, 20.0)
    progress(f"lab {state.name!r}: waiting for the ring to form")
    ok = wait_until(lambda: all(membership(n) == want for n in started_nodes), options.wait_timeout)
    elapsed = time.monotonic() - started
    if not ok:
        raise PvectlError(
            f"lab {state.name!r}: the ring did not form within {options.wait_timeout:g} s "
            f"(logs under {directory}/node*/log)",
            ExitCode.TEMP_FAIL,
        )
    report(
        f"lab {state.name!r}: {options.nodes} corosync node(s) up ({options.transport}, "
        f"subnet {state.subnet}); ring formed in {elapsed:.2f} s"
    )
    if options.qdevice:
        progress(f"lab {state.name!r}: qnetd and corosync-qdevice on every node")
        state = corosync_qdevice.attach(
            state,
            options.qdevice_algorithm,
            options.qnetd,
            options.qdevice_tls,
            report,
            start_on=want if options.qdevice_start else (),
        )
        enabled = [n.node_id for n in nodes] if options.qdevice_start else []
        state = replace(state, options={**state.options, "qdevice_enabled": enabled})
        lab_state.save(state)
    return state


def down(name: str, report: Report = _quiet) -> list[str]:
    """Stop every process in the lab's namespaces and delete them, found by prefix so a
    crashed ``pvectl`` leaves nothing behind; returns the removed namespaces."""
    require_root("pvectl lab down (corosync engine)")
    with lab_state.locked(name):
        return _down(name, report)


def _down(name: str, report: Report) -> list[str]:
    namespaces = netns.lab_namespaces(name)
    stopped = netns.destroy_namespaces(namespaces)
    removed = [ns for ns in namespaces if ns not in netns.list_namespaces()]
    for namespace in namespaces:
        pids = stopped.get(namespace)
        report(f"removed {namespace}" + (f" (stopped pids {pids})" if pids else ""))
    left = [ns for ns in namespaces if ns not in removed]
    if left:
        raise PvectlError(f"could not remove namespaces {', '.join(left)}")
    directory = lab_state.lab_dir(name)
    if directory.exists():
        shutil.rmtree(directory, ignore_errors=True)
    return removed


def _start_process(state: LabState, node_id: int) -> LabState:
    node = state.node(node_id)
    base = Path(node.dir)
    stale_lock = base / "run" / "corosync.pid"
    stale_lock.unlink(missing_ok=True)
    # the pid is corosync's own: signals go straight to it
    argv = [*node_prefix(node), "corosync", "-f"]
    proc = netns.spawn_daemon(argv, base / "log" / "corosync.stderr")
    state = state.with_pid(node_id, proc.pid)
    lab_state.save(state)
    return state


def _wait_ipc(node: LabNode, timeout: float) -> None:
    def answers() -> bool:
        # alive is enough: for its first milliseconds the process is still 'ip', outside
        # the node's namespace
        if node.pid is None or not netns.alive(node.pid):
            raise PvectlError(
                f"node {node.node_id}: corosync exited at start; see {node.dir}/log/corosync.stderr"
            )
        return membership(node) is not None

    if not wait_until(answers, timeout):
        raise PvectlError(
            f"node {node.node_id}: corosync does not answer after {timeout:g} s "
            f"(see {node.dir}/log)",
            ExitCode.TEMP_FAIL,
        )


def _settle(
    state: LabState,
    node_id: int,
    action: str,
    expect: Callable[[tuple[int, ...]], bool],
    timeout: float,
    exclude_self: bool,
    started: float,
) -> RingChange:
    observers = reports.running_nodes(state, node_pid, exclude=node_id if exclude_self else None)
    return reports.settle(
        observers, node_id, action, expect, timeout, membership, _final_view, started
    )


def _final_view(node: LabNode) -> tuple[tuple[int, ...], bool] | None:
    view = quorum_view(node)
    return (tuple(m.node_id for m in view.members), view.quorate) if view else None


def _ring_timeout(state: LabState) -> float:
    token = state.options.get("token") or 3000
    nodes = len(state.nodes)
    effective = token + max(0, nodes - 2) * 125
    return max(30.0, 4 * 2.2 * effective / 1000)


def stop_node(name: str, node_id: int, sig: signal.Signals) -> RingChange:
    """SIGKILL (crash) or SIGTERM (clean leave) one node, then time the new ring."""
    require_root(f"pvectl lab {'kill' if sig == signal.SIGKILL else 'stop'}")
    with lab_state.locked(name):
        return _stop_node(name, node_id, sig)


def _stop_node(name: str, node_id: int, sig: signal.Signals) -> RingChange:
    state = load_running(name)
    node = state.node(node_id)
    pid = node_pid(node)
    if pid is None:
        raise CommandRefused(f"node {node_id} of lab {name!r} is not running")
    if state.options.get("qdevice"):
        corosync_qdevice.stop_qdevice(node, sig)
    if sig == signal.SIGTERM:
        netns.signal_pid(pid, signal.SIGCONT)  # a paused node must run to leave cleanly
    started = time.monotonic()
    netns.signal_pid(pid, sig)
    if netns.wait_gone([pid], 10.0):
        netns.signal_pid(pid, signal.SIGKILL)
        netns.wait_gone([pid], 2.0)
    state = state.with_pid(node_id, None)
    lab_state.save(state)
    action = "kill" if sig == signal.SIGKILL else "stop"
    return _settle(
        state, node_id, action, lambda v: node_id not in v, _ring_timeout(state), True, started
    )


def start_node(name: str, node_id: int) -> RingChange:
    require_root("pvectl lab start")
    with lab_state.locked(name):
        return _start_node(name, node_id)


def _start_node(name: str, node_id: int) -> RingChange:
    state = load_running(name)
    node = state.node(node_id)
    if node_pid(node) is not None:
        raise CommandRefused(f"node {node_id} of lab {name!r} is already running")
    if not Path(f"/run/netns/{node.namespace}").exists():
        raise CommandRefused(f"lab {name!r} has no namespace for node {node_id}: lab down/up")
    started = time.monotonic()
    state = _start_process(state, node_id)
    _wait_ipc(state.node(node_id), 20.0)
    if (
        state.options.get("qdevice")
        and node_id in state.options.get("qdevice_enabled", [n.node_id for n in state.nodes])
        and not corosync_qdevice.qdevice_running(state.node(node_id))
    ):
        corosync_qdevice.start_qdevice(state.node(node_id))
    return _settle(
        state, node_id, "start", lambda v: node_id in v, _ring_timeout(state), False, started
    )


def pause_node(name: str, node_id: int, seconds: float) -> RingChange:
    """SIGSTOP for ``seconds``, then SIGCONT: a node frozen by swap or a stuck disk."""
    require_root("pvectl lab pause")
    if not 0 < seconds <= 3600:
        raise UsageError(f"pause SECONDS must be in (0, 3600], got {seconds:g}")
    state = load_running(name)
    node = state.node(node_id)
    pid = node_pid(node)
    if pid is None:
        raise CommandRefused(f"node {node_id} of lab {name!r} is not running")
    others = reports.running_nodes(state, node_pid, exclude=node_id)
    dropped_after: float | None = None
    netns.signal_pid(pid, signal.SIGSTOP)
    started = time.monotonic()
    try:
        while (elapsed := time.monotonic() - started) < seconds:
            if dropped_after is None and others:
                seen = [membership(n) for n in others]
                if all(v is not None and node_id not in v for v in seen):
                    dropped_after = elapsed
            time.sleep(min(0.2, max(0.0, seconds - elapsed)))
    finally:
        netns.signal_pid(pid, signal.SIGCONT)
    resumed = time.monotonic()
    change = _settle(
        state, node_id, "pause", lambda v: node_id in v, _ring_timeout(state), False, resumed
    )
    return replace(change, dropped_after=dropped_after)


def parse_groups(groups: Sequence[str], state: LabState) -> list[list[int]]:
    parsed: list[list[int]] = []
    seen: dict[int, int] = {}
    for index, group in enumerate(groups):
        members: list[int] = []
        for token in group.replace(" ", ",").split(","):
            if not token:
                continue
            try:
                node_id = int(token)
            except ValueError as exc:
                raise UsageError(f"partition group {group!r}: {token!r} is not a node id") from exc
            state.node(node_id)
            if node_id in seen:
                raise UsageError(
                    f"node {node_id} is in partition groups {seen[node_id] + 1} and "
                    f"{index + 1}: groups must not overlap"
                )
            seen[node_id] = index
            members.append(node_id)
        if not members:
            raise UsageError(f"partition group {index + 1} is empty")
        parsed.append(members)
    if len(parsed) < 2:
        raise UsageError("partition needs at least two groups, e.g. 'partition 1,2 3'")
    return parsed


def partition(name: str, groups: Sequence[str]) -> reports.PartitionChange:
    """nftables drops between the groups, then time until each group has its own ring."""
    require_root("pvectl lab partition")
    state = load_running(name)
    parsed = parse_groups(groups, state)
    started = time.monotonic()
    for index, group in enumerate(parsed):
        others = [state.node(n).address for j, g in enumerate(parsed) if j != index for n in g]
        for node_id in group:
            netns.replace_table(
                state.node(node_id).namespace,
                netns.PARTITION_TABLE,
                netns.partition_rules(others),
            )
    running = reports.running_nodes(state, node_pid)
    return reports.settle_partition(
        parsed, running, started, _ring_timeout(state), membership, _final_view
    )


def heal(name: str) -> None:
    require_root("pvectl lab heal")
    state = load_running(name)
    for node in state.nodes:
        netns.replace_table(node.namespace, netns.PARTITION_TABLE, None)
        netns.replace_table(node.namespace, netns.LOSS_TABLE, None)


def loss(name: str, percent: int) -> None:
    require_root("pvectl lab loss")
    if not 0 <= percent <= 100:
        raise UsageError(f"loss PCT must be 0..100, got {percent}")
    state = load_running(name)
    for node in state.nodes:
        netns.replace_table(
            node.namespace, netns.LOSS_TABLE, netns.loss_rules(percent) if percent else None
        )


def exec_in_node(name: str, node_id: int, argv: Sequence[str]) -> int:
    require_root("pvectl lab exec")
    if not argv:
        raise UsageError("lab exec needs a command after '--'")
    state = load_running(name)
    node = state.node(node_id)
    try:
        return subprocess.call([*node_prefix(node), *argv])
    except FileNotFoundError as exc:
        raise PvectlError(f"{exc.filename}: command not found", ExitCode.UNAVAILABLE) from exc


def view(name: str) -> LabView:
    require_root("pvectl lab ls (corosync engine)")
    state = load_running(name)
    rows = []
    for node in state.nodes:
        pid = node_pid(node)
        status = quorum_view(node) if pid is not None else None
        files = tuple(
            str(path.relative_to(node.dir))
            for path in sorted(Path(node.dir).rglob("*"))
            if path.is_file()
        )
        rows.append(
            NodeView(
                node_id=node.node_id,
                name=node.name,
                address=node.address,
                namespace=node.namespace,
                pid=pid,
                running=pid is not None,
                paused=pid is not None and netns.is_stopped(pid),
                ring_id=str(status.ring_id) if status else None,
                quorate=status.quorate if status else None,
                members=tuple(m.node_id for m in status.members) if status else (),
                state_dir=node.dir,
                files=files,
            )
        )
    return lab_view(state, rows, lab_qnetd.lab_description(state))


def qnetd_action(name: str, action: str) -> str:
    """Stop or start the lab's qnetd (rehearse "qnetd down")."""
    require_root("pvectl lab qnetd")
    with lab_state.locked(name):
        return lab_qnetd.lab_action(load_running(name), action)


def qdevice_action(name: str, action: str, node_id: int | None = None) -> str:
    """Start or stop corosync-qdevice (all running nodes, or one): as ``systemctl
    start|stop corosync-qdevice``, it also decides whether a node started later runs it."""
    require_root("pvectl lab qdevice")
    if action not in ("start", "stop"):
        raise UsageError(f"lab qdevice takes start or stop, not {action!r}")
    with lab_state.locked(name):
        state = load_running(name)
        if not state.options.get("qdevice"):
            raise CommandRefused(f"lab {name!r} has no QDevice (lab up N --qdevice)")
        targets = [state.node(node_id)] if node_id is not None else list(state.nodes)
        changed = []
        for node in targets:
            if node_pid(node) is None:
                continue
            running = corosync_qdevice.qdevice_running(node)
            if action == "start" and not running:
                corosync_qdevice.start_qdevice(node)
            elif action == "stop" and running:
                corosync_qdevice.stop_qdevice(node, signal.SIGTERM)
            changed.append(node.node_id)
        enabled = set(state.options.get("qdevice_enabled", [n.node_id for n in state.nodes]))
        ids = {n.node_id for n in targets}
        enabled = enabled | ids if action == "start" else enabled - ids
        options = {**state.options, "qdevice_enabled": sorted(enabled)}
        lab_state.save(replace(state, options=options))
    done = "started" if action == "start" else "stopped"
    where = ",".join(map(str, changed)) or "none running"
    return f"corosync-qdevice {done} on node(s) {where}"


def first_running(state: LabState) -> LabNode:
    return reports.first_running(state, node_pid)


def slow_disk(name: str, node_id: int, ms: float) -> None:
    """Not on this engine: corosync keeps no config store of its own to slow down."""
    raise UsageError(
        "lab slow-disk: the corosync engine has no config store (pmxcfs is not part of it); "
        "use the embedded engine"
    )


def mount_node(
    name: str, node_id: int, mountpoint: Path, level: str = "local", foreground: bool = False
) -> fuse_mounts.MountRecord | int:
    """Not on this engine: there is no pvectl config store in a corosync lab to mount."""
    raise UsageError(
        "lab mount: the corosync engine has no config store to mount (pmxcfs is not part "
        "of it); use the embedded engine"
    )
