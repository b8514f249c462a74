from __future__ import annotations

import dataclasses
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pvectl.cfs.memdb import Create, MemDB, Mkdir, Write
from pvectl.node.backing_store import BackingStore, Durability


@pytest.mark.parametrize("durability", list(Durability))
def test_stock_sqlite3_reads_the_same_tree(tmp_path: Path, durability: Durability) -> None:
    memdb = MemDB()
    store = BackingStore(tmp_path / "config.db", durability)
    results = [
        memdb.apply(Mkdir("nodes"), 1, 10),
        memdb.apply(Create("nodes/a"), 1, 11),
        memdb.apply(Write("nodes/a", 0, b"x" * 100), 2, 12),
    ]
    store.commit(results)
    store.close()
    assert (tmp_path / "config.db").stat().st_mode & 0o777 == 0o600
    rows = (
        sqlite3.connect(tmp_path / "config.db")
        .execute("SELECT * FROM tree ORDER BY inode")
        .fetchall()
    )
    assert rows == [tuple(vars(e).values()) for e in memdb.entries()]
    mode = sqlite3.connect(tmp_path / "config.db").execute("PRAGMA journal_mode").fetchone()
    assert mode == ("wal",)
    reloaded = MemDB()
    reloaded.load(BackingStore(tmp_path / "config.db", durability).load())
    assert reloaded.checksum() == memdb.checksum()


def test_the_epoch_of_what_was_committed_survives_a_restart(tmp_path: Path) -> None:
    """The store's epoch (ring seq of its last write) lives in the version row, so a
    restart ranks its tree by what reached config.db, not by what was in memory."""
    memdb = MemDB()
    store = BackingStore(tmp_path / "config.db")
    store.commit([memdb.apply(Create("a"), 1, 10, epoch=40)])
    uncommitted = memdb.apply(Create("b"), 1, 11, epoch=44)  # its fsync never ran
    assert uncommitted.ok and memdb.epoch == 44
    store.close()
    reloaded = MemDB()
    reloaded.load(BackingStore(tmp_path / "config.db").load())
    assert reloaded.epoch == 40 and reloaded.lookup("b") is None
    assert reloaded.index().epoch == 40
    assert reloaded.lookup("/") is not None and reloaded.listdir("/")[0].name == "a"


def test_a_version_row_with_a_bad_epoch_is_refused(tmp_path: Path) -> None:
    memdb = MemDB()
    root = memdb.root()
    with pytest.raises(ValueError, match="epoch of 3 bytes"):
        memdb.load([dataclasses.replace(root, data=b"abc")])


WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from pvectl.cfs.memdb import Create, MemDB
    from pvectl.node.backing_store import BackingStore, Durability
    memdb = MemDB()
    store = BackingStore(Path(sys.argv[1]), Durability.fsync)
    i = 0
    while True:
        store.commit([memdb.apply(Create(f"f{i}"), 1, i)])
        print(f"acked {i}", flush=True)
        i += 1
    """
)


def test_acknowledged_writes_survive_kill_9(tmp_path: Path) -> None:
    db = tmp_path / "config.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    acked = -1
    for line in proc.stdout:
        acked = int(line.split()[1])
        if acked >= 50:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    names = {row[0] for row in sqlite3.connect(db).execute("SELECT name FROM tree")}
    assert all(f"f{i}" in names for i in range(acked + 1))
