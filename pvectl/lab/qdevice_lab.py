"""``pvectl lab up N --engine corosync --qdevice``: a qnetd for a real corosync lab.

The qnetd is ``pvectl qdevice serve`` in its own namespace on the lab's bridge (address
.100 of the lab's /24), with a CA made by pvectl; every node gets the real
corosync-qdevice, its NSS database filled with corosync's own certutil steps (CA import,
request, signing by pvectl, PKCS#12 to the other nodes), exactly what a user does on a
real cluster (README "QDevice"). ``lab down`` removes it with the lab's namespaces.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pvectl
from pvectl.corosync_conf import Section
from pvectl.errors import ExitCode, PvectlError, UsageError
from pvectl.lab import netns
from pvectl.lab import state as lab_state
from pvectl.lab.state import LabNode, LabState
from pvectl.node.qnetd_certs import init_cert_dir, sign_request
from pvectl.quorum.qdevice import QdeviceConfigError, qdevice_votes
from pvectl.quorum.qnetd_wire import Algorithm

ALGORITHMS = {"ffsplit": Algorithm.FFSPLIT, "lms": Algorithm.LMS}
QNETD_HOST_INDEX = 99  # .100 of the /24, as in the reference lab
Report = Callable[[str], None]


def check(nodes: int, votes: tuple[int, ...], algorithm: str, two_node: bool) -> None:
    if algorithm not in ALGORITHMS:
        raise UsageError(f"--qdevice-algorithm must be ffsplit or lms, got {algorithm!r}")
    if two_node:
        raise UsageError("--qdevice and --two-node do not go together (votequorum refuses it)")
    configured = 1 if algorithm == "ffsplit" else None
    try:
        qdevice_votes(votes or (1,) * nodes, configured, False, ALGORITHMS[algorithm])
    except QdeviceConfigError as exc:
        raise UsageError(f"--qdevice: {exc}") from exc


def qnetd_address(subnet: str) -> str:
    return str(list(ipaddress.IPv4Network(subnet).hosts())[QNETD_HOST_INDEX])


def device_section(subnet: str, algorithm: str) -> Section:
    """quorum.device as pvecm qdevice setup writes it (votes only for ffsplit)."""
    values = {"model": "net"}
    if algorithm == "ffsplit":
        values["votes"] = "1"
    net = Section("net", {"algorithm": algorithm, "host": qnetd_address(subnet), "tls": "on"})
    return Section("device", values, [net])


def _qnetd_dir(state: LabState) -> Path:
    return Path(state.state_dir) / "qnetd"


def control_socket(state: LabState) -> Path:
    return _qnetd_dir(state) / "qnetd.sock"


def _node_prefix(node: LabNode) -> tuple[str, ...]:
    return netns.node_context(node.namespace, node.dir, node.name)


def _certutil(node: LabNode, *args: str) -> None:
    proc = netns.run(
        [*_node_prefix(node), "corosync-qdevice-net-certutil", *args], check=False, timeout=60
    )
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise PvectlError(
            f"node {node.node_id}: corosync-qdevice-net-certutil {' '.join(args)}: "
            + (detail[-1] if detail else f"exit {proc.returncode}")
        )


def _spawn(argv: list[str], log: Path, env: dict[str, str] | None = None) -> int:
    handle = open(log, "ab")  # noqa: SIM115 - handed to the child
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            env=env,
        )
    finally:
        handle.close()
    return proc.pid


def start_qdevice(node: LabNode) -> int:
    """corosync-qdevice -f inside the node (its /run holds the daemon's socket)."""
    (Path(node.dir) / "run" / "corosync-qdevice").mkdir(parents=True, exist_ok=True)
    return _spawn(
        [*_node_prefix(node), "corosync-qdevice", "-f"],
        Path(node.dir) / "log" / "qdevice.stderr",
    )


def qdevice_running(node: LabNode) -> bool:
    return any(
        netns.process_in_namespace(pid, node.namespace, "corosync-qdevi")
        for pid in netns.namespace_pids(node.namespace)
    )


def attach(state: LabState, algorithm: str, report: Report) -> LabState:
    """Start the qnetd and every node's qdevice; the nodes' corosync.conf already has the
    device section. Returns the state with the qdevice facts recorded."""
    if shutil.which("corosync-qdevice") is None:
        raise PvectlError(
            "corosync-qdevice not found: install the Debian package 'corosync-qdevice'",
            ExitCode.UNAVAILABLE,
        )
    qdir = _qnetd_dir(state)
    qdir.mkdir(parents=True, exist_ok=True)
    address = qnetd_address(state.subnet)
    namespace = f"{netns.lab_prefix(state.name)}qnetd"
    netns.create_node_namespace(namespace, state.hub_namespace, "vq", f"{address}/24")
    certs = init_cert_dir(qdir / "certs", force=True)
    first, *others = state.nodes
    for node in state.nodes:
        shutil.copyfile(certs.ca_cert, Path(node.dir) / "etc" / "qnetd-cacert.crt")
        _certutil(node, "-i", "-c", "/etc/corosync/qnetd-cacert.crt")
    _certutil(first, "-r", "-n", state.cluster_name)
    nssdb = Path(first.dir) / "etc" / "qdevice" / "net" / "nssdb"
    crt = Path(first.dir) / "etc" / f"cluster-{state.cluster_name}.crt"
    sign_request(certs.path, nssdb / "qdevice-net-node.crq", state.cluster_name, crt)
    _certutil(first, "-M", "-c", f"/etc/corosync/{crt.name}")
    for node in others:
        shutil.copyfile(nssdb / "qdevice-net-node.p12", Path(node.dir) / "etc" / "node.p12")
        _certutil(node, "-m", "-c", "/etc/corosync/node.p12")
    sock = control_socket(state)
    env = dict(os.environ, PYTHONPATH=str(Path(pvectl.__file__).resolve().parent.parent))
    qnetd_pid = _spawn(
        [
            *netns.net_only(namespace),
            sys.executable,
            "-m",
            "pvectl",
            "qdevice",
            "serve",
            "--cert-dir",
            str(certs.path),
            "--control-socket",
            str(sock),
        ],
        qdir / "qnetd.stderr",
        env,
    )
    deadline = time.monotonic() + 20
    while not sock.exists():
        if time.monotonic() > deadline or not netns.alive(qnetd_pid):
            log = (qdir / "qnetd.stderr").read_text(errors="replace").strip().splitlines()
            raise PvectlError(
                "pvectl qdevice serve did not start in the lab: " + (log[-1] if log else "?")
            )
        time.sleep(0.1)
    for node in state.nodes:
        start_qdevice(node)
    report(
        f"lab {state.name!r}: qnetd (pvectl qdevice serve, {algorithm}, TLS) at {address}:5403; "
        f"corosync-qdevice on {len(state.nodes)} node(s); "
        f"'pvectl qdevice clients --control-socket {sock}' lists them"
    )
    qdevice = {
        "algorithm": algorithm,
        "address": address,
        "namespace": namespace,
        "control_socket": str(sock),
        "qnetd_pid": qnetd_pid,
    }
    state = replace(state, options={**state.options, "qdevice": qdevice})
    lab_state.save(state)
    return state
