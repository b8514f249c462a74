from __future__ import annotations

import contextlib
import errno
import random
import sqlite3
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pvectl.cfs import messages
from pvectl.cfs.memdb import (
    DT_DIR,
    DT_REG,
    MAX_FILE_SIZE,
    Create,
    Delete,
    Entry,
    MemDB,
    Mkdir,
    Rename,
    SetMtime,
    Write,
)
from pvectl.node.backing_store import BackingStore, Durability


def test_versions_writer_mtime_and_inode_numbers() -> None:
    db = MemDB()
    assert db.version == 1
    assert db.apply(Mkdir("nodes"), writer=2, mtime=100).ok
    created = db.apply(Create("nodes/a.conf"), writer=3, mtime=101)
    assert created.ok and created.version == 3
    entry = db.lookup("nodes/a.conf")
    assert entry is not None
    # a new inode number is the global version at creation
    assert (entry.inode, entry.version, entry.writer, entry.mtime) == (3, 3, 3, 101)
    assert db.apply(Write("nodes/a.conf", 0, b"hello"), writer=1, mtime=102).ok
    entry = db.lookup("nodes/a.conf")
    assert entry is not None and entry.inode == 3 and entry.version == 4
    root = db.root()
    assert (root.inode, root.name, root.version, root.writer, root.mtime) == (
        0,
        "__version__",
        4,
        1,
        102,
    )
    assert db.read("nodes/a.conf") == b"hello"


def test_pwrite_semantics() -> None:
    db = MemDB()
    db.apply(Create("f"), 1, 1)
    db.apply(Write("f", 0, b"abcdef"), 1, 1)
    db.apply(Write("f", 2, b"XY"), 1, 1)
    assert db.read("f") == b"abXYef"  # a shorter write keeps the old size
    db.apply(Write("f", 8, b"Z"), 1, 1)
    assert db.read("f") == b"abXYef\0\0Z"
    db.apply(Write("f", 3, b"", truncate=True), 1, 1)
    assert db.read("f") == b"abX"


def test_errors_change_nothing() -> None:
    db = MemDB()
    db.apply(Mkdir("d"), 1, 1)
    db.apply(Create("d/f"), 1, 1)
    before = db.checksum()
    cases = [
        (Write("d/f", MAX_FILE_SIZE, b"x"), errno.EFBIG),
        (Create("d/f"), errno.EEXIST),
        (Create("missing/f"), errno.ENOENT),
        (Create("d/f/g"), errno.ENOTDIR),
        (Delete("d"), errno.ENOTEMPTY),
        (Rename("d", "e"), errno.ENOTEMPTY),
        (Delete("nope"), errno.ENOENT),
        (Mkdir("d/.."), errno.EACCES),
        (Write("d", 0, b"x"), errno.EISDIR),
    ]
    for op, code in cases:
        result = db.apply(op, 1, 2)
        assert result.errno_code == code, op
    assert db.checksum() == before


def test_exactly_one_mib_is_allowed() -> None:
    db = MemDB()
    db.apply(Create("big"), 1, 1)
    assert db.apply(Write("big", 0, b"x" * MAX_FILE_SIZE), 1, 1).ok
    assert db.apply(Write("big", 1, b"x" * MAX_FILE_SIZE), 1, 1).errno_code == errno.EFBIG


def test_rename_keeps_inode_and_replaces_target() -> None:
    db = MemDB()
    db.apply(Create("a"), 1, 1)
    db.apply(Create("b"), 1, 1)
    inode_a = db.lookup("a").inode  # type: ignore[union-attr]
    inode_b = db.lookup("b").inode  # type: ignore[union-attr]
    result = db.apply(Rename("a", "b"), 1, 1)
    assert result.ok and result.deletes == (inode_b,)
    assert db.lookup("a") is None
    assert db.lookup("b").inode == inode_a  # type: ignore[union-attr]
    assert db.apply(SetMtime("b", 4242), 1, 5).ok
    assert db.lookup("b").mtime == 4242  # type: ignore[union-attr]


def test_schema_is_pmxcfs_tree(tmp_path: Path) -> None:
    """The rows a node persists are pmxcfs's ``tree`` rows, and a stock SQLite reads them."""
    db = MemDB()
    config_db = BackingStore(tmp_path / "config.db", Durability.wal_normal)
    config_db.replace_all(db.entries())
    config_db.commit([db.apply(Mkdir("priv"), 1, 1), db.apply(Create("priv/key"), 1, 1)])
    config_db.close()
    with contextlib.closing(sqlite3.connect(tmp_path / "config.db")) as stock:
        rows = stock.execute("SELECT inode, parent, type, name FROM tree ORDER BY inode")
        assert rows.fetchall() == [
            (0, 0, DT_REG, "__version__"),
            (2, 0, DT_DIR, "priv"),
            (3, 2, DT_REG, "key"),
        ]


def test_load_checks() -> None:
    db = MemDB()
    db.apply(Mkdir("d"), 1, 1)
    db.apply(Create("d/f"), 1, 1)
    rows = db.entries()
    fresh = MemDB()
    fresh.load(rows)
    assert fresh.checksum() == db.checksum()
    orphan = [*rows, rows[-1].__class__(99, 42, 9, 1, 1, DT_REG, "x", b"")]
    with pytest.raises(ValueError, match="parent"):
        MemDB().load(orphan)


ops = st.one_of(
    st.builds(Create, st.sampled_from(["a", "b", "d/a", "d/e/f"])),
    st.builds(Mkdir, st.sampled_from(["d", "d/e", "x"])),
    st.builds(
        Write,
        st.sampled_from(["a", "b", "d/a"]),
        st.integers(0, 64),
        st.binary(max_size=32),
        st.booleans(),
    ),
    st.builds(Delete, st.sampled_from(["a", "d", "d/a", "x"])),
    st.builds(Rename, st.sampled_from(["a", "b", "d/a"]), st.sampled_from(["b", "d/z", "x/q"])),
    st.builds(SetMtime, st.sampled_from(["a", "d"]), st.integers(0, 2**31)),
)


@given(st.lists(st.tuples(ops, st.integers(1, 5), st.integers(0, 2**31)), max_size=40))
def test_same_ops_same_tree_and_codec_round_trip(history: list[tuple[object, int, int]]) -> None:
    """Two replicas applying the same decoded stream end byte-identical."""
    left, right = MemDB(), MemDB()
    for count, (op, writer, when) in enumerate(history):
        raw = messages.encode_op(op, count, when)  # type: ignore[arg-type]
        decoded = messages.decode(raw)
        assert isinstance(decoded, messages.NormalMessage) and decoded.op == op
        a = left.apply(op, writer, when)  # type: ignore[arg-type]
        b = right.apply(decoded.op, writer, decoded.time)
        assert a == b
    assert left.checksum() == right.checksum()
    assert left.index() == right.index()


@given(st.binary(max_size=200))
def test_decode_untrusted_bytes_raises_only_message_error(raw: bytes) -> None:
    with contextlib.suppress(messages.MessageError):
        messages.decode(raw)


def test_decode_mutated_messages_raises_only_message_error() -> None:
    seed = random.randrange(2**32)
    print(f"seed={seed}")
    rng = random.Random(seed)
    good = messages.encode_op(Write("nodes/pve1/qemu-server/100.conf", 3, b"memory: 2048"), 7, 99)
    for _ in range(2000):
        raw = bytearray(good)
        for _ in range(rng.randint(1, 4)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        with contextlib.suppress(messages.MessageError):
            messages.decode(bytes(raw[: rng.randint(0, len(raw))]))


class _ConfigDb:
    """What a node persists: the rows every applied result changes, written to a real
    config.db (``BackingStore``); the memdb must hold exactly what that file holds."""

    def __init__(self, db: MemDB, directory: Path) -> None:
        self.store = BackingStore(directory / "config.db", Durability.wal_normal)
        self.store.replace_all(db.entries())

    def apply(self, db: MemDB, op: object, writer: int, when: int) -> None:
        result = db.apply(op, writer, when)  # type: ignore[arg-type]
        self.store.commit([result])

    def table(self) -> list[tuple[object, ...]]:
        return self.store.db.execute("SELECT * FROM tree ORDER BY inode").fetchall()


def _assert_memdb_matches_file(db: MemDB, config_db: _ConfigDb) -> None:
    table = config_db.table()
    assert [tuple(vars(e).values()) for e in db.entries()] == table
    for inode, parent, *_ in table:
        names = [r[6] for r in table if r[1] == inode and r[0] != 0]
        found = db._children.get(inode, {})
        assert sorted(n for n, i in found.items() if i != 0) == sorted(names), parent
    fresh = MemDB()  # the digests the memdb caches are those of the rows in the file
    fresh.load(config_db.store.load())
    assert fresh.index() == db.index() and fresh.checksum() == db.checksum()


mirror_ops = st.one_of(
    ops,
    st.builds(Create, st.sampled_from(["__version__", "d/__version__", "x/y"])),
    st.builds(Rename, st.sampled_from(["x", "d", "d/e"]), st.sampled_from(["d", "x", "q"])),
)


@given(st.lists(st.tuples(mirror_ops, st.integers(1, 5), st.integers(0, 2**31)), max_size=40))
def test_memdb_holds_what_config_db_holds(history: list[tuple[object, int, int]]) -> None:
    """After any history (clashing names and refused operations included) the memdb holds
    exactly the rows of the config.db written from the results it returned."""
    db = MemDB()
    with tempfile.TemporaryDirectory() as directory:
        config_db = _ConfigDb(db, Path(directory))
        for op, writer, when in history:
            config_db.apply(db, op, writer, when)
            assert 0 in {row[0] for row in config_db.table()}  # /__version__ is refused
            _assert_memdb_matches_file(db, config_db)
            index = db.index()
            assert index == db.index()  # the digest cache gives the same answer twice
        config_db.store.close()


def test_a_failed_operation_leaves_the_tree_as_before(tmp_path: Path) -> None:
    """Rename over a file deletes the target first; a failure after that (here a planted
    one in the last step) puts every row back."""
    db = MemDB()
    config_db = _ConfigDb(db, tmp_path)
    config_db.apply(db, Create("a"), 1, 1)
    config_db.apply(db, Create("b"), 1, 1)
    before = db.entries()
    index = db.index()
    real_put = db._put

    def put_then_fail(entry: Entry) -> None:
        real_put(entry)
        if entry.name == "b" and entry.inode != 3:
            raise MemoryError("planted")

    db._put = put_then_fail  # type: ignore[method-assign]
    with pytest.raises(MemoryError):
        db.apply(Rename("a", "b"), 1, 2)
    del db._put
    assert db.entries() == before and db.index() == index
    assert db.lookup("b") == before[-1] and db.lookup("a") == before[-2]
    _assert_memdb_matches_file(db, config_db)
    config_db.apply(db, Rename("a", "b"), 1, 3)  # and the store goes on
    assert db.lookup("a") is None and db.read("b") == b""
    _assert_memdb_matches_file(db, config_db)


def test_numbers_config_db_cannot_store_are_refused_before_any_change() -> None:
    db = MemDB()
    db.apply(Create("a"), 1, 1)
    before = db.entries()
    for op, writer, mtime in (
        (Create("b"), 1, 2**70),
        (Create("b"), 2**64, 1),
        (SetMtime("a", 2**63), 1, 1),
    ):
        with pytest.raises(OverflowError):
            db.apply(op, writer, mtime)
        assert db.entries() == before
    huge = Entry(5, 0, 2**64, 1, 1, DT_REG, "x", b"")
    with pytest.raises(OverflowError):
        db.replace_all([*before, huge])
    assert db.entries() == before


def test_the_version_rows_name_is_refused_at_the_root() -> None:
    """A file or directory ``/__version__`` would take the version row's key (parent 0,
    that name): SQLite's REPLACE dropped the version row and every later operation
    failed. Elsewhere the name is an ordinary one."""
    db = MemDB()
    db.apply(Mkdir("d"), 1, 1)
    db.apply(Create("x"), 1, 1)
    for op in (Create("__version__"), Mkdir("__version__"), Rename("x", "__version__")):
        result = db.apply(op, 1, 2)
        assert result.errno_code == errno.EACCES, op
    assert db.root().name == "__version__" and db.root().version == 3
    assert db.apply(Create("d/__version__"), 1, 3).ok
    assert db.apply(Write("x", 0, b"still works"), 1, 4).ok
    assert db.read("x") == b"still works"
