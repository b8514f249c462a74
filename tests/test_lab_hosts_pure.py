"""The parts of ``lab up --host`` that need no SSH: host plans, the node zip (standard library
only, runnable by a bare python3), the conf it ships and the ctl helper's guards."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pvectl import corosync_conf
from pvectl.errors import UsageError
from pvectl.lab import embedded_engine, host_setup, node_access
from pvectl.lab.options import EmbeddedUp, UpOptions
from pvectl.lab.state import LabNode, LabState
from pvectl.node import config as node_config
from pvectl.node import host_agent


def test_plan_one_host_per_node_or_one_for_all() -> None:
    assert host_setup.plan_hosts(("a", "b", "c"), 3) == ["a", "b", "c"]
    assert host_setup.plan_hosts(("a", "a", "b"), 3) == ["a", "a", "b"]
    assert host_setup.plan_hosts(("solo",), 3) == ["solo"] * 3
    with pytest.raises(UsageError, match="3 nodes need 3 --host values"):
        host_setup.plan_hosts(("a", "b"), 3)
    with pytest.raises(UsageError, match="got 4"):
        host_setup.plan_hosts(("a", "b", "c", "d"), 3)


def test_check_options_rejects_bad_host_input() -> None:
    def up(nodes: int, subnet: str | None = None, **embedded: Any) -> UpOptions:
        return UpOptions(nodes=nodes, subnet=subnet, embedded=EmbeddedUp(**embedded))

    with pytest.raises(UsageError, match="expected \\[user@\\]host"):
        embedded_engine.check_options(up(nodes=2, hosts=("a", "bad host")))
    with pytest.raises(UsageError, match="--subnet is for loopback labs"):
        embedded_engine.check_options(up(nodes=1, hosts=("a",), subnet="127.77.9.0/24"))
    with pytest.raises(UsageError, match="--port"):
        embedded_engine.check_options(up(nodes=1, port=0))
    with pytest.raises(UsageError, match="--address goes with --host"):
        embedded_engine.check_options(up(nodes=1, addresses=("10.0.0.1",)))
    with pytest.raises(UsageError, match="embedded engine speaks udpu only"):
        embedded_engine.check_options(UpOptions(nodes=1, transport="knet"))
    embedded_engine.check_options(up(nodes=3, hosts=("root@a:2222", "b", "b")))


def _state(nodes: tuple[LabNode, ...]) -> LabState:
    return LabState("tlhx", "embedded", "/x", "", "", "hosts", "tlhx", "udpu", nodes)


def test_conf_for_hosts_names_ports_and_leaves_the_key_beside_it(tmp_path: Path) -> None:
    nodes = tuple(
        LabNode(i, f"node{i}", "", "10.1.1.5", f"/d/node{i}", port=5405 + i - 1, host="h")
        for i in (1, 2)
    )
    text = embedded_engine.build_conf(_state(nodes), UpOptions(nodes=2), None)
    conf = tmp_path / "corosync.conf"
    conf.write_text(text)
    loaded = node_config.load(conf, 2)
    assert [(p.address, p.port) for p in loaded.peers] == [("10.1.1.5", 5405), ("10.1.1.5", 5406)]
    assert loaded.authkey == tmp_path / "authkey"
    assert "authkey" not in text
    assert corosync_conf.parse(text).section("pvectl") is not None


def test_accelerated_option_reaches_the_node_config(tmp_path: Path) -> None:
    nodes = (LabNode(1, "node1", "", "10.1.1.5", "/d/node1", host="h"),)
    conf = tmp_path / "corosync.conf"
    for accelerated in (False, True):
        options = UpOptions(nodes=1, embedded=EmbeddedUp(accelerated=accelerated))
        text = embedded_engine.build_conf(_state(nodes), options, None)
        assert ("accelerated: yes" in text) is accelerated
        conf.write_text(text)
        assert node_config.load(conf, 1).totem.accelerated is accelerated
    conf.write_text(text.replace("accelerated: yes", "accelerated: sometimes"))
    with pytest.raises(node_config.ConfigError, match=r"totem\.accelerated must be yes or no"):
        node_config.load(conf, 1)


def test_keep_active_partition_tie_breaker_reaches_the_node_config(tmp_path: Path) -> None:
    nodes = (LabNode(1, "node1", "", "10.1.1.5", "/d/node1", host="h"),)
    text = embedded_engine.build_conf(_state(nodes), UpOptions(nodes=1), None)
    conf = tmp_path / "corosync.conf"
    for value, expected in (("", False), ("off", False), ("on", True)):
        line = f"      keep_active_partition_tie_breaker: {value}\n" if value else ""
        device = (
            "quorum {\n  provider: corosync_votequorum\n  device {\n    model: net\n"
            f"    net {{\n      host: 10.1.1.9\n{line}    }}\n  }}\n}}\n"
        )
        conf.write_text(text.replace("quorum {\n  provider: corosync_votequorum\n}\n", device))
        loaded = node_config.load(conf, 1)
        assert loaded.qdevice is not None and loaded.qdevice.keep_active_partition is expected
    conf.write_text(conf.read_text().replace("tie_breaker: on", "tie_breaker: yes"))
    with pytest.raises(node_config.ConfigError, match="must be on or off"):
        node_config.load(conf, 1)


def test_node_zip_runs_on_a_bare_python(tmp_path: Path) -> None:
    """No site-packages (-S), no user site, no PYTHONPATH (-I): what a fresh Debian has."""
    archive = tmp_path / "pvectl.zip"
    archive.write_bytes(node_access.node_zip())
    code = (
        f"import sys; sys.path.insert(0, {str(archive)!r}); "
        "import pvectl.node.runtime, pvectl.node.__main__, pvectl.node.host_agent; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('paramiko', 'yaml', 'rich', 'typer', 'cryptography')))"
    )
    bare = [sys.executable, "-I", "-S", "-c", code]
    out = subprocess.run(bare, cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    # the zip is the helper: 'info' on a directory with no node
    run = [sys.executable, "-I", "-S", str(archive), "info", "-", str(tmp_path)]
    reply = subprocess.run(run, cwd=tmp_path, capture_output=True, text=True, check=True)
    assert json.loads(reply.stdout) == {"pid": None, "stopped": False, "info": None}


def test_ctl_signals_only_the_node_it_is_told_about(tmp_path: Path) -> None:
    """A recorded pid now used by another process (here: this test) is never signalled."""
    assert host_agent.send_signal(os.getpid(), str(tmp_path), signal.SIGKILL, 0) == {
        "sent": False,
        "gone": True,
    }
    assert host_agent.node_pid(os.getpid(), str(tmp_path)) is None


def test_ctl_serve_answers_json_lines(tmp_path: Path) -> None:
    archive = tmp_path / "pvectl.zip"
    archive.write_bytes(node_access.node_zip())
    requests = [
        {"argv": ["files", str(tmp_path)]},
        {"argv": ["nonsense"]},
        {"argv": ["call", str(tmp_path), "info", "1"], "stdin": "{}"},
    ]
    out = subprocess.run(
        [sys.executable, "-I", "-S", str(archive), "serve"],
        input="".join(json.dumps(r) + "\n" for r in requests),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    replies = [json.loads(line) for line in out.stdout.splitlines()]
    assert replies[0] == {"ok": True, "result": {"files": ["pvectl.zip"]}}
    assert replies[1]["ok"] is False and "bad request" in replies[1]["error"]
    assert replies[2]["ok"] is True
    assert replies[2]["result"]["ok"] is False
    assert "no control socket" in replies[2]["result"]["error"]
