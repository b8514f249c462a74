"""``pvectl lab up N --engine corosync --qdevice``: real corosync nodes, the real
corosync-qdevice on each, and ``pvectl qdevice serve`` as their qnetd (TLS, pvectl's CA)."""

from __future__ import annotations

import json
import os
import time

import pytest

from pvectl.lab import corosync_engine
from pvectl.lab import state as lab_state
from tests.conftest import run_cli


def _status(name: str) -> dict[str, object]:
    run = run_cli("status", "--target", "lab", "--name", name, "--output-format", "json")
    assert run.code in (0, 2), run.stderr
    data = json.loads(run.stdout)
    assert isinstance(data, dict)
    return data


def _wait_status(name: str, pred: object, timeout: float = 60) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    data = _status(name)
    while time.monotonic() < deadline:
        data = _status(name)
        if pred(data):  # type: ignore[operator]
            return data
        time.sleep(0.5)
    raise AssertionError(f"not reached: {data}")


def test_qdevice_options_are_checked_before_anything_runs() -> None:
    # A combination corosync itself refuses at start: its reason, exit 78 (EX_CONFIG).
    refused = run_cli("lab", "up", "2", "--engine", "corosync", "--qdevice", "--two-node")
    assert refused.code == 78, refused.stderr
    assert "two_node and quorum device cannot be configured" in refused.stderr
    bad = [
        ("up", "2", "--engine", "corosync", "--qdevice", "--qdevice-algorithm", "x"),
        ("up", "2", "--engine", "embedded", "--qdevice", "--qnetd", "x", "--name", "qdbad"),
        ("up", "2", "--engine", "corosync", "--qdevice", "--qnetd", "x", "--name", "qdbad"),
        ("up", "2", "--engine", "corosync", "--qnetd", "corosync", "--name", "qdbad"),
        ("up", "2", "--engine", "corosync", "--no-qdevice-tls", "--name", "qdbad"),
        ("up", "2", "--engine", "corosync", "--qdevice", "--votes", "1,2", "--name", "qdbad"),
    ]
    for args in bad:
        run = run_cli("lab", *args)
        assert run.code == 64, (args, run.stderr)
        assert len(run.stderr.strip().splitlines()) == 1, run.stderr


@pytest.mark.root
@pytest.mark.corosync
@pytest.mark.slow
@pytest.mark.skipif(not corosync_engine.available(), reason="needs root and corosync")
def test_lab_with_qdevice_survives_a_node_and_cleans_up() -> None:
    name = f"qd{os.getpid() % 100000}"
    run = run_cli("lab", "up", "2", "--engine", "corosync", "--qdevice", "--name", name)
    try:
        assert run.code == 0, run.stderr
        assert "qnetd (pvectl qdevice serve, ffsplit, TLS required)" in run.stderr + run.stdout
        both = _wait_status(name, lambda d: d["total_votes"] == 3)
        assert both["quorate"] and both["expected_votes"] == 3 and both["quorum"] == 2
        assert both["qdevice"] == {"votes": 1, "name": "Qdevice", "casting": True}
        assert "Qdevice" in both["flags"]
        sock = lab_state.lab_dir(name) / "qnetd" / "qnetd.sock"
        clients = run_cli("qdevice", "clients", "--control-socket", str(sock))
        assert clients.code == 0, clients.stderr
        assert "Connected clients:\t\t2" in clients.stdout
        assert clients.stdout.count("TLS active:\t\tYes (client certificate verified)") == 2

        killed = run_cli("lab", "kill", "2", "--name", name)
        assert killed.code == 0, killed.stderr
        alone = _wait_status(name, lambda d: d["total_votes"] == 2)
        assert alone["quorate"] and alone["quorum"] == 2  # node1 + the qdevice vote

        started = run_cli("lab", "start", "2", "--name", name)
        assert started.code == 0, started.stderr
        _wait_status(name, lambda d: d["total_votes"] == 3, 90)  # node2's qdevice is back
    finally:
        down = run_cli("lab", "down", "--name", name)
    assert down.code == 0, down.stderr
    assert f"pvcl-{name}-qnetd" in down.stderr + down.stdout
    assert not any(n.startswith(f"pvcl-{name}-") for n in os.listdir("/run/netns"))
