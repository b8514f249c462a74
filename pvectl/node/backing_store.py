"""The config store's backing ``config.db``: the persistent copy of the memdb.

Two durability modes, both plain SQLite settings on a file a stock ``sqlite3`` opens:

* ``fsync`` (default): WAL with ``synchronous=FULL``: every commit fsyncs the WAL before it
  returns, so a write acknowledged after ``commit`` survives a crash or power loss (what the
  seed article describes).
* ``wal-normal``: WAL with ``synchronous=NORMAL``: what current pmxcfs does. Commits are
  not fsynced one by one; the WAL is synced at checkpoints, so the last transactions can be
  lost on power loss (never corrupted).

``commit`` takes several applied transactions at once: that is group commit (one fsync for
many writes), used by the decoupled coupling.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from pvectl.cfs.memdb import REPLACE_ROW, SCHEMA, ApplyResult, Entry, entry_row
from pvectl.errors import ExitCode, PvectlError


class Durability(StrEnum):
    fsync = "fsync"
    wal_normal = "wal-normal"


@dataclass(frozen=True)
class CommitTiming:
    """How long the durable part took (sync-trace's fsync phase)."""

    transactions: int
    seconds: float


class BackingStore:
    def __init__(self, path: Path, durability: Durability = Durability.fsync) -> None:
        self.path = path
        self.durability = durability
        self.extra_delay_s = 0.0  # `lab slow-disk`: added to every commit, as a slow disk would
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
            os.chmod(path, 0o600)
            self.db.execute("PRAGMA journal_mode=WAL")
            sync = "FULL" if durability is Durability.fsync else "NORMAL"
            self.db.execute(f"PRAGMA synchronous={sync}")
            self.db.execute("PRAGMA busy_timeout=10000")
            self.db.executescript(SCHEMA)
        except sqlite3.Error as exc:
            raise PvectlError(f"{path}: cannot open config.db: {exc}", ExitCode.IO) from exc

    def load(self) -> list[Entry]:
        rows = self.db.execute("SELECT * FROM tree ORDER BY inode").fetchall()
        return [Entry(*row) for row in rows]

    def commit(self, results: Iterable[ApplyResult]) -> CommitTiming:
        """Persist applied transactions in one SQLite transaction (one fsync in fsync mode)."""
        started = time.perf_counter()
        count = 0
        self.db.execute("BEGIN")
        try:
            for result in results:
                count += 1
                for inode in result.deletes:
                    self.db.execute("DELETE FROM tree WHERE inode = ?", (inode,))
                for entry in result.upserts:
                    self._put(entry)
            self.db.execute("COMMIT")
        except sqlite3.Error as exc:
            self.db.execute("ROLLBACK")
            raise PvectlError(f"{self.path}: write failed: {exc}", ExitCode.IO) from exc
        if self.extra_delay_s > 0:
            time.sleep(self.extra_delay_s)
        return CommitTiming(count, time.perf_counter() - started)

    def replace_all(self, entries: Iterable[Entry]) -> CommitTiming:
        started = time.perf_counter()
        self.db.execute("BEGIN")
        self.db.execute("DELETE FROM tree")
        for entry in entries:
            self._put(entry)
        self.db.execute("COMMIT")
        return CommitTiming(1, time.perf_counter() - started)

    def _put(self, entry: Entry) -> None:
        self.db.execute(REPLACE_ROW, entry_row(entry))

    def close(self) -> None:
        self.db.close()
