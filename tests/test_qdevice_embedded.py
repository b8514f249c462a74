"""Embedded pvectl nodes get their qdevice vote from a qnetd (issue 8 parts 3 and 4):
``pvectl lab up 2 --qdevice`` with pvectl's qnetd and with the real corosync-qnetd (TLS
on both, client certificates verified), real node processes on loopback.

Scenarios as a real corosync + corosync-qdevice lab runs them (figures in
tests/test_qdevice_interop.py): both up;
a 1:1 split where both still reach qnetd (ffsplit: the lowest node id only); node2
crashed; qnetd down with both nodes up. The expected figures below are what
corosync-quorumtool shows there; ``pvectl status`` must show the same, parsed the same way.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pvectl.errors import ConfigError
from pvectl.lab import state as lab_state
from pvectl.node import config as node_config
from pvectl.node import control_socket
from pvectl.node.config import NodeConfig
from tests.helpers.quorum_view import REPO, QuorumView, parse_quorumtool

Figures = tuple[object, ...]
QUORATE = ("Quorate", "Qdevice")
CASTING = "0 1 Qdevice"
NOT_CASTING = "0 0 Qdevice (votes 1)"
# scenario -> node -> (quorate, expected, total, quorum, flags, Qdevice column, qdevice row)
REAL_COROSYNC: dict[str, dict[int, Figures]] = {
    "both-up": {
        n: (True, 3, 3, 2, QUORATE, ((1, "A,V,NMW"), (2, "A,V,NMW")), CASTING) for n in (1, 2)
    },
    "split-1-1": {
        1: (True, 3, 2, 2, QUORATE, ((1, "A,V,NMW"),), CASTING),
        2: (False, 3, 1, 2, ("Qdevice",), ((2, "A,NV,NMW"),), NOT_CASTING),
    },
    "node2-down": {1: (True, 3, 2, 2, QUORATE, ((1, "A,V,NMW"),), CASTING)},
    "qnetd-down": {
        n: (True, 3, 2, 2, QUORATE, ((1, "A,NV,NMW"), (2, "A,NV,NMW")), NOT_CASTING) for n in (1, 2)
    },
}
SUBNETS = {"pvectl": "127.77.232.0/24", "corosync": "127.77.233.0/24"}


def _pvectl(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    run = subprocess.run(
        [sys.executable, "-m", "pvectl", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        check=False,
    )
    if check and run.returncode not in (0, 2):
        raise AssertionError(f"pvectl {' '.join(args)}: rc {run.returncode}\n{run.stderr}")
    return run


def _view(lab: str, node: int) -> QuorumView:
    """``pvectl status`` (pvecm layout: hex node ids) read as corosync-quorumtool -s."""
    text = _pvectl("status", "--target", "lab", "--name", lab, "--node", str(node)).stdout
    decimal = re.sub(r"^0x([0-9a-f]{8})", lambda m: f"{int(m.group(1), 16):>10}", text, flags=re.M)
    return parse_quorumtool(decimal)


def _polled(lab: str, node: int) -> QuorumView:
    """The node's status straight from its control socket (no CLI start-up per poll)."""
    sock = lab_state.lab_dir(lab) / f"node{node}" / "control.sock"
    status = control_socket.call(sock, "status", timeout=5.0)["status"]
    device = status["qdevice"]
    row = None
    if device:
        row = f"0 {device['votes'] if device['casting'] else 0} Qdevice"
        row += "" if device["casting"] else f" (votes {device['votes']})"
    return QuorumView(
        quorate=status["quorate"],
        expected=status["expected_votes"],
        total=status["total_votes"],
        quorum=status["quorum"],
        flags=tuple(status["flags"]),
        qdevice_flags={m["node_id"]: m["qdevice"] for m in status["members"] if m["qdevice"]},
        qdevice_row=row,
    )


def _wait(lab: str, node: int, ok: Callable[[QuorumView], bool], timeout: float = 40) -> None:
    deadline = time.monotonic() + timeout
    while True:
        view = _polled(lab, node)
        if ok(view):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"node {node} of {lab}: condition not reached: {view}")
        time.sleep(0.2)


def _scenarios(lab: str, qnetd: str) -> tuple[dict[str, dict[int, QuorumView]], str]:
    started = time.monotonic()

    def lap(what: str) -> None:
        print(f"{lab}: {what} after {time.monotonic() - started:.1f} s")

    seen: dict[str, dict[int, QuorumView]] = {}
    _pvectl("lab", "down", "--name", lab)
    _pvectl(
        "lab", "up", "2", "--qdevice", "--qnetd", qnetd, "--name", lab,
        "--subnet", SUBNETS[qnetd], "--token", "1000",
    )  # fmt: skip
    try:
        for n in (1, 2):
            _wait(lab, n, lambda v: v.total == 3)
        lap("both-up")
        seen["both-up"] = {n: _view(lab, n) for n in (1, 2)}
        text = _pvectl("status", "--target", "lab", "--name", lab).stdout

        _pvectl("lab", "partition", "1", "2", "--name", lab)
        _wait(lab, 1, lambda v: v.quorate and v.total == 2 and 2 not in v.qdevice_flags)
        _wait(lab, 2, lambda v: not v.quorate and v.qdevice_flags == {2: "A,NV,NMW"})
        time.sleep(1.5)  # qnetd must not hand node2 the vote later
        lap("split-1-1")
        seen["split-1-1"] = {n: _view(lab, n) for n in (1, 2)}
        _pvectl("lab", "heal", "--name", lab)
        for n in (1, 2):
            _wait(lab, n, lambda v: v.total == 3 and len(v.qdevice_flags) == 2)

        _pvectl("lab", "kill", "2", "--name", lab)
        _wait(lab, 1, lambda v: v.quorate and v.total == 2 and 2 not in v.qdevice_flags)
        lap("node2-down")
        seen["node2-down"] = {1: _view(lab, 1)}
        _pvectl("lab", "start", "2", "--name", lab)
        for n in (1, 2):
            _wait(lab, n, lambda v: v.total == 3 and len(v.qdevice_flags) == 2)

        _pvectl("lab", "qnetd", "stop", "--name", lab)
        for n in (1, 2):
            _wait(lab, n, lambda v: v.total == 2 and v.qdevice_flags.get(1) == "A,NV,NMW")
        lap("qnetd-down")
        seen["qnetd-down"] = {n: _view(lab, n) for n in (1, 2)}
        listing = _pvectl("lab", "ls", "--name", lab).stdout
        assert "stopped" in listing
        _pvectl("lab", "qnetd", "start", "--name", lab)
        for n in (1, 2):  # the clients reconnect and get the vote back
            _wait(lab, n, lambda v: v.total == 3, timeout=30)
        lap("qnetd back")
        if qnetd == "pvectl":
            _wrong_ca(lab)
        return seen, text
    finally:
        _pvectl("lab", "down", "--name", lab, check=False)


def _wrong_ca(lab: str) -> None:
    """Nodes trusting another CA refuse qnetd's certificate: no vote, a clear reason."""
    from pvectl.node.qdevice.certs import init_cert_dir

    other = init_cert_dir(lab_state.lab_dir(lab) / "other-ca")
    shutil.copyfile(other.ca_cert, lab_state.lab_dir(lab) / "qdevice" / "qnetd-cacert.crt")
    _pvectl("lab", "qnetd", "stop", "--name", lab)
    _pvectl("lab", "qnetd", "start", "--name", lab)
    time.sleep(6)  # past the clients' reconnect delay (at most 4.5 s)
    for n in (1, 2):
        assert _polled(lab, n).qdevice_flags.get(n) == "A,NV,NMW"
        sock = lab_state.lab_dir(lab) / f"node{n}" / "control.sock"
        client = control_socket.call(sock, "qdevice", timeout=5.0)
        assert client["casting_vote"] is False and client["connects"] >= 3
        assert "CERTIFICATE_VERIFY_FAILED" in client["last_error"], client


def _check(seen: dict[str, dict[int, QuorumView]], qnetd: str) -> None:
    print(f"\n{'scenario':<12}{'node':<6}{'pvectl status, qnetd ' + qnetd:<72}real corosync")
    for scenario, views in REAL_COROSYNC.items():
        for node, expected in views.items():
            print(f"{scenario:<12}{node:<6}{seen[scenario][node].figures()!s:<72}{expected}")
    for scenario, views in REAL_COROSYNC.items():
        for node, expected in views.items():
            assert seen[scenario][node].figures() == expected, (scenario, node)


@pytest.mark.slow
def test_embedded_lab_with_pvectl_qnetd() -> None:
    seen, text = _scenarios("tqdepv", "pvectl")
    _check(seen, "pvectl")
    # the membership table byte for byte as corosync-quorumtool lays it out
    assert "    Nodeid      Votes    Qdevice Name\n" in text
    assert re.search(r"(?m)^0x00000001          1    A,V,NMW 127\.77\.\d+\.1 \(local\)$", text)
    assert "0x00000000          1            Qdevice\n" in text
    assert "Flags:            Quorate Qdevice \n" in text


@pytest.mark.slow
def test_embedded_lab_qdevice_status_json_and_bad_options() -> None:
    lab = "tqdejs"
    _pvectl("lab", "down", "--name", lab)
    _pvectl(
        "lab", "up", "2", "--qdevice", "--no-qdevice-tls", "--qdevice-algorithm", "lms",
        "--name", lab, "--subnet", "127.77.234.0/24", "--token", "1000",
    )  # fmt: skip
    try:
        _wait(lab, 1, lambda v: v.total == 3)
        raw = _pvectl("status", "--target", "lab", "--name", lab, "--output-format", "json")
        status = json.loads(raw.stdout)
        assert status["qdevice"] == {"votes": 1, "name": "Qdevice", "casting": True}
        assert [m["qdevice"] for m in status["members"]] == ["A,V,NMW", "A,V,NMW"]
        listing = _pvectl("lab", "ls", "--name", lab).stdout
        assert "qnetd (pvectl qdevice serve, lms, TLS off) 127.77.234.100:" in listing
    finally:
        _pvectl("lab", "down", "--name", lab, check=False)
    # corosync's own refusal at start (exit 78, its reason), and a usage error (64)
    for extra, code, word in (
        ("--two-node", 78, "two_node and quorum device cannot be configured"),
        ("--qnetd=nope", 64, "--qnetd"),
    ):
        bad = _pvectl(
            "lab", "up", "2", "--qdevice", extra, "--name", lab, "--subnet", "127.77.234.0/24",
            check=False,
        )  # fmt: skip
        assert bad.returncode == code and word in bad.stderr, bad.stderr


@pytest.mark.slow
@pytest.mark.root
@pytest.mark.corosync
@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("corosync-qnetd") is None,
    reason="needs root and the Debian package corosync-qnetd",
)
def test_embedded_lab_with_real_corosync_qnetd() -> None:
    seen, _ = _scenarios("tqdeco", "corosync")
    _check(seen, "corosync-qnetd")


# --- fast checks: the config the node reads, and what the node imports --------------------

_CONF = """totem {{
  cluster_name: c1
  version: 2
}}
nodelist {{
  node {{
    nodeid: 1
    name: n1
    ring0_addr: 127.0.0.1
  }}
  node {{
    nodeid: 2
    name: n2
    ring0_addr: 127.0.0.2
  }}
}}
quorum {{
  provider: corosync_votequorum
  device {{
    model: net
    votes: 1
    timeout: 4000
    net {{
{net}
    }}
  }}
}}
"""


def _load(tmp_path: Path, net: str) -> NodeConfig:
    path = tmp_path / "corosync.conf"
    path.write_text(_CONF.format(net=net))
    return node_config.load(path, 1)


def test_node_config_reads_quorum_device_net(tmp_path: Path) -> None:
    conf = _load(tmp_path, "      host: 127.0.0.9\n      port: 5999\n      tls: off")
    device = conf.qdevice
    assert device is not None
    assert (device.host, device.port, device.tls, device.algorithm) == (
        "127.0.0.9",
        5999,
        "off",
        "ffsplit",
    )
    assert (device.timeout_ms, device.heartbeat_interval_ms, device.cast_vote_interval_ms) == (
        4000,
        3200,
        2000,
    )
    assert conf.quorum.configured_expected_votes == 3
    for net, word in (
        ("      port: 5403", "host"),
        ("      host: h\n      tls: maybe", "tls"),
        ("      host: h\n      algorithm: test", "algorithm"),
        ("      host: h\n      port: x", "port"),
    ):
        with pytest.raises(ConfigError, match=word):
            _load(tmp_path, net)


def test_node_code_path_imports_no_third_party_package() -> None:
    """Nodes may run on hosts with only python3: the qdevice client uses stdlib ssl."""
    code = (
        "import sys, pvectl.node.__main__, pvectl.node.runtime, pvectl.node.qdevice.client_task\n"
        "bad = sorted({m.split('.')[0] for m in sys.modules} & "
        "{'cryptography', 'typer', 'rich', 'yaml', 'psutil', 'paramiko'})\n"
        "print(','.join(bad))"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert run.stdout.strip() == ""
