"""The config store over real FUSE: two mounts of a real 3-node embedded lab.

Writes go through the kernel, libfuse3, the node's control socket, the token and every
node's store; the other mount reads them back through its own node.
"""

from __future__ import annotations

import ctypes.util
import errno
import importlib.util
import json
import os
import shutil
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import CliRun, run_cli

MISSING = [
    reason
    for reason, missing in (
        ("/dev/fuse is missing", not os.path.exists("/dev/fuse")),
        ("fusermount3 is missing (Debian package fuse3)", shutil.which("fusermount3") is None),
        ("libfuse3 is missing", ctypes.util.find_library("fuse3") is None),
        ("mfusepy is not installed", importlib.util.find_spec("mfusepy") is None),
    )
    if missing
]
pytestmark = [
    pytest.mark.skipif(bool(MISSING), reason="; ".join(MISSING)),
    pytest.mark.slow,
]

LAB = "tfuse"
TOKEN_MS = "500"
MIB = 1024 * 1024


@dataclass(frozen=True)
class Lab:
    env: dict[str, str]
    m1: Path
    m3: Path
    pids: tuple[int, int]

    def cli(self, *args: str) -> CliRun:
        return run_cli(*args, env=self.env)

    def node_stat(self, node: int, path: str) -> dict[str, object]:
        from pvectl.node import control_socket

        sock = Path(self.env["XDG_RUNTIME_DIR"]) / "pvectl/lab" / LAB / f"node{node}/control.sock"
        return control_socket.call(sock, "stat", path=path)


def wait_for(what: str, check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def mounted(path: Path) -> bool:
    text = Path("/proc/self/mountinfo").read_text()
    return any(line.split(" ")[4] == str(path) for line in text.splitlines())


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    base = tmp_path_factory.mktemp("fuse")
    runtime = base / "xdg"
    runtime.mkdir()
    env = dict(os.environ, XDG_RUNTIME_DIR=str(runtime), NO_COLOR="1")
    m1, m3 = base / "m1", base / "m3"
    m1.mkdir()
    m3.mkdir()
    try:
        up = run_cli("lab", "up", "3", "--name", LAB, "--token", TOKEN_MS, env=env)
        assert up.code == 0, up.stderr
        first = run_cli("lab", "mount", "1", str(m1), "--name", LAB, env=env)
        assert first.code == 0, first.stderr
        third = run_cli("lab", "mount", "3", str(m3), "--name", LAB, env=env)
        assert third.code == 0, third.stderr
        assert mounted(m1) and mounted(m3)
        yield Lab(env, m1, m3, (int(first.stdout), int(third.stdout)))
    finally:
        for mountpoint in (m1, m3):
            if mounted(mountpoint):
                run_cli("lab", "umount", str(mountpoint), env=env)
        run_cli("lab", "down", "--name", LAB, env=env)
        for mountpoint in (m1, m3):
            if mounted(mountpoint):  # last resort, so no test run leaves a mount behind
                subprocess.run(["fusermount3", "-u", "-z", str(mountpoint)], check=False)


def test_echo_on_node1_appears_on_node3(lab: Lab) -> None:
    target = lab.m1 / "file"
    subprocess.run(["sh", "-c", f"echo x > '{target}'"], check=True)
    assert (lab.m3 / "file").read_text() == "x\n"
    seen = lab.node_stat(2, "file")  # the node nobody mounted has it too, written by node 1
    assert seen["exists"] and seen["writer"] == 1 and seen["size"] == 2
    mode = os.stat(lab.m3 / "file").st_mode
    assert stat.S_ISREG(mode) and stat.S_IMODE(mode) == 0o640
    subprocess.run(["sh", "-c", f"echo longer line > '{target}'"], check=True)
    assert (lab.m3 / "file").read_text() == "longer line\n"  # O_TRUNC truncated it
    subprocess.run(["sh", "-c", f"echo more >> '{target}'"], check=True)
    assert (lab.m3 / "file").read_text() == "longer line\nmore\n"


def test_mkdir_rename_rm_propagate(lab: Lab) -> None:
    os.mkdir(lab.m1 / "dir")
    assert stat.S_IMODE(os.stat(lab.m3 / "dir").st_mode) == 0o755
    (lab.m1 / "dir" / "a.cfg").write_bytes(b"one\n")
    os.rename(lab.m1 / "dir" / "a.cfg", lab.m1 / "dir" / "b.cfg")
    assert os.listdir(lab.m3 / "dir") == ["b.cfg"]
    assert (lab.m3 / "dir" / "b.cfg").read_bytes() == b"one\n"
    with pytest.raises(OSError) as not_empty:
        os.rmdir(lab.m3 / "dir")
    assert not_empty.value.errno == errno.ENOTEMPTY
    with pytest.raises(OSError) as rename_full:
        os.rename(lab.m1 / "dir", lab.m1 / "dir2")
    assert rename_full.value.errno == errno.ENOTEMPTY  # pmxcfs: no rename of full dirs
    (lab.m3 / "dir" / "c.cfg").write_bytes(b"two\n")
    os.replace(lab.m3 / "dir" / "c.cfg", lab.m3 / "dir" / "b.cfg")  # over an existing file
    assert (lab.m1 / "dir" / "b.cfg").read_bytes() == b"two\n"
    os.unlink(lab.m3 / "dir" / "b.cfg")
    assert os.listdir(lab.m1 / "dir") == []
    os.rmdir(lab.m1 / "dir")
    assert not (lab.m3 / "dir").exists()
    assert not lab.node_stat(2, "dir")["exists"]


def test_edit_in_place_and_copy_trees(lab: Lab, tmp_path: Path) -> None:
    (lab.m1 / "edit.cfg").write_text("key: old\n")
    subprocess.run(["sed", "-i", "s/old/new/", str(lab.m1 / "edit.cfg")], check=True)
    assert (lab.m3 / "edit.cfg").read_text() == "key: new\n"  # temp file + rename
    assert not [n for n in os.listdir(lab.m3) if n.startswith(("sed", ".fuse_hidden"))]
    source = tmp_path / "tree"
    (source / "sub").mkdir(parents=True)
    for i in range(3):
        (source / "sub" / f"f{i}.cfg").write_text(f"{i}\n")
    subprocess.run(["cp", "-r", str(source), str(lab.m1 / "tree")], check=True)
    assert sorted(os.listdir(lab.m3 / "tree" / "sub")) == ["f0.cfg", "f1.cfg", "f2.cfg"]
    assert (lab.m3 / "tree" / "sub" / "f2.cfg").read_text() == "2\n"
    with pytest.raises(OSError) as refused:
        os.chmod(lab.m1 / "edit.cfg", 0o666)
    assert refused.value.errno == errno.EPERM  # pmxcfs: no permission changes
    os.chmod(lab.m1 / "edit.cfg", 0o640)  # the mode it has: accepted
    os.utime(lab.m1 / "edit.cfg", (1_600_000_000, 1_600_000_000))
    assert os.stat(lab.m3 / "edit.cfg").st_mtime == 1_600_000_000
    os.utime(lab.m1 / "edit.cfg")  # UTIME_NOW
    assert abs(os.stat(lab.m3 / "edit.cfg").st_mtime - time.time()) < 30


def test_write_past_one_mib_is_efbig(lab: Lab) -> None:
    small = lab.m1 / "small.cfg"
    small.write_bytes(b"keep me\n")
    fd = os.open(small, os.O_WRONLY)
    try:
        with pytest.raises(OSError) as crossing:
            os.pwrite(fd, b"x" * 100, MIB - 50)
        assert crossing.value.errno == errno.EFBIG
    finally:
        os.close(fd)
    assert (lab.m3 / "small.cfg").read_bytes() == b"keep me\n"  # nothing of it was applied
    with pytest.raises(OSError) as too_long:
        os.truncate(small, MIB + 1)
    assert too_long.value.errno == errno.EFBIG
    assert os.stat(lab.m3 / "small.cfg").st_size == len(b"keep me\n")

    exact = bytes(range(256)) * (MIB // 256)
    (lab.m1 / "exact.bin").write_bytes(exact)  # 8 chunks of 128 KiB, the limit itself
    assert (lab.m3 / "exact.bin").read_bytes() == exact

    with pytest.raises(OSError) as big, open(lab.m1 / "big.bin", "wb") as handle:
        handle.write(b"y" * (MIB + MIB // 2))
    assert big.value.errno == errno.EFBIG == 27
    # like pmxcfs, what was accepted before the limit stays; the file never passes 1 MiB
    assert os.stat(lab.m3 / "big.bin").st_size <= MIB


def test_partition_makes_node1_read_only(lab: Lab) -> None:
    (lab.m1 / "quorum.cfg").write_text("before\n")
    (lab.m1 / "nodes").mkdir(exist_ok=True)
    parted = lab.cli("lab", "partition", "1", "2,3", "--name", LAB)
    assert parted.code == 0, parted.stderr
    try:
        wait_for(
            "node 1 to lose quorum",
            lambda: stat.S_IMODE(os.stat(lab.m1).st_mode) & 0o222 == 0,
        )
        assert stat.S_IMODE(os.stat(lab.m1).st_mode) == 0o555
        assert stat.S_IMODE(os.stat(lab.m1 / "quorum.cfg").st_mode) == 0o440
        assert stat.S_IMODE(os.lstat(lab.m1 / "local").st_mode) == 0o555
        for attempt in (
            lambda: (lab.m1 / "quorum.cfg").write_text("during\n"),
            lambda: os.mkdir(lab.m1 / "newdir"),
            lambda: os.unlink(lab.m1 / "quorum.cfg"),
            lambda: os.rename(lab.m1 / "quorum.cfg", lab.m1 / "moved.cfg"),
        ):
            with pytest.raises(OSError) as refused:
                attempt()
            assert refused.value.errno == errno.EACCES
        assert (lab.m1 / "quorum.cfg").read_text() == "before\n"  # reads keep working
        wait_for("nodes 2,3 to be quorate", lambda: os.stat(lab.m3).st_mode & 0o200 != 0)
        (lab.m3 / "quorum.cfg").write_text("majority\n")
    finally:
        healed = lab.cli("lab", "heal", "--name", LAB)
        assert healed.code == 0, healed.stderr

    wait_for("node 1 to regain quorum", lambda: os.stat(lab.m1).st_mode & 0o200 != 0)
    assert stat.S_IMODE(os.lstat(lab.m1 / "local").st_mode) == 0o777
    wait_for(
        "node 1 to catch up",
        lambda: (lab.m1 / "quorum.cfg").read_text() == "majority\n",
    )

    def write_after_heal() -> bool:
        try:
            (lab.m1 / "quorum.cfg").write_text("after\n")
        except PermissionError:
            return False  # still syncing
        return True

    wait_for("writes on node 1 to work again", write_after_heal)
    assert (lab.m3 / "quorum.cfg").read_text() == "after\n"


def test_special_files_and_symlinks(lab: Lab) -> None:
    members = json.loads((lab.m1 / ".members").read_text())
    assert members["nodename"] == "node1"
    assert members["cluster"]["name"] == LAB and members["cluster"]["nodes"] == 3
    assert sorted(members["nodelist"]) == ["node1", "node2", "node3"]
    assert {n["id"] for n in members["nodelist"].values()} == {1, 2, 3}
    assert json.loads((lab.m3 / ".members").read_text())["nodename"] == "node3"
    assert stat.S_IMODE(os.stat(lab.m1 / ".members").st_mode) == 0o440
    with pytest.raises(OSError) as refused:
        (lab.m1 / ".members").write_text("{}")
    assert refused.value.errno == errno.EACCES

    assert os.readlink(lab.m1 / "local") == "nodes/node1"
    assert os.readlink(lab.m3 / "qemu-server") == "nodes/node3/qemu-server"
    os.makedirs(lab.m1 / "nodes" / "node3" / "qemu-server", exist_ok=True)
    os.makedirs(lab.m1 / "nodes" / "node1", exist_ok=True)
    assert os.path.realpath(lab.m1 / "local") == str(lab.m1 / "nodes" / "node1")
    (lab.m3 / "qemu-server" / "101.conf").write_text("memory: 512\n")  # through the link
    assert (lab.m1 / "nodes" / "node3" / "qemu-server" / "101.conf").exists()

    vmlist = json.loads((lab.m1 / ".vmlist").read_text())
    assert vmlist["ids"]["101"]["node"] == "node3" and vmlist["ids"]["101"]["type"] == "qemu"
    version = json.loads((lab.m1 / ".version").read_text())
    assert version["starttime"] > 0 and "corosync.conf" in version
    names = os.listdir(lab.m1)
    assert {".members", ".version", ".vmlist", "local", "qemu-server", "lxc"} <= set(names)


def test_statfs_reports_pmxcfs_figures(lab: Lab) -> None:
    before = os.statvfs(lab.m1)
    assert before.f_bsize == 4096 and before.f_namemax == 256
    assert before.f_blocks == 128 * MIB // 4096 and before.f_files == 256 * 1024
    (lab.m1 / "fill.bin").write_bytes(b"z" * (100 * 1024))
    after = os.statvfs(lab.m3)
    assert before.f_bfree - after.f_bfree == 25
    assert before.f_ffree - after.f_ffree == 1
    os.unlink(lab.m1 / "fill.bin")


def test_level_all_is_on_every_node_when_write_returns(lab: Lab, tmp_path: Path) -> None:
    mountpoint = tmp_path / "all"
    mountpoint.mkdir()
    run = lab.cli("lab", "mount", "2", str(mountpoint), "--name", LAB, "--level", "all")
    assert run.code == 0, run.stderr
    try:
        for i in range(5):
            (mountpoint / f"all{i}.cfg").write_text(f"{i}\n")
            for node in (1, 3):  # no waiting: 'all' returned only after every member
                seen = lab.node_stat(node, f"all{i}.cfg")
                assert seen["exists"] and seen["size"] == 2 and seen["writer"] == 2
    finally:
        done = lab.cli("lab", "umount", str(mountpoint))
        assert done.code == 0, done.stderr
    assert not mounted(mountpoint)


def test_mount_errors_are_one_line(lab: Lab, tmp_path: Path) -> None:
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("x")
    run = lab.cli("lab", "mount", "2", str(busy), "--name", LAB)
    assert run.code == 64 and "not empty" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
    run = lab.cli("lab", "mount", "2", str(busy / "x"), "--name", LAB)
    assert run.code == 64 and "not a directory" in run.stderr
    run = lab.cli("lab", "mount", "3", str(lab.m1), "--name", LAB)
    assert run.code != 0 and "already a mount point" in run.stderr
    run = lab.cli("lab", "umount", str(tmp_path))
    assert run.code != 0 and "not mounted" in run.stderr
    run = lab.cli("lab", "mount", "1", str(tmp_path), "--name", "tfusenone")
    assert run.code == 1 and "no lab named 'tfusenone'" in run.stderr


def test_node_stopped_under_its_mount(lab: Lab, tmp_path: Path) -> None:
    stopped = lab.cli("lab", "stop", "3", "--name", LAB)
    assert stopped.code == 0, stopped.stderr
    try:
        with pytest.raises(OSError) as gone:
            os.listdir(lab.m3)
        assert gone.value.errno == errno.ENOTCONN
        elsewhere = tmp_path / "m"
        elsewhere.mkdir()
        run = lab.cli("lab", "mount", "3", str(elsewhere), "--name", LAB)
        assert run.code == 1 and "not running" in run.stderr
        (lab.m1 / "while-down.cfg").write_text("written while node 3 was down\n")
    finally:
        started = lab.cli("lab", "start", "3", "--name", LAB)
        assert started.code == 0, started.stderr

    def caught_up() -> bool:
        try:
            return (lab.m3 / "while-down.cfg").read_text() == "written while node 3 was down\n"
        except OSError:
            return False

    wait_for("node 3's mount to answer with the write it missed", caught_up)


def test_lab_down_unmounts(tmp_path: Path) -> None:
    env = dict(os.environ, XDG_RUNTIME_DIR=str(tmp_path), NO_COLOR="1")
    mountpoint = tmp_path / "m"
    mountpoint.mkdir()
    try:
        up = run_cli("lab", "up", "1", "--name", "tfusedown", "--token", TOKEN_MS, env=env)
        assert up.code == 0, up.stderr
        run = run_cli("lab", "mount", "1", str(mountpoint), "--name", "tfusedown", env=env)
        assert run.code == 0, run.stderr
        pid = int(run.stdout)
        (mountpoint / "hello").write_text("hi\n")
        assert mounted(mountpoint)
        down = run_cli("lab", "down", "--name", "tfusedown", env=env)
        assert down.code == 0, down.stderr
        assert f"unmounted {mountpoint}" in down.stderr
        assert not mounted(mountpoint)
        assert (
            not Path(f"/proc/{pid}").exists()
            or b"fuse_mount" not in Path(f"/proc/{pid}/cmdline").read_bytes()
        )
    finally:
        run_cli("lab", "down", "--name", "tfusedown", env=env)
        if mounted(mountpoint):
            subprocess.run(["fusermount3", "-u", "-z", str(mountpoint)], check=False)
