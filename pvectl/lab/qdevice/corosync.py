"""``pvectl lab up N --engine corosync --qdevice``: a qnetd for a real corosync lab.

The qnetd runs in its own namespace on the lab's bridge (address .100 of the lab's /24,
port 5403): ``pvectl qdevice serve`` (``--qnetd pvectl``, the default) or the real
corosync-qnetd (``--qnetd corosync``) with its own NSS database made by
corosync-qnetd-certutil. Every node runs the real corosync-qdevice, its NSS database
filled with corosync's own certutil steps (CA import, request, signing by the qnetd's CA,
PKCS#12 to the other nodes), exactly what ``pvecm qdevice setup`` does on a real cluster.
``lab down`` removes the qnetd with the lab's namespaces.
"""

from __future__ import annotations

import shutil
import signal
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from pvectl.errors import PvectlError, UsageError
from pvectl.lab import netns
from pvectl.lab import state as lab_state
from pvectl.lab.qdevice import qnetd as lab_qnetd
from pvectl.lab.state import LabNode, LabState
from pvectl.quorum.qdevice.algorithms import QdeviceConfigError, qdevice_votes
from pvectl.quorum.qdevice.wire import Algorithm

ALGORITHMS = {"ffsplit": Algorithm.FFSPLIT, "lms": Algorithm.LMS}
Report = Callable[[str], None]
QDEVICE_COMM = "corosync-qdevice"[:15]  # /proc/PID/comm keeps 15 characters


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


def require_tools(kind: str) -> None:
    """corosync-qdevice on the nodes, and the real qnetd's programs if it is wanted."""
    netns.require_program("corosync-qdevice", "corosync-qdevice")
    lab_qnetd.require_tools(kind)


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


def enroll(state: LabState, kind: str, certs: Path) -> None:
    """corosync-qdevice-net-certutil's steps on the nodes (README of the reference lab,
    "QDevice"): every node imports the qnetd's CA; node 1 asks for the cluster's
    certificate, the qnetd's CA signs it, node 1 imports it and exports a PKCS#12 that
    the other nodes import."""
    first, *others = state.nodes
    for node in state.nodes:
        shutil.copyfile(
            lab_qnetd.ca_certificate(kind, certs), Path(node.dir) / "etc" / "qnetd-cacert.crt"
        )
        _certutil(node, "-i", "-c", "/etc/corosync/qnetd-cacert.crt")
    _certutil(first, "-r", "-n", state.cluster_name)
    nssdb = Path(first.dir) / "etc" / "qdevice" / "net" / "nssdb"
    crt = Path(first.dir) / "etc" / f"cluster-{state.cluster_name}.crt"
    lab_qnetd.sign(kind, certs, nssdb / "qdevice-net-node.crq", state.cluster_name, crt)
    _certutil(first, "-M", "-c", f"/etc/corosync/{crt.name}")
    for node in others:
        shutil.copyfile(nssdb / "qdevice-net-node.p12", Path(node.dir) / "etc" / "node.p12")
        _certutil(node, "-m", "-c", "/etc/corosync/node.p12")


def start_qdevice(node: LabNode) -> int:
    """corosync-qdevice -f inside the node (its /run holds the daemon's socket)."""
    (Path(node.dir) / "run" / "corosync-qdevice").mkdir(parents=True, exist_ok=True)
    return netns.spawn_daemon(
        [*_node_prefix(node), "corosync-qdevice", "-f"],
        Path(node.dir) / "log" / "qdevice.stderr",
    ).pid


def _qdevice_pids(node: LabNode) -> list[int]:
    return [
        pid
        for pid in netns.namespace_pids(node.namespace)
        if netns.process_in_namespace(pid, node.namespace, QDEVICE_COMM)
    ]


def qdevice_running(node: LabNode) -> bool:
    return bool(_qdevice_pids(node))


def stop_qdevice(node: LabNode, sig: signal.Signals) -> None:
    """The node's corosync-qdevice goes down with its corosync (a crash takes both; a
    clean stop of corosync.service stops corosync-qdevice.service first)."""
    pids = _qdevice_pids(node)
    for pid in pids:
        netns.signal_pid(pid, sig)
    for pid in netns.wait_gone(pids, 5.0):
        netns.signal_pid(pid, signal.SIGKILL)


def qnetd_namespace(state: LabState) -> str:
    return f"{netns.lab_prefix(state.name)}qnetd"


def attach(
    state: LabState,
    algorithm: str,
    kind: str,
    tls: bool,
    report: Report,
    start_on: tuple[int, ...] | None = None,
) -> LabState:
    """Start the qnetd and the qdevice of every node (or of the nodes ``start_on``); the
    nodes' corosync.conf already has the device section. Returns the state with the
    qnetd's facts recorded."""
    require_tools(kind)
    host = lab_qnetd.address(state.subnet)
    namespace = qnetd_namespace(state)
    netns.create_node_namespace(namespace, state.hub_namespace, "vq", f"{host}/24")
    lab_qnetd.qnetd_dir(state.state_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
    certs = lab_qnetd.init_ca(state.state_dir, kind) if tls else None
    if certs is not None:
        enroll(state, kind, certs)
    info: dict[str, Any] = {
        "kind": kind,
        "algorithm": algorithm,
        "address": host,
        "port": lab_qnetd.DEFAULT_PORT,
        "tls": tls,
        "dir": str(lab_qnetd.qnetd_dir(state.state_dir)),
        "certs": str(certs) if certs else None,
        "pid": None,
        "namespace": namespace,
    }
    state = replace(state, options={**state.options, "qdevice": info})
    lab_state.save(state)  # first: a crash from here on still finds the qnetd's facts
    info = lab_qnetd.start(info)
    state = replace(state, options={**state.options, "qdevice": info})
    lab_state.save(state)
    clients = [n for n in state.nodes if start_on is None or n.node_id in start_on]
    for node in clients:
        start_qdevice(node)
    report(
        f"lab {state.name!r}: {lab_qnetd.describe(info)}; "
        f"corosync-qdevice on {len(clients)} node(s); "
        f"'{lab_qnetd.listing_hint(info)}' lists them"
    )
    return state
