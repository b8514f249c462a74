"""The config store's memdb: pmxcfs's ``tree`` table, held in RAM (rows by inode).

Every node applies the same operations in the same (agreed) order, so every node's tree is
identical, row for row. Semantics follow pmxcfs's memdb (pve-cluster's memdb.c):

* inode 0 is the ``__version__`` row carrying the global version, writer and mtime, and in
  its ``data`` the store's *epoch* (``u64`` little endian; none before the first write): the
  Totem ring seq of the configuration the last write was applied in. Writes are only
  applied in quorate configurations and ring seqs grow, so the tree with the highest
  (epoch, version) holds the newest quorate history (the DFSM sync leader rule);
* every mutating operation bumps the global version and stamps the touched entry with it;
* a new inode number is the global version at its creation (unique, increasing);
* ``writer`` is the node id whose message caused the change; ``mtime`` is the sender's clock,
  carried in the message, so applying is deterministic on every node;
* a file is at most 1 MiB (EFBIG); a non-empty directory cannot be removed or renamed
  (ENOTEMPTY); ``.``/``..`` cannot be created; rename over a file replaces it.

Applying returns the row changes so the node runtime can persist exactly them to the
backing ``config.db`` (see ``pvectl.node.backing_store``). No clock, no I/O here.
"""

from __future__ import annotations

import errno
import hashlib
import struct
from dataclasses import dataclass

DT_DIR = 4
DT_REG = 8
MAX_FILE_SIZE = 1024 * 1024
VERSION_ROW_NAME = "__version__"
_EPOCH = struct.Struct("<Q")


def encode_epoch(epoch: int) -> bytes | None:
    """The version row's ``data``: no bytes for epoch 0 (a store never written in a ring)."""
    return _EPOCH.pack(epoch) if epoch else None


def decode_epoch(data: bytes | None) -> int:
    return _EPOCH.unpack(data)[0] if data else 0


SCHEMA = """
CREATE TABLE IF NOT EXISTS tree (
  inode   INTEGER PRIMARY KEY NOT NULL,
  parent  INTEGER NOT NULL CHECK(typeof(parent)=='integer'),
  version INTEGER NOT NULL CHECK(typeof(version)=='integer'),
  writer  INTEGER NOT NULL CHECK(typeof(writer)=='integer'),
  mtime   INTEGER NOT NULL CHECK(typeof(mtime)=='integer'),
  type    INTEGER NOT NULL CHECK(typeof(type)=='integer'),
  name    TEXT NOT NULL,
  data    BLOB);
"""


REPLACE_ROW = "REPLACE INTO tree VALUES (?, ?, ?, ?, ?, ?, ?, ?)"


def entry_row(entry: Entry) -> tuple[int, int, int, int, int, int, str, bytes | None]:
    """The ``tree`` row of an entry, in column order (memdb and config.db alike)."""
    return (
        entry.inode,
        entry.parent,
        entry.version,
        entry.writer,
        entry.mtime,
        entry.type,
        entry.name,
        entry.data,
    )


@dataclass(frozen=True)
class Entry:
    """One row of ``tree``; inode 0 is the ``__version__`` row."""

    inode: int
    parent: int
    version: int
    writer: int
    mtime: int
    type: int
    name: str
    data: bytes | None

    @property
    def is_dir(self) -> bool:
        """The version row (inode 0) stands for the root directory."""
        return self.type == DT_DIR or self.inode == 0

    @property
    def size(self) -> int:
        """Bytes of a file (the version row's data is its epoch, not content)."""
        return len(self.data) if self.data is not None and self.inode != 0 else 0

    def digest(self) -> bytes:
        """SHA-256 over what makes two entries the same (pmxcfs's index digest fields)."""
        hasher = hashlib.sha256()
        hasher.update(
            struct.pack(
                "<QIIIBQ", self.version, self.writer, self.mtime, self.size, self.type, self.parent
            )
        )
        hasher.update(self.name.encode())
        if self.type == DT_REG and self.data is not None:
            hasher.update(self.data)
        return hasher.digest()


# --- operations (what travels in a CPG message) -------------------------------------------


@dataclass(frozen=True)
class Create:
    path: str


@dataclass(frozen=True)
class Mkdir:
    path: str


@dataclass(frozen=True)
class Write:
    """pwrite semantics: a write past the end grows the file; ``truncate`` sets size=offset+len."""

    path: str
    offset: int
    data: bytes
    truncate: bool = False


@dataclass(frozen=True)
class Delete:
    path: str


@dataclass(frozen=True)
class Rename:
    path: str
    to: str


@dataclass(frozen=True)
class SetMtime:
    path: str
    mtime: int


Operation = Create | Mkdir | Write | Delete | Rename | SetMtime


@dataclass(frozen=True)
class ApplyResult:
    """``errno_code`` 0 on success; ``upserts``/``deletes`` are what changed in ``tree``."""

    errno_code: int
    version: int
    upserts: tuple[Entry, ...] = ()
    deletes: tuple[int, ...] = ()

    @property
    def ok(self) -> bool:
        return self.errno_code == 0


INDEX_HEAD = struct.Struct("<QQQIII")  # epoch, version, last inode, writer, mtime, entries
_INODE = struct.Struct("<Q")  # then per entry: inode, digest


@dataclass(frozen=True)
class MemdbIndex:
    """What DFSM state sync compares: the epoch and global version plus a digest per inode."""

    version: int
    last_inode: int
    writer: int
    mtime: int
    entries: tuple[tuple[int, bytes], ...]
    epoch: int = 0  # ring seq of the configuration the last write was applied in

    def encode(self) -> bytes:
        head = INDEX_HEAD.pack(
            self.epoch,
            self.version,
            self.last_inode,
            self.writer,
            self.mtime,
            len(self.entries),
        )
        pack = _INODE.pack
        return head + b"".join([pack(inode) + d for inode, d in self.entries])

    def digest(self) -> str:
        return hashlib.sha256(self.encode()).hexdigest()


INT64 = range(-(2**63), 2**63)  # what an INTEGER column of config.db holds


def _check_int64(op: Operation, writer: int, mtime: int) -> None:
    """Refuse numbers config.db could not store, before anything changes (an ``mtime`` or a
    writer comes from the caller; every other number the memdb makes itself)."""
    if (
        writer not in INT64
        or mtime not in INT64
        or (isinstance(op, SetMtime) and op.mtime not in INT64)
    ):
        raise OverflowError("writer or mtime does not fit config.db's 64-bit INTEGER")


def split_path(path: str) -> list[str]:
    return [part for part in path.split("/") if part]


class MemDB:
    """The in-RAM tree; authoritative, like pmxcfs's (the backing config.db is its copy,
    written from the row changes ``apply`` returns).

    Rows by inode, and children by name per parent: ``tree``'s primary key and its unique
    (parent, name). A row put on a clashing inode or (parent, name) replaces the row there,
    as SQLite's ``REPLACE`` would. An operation that fails half-way is undone from a log of
    the rows it replaced, so the tree is never left half-changed."""

    def __init__(self) -> None:
        root = Entry(0, 0, 1, 0, 0, DT_REG, VERSION_ROW_NAME, None)
        self._rows: dict[int, Entry] = {0: root}
        self._children: dict[int, dict[str, int]] = {0: {VERSION_ROW_NAME: 0}}
        self._digests: dict[int, bytes] = {}  # inode -> digest of its current row
        self._stamp = 0  # the epoch the operation being applied stamps the store with
        self._undo: list[tuple[int, Entry | None]] | None = (
            None  # during apply: (inode, row before)
        )

    # --- reading ---------------------------------------------------------------------------

    def root(self) -> Entry:
        found = self._rows.get(0)
        assert found is not None
        return found

    @property
    def version(self) -> int:
        return self.root().version

    @property
    def epoch(self) -> int:
        """Ring seq of the configuration the last write was applied in (0: none yet)."""
        return decode_epoch(self.root().data)

    def _child(self, parent: int, name: str) -> Entry | None:
        """``tree``'s row (parent, name), never the version row."""
        names = self._children.get(parent)
        inode = names.get(name) if names is not None else None
        return self._rows[inode] if inode else None

    def lookup(self, path: str) -> Entry | None:
        found: Entry | None = self.root()
        for part in split_path(path):
            assert found is not None
            found = self._child(found.inode, part)
            if found is None:
                return None
        return found

    def read(self, path: str) -> bytes | None:
        entry = self.lookup(path)
        return entry.data or b"" if entry is not None and not entry.is_dir else None

    def listdir(self, path: str) -> list[Entry]:
        entry = self.lookup(path)
        if entry is None or not entry.is_dir:
            return []
        # str order is code point order, as SQLite's BINARY collation on UTF-8
        names = self._children.get(entry.inode, {})
        rows = self._rows
        return [rows[names[name]] for name in sorted(names) if names[name] != 0]

    def entries(self) -> list[Entry]:
        """Every row, sorted by inode (the order the index and the verify checksum use)."""
        rows = self._rows
        return [rows[inode] for inode in sorted(rows)]

    def _digest(self, entry: Entry) -> bytes:
        """``entry.digest()``, computed once per row version (the index and the verify
        checksum hash every row, the rows rarely change between two syncs)."""
        found = self._digests.get(entry.inode)
        if found is None:
            found = self._digests[entry.inode] = entry.digest()
        return found

    def index(self) -> MemdbIndex:
        root = self.root()
        rows = [e for e in self.entries() if e.inode != 0]
        digest = self._digest
        return MemdbIndex(
            version=root.version,
            last_inode=max((e.inode for e in rows), default=0),
            writer=root.writer,
            mtime=root.mtime,
            entries=tuple((e.inode, digest(e)) for e in rows),
            epoch=decode_epoch(root.data),
        )

    def checksum(self) -> str:
        """SHA-256 over the whole tree, version row included (pmxcfs's verify checksum)."""
        hasher = hashlib.sha256()
        digest = self._digest
        for entry in self.entries():
            hasher.update(digest(entry))
        return hasher.hexdigest()

    # --- writing ---------------------------------------------------------------------------

    def apply(
        self, op: Operation, writer: int, mtime: int, epoch: int | None = None
    ) -> ApplyResult:
        """Apply one operation, all or nothing; a refused one (an errno) changes nothing.
        ``epoch``: the ring seq of the configuration it is applied in (``None``: keep the
        store's)."""
        _check_int64(op, writer, mtime)
        self._stamp = self.epoch if epoch is None else epoch
        undo: list[tuple[int, Entry | None]] = []
        self._undo = undo
        try:
            return self._apply(op, writer, mtime)
        except BaseException:
            self._rollback(undo)
            raise
        finally:
            self._undo = None

    def _rollback(self, undo: list[tuple[int, Entry | None]]) -> None:
        """Put back, newest first, every row the failed operation replaced or added."""
        self._undo = None
        for inode, before in reversed(undo):
            self._delete_row(inode)
            if before is not None:
                self._insert(before)

    def _fail(self, code: int) -> ApplyResult:
        return ApplyResult(code, self.version)

    def _bump(self, writer: int, mtime: int) -> Entry:
        root = self.root()
        data = encode_epoch(self._stamp)
        new_root = Entry(0, 0, root.version + 1, writer, mtime, DT_REG, VERSION_ROW_NAME, data)
        self._put(new_root)
        return new_root

    def _put(self, entry: Entry) -> None:
        """SQLite's ``REPLACE``: drop the rows clashing on inode or (parent, name)."""
        inode = entry.inode
        self._delete_row(inode)
        names = self._children.get(entry.parent)
        clash = names.get(entry.name) if names is not None else None
        if clash is not None:
            self._delete_row(clash)
        if self._undo is not None:
            self._undo.append((inode, None))
        self._insert(entry)

    def _insert(self, entry: Entry) -> None:
        """Add a row whose inode and (parent, name) are free."""
        names = self._children.get(entry.parent)
        if names is None:
            names = self._children[entry.parent] = {}
        names[entry.name] = entry.inode
        self._rows[entry.inode] = entry

    def _delete_row(self, inode: int) -> None:
        old = self._rows.pop(inode, None)
        if old is None:
            return
        if self._undo is not None:
            self._undo.append((inode, old))
        self._digests.pop(inode, None)
        names = self._children[old.parent]
        del names[old.name]
        if not names:
            del self._children[old.parent]

    def _parent_of(self, path: str) -> tuple[Entry | None, str]:
        parts = split_path(path)
        if not parts:
            return None, ""
        parent = self.lookup("/".join(parts[:-1]))
        return parent, parts[-1]

    @staticmethod
    def _reserved(parent: Entry, name: str) -> bool:
        """``/__version__`` is the version row's own key (parent 0, that name): a file of
        that name would replace it and break the store."""
        return parent.inode == 0 and name == VERSION_ROW_NAME

    def _create(self, path: str, kind: int, writer: int, mtime: int) -> ApplyResult:
        parent, name = self._parent_of(path)
        if name in ("", ".", ".."):
            return self._fail(errno.EACCES)
        if parent is None:
            return self._fail(errno.ENOENT)
        if not parent.is_dir:
            return self._fail(errno.ENOTDIR)
        if self._reserved(parent, name):
            return self._fail(errno.EACCES)
        if self.lookup(path) is not None:
            return self._fail(errno.EEXIST)
        root = self._bump(writer, mtime)
        entry = Entry(
            root.version,
            parent.inode,
            root.version,
            writer,
            mtime,
            kind,
            name,
            None if kind == DT_DIR else b"",
        )
        self._put(entry)
        return ApplyResult(0, root.version, (entry, root))

    def _apply(self, op: Operation, writer: int, mtime: int) -> ApplyResult:
        if isinstance(op, Create):
            return self._create(op.path, DT_REG, writer, mtime)
        if isinstance(op, Mkdir):
            return self._create(op.path, DT_DIR, writer, mtime)
        if isinstance(op, Write):
            return self._write(op, writer, mtime)
        if isinstance(op, Delete):
            return self._delete(op.path, writer, mtime)
        if isinstance(op, Rename):
            return self._rename(op, writer, mtime)
        return self._set_mtime(op, writer, mtime)

    def _write(self, op: Write, writer: int, mtime: int) -> ApplyResult:
        if op.offset < 0:
            return self._fail(errno.EINVAL)
        if op.offset + len(op.data) > MAX_FILE_SIZE:
            return self._fail(errno.EFBIG)
        entry = self.lookup(op.path)
        if entry is None:
            return self._fail(errno.ENOENT)
        if entry.is_dir or entry.inode == 0:
            return self._fail(errno.EISDIR)
        old = entry.data or b""
        if op.truncate:
            base = old[: op.offset].ljust(op.offset, b"\0")
            data = base + op.data
        else:
            end = op.offset + len(op.data)
            data = old[: op.offset].ljust(op.offset, b"\0") + op.data + old[end:]
        root = self._bump(writer, mtime)
        new = Entry(
            entry.inode, entry.parent, root.version, writer, mtime, DT_REG, entry.name, data
        )
        self._put(new)
        return ApplyResult(0, root.version, (new, root))

    def _has_children(self, inode: int) -> bool:
        names = self._children.get(inode)
        return names is not None and any(child != 0 for child in names.values())

    def _delete(self, path: str, writer: int, mtime: int) -> ApplyResult:
        entry = self.lookup(path)
        if entry is None:
            return self._fail(errno.ENOENT)
        if entry.inode == 0:
            return self._fail(errno.EACCES)
        if entry.is_dir and self._has_children(entry.inode):
            return self._fail(errno.ENOTEMPTY)
        self._delete_row(entry.inode)
        root = self._bump(writer, mtime)
        return ApplyResult(0, root.version, (root,), (entry.inode,))

    def _rename(self, op: Rename, writer: int, mtime: int) -> ApplyResult:
        entry = self.lookup(op.path)
        if entry is None:
            return self._fail(errno.ENOENT)
        if entry.inode == 0:
            return self._fail(errno.EACCES)
        if entry.is_dir and self._has_children(entry.inode):
            return self._fail(errno.ENOTEMPTY)
        parent, name = self._parent_of(op.to)
        if parent is None or name in ("", ".", ".."):
            return self._fail(errno.ENOENT if parent is None else errno.EACCES)
        if not parent.is_dir:
            return self._fail(errno.ENOTDIR)
        if self._reserved(parent, name):
            return self._fail(errno.EACCES)
        deletes: tuple[int, ...] = ()
        target = self.lookup(op.to)
        if target is not None and target.inode != entry.inode:
            if target.is_dir != entry.is_dir:
                return self._fail(errno.EISDIR if target.is_dir else errno.ENOTDIR)
            if target.is_dir and self._has_children(target.inode):
                return self._fail(errno.ENOTEMPTY)
            self._delete_row(target.inode)
            deletes = (target.inode,)
        root = self._bump(writer, mtime)
        moved = Entry(
            entry.inode, parent.inode, root.version, writer, mtime, entry.type, name, entry.data
        )
        self._put(moved)
        return ApplyResult(0, root.version, (moved, root), deletes)

    def _set_mtime(self, op: SetMtime, writer: int, mtime: int) -> ApplyResult:
        entry = self.lookup(op.path)
        if entry is None:
            return self._fail(errno.ENOENT)
        root = self._bump(writer, mtime)
        new = Entry(
            entry.inode,
            entry.parent,
            root.version,
            writer,
            op.mtime,
            entry.type,
            entry.name,
            entry.data,
        )
        self._put(new)
        return ApplyResult(0, root.version, (new, root))

    # --- state sync --------------------------------------------------------------------------

    def replace_all(self, entries: list[Entry]) -> None:
        """Install a leader's tree (DFSM update), all or nothing."""
        for entry in entries:
            if not all(
                value in INT64
                for value in (entry.inode, entry.parent, entry.version, entry.writer, entry.mtime)
            ):
                raise OverflowError(f"inode {entry.inode}: a number config.db cannot store")
        self._rows = {}
        self._children = {}
        self._digests = {}
        for entry in entries:
            self._put(entry)

    def load(self, entries: list[Entry]) -> None:
        """Load rows from a backing config.db, with pmxcfs's load checks."""
        seen: set[tuple[int, str]] = set()
        inodes = {e.inode: e for e in entries}
        for entry in entries:
            if entry.inode == 0:
                if entry.name != VERSION_ROW_NAME:
                    raise ValueError(f"inode 0 must be {VERSION_ROW_NAME!r}, found {entry.name!r}")
                if entry.data is not None and len(entry.data) != _EPOCH.size:
                    raise ValueError(f"inode 0: epoch of {len(entry.data)} bytes, not 8")
                continue
            if entry.type not in (DT_DIR, DT_REG):
                raise ValueError(f"inode {entry.inode}: unknown type {entry.type}")
            if entry.type == DT_DIR and entry.data:
                raise ValueError(f"inode {entry.inode}: directory with data")
            if entry.parent != 0 and not (
                entry.parent in inodes and inodes[entry.parent].type == DT_DIR
            ):
                raise ValueError(f"inode {entry.inode}: parent {entry.parent} is not a directory")
            key = (entry.parent, entry.name)
            if key in seen:
                raise ValueError(f"found entry with duplicate name {entry.name!r}")
            seen.add(key)
        if 0 not in inodes:
            entries = [Entry(0, 0, 1, 0, 0, DT_REG, VERSION_ROW_NAME, None), *entries]
        self.replace_all(entries)


def _entry(row: tuple[int, int, int, int, int, int, str, bytes | None]) -> Entry:
    return Entry(*row)
