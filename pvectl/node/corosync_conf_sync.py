"""pmxcfs's dcdb_sync_corosync_conf: the store's ``corosync.conf`` copied to this node's
local one when its ``config_version`` is higher. The running node keeps its configuration
until restarted, as corosync does for most keys.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from pvectl.cfs import memdb as mdb

COROSYNC_CONF = "corosync.conf"  # in the store, as /etc/pve/corosync.conf


def config_version(text: str) -> int | None:
    match = re.search(r"(?m)^\s*config_version\s*:\s*(\d+)\s*$", text)
    return int(match.group(1)) if match else None


class CorosyncConfSync:
    def __init__(self, memdb: mdb.MemDB, state_dir: Path, log: logging.Logger) -> None:
        self.memdb = memdb
        self.local = state_dir / COROSYNC_CONF
        self.log = log
        self.seen = -1  # the store entry's version last looked at

    def sync(self) -> None:
        """After a write was applied or the store installed: write the local copy
        (atomically) if the store's is newer; cheap when the entry did not change."""
        entry = self.memdb.lookup(COROSYNC_CONF)
        if entry is None or entry.is_dir or entry.version == self.seen:
            return
        self.seen = entry.version
        text = (entry.data or b"").decode(errors="replace")
        new = config_version(text)
        local = self.local
        try:
            old = config_version(local.read_text(errors="replace"))
        except FileNotFoundError:
            old = None
        if new is None or (old is not None and new <= old):
            if new is None:
                self.log.warning("[PVECFS] corosync.conf in the store has no config_version")
            return
        tmp = local.with_suffix(".new")
        tmp.write_text(text)
        os.replace(tmp, local)
        self.log.info("[PVECFS] wrote new corosync config '%s' (version = %d)", local, new)
