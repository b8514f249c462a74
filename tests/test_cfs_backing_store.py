from __future__ import annotations

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
