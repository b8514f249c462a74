"""How pmxcfs's FUSE layer presents the memdb (pve-cluster's cfs-plug*.c), without I/O.

Modes (dirs 0755 and files 0640, ``priv`` trees 0700/0600, write bits dropped while not
quorate), the link plugin's symlinks, the generated JSON files (``.members``, ``.version``,
``.vmlist``), statfs figures and the 128 KiB write split. The FUSE binding
(``pvectl.node.fuse_mount``) feeds it what the node answered.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pvectl.cfs.memdb import MAX_FILE_SIZE, Entry, split_path

WRITE_CHUNK = 128 * 1024  # FUSE big_writes: each chunk is one message, one transaction
FS_SIZE = 128 * 1024 * 1024  # MEMDB_MAX_FSSIZE (advertised, not enforced)
MAX_INODES = 256 * 1024  # MEMDB_MAX_INODES (advertised, not enforced)
BLOCK_SIZE = 4096
NAME_MAX = 256
SPECIAL_FILE_MODE = 0o440

SPECIAL_FILES = (".members", ".version", ".vmlist")
SYMLINKS = ("local", "qemu-server", "lxc", "openvz")
GUEST_DIRS = {"qemu-server": "qemu", "lxc": "lxc", "openvz": "openvz"}

# Paths whose change counters .version reports (pmxcfs's observed list, abridged).
OBSERVED_PATHS = (
    "corosync.conf",
    "corosync.conf.new",
    "storage.cfg",
    "datacenter.cfg",
    "user.cfg",
    "domains.cfg",
    "priv/shadow.cfg",
    "priv/tfa.cfg",
    "priv/token.cfg",
    "priv/ipam.db",
    "vzdump.cron",
    "vzdump.conf",
    "jobs.cfg",
    "replication.cfg",
    "status.cfg",
    "ceph.conf",
    "notifications.cfg",
    "priv/notifications.cfg",
    "ha/crm_commands",
    "ha/manager_status",
    "ha/resources.cfg",
    "ha/rules.cfg",
    "ha/groups.cfg",
    "ha/fence.cfg",
    "sdn/vnets.cfg",
    "sdn/zones.cfg",
    "sdn/controllers.cfg",
    "sdn/subnets.cfg",
    "sdn/ipams.cfg",
    "sdn/dns.cfg",
    "firewall/cluster.fw",
    "virtual-guest/cpu-models.conf",
)

_LDH = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_VMCONF = re.compile(r"^([1-9][0-9]{0,9})\.conf$")


def normalize(path: str) -> str:
    """FUSE paths are absolute ('/a/b'); the store speaks relative ones ('a/b', '' = root)."""
    return "/".join(split_path(path))


def is_special(path: str) -> bool:
    return normalize(path) in SPECIAL_FILES


def is_symlink(path: str) -> bool:
    return normalize(path) in SYMLINKS


def is_reserved(path: str) -> bool:
    """Root names owned by the plugins: the store must not get entries shadowing them."""
    return is_special(path) or is_symlink(path)


def symlink_target(path: str, nodename: str) -> str:
    name = normalize(path)
    return f"nodes/{nodename}" if name == "local" else f"nodes/{nodename}/{name}"


def symlink_mode(writable: bool) -> int:
    return 0o777 if writable else 0o555


def is_private(path: str) -> bool:
    parts = split_path(path)
    return bool(parts) and (
        parts[0] == "priv" or (len(parts) >= 3 and parts[0] == "nodes" and parts[2] == "priv")
    )


def entry_mode(path: str, is_dir: bool, writable: bool) -> int:
    """Permission bits as pmxcfs shows them; ``writable`` is "this partition is quorate"."""
    private = is_private(path)
    mode = (0o700 if private else 0o755) if is_dir else (0o600 if private else 0o640)
    return mode if writable else mode & ~0o222


def chmod_allowed(path: str, is_dir: bool, mode: int) -> bool:
    """pmxcfs accepts chmod only to the mode the entry already has (no permission changes)."""
    return mode & 0o7777 == entry_mode(path, is_dir, writable=True)


def write_chunks(offset: int, data: bytes, size: int = WRITE_CHUNK) -> list[tuple[int, bytes]]:
    """Split one write the way pmxcfs's big_writes does: at most ``size`` bytes each."""
    if not data:
        return [(offset, b"")]
    return [(offset + i, data[i : i + size]) for i in range(0, len(data), size)]


def exceeds_limit(offset: int, length: int) -> bool:
    return offset + length > MAX_FILE_SIZE


@dataclass(frozen=True)
class StatFs:
    f_bsize: int
    f_frsize: int
    f_blocks: int
    f_bfree: int
    f_bavail: int
    f_files: int
    f_ffree: int
    f_favail: int
    f_namemax: int

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def statfs(total_bytes: int, inodes: int) -> StatFs:
    """pmxcfs's figures: 128 MiB in 4 KiB blocks and 256 Ki inodes, minus what is used."""
    blocks = FS_SIZE // BLOCK_SIZE
    used_blocks = -(-total_bytes // BLOCK_SIZE)
    free_blocks = max(0, blocks - used_blocks)
    free_inodes = max(0, MAX_INODES - inodes)
    return StatFs(
        f_bsize=BLOCK_SIZE,
        f_frsize=BLOCK_SIZE,
        f_blocks=blocks,
        f_bfree=free_blocks,
        f_bavail=free_blocks,
        f_files=MAX_INODES,
        f_ffree=free_inodes,
        f_favail=free_inodes,
        f_namemax=NAME_MAX,
    )


def usage(entries: Iterable[Entry]) -> tuple[int, int]:
    """(bytes held in files, entries) of a tree; the version row is not an inode."""
    rows = [e for e in entries if e.inode != 0]
    return sum(e.size for e in rows), len(rows)


def paths(entries: Iterable[Entry]) -> dict[str, Entry]:
    """Every entry by its path, resolved through the parent links."""
    by_inode = {e.inode: e for e in entries if e.inode != 0}
    found: dict[str, Entry] = {}
    for entry in by_inode.values():
        parts = [entry.name]
        parent = entry.parent
        seen = {entry.inode}
        while parent != 0 and parent in by_inode and parent not in seen:
            seen.add(parent)
            parts.append(by_inode[parent].name)
            parent = by_inode[parent].parent
        if parent == 0:
            found["/".join(reversed(parts))] = entry
    return found


def vmlist(entries: Iterable[Entry], store_version: int) -> dict[str, object]:
    """``.vmlist``: guests found at nodes/<node>/{qemu-server,lxc,openvz}/<vmid>.conf.

    pmxcfs keeps a separate vmlist counter; here its version is the store's global
    version, which moves whenever the list may have changed.
    """
    ids: dict[str, dict[str, object]] = {}
    for path, entry in sorted(paths(entries).items()):
        parts = path.split("/")
        if len(parts) != 4 or parts[0] != "nodes" or entry.is_dir:
            continue
        node, kind, name = parts[1], parts[2], parts[3]
        match = _VMCONF.match(name)
        if not _LDH.match(node) or kind not in GUEST_DIRS or match is None:
            continue
        vmid = int(match.group(1))
        if vmid > 0xFFFFFFFF or str(vmid) in ids:
            continue
        ids[str(vmid)] = {"node": node, "type": GUEST_DIRS[kind], "version": entry.version}
    return {"version": store_version, "ids": ids}


@dataclass(frozen=True)
class NodeInfo:
    node_id: int
    name: str
    address: str


@dataclass(frozen=True)
class ClusterView:
    """What ``.members`` needs: the configured nodes and what this node sees now."""

    nodename: str
    cluster_name: str
    config_version: int
    nodes: tuple[NodeInfo, ...]
    online: frozenset[int]
    quorate: bool
    clinfo_version: int


def members(view: ClusterView) -> dict[str, object]:
    """``.members``: pmxcfs's layout; ``online`` means "in this node's current membership"."""
    return {
        "nodename": view.nodename,
        "version": view.clinfo_version,
        "cluster": {
            "name": view.cluster_name,
            "version": view.config_version,
            "nodes": len(view.nodes),
            "quorate": int(view.quorate),
        },
        "nodelist": {
            node.name: {
                "id": node.node_id,
                "online": int(node.node_id in view.online),
                "ip": node.address,
            }
            for node in sorted(view.nodes, key=lambda n: n.node_id)
        },
    }


def version(
    entries: Iterable[Entry], starttime: int, clinfo_version: int, store_version: int
) -> dict[str, object]:
    """``.version``: pmxcfs counts changes per observed path; this store has no such
    counters, so each path reports the global version of its last change (0: absent)."""
    by_path = paths(entries)
    found: dict[str, object] = {
        "starttime": starttime,
        "clinfo": clinfo_version,
        "vmlist": store_version,
    }
    for path in OBSERVED_PATHS:
        entry = by_path.get(path)
        found[path] = entry.version if entry is not None else 0
    return found


def render(document: Mapping[str, object]) -> bytes:
    return (json.dumps(document, indent=1) + "\n").encode()
