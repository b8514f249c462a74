"""``pvectl watch`` and ``pvectl exporter`` against a real 3-node embedded lab: a real
Prometheus server scrapes the exporter and is asked over its HTTP API, promtool checks a
scrape, the dashboard runs in a real tmux pane, and ``--once`` JSON meets its schema."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.helpers.json_schema import validated
from tests.helpers.prometheus_harness import (
    Prometheus,
    TmuxPane,
    exporter_command,
    first_scrape,
    prometheus_skip_reason,
    wait_for,
)
from tests.helpers.sshd_harness import free_port

pytestmark = [pytest.mark.slow]

LAB = f"tmon{os.getpid() % 100000}"
SCHEMA = Path(__file__).parents[1] / "docs" / "schema" / "watch.schema.json"


@dataclass
class Lab:
    name: str
    env: dict[str, str]
    root: Path

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pvectl", *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=120,
            check=False,
        )

    def lab(self, *args: str) -> None:
        run = self.cli("lab", *args, "--name", self.name)
        assert run.returncode == 0, run.stderr


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("monitor")
    runtime = root / "xdg"
    runtime.mkdir()
    env = dict(os.environ, XDG_RUNTIME_DIR=str(runtime), NO_COLOR="1")
    up = run_cli("lab", "up", "3", "--name", LAB, "--token", "400", env=env)
    assert up.code == 0, up.stderr
    try:
        yield Lab(LAB, env, root)
    finally:
        run_cli("lab", "down", "--name", LAB, env=env)


def test_watch_once_json_meets_its_schema_and_exits_like_status(lab: Lab) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    run = lab.cli(
        "watch",
        "--once",
        "--target",
        "lab",
        "--name",
        lab.name,
        "--output-format",
        "json",
    )
    assert run.returncode == 0, run.stderr
    document = validated(run.stdout, "watch")
    jsonschema.validate(document, json.loads(SCHEMA.read_text()))
    assert document["schema_version"] == 1
    assert [n["node"] for n in document["nodes"]] == ["node1", "node2", "node3"]
    assert all(n["quorate"] and n["members"] == [1, 2, 3] for n in document["nodes"])
    assert document["failures_survivable"] == 1
    assert all(n["config_writes_total"] is not None for n in document["nodes"])


def test_watch_dashboard_in_tmux_shows_rows_then_a_kill(lab: Lab) -> None:
    if subprocess.run(["which", "tmux"], capture_output=True).returncode != 0:
        pytest.skip("needs tmux")
    env = " ".join(
        f"{k}={shlex.quote(v)}"
        for k, v in lab.env.items()
        if k in ("XDG_RUNTIME_DIR", "NO_COLOR", "PATH", "HOME")
    )
    command = (
        f"env {env} TERM=xterm {shlex.quote(sys.executable)} -m pvectl watch "
        f"--target lab --name {lab.name} --interval 0.5"
    )
    pane = TmuxPane("watch", command, lab.root / "tmux.sock")
    pane.start()
    try:
        screen = pane.wait_screen(lambda s: s.count(" ok") >= 3, 30, "rows")
        assert "failures survivable: 1" in screen
        lines = screen.splitlines()
        assert len(lines) <= 24 and all(len(line) <= 80 for line in lines)
        lab.lab("kill", "3")
        screen = pane.wait_screen(
            lambda s: "left 3" in s and "not answering" in s, 30, "the kill in the event log"
        )
        assert "failures survivable: 0" in screen
        assert any(line.startswith("node3") and "STALE" in line for line in screen.splitlines())
        pane.keys("q")
        wait_for(lambda: not pane.alive(), 10, "q to quit the dashboard")
    finally:
        pane.stop()
        lab.cli("lab", "start", "3", "--name", lab.name)


def test_exporter_scraped_by_prometheus_sees_partition_and_kills(lab: Lab) -> None:
    reason = prometheus_skip_reason()
    if reason:
        pytest.skip(reason)
    port = free_port()
    exporter = subprocess.Popen(
        exporter_command(
            sys.executable, "--target", "lab", "--name", lab.name,
            "--listen", f"127.0.0.1:{port}", "--interval", "0.5",
        ),
        env=lab.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    prometheus = Prometheus(lab.root / "prometheus", f"127.0.0.1:{port}")
    try:
        first_scrape(port, 30)  # promtool accepts the exporter's text
        prometheus.start()
        wait_for(
            lambda: prometheus.query("pvectl_quorate") == {f"node{n}": 1.0 for n in (1, 2, 3)},
            60,
            "pvectl_quorate 1 on every node",
        )
        assert prometheus.query("pvectl_failures_survivable") != {}
        before = prometheus.query("pvectl_membership_changes_total")["node1"]
        lab.lab("partition", "1", "2,3")
        wait_for(
            lambda: prometheus.query("pvectl_membership_changes_total").get("node1", 0) > before,
            30,
            "the partition as a membership change",
        )
        wait_for(lambda: prometheus.query("pvectl_members").get("node1") == 1.0, 30, "node1 alone")
        assert prometheus.query("pvectl_quorate")["node1"] == 0.0
        lab.lab("heal")
        wait_for(lambda: prometheus.query("pvectl_members").get("node1") == 3.0, 30, "healed")
        lab.lab("kill", "2")
        lab.lab("kill", "3")
        wait_for(lambda: prometheus.query("pvectl_quorate") == {"node1": 0.0}, 30, "survivor at 0")
        assert prometheus.query("pvectl_up") == {"node1": 1.0, "node2": 0.0, "node3": 0.0}
        assert list(prometheus.query("pvectl_failures_survivable").values()) == [0.0]
        assert exporter.poll() is None, "the exporter must survive dead nodes"
    finally:
        prometheus.stop()
        exporter.terminate()
        exporter.wait(10)
    assert exporter.returncode == 0, exporter.stderr.read() if exporter.stderr else ""
