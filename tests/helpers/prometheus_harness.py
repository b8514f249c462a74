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
    """A detached tmux session of 80x24 running one command, read with capture-pane."""

    name: str
    command: str
    socket: Path

    def start(self) -> None:
        subprocess.run(
            [
                "tmux", "-S", str(self.socket), "new-session", "-d", "-s", self.name,
                "-x", "80", "-y", "24", self.command,
            ],
            check=True,
        )  # fmt: skip

    def capture(self) -> str:
        out = subprocess.run(
            ["tmux", "-S", str(self.socket), "capture-pane", "-p", "-t", self.name],
            capture_output=True,
            text=True,
            check=False,
        )
        return out.stdout

    def keys(self, *keys: str) -> None:
        subprocess.run(
            ["tmux", "-S", str(self.socket), "send-keys", "-t", self.name, *keys], check=False
        )

    def alive(self) -> bool:
        return (
            subprocess.run(
                ["tmux", "-S", str(self.socket), "has-session", "-t", self.name],
                capture_output=True,
                check=False,
            ).returncode
            == 0
        )

    def stop(self) -> None:
        subprocess.run(
            ["tmux", "-S", str(self.socket), "kill-server"], capture_output=True, check=False
        )


def exporter_command(python: str, *args: str) -> list[str]:
    return [python, "-m", "pvectl", "exporter", *args]
