"""The qnetd control socket lives in a per-user private directory (``qdevice serve`` and
``qdevice clients``): a directory planted by another user is refused with exit 77 naming
the path and its owner, and another user can no longer answer ``qdevice clients``.
End to end with real processes of two users (``pvectl.private_dir`` itself is tested
with the lab state, tests/test_lab_state_private.py)."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from tests.conftest import run_cli

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="chown to another user needs root")
REPO = Path(__file__).resolve().parent.parent


def _uid_exists(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True


OTHER_UID = 1000 if _uid_exists(1000) else 65534  # the "other local user"


# --- the qnetd control socket, end to end ------------------------------------------------


def _name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def test_planted_control_directory_stops_serve_and_clients(tmp_path: Path) -> None:
    if not ROOT:
        pytest.skip("chown to another user needs root")
    xdg = tmp_path / "xdg"
    xdg.mkdir(mode=0o700)
    planted = xdg / "pvectl"
    planted.mkdir(mode=0o700)
    os.chown(planted, OTHER_UID, OTHER_UID)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(xdg)}
    port = "45403"
    clients = run_cli("qdevice", "clients", "--port", port, env=env, timeout=30)
    assert clients.code == 77, clients.stderr
    assert str(planted) in clients.stderr and _name(OTHER_UID) in clients.stderr
    assert len(clients.stderr.strip().splitlines()) == 1
    serve = run_cli(
        *("qdevice", "serve", "--tls", "off", "--listen", "127.0.0.1", "--port", port),
        env=env,
        timeout=30,
    )
    assert serve.code == 77, serve.stderr
    assert str(planted) in serve.stderr and "Traceback" not in serve.stderr


class _FakeQnetd:
    """Another local user's process answering on a qnetd control socket with made-up
    clients (what a spoofed ``qdevice clients`` would show)."""

    STATUS: ClassVar[dict[str, object]] = {
        "listen_address": "*",
        "port": 5403,
        "tls": "Supported",
        "client_certificate_required": True,
        "connected_clients": 1,
        "connected_clusters": 1,
        "max_send_size": 1,
        "max_receive_size": 1,
        "clusters": [
            {
                "name": "spoofed",
                "algorithm": "LMS",
                "keep_active_partition_tie_breaker": False,
                "tie_breaker": "x",
                "clients": [],
            }
        ],
    }

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.bind(str(path))
        os.chmod(path, 0o777)
        self.sock.listen(4)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.recv(100)
                conn.sendall(json.dumps(self.STATUS).encode() + b"\n")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def victim_uid() -> Iterator[int]:
    """An unused uid as the victim: its /tmp/pvectl-UID is this test's alone."""
    uid = 54000 + os.getpid() % 1000
    yield uid
    shutil.rmtree(f"/tmp/pvectl-{uid}", ignore_errors=True)


def _as_user(uid: int, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_RUNTIME_DIR", "TMPDIR")}
    env["HOME"] = "/nonexistent"
    return subprocess.run(
        [
            "setpriv",
            f"--reuid={uid}",
            f"--regid={uid}",
            "--clear-groups",
            sys.executable,
            "-m",
            "pvectl",
            *args,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@needs_root
def test_another_user_cannot_answer_qdevice_clients(tmp_path: Path, victim_uid: int) -> None:
    """Another user listens where the victim's default socket is: before the fix the shared
    /tmp/pvectl/qnetd-PORT.sock; now the victim's own /tmp/pvectl-UID, which the attacker
    can only plant (refused) and never share."""
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is needed to run as two users")
    port = str(40000 + os.getpid() % 5000)
    shared = Path("/tmp/pvectl")
    made_shared = not shared.exists()
    if made_shared:
        shared.mkdir()
        os.chmod(shared, 0o1777)  # as the first user of the old default left it
    spoof_old = _FakeQnetd(shared / f"qnetd-{port}.sock")
    try:
        run = _as_user(victim_uid, "qdevice", "clients", "--port", port)
        assert "spoofed" not in run.stdout, run.stdout
        assert run.returncode == 69, run.stderr  # nobody serves in the victim's own place
        # the attacker plants the victim's private directory and listens in it
        planted = Path(f"/tmp/pvectl-{victim_uid}")
        shutil.rmtree(planted, ignore_errors=True)  # as before the victim's first run
        planted.mkdir(mode=0o755)
        spoof_new = _FakeQnetd(planted / f"qnetd-{port}.sock")
        os.chown(planted, OTHER_UID, OTHER_UID)
        try:
            run = _as_user(victim_uid, "qdevice", "clients", "--port", port)
        finally:
            spoof_new.close()
        assert "spoofed" not in run.stdout
        assert run.returncode == 77, run.stderr
        assert str(planted) in run.stderr and _name(OTHER_UID) in run.stderr
    finally:
        spoof_old.close()
        (shared / f"qnetd-{port}.sock").unlink(missing_ok=True)
        if made_shared:
            shutil.rmtree(shared, ignore_errors=True)
