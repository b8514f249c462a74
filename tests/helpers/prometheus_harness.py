"""A real Prometheus server (Debian's /usr/bin/prometheus) on loopback for tests, scraping
one target every second, queried over its HTTP API; and tmux panes to watch a dashboard."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.helpers.sshd_harness import free_port


def prometheus_skip_reason() -> str | None:
    if shutil.which("prometheus") is None or shutil.which("promtool") is None:
        return "needs the Debian package prometheus (prometheus, promtool)"
    return None


def wait_for(check: Callable[[], Any], timeout: float, what: str, step: float = 0.3) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what} (last: {last!r})")


def get(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as reply:
        return str(reply.read().decode())


@dataclass
class Prometheus:
    root: Path
    target: str  # host:port of the exporter
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        config = self.root / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
            "scrape_configs:\n  - job_name: pvectl\n"
            f"    static_configs:\n      - targets: ['{self.target}']\n"
        )
        log = (self.root / "prometheus.log").open("ab")
        self.proc = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={config}",
                f"--storage.tsdb.path={self.root / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()

        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"prometheus exited: {self.log()[-2000:]}")
            try:
                get(f"http://127.0.0.1:{self.port}/-/ready", 1.0)
                return True
            except OSError:
                return False

        wait_for(ready, 60, "prometheus to be ready")

    def query(self, expr: str) -> dict[str, float]:
        """An instant query: {node label (or the series' labels as JSON): value}."""
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode(
            {"query": expr}
        )
        data = json.loads(get(url))
        assert data["status"] == "success", data
        out: dict[str, float] = {}
        for item in data["data"]["result"]:
            labels = item["metric"]
            key = labels.get("node") or json.dumps(labels, sort_keys=True)
            if "peer" in labels:
                key = f"{labels.get('node')}->{labels['peer']}"
            out[key] = float(item["value"][1])
        return out

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def log(self) -> str:
        path = self.root / "prometheus.log"
        return path.read_text(errors="replace") if path.exists() else ""


@dataclass
class TmuxPane:
    """A detached tmux session of 80x24 running one command, read with capture-pane.

    The pane stays after its command exits (``remain-on-exit``), so a command that dies
    at once leaves its last words on the screen for the failure message."""

    name: str
    command: str
    socket: Path
    last: str = ""

    def _tmux(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["tmux", "-S", str(self.socket), *args], capture_output=True, text=True, check=False
        )

    def start(self) -> None:
        subprocess.run(
            [
                "tmux", "-S", str(self.socket), "new-session", "-d", "-s", self.name,
                "-x", "80", "-y", "24", "sleep 3600",
            ],
            check=True,
        )  # fmt: skip
        self._tmux("set-option", "-t", self.name, "remain-on-exit", "on")
        self._tmux("respawn-pane", "-k", "-t", self.name, self.command)

    def capture(self) -> str:
        self.last = self._tmux("capture-pane", "-p", "-t", self.name).stdout
        return self.last

    def keys(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", self.name, *keys)

    def alive(self) -> bool:
        """The command still runs (a dead pane is kept for its output, not counted)."""
        shown = self._tmux("display-message", "-p", "-t", self.name, "#{pane_dead}")
        return shown.returncode == 0 and shown.stdout.strip() == "0"

    def wait_screen(self, wanted: Callable[[str], bool], timeout: float, what: str) -> str:
        """The first screen that shows ``what``; on timeout the last screen is in the error."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if wanted(self.capture()):
                return self.last
            time.sleep(0.3)
        state = "running" if self.alive() else "EXITED"
        raise AssertionError(
            f"timed out after {timeout:g} s waiting for {what}; the command is {state}; "
            f"last screen:\n{self.last}"
        )

    def stop(self) -> None:
        self._tmux("kill-server")


def first_scrape(port: int, timeout: float) -> str:
    """The exporter's first answer on ``port``, after ``promtool check metrics`` passed it."""
    url = f"http://127.0.0.1:{port}/metrics"

    def scrape() -> str:
        try:
            return get(url)
        except OSError:
            return ""

    text: str = wait_for(scrape, timeout, "a scrape")
    check = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    return text


def exporter_command(python: str, *args: str) -> list[str]:
    return [python, "-m", "pvectl", "exporter", *args]
