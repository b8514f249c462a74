"""Per-user private directories: created 0700, and a directory planted by another user, a
symlink or one open to others is refused with exit 77 naming the path and its owner.
The qnetd control socket lives in one (``qdevice serve`` and ``qdevice clients``), checked
end to end with real processes of two users."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from pvectl.errors import PermissionNeeded
from pvectl.private_dir import check_private_dir, ensure_private_dir, runtime_dir
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


def test_creates_missing_directory_and_parents_0700(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "pvectl"
    old = os.umask(0)
    try:
        assert ensure_private_dir(target) == target
    finally:
        os.umask(old)
    st = os.lstat(target)
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700
    assert st.st_uid == os.geteuid()
    assert ensure_private_dir(target) == target  # an existing one of ours is fine


def test_umask_cannot_leave_the_directory_unusable(tmp_path: Path) -> None:
    old = os.umask(0o777)
    try:
        ensure_private_dir(tmp_path / "d")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o700


@needs_root
def test_directory_planted_by_another_user_is_refused(tmp_path: Path) -> None:
    planted = tmp_path / "pvectl-1234"
    planted.mkdir(mode=0o700)
    os.chown(planted, OTHER_UID, OTHER_UID)
    with pytest.raises(PermissionNeeded) as err:
        ensure_private_dir(planted)
    text = str(err.value)
    assert int(err.value.exit_code) == 77
    assert str(planted) in text and f"uid {OTHER_UID}" in text
    assert _name(OTHER_UID) in text and "refusing" in text and "\n" not in text


def test_symlink_is_refused_even_to_our_own_directory(tmp_path: Path) -> None:
    ours = tmp_path / "mine"
    ours.mkdir(mode=0o700)
    link = tmp_path / "pvectl"
    link.symlink_to(ours)
    with pytest.raises(PermissionNeeded, match="is a symlink owned by"):
        ensure_private_dir(link)
    with pytest.raises(PermissionNeeded, match="is a symlink"):
        check_private_dir(link)


@pytest.mark.parametrize("mode", [0o777, 0o1777, 0o770, 0o755, 0o701])
def test_group_or_other_access_is_refused(tmp_path: Path, mode: int) -> None:
    target = tmp_path / "open"
    target.mkdir()
    os.chmod(target, mode)
    with pytest.raises(PermissionNeeded, match=f"mode {stat.S_IMODE(mode):04o}"):
        ensure_private_dir(target)


def test_a_file_in_its_place_is_refused(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(PermissionNeeded, match="not a directory"):
        ensure_private_dir(tmp_path / "f")


def test_check_leaves_a_missing_path_to_the_caller(tmp_path: Path) -> None:
    assert check_private_dir(tmp_path / "none") == tmp_path / "none"
    assert not (tmp_path / "none").exists()


def test_runtime_dir_uses_only_a_valid_xdg_runtime_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = tmp_path / "xdg"
    good.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(good))
    assert runtime_dir() == good / "pvectl"
    fallback = Path("/run/pvectl") if ROOT else Path(f"/tmp/pvectl-{os.geteuid()}")
    for bad in ("relative/dir", str(tmp_path / "missing"), str(tmp_path / "file")):
        (tmp_path / "file").write_text("")
        monkeypatch.setenv("XDG_RUNTIME_DIR", bad)
        assert runtime_dir() == fallback
    os.chmod(good, 0o777)  # one any user may write in is no private runtime dir
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(good))
    assert runtime_dir() == fallback
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert runtime_dir() == fallback


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
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
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
