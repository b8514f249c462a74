"""What the FUSE layer shows of the store, as pmxcfs shows it (pve-cluster's cfs-plug*.c)."""

from __future__ import annotations

import json

from pvectl.cfs import fsview
from pvectl.cfs.memdb import DT_DIR, DT_REG, MAX_FILE_SIZE, Create, MemDB, Mkdir, Write


def test_modes_follow_quorum_and_private_trees() -> None:
    assert fsview.entry_mode("storage.cfg", False, writable=True) == 0o640
    assert fsview.entry_mode("storage.cfg", False, writable=False) == 0o440
    assert fsview.entry_mode("nodes", True, writable=True) == 0o755
    assert fsview.entry_mode("nodes", True, writable=False) == 0o555
    assert fsview.entry_mode("priv/authkey.key", False, writable=True) == 0o600
    assert fsview.entry_mode("priv", True, writable=True) == 0o700
    assert fsview.entry_mode("nodes/n1/priv/x", False, writable=False) == 0o400
    assert fsview.entry_mode("nodes/n1/qemu-server/100.conf", False, True) == 0o640
    assert fsview.symlink_mode(True) == 0o777 and fsview.symlink_mode(False) == 0o555


def test_chmod_only_to_the_mode_it_has() -> None:
    assert fsview.chmod_allowed("a.cfg", False, 0o100640)
    assert not fsview.chmod_allowed("a.cfg", False, 0o644)
    assert fsview.chmod_allowed("priv/x", False, 0o600)
    assert not fsview.chmod_allowed("priv/x", False, 0o640)


def test_symlinks_point_into_this_nodes_directory() -> None:
    assert fsview.symlink_target("/local", "pve1") == "nodes/pve1"
    assert fsview.symlink_target("/qemu-server", "pve1") == "nodes/pve1/qemu-server"
    assert fsview.symlink_target("lxc", "pve2") == "nodes/pve2/lxc"
    assert fsview.is_reserved("/.members") and fsview.is_reserved("local")
    assert not fsview.is_reserved("nodes/local")


def test_writes_split_at_128_kib() -> None:
    data = bytes(range(256)) * 1200  # 307200 bytes
    chunks = fsview.write_chunks(10, data)
    assert [len(c) for _, c in chunks] == [131072, 131072, 45056]
    assert [o for o, _ in chunks] == [10, 10 + 131072, 10 + 262144]
    assert b"".join(c for _, c in chunks) == data
    assert fsview.write_chunks(5, b"") == [(5, b"")]
    assert not fsview.exceeds_limit(0, MAX_FILE_SIZE)
    assert fsview.exceeds_limit(1, MAX_FILE_SIZE)


def test_statfs_figures() -> None:
    figures = fsview.statfs(total_bytes=4097, inodes=10)
    assert figures.f_bsize == 4096 and figures.f_namemax == 256
    assert figures.f_blocks == 128 * 1024 * 1024 // 4096
    assert figures.f_bfree == figures.f_blocks - 2  # ceil(4097 / 4096)
    assert figures.f_files == 256 * 1024 and figures.f_ffree == 256 * 1024 - 10


def _store() -> MemDB:
    db = MemDB()
    for op in (
        Mkdir("nodes"),
        Mkdir("nodes/pve1"),
        Mkdir("nodes/pve1/qemu-server"),
        Mkdir("nodes/pve1/lxc"),
        Mkdir("nodes/bad_name"),
        Mkdir("nodes/bad_name/qemu-server"),
        Create("nodes/pve1/qemu-server/100.conf"),
        Create("nodes/pve1/lxc/200.conf"),
        Create("nodes/pve1/qemu-server/0100.conf"),
        Create("nodes/pve1/qemu-server/notes.txt"),
        Create("nodes/bad_name/qemu-server/300.conf"),
        Create("storage.cfg"),
        Write("storage.cfg", 0, b"dir: local\n"),
    ):
        assert db.apply(op, 1, 1000).ok, op
    return db


def test_paths_and_usage() -> None:
    db = _store()
    found = fsview.paths(db.entries())
    assert found["nodes/pve1/qemu-server/100.conf"].type == DT_REG
    assert found["nodes/pve1"].type == DT_DIR
    total, inodes = fsview.usage(db.entries())
    assert total == len(b"dir: local\n")
    assert inodes == len(db.entries()) - 1


def test_vmlist_follows_pmxcfs_rules() -> None:
    db = _store()
    listed = fsview.vmlist(db.entries(), db.version)
    assert listed["version"] == db.version
    ids = listed["ids"]
    assert isinstance(ids, dict)
    assert sorted(ids) == ["100", "200"]  # 0100 (leading zero) and bad_name (not LDH) left out
    assert ids["100"]["node"] == "pve1" and ids["100"]["type"] == "qemu"
    assert ids["200"]["type"] == "lxc"


def test_version_reports_observed_paths() -> None:
    db = _store()
    document = fsview.version(db.entries(), starttime=123, clinfo_version=4, store_version=9)
    assert document["starttime"] == 123 and document["clinfo"] == 4
    storage = fsview.paths(db.entries())["storage.cfg"]
    assert document["storage.cfg"] == storage.version > 0
    assert document["corosync.conf"] == 0


def test_members_layout() -> None:
    view = fsview.ClusterView(
        nodename="pve2",
        cluster_name="lab",
        config_version=3,
        nodes=(fsview.NodeInfo(2, "pve2", "10.0.0.2"), fsview.NodeInfo(1, "pve1", "10.0.0.1")),
        online=frozenset({2}),
        quorate=False,
        clinfo_version=7,
    )
    document = json.loads(fsview.render(fsview.members(view)))
    assert document == {
        "nodename": "pve2",
        "version": 7,
        "cluster": {"name": "lab", "version": 3, "nodes": 2, "quorate": 0},
        "nodelist": {
            "pve1": {"id": 1, "online": 0, "ip": "10.0.0.1"},
            "pve2": {"id": 2, "online": 1, "ip": "10.0.0.2"},
        },
    }
