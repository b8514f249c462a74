"""Lab state in a shared temporary directory is checked before it is trusted.

End to end with two real local users: an attacker plants the victim's would-be state
directory (or a symlink for it) in a shared, sticky temporary directory, and the victim's
``lab ls``, ``lab up`` and ``lab down`` refuse it (exit 77, naming path and owner) instead
of acting on a planted ``lab.json`` or deleting through a planted symlink.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pvectl.errors import ExitCode, PermissionNeeded
from pvectl.private_dir import check_private_dir, ensure_private_dir

REPO = Path(__file__).resolve().parents[1]
ROOT = os.geteuid() == 0
VICTIM = 65534  # nobody


def _attacker_uid() -> int:
    """A real local account other than root and nobody, else a bare uid."""
    for entry in pwd.getpwall():
        if 1000 <= entry.pw_uid < 65534:
            return entry.pw_uid
    return 4242


ATTACKER = _attacker_uid()


def _as(uid: int) -> list[str]:
    setpriv = shutil.which("setpriv")
    assert setpriv is not None
    return [setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]


needs_root = pytest.mark.skipif(
    not ROOT or shutil.which("setpriv") is None, reason="needs root and setpriv to be two users"
)


@pytest.fixture
def reachable(tmp_path: Path) -> Iterator[Path]:
    """A scratch directory both users can reach (pytest's own is private to root)."""
    top = Path(tempfile.mkdtemp(prefix="pvectl-two-users-"))
    os.chmod(top, 0o755)
    yield top
    shutil.rmtree(top, ignore_errors=True)


@pytest.fixture
def shared_tmp(reachable: Path) -> Path:
    """A fresh world-writable sticky directory, as /tmp is."""
    shared = reachable / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    return shared


def _victim(shared: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    env["TMPDIR"] = str(shared)
    return subprocess.run(
        [*_as(VICTIM), sys.executable, "-m", "pvectl", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=120,
        check=False,
    )


def _attacker(*argv: str) -> None:
    subprocess.run([*_as(ATTACKER), *argv], check=True, timeout=30)


@needs_root
def test_planted_state_directory_with_lab_json_is_refused(shared_tmp: Path) -> None:
    base = shared_tmp / f"pvectl-{VICTIM}"
    lab = base / "lab" / "default"
    _attacker("mkdir", "-p", "-m", "777", str(lab))
    planted = {
        "name": "default",
        "engine": "embedded",
        "state_dir": "/root/victim-data",
        "namespace_prefix": "",
        "hub_namespace": "",
        "subnet": "",
        "cluster_name": "x",
        "transport": "udpu",
        "nodes": [
            {
                "node_id": 1,
                "name": "n1",
                "namespace": "",
                "address": "192.0.2.1",
                "dir": "/root/victim-data",
                "host": "attacker.example",
            }
        ],
    }
    (lab / "lab.json").write_text(json.dumps(planted))
    os.chown(lab / "lab.json", ATTACKER, ATTACKER)
    for args in (["lab", "ls"], ["lab", "down"], ["lab", "up", "3"]):
        run = _victim(shared_tmp, *args)
        assert run.returncode == ExitCode.NO_PERMISSION, (args, run.stdout, run.stderr)
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1, run.stderr
        assert str(base) in lines[0] and "owned by" in lines[0], lines[0]
        assert "attacker.example" not in run.stdout + run.stderr
    assert (lab / "lab.json").exists(), "the planted state must be left alone, not acted on"


@needs_root
def test_planted_symlink_into_the_victims_home_deletes_nothing(
    shared_tmp: Path, reachable: Path
) -> None:
    home = reachable / "victim-home"
    (home / "default").mkdir(parents=True)
    (home / "default" / "precious.txt").write_text("keep me\n")
    for path in (home, home / "default", home / "default" / "precious.txt"):
        os.chown(path, VICTIM, VICTIM)
    # Variant 1: the attacker owns the base and points its lab/ at the victim's home.
    base = shared_tmp / f"pvectl-{VICTIM}"
    _attacker("mkdir", "-m", "777", str(base))
    _attacker("ln", "-s", str(home), str(base / "lab"))
    up = _victim(shared_tmp, "lab", "up", "3")
    assert up.returncode == ExitCode.NO_PERMISSION, up.stdout + up.stderr
    assert (home / "default" / "precious.txt").read_text() == "keep me\n"
    # Variant 2: the base itself is a symlink to a directory the victim owns.
    _attacker("rm", "-rf", str(base))
    _attacker("ln", "-s", str(home), str(base))
    up = _victim(shared_tmp, "lab", "up", "3")
    assert up.returncode == ExitCode.NO_PERMISSION, up.stdout + up.stderr
    assert "symlink" in up.stderr
    assert (home / "default" / "precious.txt").read_text() == "keep me\n"


@needs_root
def test_without_a_planted_directory_the_victims_lab_works(shared_tmp: Path) -> None:
    """The check refuses only what is not ours: a fresh shared directory still works."""
    run = _victim(shared_tmp, "lab", "ls", "--output-format", "json")
    assert run.returncode == 0, run.stderr
    base = shared_tmp / f"pvectl-{VICTIM}"
    info = base.stat()
    assert info.st_uid == VICTIM and (info.st_mode & 0o777) == 0o700


def test_check_refuses_symlinks_open_modes_and_files(tmp_path: Path) -> None:
    mine = ensure_private_dir(tmp_path / "mine")
    assert (mine.stat().st_mode & 0o777) == 0o700
    check_private_dir(mine)  # ours: accepted
    link = tmp_path / "link"
    link.symlink_to(mine)
    with pytest.raises(PermissionNeeded, match="symlink"):
        check_private_dir(link)
    os.chmod(mine, 0o777)
    with pytest.raises(PermissionNeeded, match="writable by other users"):
        check_private_dir(mine)
    os.chmod(mine, 0o700)
    afile = tmp_path / "file"
    afile.write_text("")
    with pytest.raises(PermissionNeeded, match="not a directory"):
        check_private_dir(afile)


@pytest.mark.skipif(not ROOT, reason="needs root to make a directory of another owner")
def test_check_refuses_a_directory_of_another_owner(tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir(mode=0o700)
    os.chown(other, ATTACKER, ATTACKER)
    with pytest.raises(PermissionNeeded, match="owned by"):
        ensure_private_dir(other)
