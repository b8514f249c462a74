"""The embedded lab engine: N pvectl nodes (real processes, real UDP on loopback, the Totem
engine) on this machine, no root needed.

Each node gets its own loopback address in a 127.x.y.0/24 of the lab (Linux routes all of
127/8 to ``lo``), so nodes look like separate hosts on port 5405. Faults are applied in each
node's receive filter through its control socket: a partition blocks the peers of the
other groups, ``loss`` drops a share of datagrams at random.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pvectl import corosync_conf
from pvectl.corosync_conf import Section
from pvectl.errors import CommandRefused, ExitCode, PvectlError, TargetUnavailable, UsageError
from pvectl.lab import fuse_mounts, quorum_setup, reports
from pvectl.lab import state as lab_state
from pvectl.lab.node_access import access
from pvectl.lab.options import DEFAULT_PORT
from pvectl.lab.options import UpOptions as UpOptions  # the engine's up options
from pvectl.lab.qdevice import embedded as embedded_qdevice
from pvectl.lab.qdevice import qnetd as lab_qnetd
from pvectl.lab.reports import LabView, NodeView, RingChange, lab_view, wait_until
from pvectl.lab.state import LabNode, LabState
from pvectl.node import host_agent

ENGINE = "embedded"
AUTO_SUBNETS = 199  # 127.77.1-199.0/24 are picked automatically; 200-254 stay for --subnet
MAX_NODES = 16
Report = Callable[[str], None]


MIN_NETMTU = 576
MAX_NETMTU = 65507  # the largest UDP payload over IPv4 (loopback's MTU is 65536)


def _quiet(_: str) -> None:
    pass


def available() -> bool:
    return True


def check_options(options: UpOptions) -> None:
    if options.transport not in (None, "udpu"):
        raise UsageError(
            f"--transport {options.transport}: the embedded engine speaks udpu only (unicast "
            "UDP between pvectl nodes); use --engine corosync for knet"
        )
    if not 1 <= options.nodes <= MAX_NODES:
        raise UsageError(f"N must be between 1 and {MAX_NODES}, got {options.nodes}")
    if options.votes and len(options.votes) != options.nodes:
        raise UsageError(f"--votes lists {len(options.votes)} values for {options.nodes} nodes")
    if any(v < 0 for v in options.votes):
        raise UsageError("votes cannot be negative")
    if options.token is not None and options.token < 50:
        raise UsageError("--token is in milliseconds and must be at least 50")
    if (
        options.embedded.netmtu is not None
        and not MIN_NETMTU <= options.embedded.netmtu <= MAX_NETMTU
    ):
        raise UsageError(f"--netmtu must be in {MIN_NETMTU}..{MAX_NETMTU} bytes")
    if options.embedded.durability not in ("fsync", "wal-normal"):
        raise UsageError("--durability must be fsync or wal-normal")
    if options.embedded.coupling not in ("coupled", "decoupled"):
        raise UsageError("--coupling must be coupled or decoupled")
    if options.embedded.addresses and not options.embedded.hosts:
        raise UsageError("--address goes with --host (a loopback lab picks its own)")
    if options.embedded.hosts:
        from pvectl.lab import host_setup
        from pvectl.targets.hosts import parse_host

        for host in options.embedded.hosts:
            parse_host(host)
        host_setup.plan_hosts(options.embedded.hosts, options.nodes)
        if options.embedded.addresses and len(options.embedded.addresses) != len(
            options.embedded.hosts
        ):
            raise UsageError(
                f"--address: give one per --host ({len(options.embedded.hosts)}), "
                f"got {len(options.embedded.addresses)}"
            )
        for address in options.embedded.addresses:
            try:
                ipaddress.ip_address(address)
            except ValueError as exc:
                raise UsageError(f"--address {address!r}: not an IP address") from exc
        if options.subnet:
            raise UsageError("--subnet is for loopback labs; --host uses the hosts' addresses")
    if not 1 <= options.embedded.port <= 65535 - MAX_NODES:
        raise UsageError(f"--port must be in 1..{65535 - MAX_NODES}")
    if options.qdevice and options.embedded.hosts:
        raise UsageError("--qdevice runs a local qnetd: it is not available with --host yet")
    if options.embedded.hosts and options.node_ids:
        raise UsageError("node ids from a corosync.conf are for loopback labs (not --host)")
    quorum_setup.check_lab_quorum(options)
    if options.qdevice:
        embedded_qdevice.check(
            options.nodes, options.votes, options.qdevice_algorithm, options.two_node, options.qnetd
        )


def _allocate_subnet(requested: str | None, lab_dir: str = "") -> ipaddress.IPv4Network:
    """The requested /24, else a free one in 127.77.0.0/16. The search starts at a place
    derived from the lab's directory, so labs started at the same moment (two users, or
    two test processes) rarely probe the same /24 first."""
    if requested:
        try:
            net = ipaddress.IPv4Network(requested, strict=False)
        except ValueError as exc:
            raise UsageError(f"--subnet: {exc}") from exc
        if not net.subnet_of(ipaddress.IPv4Network("127.0.0.0/8")) or net.prefixlen != 24:
            raise UsageError("--subnet for the embedded engine must be a /24 inside 127.0.0.0/8")
        return net
    used = {lab.subnet for lab in lab_state.all_labs()}
    start = zlib.crc32(f"{lab_dir}:{os.getpid()}".encode()) % AUTO_SUBNETS
    for offset in range(AUTO_SUBNETS):
        third = (start + offset) % AUTO_SUBNETS + 1
        candidate = ipaddress.IPv4Network(f"127.77.{third}.0/24")
        if str(candidate) not in used and _port_free(str(candidate.network_address + 1)):
            return candidate
    raise PvectlError("no free 127.77.x.0/24 left for another lab", ExitCode.UNAVAILABLE)


def _port_free(address: str) -> bool:
    """Another user's lab (another XDG_RUNTIME_DIR) may hold this /24 already."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.bind((address, DEFAULT_PORT))
    except OSError:
        return False
    finally:
        probe.close()
    return True


def build_conf(
    state: LabState, options: UpOptions, authkey: Path | None, device: Section | None = None
) -> str:
    """``authkey`` None: each node reads the ``authkey`` beside its corosync.conf."""
    totem = Section(
        "totem",
        {
            "cluster_name": state.cluster_name,
            "config_version": "1",
            "secauth": "on",
            "transport": "udpu",
            "version": "2",
            "token_coefficient": "125",  # as Proxmox writes it, and as the corosync lab does
        },
    )
    totem.values.update(dict(options.totem))
    if options.token is not None:
        totem.values["token"] = str(options.token)
    if options.embedded.netmtu is not None:
        totem.values["netmtu"] = str(options.embedded.netmtu)
    if options.embedded.accelerated:
        totem.values["accelerated"] = "yes"
    nodelist = Section("nodelist")
    for node in state.nodes:
        values = {
            "name": node.name,
            "nodeid": str(node.node_id),
            "quorum_votes": str(node.votes),
            "ring0_addr": node.address,
        }
        if node.port != DEFAULT_PORT:
            values["pvectl_port"] = str(node.port)
        nodelist.children.append(Section("node", values))
    quorum = quorum_setup.quorum_section(options.quorum_values(), device)
    extra = Section(
        "pvectl", {"coupling": options.embedded.coupling, "durability": options.embedded.durability}
    )
    if authkey is not None:
        extra.values["authkey"] = str(authkey)
    if device is not None:
        extra.values["qdevice_cert_dir"] = str(embedded_qdevice.client_cert_dir(state.state_dir))
    root = Section(
        "", children=[totem, nodelist, quorum, extra, Section("logging", {"to_syslog": "no"})]
    )
    return corosync_conf.dump(root)


# --- processes -------------------------------------------------------------------------------


def _cmdline(pid: int) -> list[str]:
    return host_agent.cmdline(pid)


def node_pid(node: LabNode) -> int | None:
    """The node's pid if that process still runs this node (pid reuse is checked)."""
    return access(node).pid()


def _lab_processes(state_dir: str) -> list[int]:
    """Every local node process of a lab, found by its state directory (after a crash)."""
    return host_agent.processes_under(state_dir)


def leftovers(name: str) -> list[int]:
    """Node processes of lab ``name`` still running, whatever the state file says."""
    return _lab_processes(str(lab_state.lab_dir(name)))


def _call(node: LabNode, cmd: str, timeout: float = 5.0, **args: Any) -> dict[str, Any]:
    return access(node).call(cmd, timeout, **args)


def info(node: LabNode) -> dict[str, Any] | None:
    try:
        return access(node).probe()[2]
    except PvectlError:
        return None


def membership(node: LabNode) -> tuple[int, ...] | None:
    found = info(node)
    if found is None or found.get("state") != "OPERATIONAL":
        return None
    return tuple(found["members"])


def _config_path(state: LabState, node: LabNode) -> str:
    if node.host:
        return f"{node.dir}/corosync.conf"
    return str(Path(state.state_dir) / "corosync.conf")


def _start_process(state: LabState, node_id: int) -> LabState:
    node = state.node(node_id)
    pid = access(node).start(_config_path(state, node))
    state = state.with_pid(node_id, pid)
    lab_state.save(state)
    return state


def _gone(pid: int) -> bool:
    """Exited (or a zombie). Not judged by /proc/PID/cmdline: it reads empty for a moment
    right after the exec, which made a slow start look like a crash."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


EXIT_GRACE_S = 2.0  # a node seen gone without last words is looked at again this long


def _wait_control(node: LabNode, timeout: float) -> None:
    where = f" on {node.host}" if node.host else ""
    gone_since: list[float] = []

    def answers() -> bool:
        pid, _, seen = access(node).probe()
        # a local process reads an empty cmdline for a moment after its exec: judge a
        # local start by /proc/PID/stat, so a slow start is not taken for a crash
        starting = not node.host and node.pid is not None and not _gone(node.pid)
        if pid is None and not starting:
            detail = access(node).log_tail()
            # on a remote host the same moment looks like an exit, with no last words
            # yet: look again before calling it one
            gone_since[:] = gone_since or [time.monotonic()]
            if not detail and time.monotonic() - gone_since[0] < EXIT_GRACE_S:
                return False
            kind = _AddressTaken if "is already in use" in detail else PvectlError
            raise kind(
                f"node {node.node_id}{where} exited at start" + (f": {detail}" if detail else "")
            )
        return seen is not None

    if not wait_until(answers, timeout):
        raise PvectlError(
            f"node {node.node_id}{where} does not answer on its control socket after "
            f"{timeout:g} s (see {node.dir}/node.log)",
            ExitCode.TEMP_FAIL,
        )


def is_up(name: str) -> bool:
    state = lab_state.load(name)
    if state is None or state.engine != ENGINE:
        return False
    for node in state.nodes:
        try:
            if node_pid(node) is not None:
                return True
        except PvectlError:  # a host out of reach: its node does not count as up
            continue
    return False


def load_running(name: str) -> LabState:
    state = lab_state.load(name)
    if state is None:
        raise TargetUnavailable(
            f"no lab named {name!r} is up (start one with 'pvectl lab up 3 --name {name}')"
        )
    return state


def _timeouts(state: LabState) -> float:
    token = int(state.options.get("token") or 3000)
    nodes = len(state.nodes)
    effective = token + max(0, nodes - 2) * 125
    return max(15.0, 4 * 2.2 * effective / 1000)


class _AddressTaken(PvectlError):
    """A node found its UDP port taken: another lab bound the /24 between our probe and
    the node's own bind (a probe must be released before the node can bind)."""


ADDRESS_ATTEMPTS = 3


def up(
    name: str, options: UpOptions, report: Report = _quiet, progress: Report = _quiet
) -> LabState:
    check_options(options)
    picks_subnet = not options.subnet and not options.embedded.hosts
    for attempt in range(1, ADDRESS_ATTEMPTS + 1):
        try:
            return _up_once(name, options, report, progress)
        except _AddressTaken:
            if not picks_subnet or attempt == ADDRESS_ATTEMPTS:
                raise
            down(name)
            progress(f"lab {name!r}: its subnet was taken meanwhile; picking another")
    raise AssertionError("unreachable")


def _up_once(name: str, options: UpOptions, report: Report, progress: Report) -> LabState:
    existing = lab_state.load(name)
    if existing is not None and any(_node_alive(existing, n) for n in existing.nodes):
        raise CommandRefused(
            f"lab {name!r} is already up ({len(existing.nodes)} nodes, engine "
            f"{existing.engine}): 'pvectl lab down --name {name}' first"
        )
    if existing is not None:
        down(name)
    directory = lab_state.lab_dir(name)
    if options.embedded.hosts:
        nodes, subnet_text, token = _plan_on_hosts(name, options)
    else:
        nodes, subnet_text, token = _plan_on_loopback(directory, options), "", ""
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True, mode=0o700)
    state = LabState(
        name=name,
        engine=ENGINE,
        state_dir=str(directory),
        namespace_prefix="",
        hub_namespace="",
        subnet=subnet_text or nodes[0].address.rsplit(".", 1)[0] + ".0/24",
        cluster_name=name,
        transport="udpu",
        nodes=nodes,
        options={
            "token": options.token,
            "two_node": options.two_node,
            "wait_for_all": options.wait_for_all,
            "quorum": options.quorum_values(),
            "votes": [n.votes for n in nodes],
            "durability": options.embedded.durability,
            "coupling": options.embedded.coupling,
            **(
                {"hosts": list(options.embedded.hosts), "remote_token": token}
                if options.embedded.hosts
                else {}
            ),
        },
        created=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    lab_state.save(state)  # first, so 'lab down' finds everything after a crash
    authkey = directory / "authkey"
    authkey.write_bytes(secrets.token_bytes(128))
    os.chmod(authkey, 0o600)
    started = time.monotonic()
    try:
        if options.embedded.hosts:
            progress(
                f"lab {name!r}: copying the node to {len(set(options.embedded.hosts))} host(s)"
            )
            _upload(state, options, authkey.read_bytes())
        else:
            device = None
            if options.qdevice:
                qnetd, device = embedded_qdevice.prepare(
                    directory,
                    state.cluster_name,
                    state.subnet,
                    options.qdevice_algorithm,
                    options.qnetd,
                    options.qdevice_tls,
                )
                qnetd = lab_qnetd.start(qnetd)
                if options.qdevice_votes is not None:
                    device.values["votes"] = str(options.qdevice_votes)
                state = replace(state, options={**state.options, "qdevice": qnetd})
                lab_state.save(state)
                report(f"lab {name!r}: {lab_qnetd.describe(qnetd)}")
            conf = build_conf(state, options, authkey, device)
            (directory / "corosync.conf").write_text(conf, encoding="utf-8")
        want = options.start or tuple(n.node_id for n in nodes)
        for node in nodes:
            if options.qdevice and not options.qdevice_start:
                _set_qdevice_enabled(node, False)
            if node.node_id in want:
                progress(f"lab {name!r}: starting node {node.node_id}/{len(nodes)}")
                state = _start_process(state, node.node_id)
        started_nodes = [n for n in state.nodes if n.node_id in want]
        for node in started_nodes:
            _wait_control(node, 20.0)
        progress(f"lab {name!r}: waiting for the ring to form")
        ok = wait_until(
            lambda: all(membership(n) == want for n in started_nodes), options.wait_timeout
        )
        if not ok:
            where = (
                "on its hosts" if options.embedded.hosts else f"(logs: {directory}/node*/node.log)"
            )
            raise PvectlError(
                f"lab {name!r}: the ring did not form within {options.wait_timeout:g} s {where}",
                ExitCode.TEMP_FAIL,
            )
    except KeyboardInterrupt:
        # Ctrl-C: nothing half-started is left, and the user is told what went
        report(f"lab {name!r}: interrupted; cleaning up")
        try:
            removed = down(name, report)
        except PvectlError as cleanup:
            report(f"lab {name!r}: cleanup incomplete: {cleanup}")
            raise
        report(
            f"lab {name!r}: removed {len(removed)} item(s) (processes and directories); "
            "nothing of it is left"
        )
        raise
    except BaseException as exc:
        if options.embedded.hosts:  # never leave processes behind on the user's hosts
            try:
                down(name)
            except PvectlError as cleanup:
                raise PvectlError(f"{exc}; and then: {cleanup}", ExitCode.UNAVAILABLE) from exc
        raise
    elapsed = time.monotonic() - started
    _import_corosync_conf(state, patient=not options.start)
    if options.embedded.hosts:
        places = ", ".join(f"{n.node_id}@{n.host} ({n.address}:{n.port})" for n in state.nodes)
        report(
            f"lab {name!r}: {options.nodes} embedded node(s) up on {places}; "
            f"ring formed in {elapsed:.2f} s"
        )
    else:
        report(
            f"lab {name!r}: {options.nodes} embedded node(s) up on {state.subnet} "
            f"(udp {DEFAULT_PORT}); ring formed in {elapsed:.2f} s"
        )
    return state


def _import_corosync_conf(state: LabState, patient: bool = True) -> None:
    """pmxcfs imports corosync.conf into its database on first start; the lab does the
    same through node 1, so every node's store holds it as ``/corosync.conf``. A lab
    started on a subset (``--start``) may not be quorate yet: then the import is skipped
    (not ``patient``) rather than failing ``lab up``."""
    conf = Path(state.state_dir) / "corosync.conf"
    if any(n.host for n in state.nodes) or not conf.is_file():
        return  # labs on hosts: their nodes hold the file, not this machine
    node = first_running(state)
    data = base64.b64encode(conf.read_bytes()).decode()
    deadline = time.monotonic() + (10.0 if patient else 2.0)
    while True:  # right after the ring formed, quorum may still be being computed
        try:
            _call(node, "write", timeout=10.0, path="corosync.conf", data=data, op="put")
            return
        except PvectlError:
            if time.monotonic() > deadline:
                if not patient:
                    return
                raise
            time.sleep(0.1)


def _plan_on_loopback(directory: Path, options: UpOptions) -> tuple[LabNode, ...]:
    subnet = _allocate_subnet(options.subnet, str(directory))
    hosts = list(subnet.hosts())
    votes = options.votes or (1,) * options.nodes
    return tuple(
        LabNode(
            node_id=node_id,
            name=options.name_of(index),
            namespace="",
            address=str(hosts[index]),
            dir=str(directory / f"node{node_id}"),
            votes=votes[index],
        )
        for index, node_id in enumerate(options.ids())
    )


def _plan_on_hosts(name: str, options: UpOptions) -> tuple[tuple[LabNode, ...], str, str]:
    """Check every host first (reachable, python3 >= 3.11, its address), so a bad host
    stops ``lab up`` before anything runs anywhere; nodes sharing an address get
    consecutive ports."""
    from pvectl.lab import host_setup

    placement = host_setup.plan_hosts(options.embedded.hosts, options.nodes)
    facts = host_setup.probe_hosts(
        placement, options.embedded.accept_new_host_key, options.embedded.connect_timeout
    )
    token = host_setup.new_token()
    votes = options.votes or (1,) * options.nodes
    used: dict[str, int] = {}
    nodes = []
    chosen = list(options.embedded.addresses) * (
        options.nodes if len(options.embedded.addresses) == 1 else 1
    )
    for i, host in enumerate(placement, start=1):
        fact = facts[host]
        address = chosen[i - 1] if chosen else fact.address
        port = options.embedded.port + used.get(address, 0)
        used[address] = used.get(address, 0) + 1
        nodes.append(
            LabNode(
                node_id=i,
                name=f"node{i}",
                namespace="",
                address=address,
                dir=f"{host_setup.lab_root(name, fact.home, token)}/node{i}",
                votes=votes[i - 1],
                host=host,
                python=fact.python,
                port=port,
            )
        )
    return tuple(nodes), "hosts: " + ",".join(dict.fromkeys(n.address for n in nodes)), token


def _upload(state: LabState, options: UpOptions, authkey: bytes) -> None:
    from pvectl.lab import host_setup, node_access

    conf = build_conf(state, options, None)
    (Path(state.state_dir) / "corosync.conf").write_text(conf, encoding="utf-8")
    archive = node_access.node_zip()
    for node in state.nodes:
        host_setup.upload(node, conf, authkey, archive)


def _node_alive(state: LabState, node: LabNode) -> bool:
    return node_pid(node) is not None


def down(name: str, report: Report = _quiet) -> list[str]:
    directory = lab_state.lab_dir(name)
    state = lab_state.load(name)
    unmounted = fuse_mounts.unmount_all(directory) if directory.exists() else []
    for line in unmounted:
        report(f"lab {name!r}: {line}")
    removed: list[str] = list(unmounted)
    if state is not None and any(n.host for n in state.nodes):
        removed += _down_on_hosts(state, report)
    pids = set(_lab_processes(str(directory)))
    if state is not None:
        pids |= {p for n in state.nodes if not n.host and (p := node_pid(n)) is not None}
    pids |= set(lab_qnetd.leftover_pids(directory))  # the lab's qnetd, if any
    for pid in sorted(pids):
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and any(_cmdline(p) for p in pids):
        time.sleep(0.05)
    for pid in sorted(pids):
        if _cmdline(pid):
            _signal(pid, signal.SIGKILL)
    removed += [f"pid {pid}" for pid in sorted(pids)]
    if pids:
        report(f"lab {name!r}: stopped {len(pids)} node process(es)")
    if directory.exists():
        shutil.rmtree(directory, ignore_errors=True)
        removed.append(str(directory))
    return removed


def _down_on_hosts(state: LabState, report: Report) -> list[str]:
    """Stop and remove every remote node; while a host cannot be reached the lab's state
    stays, so a later ``lab down`` finishes the job."""
    removed: list[str] = []
    failures: list[PvectlError] = []
    for node in state.nodes:
        if not node.host:
            continue
        try:
            pids = access(node).down()
        except PvectlError as exc:
            failures.append(exc)
            continue
        if pids:
            report(
                f"lab {state.name!r}: node {node.node_id} on {node.host}: stopped pid(s) "
                + ", ".join(str(p) for p in pids)
            )
        removed += [f"{node.host}: pid {p}" for p in pids] + [f"{node.host}:{node.dir}"]
    if failures:
        raise PvectlError(
            f"lab {state.name!r}: could not clean up on {len(failures)} host(s), state kept "
            "for another 'lab down':\n" + "\n".join(f"  {e}" for e in failures),
            failures[0].exit_code,
        )
    return removed


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError as exc:
        raise PvectlError(
            f"cannot signal pid {pid}: permission denied", ExitCode.NO_PERMISSION
        ) from exc


def _settle(
    state: LabState,
    node_id: int,
    action: str,
    expect: Callable[[tuple[int, ...]], bool],
    exclude_self: bool,
    started: float,
) -> RingChange:
    observers = reports.running_nodes(state, node_pid, exclude=node_id if exclude_self else None)
    return reports.settle(
        observers, node_id, action, expect, _timeouts(state), membership, _final_view, started
    )


def _final_view(node: LabNode) -> tuple[tuple[int, ...], bool] | None:
    seen = info(node)
    return (tuple(seen["members"]), bool(seen["quorate"])) if seen is not None else None


def stop_node(name: str, node_id: int, sig: signal.Signals) -> RingChange:
    """SIGKILL (crash) or a clean leave, then time the survivors' new ring."""
    state = load_running(name)
    node = state.node(node_id)
    pid = node_pid(node)
    if pid is None:
        raise CommandRefused(f"node {node_id} of lab {name!r} is not running")
    # SIGTERM: the node (continued first if paused) multicasts a leave, then exits
    started = time.monotonic()
    access(node).signal(pid, sig, 10.0)
    state = state.with_pid(node_id, None)
    lab_state.save(state)
    action = "kill" if sig == signal.SIGKILL else "stop"
    return _settle(
        state, node_id, action, lambda m: node_id not in m, exclude_self=True, started=started
    )


def start_node(name: str, node_id: int) -> RingChange:
    state = load_running(name)
    node = state.node(node_id)
    if node_pid(node) is not None:
        raise CommandRefused(f"node {node_id} of lab {name!r} is already running")
    started = time.monotonic()
    state = _start_process(state, node_id)
    _wait_control(state.node(node_id), 20.0)
    return _settle(
        state, node_id, "start", lambda m: node_id in m, exclude_self=False, started=started
    )


def pause_node(name: str, node_id: int, seconds: float) -> RingChange:
    """SIGSTOP for ``seconds``, then SIGCONT: a node frozen by swap, GC or a stuck disk."""
    if not 0 < seconds <= 3600:
        raise UsageError(f"pause SECONDS must be in (0, 3600], got {seconds:g}")
    state = load_running(name)
    pid = node_pid(state.node(node_id))
    if pid is None:
        raise CommandRefused(f"node {node_id} of lab {name!r} is not running")
    others = reports.running_nodes(state, node_pid, exclude=node_id)
    dropped_after: float | None = None
    node = state.node(node_id)
    access(node).signal(pid, signal.SIGSTOP, 0)
    started = time.monotonic()
    try:
        while (elapsed := time.monotonic() - started) < seconds:
            if dropped_after is None and others:
                seen = [membership(n) for n in others]
                if all(v is not None and node_id not in v for v in seen):
                    dropped_after = elapsed
            time.sleep(min(0.1, max(0.0, seconds - elapsed)))
    finally:
        access(node).signal(pid, signal.SIGCONT, 0)
    resumed = time.monotonic()
    change = _settle(
        state, node_id, "pause", lambda m: node_id in m, exclude_self=False, started=resumed
    )
    return replace(change, dropped_after=dropped_after)


def parse_groups(groups: Sequence[str], state: LabState) -> list[list[int]]:
    known = {n.node_id for n in state.nodes}
    parsed: list[list[int]] = []
    seen: set[int] = set()
    for group in groups:
        try:
            ids = [int(part) for part in group.split(",") if part.strip()]
        except ValueError as exc:
            raise UsageError(f"partition group {group!r}: node ids separated by commas") from exc
        for node_id in ids:
            if node_id not in known:
                raise UsageError(f"lab {state.name!r} has no node {node_id}")
            if node_id in seen:
                raise UsageError(f"node {node_id} is in two partition groups")
            seen.add(node_id)
        parsed.append(ids)
    if len(parsed) < 2:
        raise UsageError("a partition needs at least two groups, e.g. 'partition 1,2 3'")
    rest = sorted(known - seen)
    if rest:
        parsed.append(rest)
    return parsed


def _all_faults(state: LabState, per_node: Callable[[LabNode], dict[str, Any]]) -> None:
    for node in reports.running_nodes(state, node_pid):
        _call(node, "faults", **per_node(node))


def partition(name: str, groups: Sequence[str]) -> reports.PartitionChange:
    """Block the traffic between groups, then time until each group has its own ring."""
    state = load_running(name)
    parsed = parse_groups(groups, state)
    side = {node_id: set(group) for group in parsed for node_id in group}
    everyone = {n.node_id for n in state.nodes}
    started = time.monotonic()
    _all_faults(state, lambda n: {"blocked": sorted(everyone - side[n.node_id])})
    running = reports.running_nodes(state, node_pid)
    return reports.settle_partition(
        parsed, running, started, _timeouts(state), membership, _final_view
    )


def heal(name: str) -> None:
    state = load_running(name)
    _all_faults(state, lambda n: {"blocked": [], "loss_pct": 0})


def loss(name: str, percent: int) -> None:
    if not 0 <= percent <= 100:
        raise UsageError("loss is a percentage from 0 to 100")
    state = load_running(name)
    _all_faults(state, lambda n: {"loss_pct": percent})


def slow_disk(name: str, node_id: int, ms: float) -> None:
    if ms < 0:
        raise UsageError("slow-disk takes a delay in milliseconds >= 0")
    state = load_running(name)
    node = state.node(node_id)
    if node_pid(node) is None:
        raise CommandRefused(f"node {node_id} of lab {name!r} is not running")
    _call(node, "slow_disk", ms=ms)


def exec_in_node(name: str, node_id: int, argv: Sequence[str]) -> int:
    """Run a command with the node's state directory as cwd and its socket in the env."""
    if not argv:
        raise UsageError("lab exec needs a command after '--'")
    state = load_running(name)
    node = state.node(node_id)
    extra = {
        "PVECTL_LAB": name,
        "PVECTL_NODE": str(node_id),
        "PVECTL_NODE_SOCKET": f"{node.dir}/control.sock",
    }
    if node.host:
        from pvectl.lab.node_access import SshNode

        return SshNode(node).exec(list(argv), extra)
    env = dict(os.environ, **extra)
    try:
        return subprocess.call(list(argv), cwd=node.dir, env=env)
    except FileNotFoundError as exc:
        raise PvectlError(f"{argv[0]}: command not found", ExitCode.UNAVAILABLE) from exc


def qnetd_action(name: str, action: str) -> str:
    """Stop or start the lab's qnetd (rehearse "qnetd down")."""
    return lab_qnetd.lab_action(load_running(name), action)


def _set_qdevice_enabled(node: LabNode, enabled: bool) -> None:
    """A node's qdevice client starts with the node unless its marker file says not."""
    from pvectl.node.runtime import QDEVICE_DISABLED

    marker = Path(node.dir) / QDEVICE_DISABLED
    if enabled:
        marker.unlink(missing_ok=True)
    else:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()


def qdevice_action(name: str, action: str, node_id: int | None = None) -> str:
    """Start or stop the qdevice clients (all nodes, or one): as ``systemctl start|stop
    corosync-qdevice``, it also decides whether a node started later runs one."""
    if action not in ("start", "stop"):
        raise UsageError(f"lab qdevice takes start or stop, not {action!r}")
    state = load_running(name)
    if not state.options.get("qdevice"):
        raise CommandRefused(f"lab {name!r} has no QDevice (lab up N --qdevice)")
    targets = [state.node(node_id)] if node_id is not None else list(state.nodes)
    changed = []
    for node in targets:
        _set_qdevice_enabled(node, action == "start")
        if node_pid(node) is not None:
            _call(node, "qdevice_daemon", action=action)
            changed.append(node.node_id)
    done = "started" if action == "start" else "stopped"
    where = ",".join(map(str, changed)) or "none running"
    return f"qdevice client {done} on node(s) {where}"


def view(name: str) -> LabView:
    state = load_running(name)
    rows = []
    for node in state.nodes:
        reach = access(node)
        unreachable: str | None = None
        try:
            pid, paused, seen = reach.probe()
            files = reach.files()
        except PvectlError as exc:  # not "stopped": nobody could look
            pid, paused, seen, files = None, False, None, ()
            unreachable = str(exc)
        rows.append(
            NodeView(
                node_id=node.node_id,
                name=node.name,
                address=node.address,
                namespace="",
                pid=pid,
                paused=paused,
                running=pid is not None,
                ring_id=seen["ring_id"] if seen else None,
                quorate=bool(seen["quorate"]) if seen else None,
                members=tuple(seen["members"]) if seen else (),
                state_dir=node.dir,
                files=files,
                host=node.host,
                unreachable=unreachable,
            )
        )
    return lab_view(state, rows, lab_qnetd.lab_description(state))


def first_running(state: LabState) -> LabNode:
    return reports.first_running(state, node_pid)


def control_call(
    name: str, node_id: int | None, cmd: str, timeout: float = 30.0, **args: Any
) -> dict[str, Any]:
    """A control request to one node (default: the first running one)."""
    state = load_running(name)
    node = state.node(node_id) if node_id is not None else first_running(state)
    if node_pid(node) is None:
        raise TargetUnavailable(f"node {node.node_id} of lab {name!r} is not running")
    return _call(node, cmd, timeout=timeout, **args)


def mount_node(
    name: str, node_id: int, mountpoint: Path, level: str = "local", foreground: bool = False
) -> fuse_mounts.MountRecord | int:
    """Mount a node's config store with FUSE: the record of the background process, or
    (``foreground``) the exit status once the mount is gone."""
    if level not in ("local", "all"):
        raise UsageError(f"--level must be local or all, not {level!r}")
    fuse_mounts.preflight()
    state = load_running(name)
    node = state.node(node_id)
    if node_pid(node) is None or info(node) is None:
        raise TargetUnavailable(
            f"node {node_id} of lab {name!r} is not running "
            f"('pvectl lab start {node_id} --name {name}')"
        )
    if node.host:
        raise UsageError("lab mount serves nodes on this machine; mount on the node's host")
    path = fuse_mounts.check_mountpoint(mountpoint)
    args = (
        name,
        node_id,
        Path(node.dir),
        Path(node.dir) / "control.sock",
        Path(state.state_dir) / "corosync.conf",
        path,
        level,
    )
    if foreground:
        return fuse_mounts.mount_foreground(*args)
    return fuse_mounts.mount_background(*args)
