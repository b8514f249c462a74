"""One node's config store as a FUSE filesystem (libfuse3 through mfusepy), like /etc/pve.

Every operation becomes a request on the node's control socket, so a write travels through
the cluster exactly like one from ``pvectl lab fs put``: ordered by the token, applied on
every member, and acknowledged here only once the node acknowledged it at the mount's commit
level (``local`` or ``all``). Nothing is cached across operations (attribute and entry
timeouts are 0, files are opened with direct_io), so another node's write is visible at
once. ``pvectl.cfs.fsview`` decides what pmxcfs would show; this module only does the I/O.

``python -m pvectl.node.fuse_mount ...`` runs the filesystem in the foreground until it is
unmounted (``pvectl lab mount`` starts it in the background).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import errno
import grp
import itertools
import json
import logging
import os
import stat
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pvectl.cfs import fsview
from pvectl.cfs.memdb import Entry
from pvectl.errors import ExitCode, PvectlError
from pvectl.node import config as node_config
from pvectl.node import control_socket
from pvectl.node.config import NodeConfig
from pvectl.totem.ring_id import RingId

LEVELS = ("local", "all")
READ_TIMEOUT = 10.0
WRITE_TIMEOUT = 60.0
UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2
FSNAME_PREFIX = "pvectl-cfs"

log = logging.getLogger("pvectl.fuse")


def _fail(code: int) -> OSError:
    return OSError(code, os.strerror(code))


class StoreClient:
    """Control-socket requests from libfuse's worker threads.

    A pool of kept-open connections, one per request in flight: libfuse starts and ends
    worker threads as load changes, so per-thread connections would pile up.
    """

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        self._idle: list[control_socket.Connection] = []
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    def _request(self, cmd: str, timeout: float, args: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            connection = (
                self._idle.pop() if self._idle else control_socket.Connection(self.socket_path)
            )
        reply = connection.request(cmd, timeout, **args)  # closes itself when it fails
        with self._lock:
            self._idle.append(connection)
        return reply

    def ask(self, cmd: str, timeout: float = READ_TIMEOUT, **args: Any) -> dict[str, Any]:
        """The node's reply; a refusal or an unreachable node becomes an OSError errno."""
        try:
            reply = self._request(cmd, timeout, args)
        except PvectlError as exc:
            log.warning("%s %s: %s", cmd, args.get("path", ""), exc)
            lost = errno.ETIMEDOUT if exc.exit_code == ExitCode.TEMP_FAIL else errno.ENOTCONN
            raise _fail(lost) from exc
        if reply.get("ok"):
            return reply
        given = reply.get("errno")
        if isinstance(given, int) and given > 0:
            raise _fail(given)
        message = str(reply.get("error", ""))
        log.warning("%s %s refused: %s", cmd, args.get("path", ""), message)
        raise _fail(errno.ENOENT if "no such file" in message else errno.EIO)


@dataclass
class OpenFile:
    path: str
    data: bytes | None  # whole-file copy, fetched on the first read after open or a write
    special: bool = False


def node_start_time(pid: int) -> int:
    """A process's start as a Unix time (pmxcfs's ``.version`` starttime), 0 if unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        boot = next(
            int(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
        return boot + int(fields[19]) // os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError, StopIteration):
        return 0


def _owner() -> tuple[int, int]:
    """root:www-data as on a PVE node when that group exists; else whoever mounts."""
    try:
        gid = grp.getgrnam("www-data").gr_gid if os.geteuid() == 0 else os.getegid()
    except KeyError:
        gid = os.getegid()
    return os.geteuid(), gid


class ConfigStoreFS:
    """The FUSE operations (mfusepy's calling convention; paths are absolute)."""

    use_ns = True

    def __init__(
        self,
        client: StoreClient,
        config: NodeConfig,
        level: str = "local",
        on_mounted: Callable[[], None] | None = None,
    ) -> None:
        if level not in LEVELS:
            raise PvectlError(f"commit level must be local or all, not {level!r}")
        self.client = client
        self.config = config
        self.level = level
        self.nodename = config.names[config.node_id]
        self.uid, self.gid = _owner()
        self.on_mounted = on_mounted
        self._handles: dict[int, OpenFile] = {}
        self._handles_lock = threading.Lock()
        self._next_handle = itertools.count(1)

    # --- lifecycle -----------------------------------------------------------------------

    def init(self, _path: str) -> None:
        if self.on_mounted is not None:
            self.on_mounted()

    def destroy(self, _path: str) -> None:
        self.client.close()

    # --- helpers -------------------------------------------------------------------------

    def _stat(self, name: str) -> dict[str, Any]:
        reply = self.client.ask("stat", path=name)
        if not reply.get("exists"):
            raise _fail(errno.ENOENT)
        return reply

    def _attrs(self, mode: int, size: int, mtime: int, links: int = 1) -> dict[str, Any]:
        ns = mtime * 10**9
        return {
            "st_mode": mode,
            "st_nlink": links,
            "st_size": size,
            "st_blocks": -(-size // 512),
            "st_uid": self.uid,
            "st_gid": self.gid,
            "st_atime": ns,
            "st_mtime": ns,
            "st_ctime": ns,
        }

    def _entries(self) -> list[Entry]:
        rows = self.client.ask("tree")["rows"]
        return [
            Entry(
                int(r[0]),
                int(r[1]),
                int(r[2]),
                int(r[3]),
                int(r[4]),
                int(r[5]),
                str(r[6]),
                base64.b64decode(r[7]) if r[7] is not None else None,
            )
            for r in rows
        ]

    def special_content(self, name: str) -> bytes:
        info = self.client.ask("info")
        clinfo = RingId.parse(str(info.get("ring_id", "0"))).seq
        store_version = int(info.get("store_version", 0))
        if name == ".members":
            view = fsview.ClusterView(
                nodename=self.nodename,
                cluster_name=self.config.cluster.name,
                config_version=self.config.cluster.config_version,
                nodes=tuple(
                    fsview.NodeInfo(p.node_id, p.name, p.address) for p in self.config.peers
                ),
                online=frozenset(int(m) for m in info.get("members", [])),
                quorate=bool(info.get("quorate")),
                clinfo_version=clinfo,
            )
            return fsview.render(fsview.members(view))
        entries = self._entries()
        if name == ".vmlist":
            return fsview.render(fsview.vmlist(entries, store_version))
        starttime = node_start_time(int(info.get("pid", 0)))
        return fsview.render(fsview.version(entries, starttime, clinfo, store_version))

    def _refuse_reserved(self, *paths: str) -> None:
        if any(fsview.is_reserved(p) for p in paths):
            raise _fail(errno.EACCES)

    def _invalidate(self, name: str) -> None:
        with self._handles_lock:
            for handle in self._handles.values():
                if handle.path == name and not handle.special:
                    handle.data = None

    def _new_handle(self, handle: OpenFile) -> int:
        number = next(self._next_handle)
        with self._handles_lock:
            self._handles[number] = handle
        return number

    def _handle(self, fh: int) -> OpenFile:
        with self._handles_lock:
            found = self._handles.get(fh)
        if found is None:
            raise _fail(errno.EBADF)
        return found

    def _current(self, path: str | None, handle: OpenFile) -> str:
        """libfuse passes the path as it is now (after a rename), when it still has one."""
        if path:
            handle.path = fsview.normalize(path)
        return handle.path

    def _store_write(self, op: str, name: str, **args: Any) -> None:
        self.client.ask("write", WRITE_TIMEOUT, op=op, path=name, level=self.level, **args)

    # --- reading ---------------------------------------------------------------------------

    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        name = fsview.normalize(path)
        if fsview.is_symlink(name):
            root = self._stat("")
            target = fsview.symlink_target(name, self.nodename)
            mode = stat.S_IFLNK | fsview.symlink_mode(bool(root["writable"]))
            return self._attrs(mode, len(target), int(root["mtime"]))
        if fsview.is_special(name):
            root = self._stat("")
            size = len(self.special_content(name))
            mode = stat.S_IFREG | fsview.SPECIAL_FILE_MODE
            return self._attrs(mode, size, int(root["mtime"]))
        found = self._stat(name)
        is_dir = bool(found["dir"])
        mode = fsview.entry_mode(name, is_dir, bool(found["writable"]))
        if is_dir:
            return self._attrs(stat.S_IFDIR | mode, 0, int(found["mtime"]), links=2)
        return self._attrs(stat.S_IFREG | mode, int(found["size"]), int(found["mtime"]))

    def readdir(self, path: str, fh: int) -> list[tuple[str, dict[str, int], int]]:
        name = fsview.normalize(path)
        entries = self.client.ask("readdir", path=name)["entries"]
        listing = [(".", {"st_mode": stat.S_IFDIR}, 0), ("..", {"st_mode": stat.S_IFDIR}, 0)]
        for entry in entries:
            if name == "" and fsview.is_reserved(entry["name"]):
                continue
            kind = stat.S_IFDIR if entry["dir"] else stat.S_IFREG
            listing.append((str(entry["name"]), {"st_mode": kind}, 0))
        if name == "":
            listing += [(n, {"st_mode": stat.S_IFREG}, 0) for n in fsview.SPECIAL_FILES]
            listing += [(n, {"st_mode": stat.S_IFLNK}, 0) for n in fsview.SYMLINKS]
        return listing

    def readlink(self, path: str) -> str:
        if not fsview.is_symlink(path):
            raise _fail(errno.EINVAL)
        return fsview.symlink_target(path, self.nodename)

    def open(self, path: str, flags: int) -> int:
        name = fsview.normalize(path)
        if fsview.is_special(name):
            if flags & os.O_ACCMODE != os.O_RDONLY:
                raise _fail(errno.EACCES)
            return self._new_handle(OpenFile(name, self.special_content(name), special=True))
        if flags & os.O_TRUNC and flags & os.O_ACCMODE != os.O_RDONLY:
            # libfuse3 negotiates atomic O_TRUNC: the truncation arrives here, not as setattr
            self.truncate(name, 0)
            return self._new_handle(OpenFile(name, b""))
        return self._new_handle(OpenFile(name, None))

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        handle = self._handle(fh)
        data = handle.data
        if data is None:
            reply = self.client.ask("read", path=self._current(path, handle))
            if reply.get("dir"):
                raise _fail(errno.EISDIR)
            data = base64.b64decode(reply.get("data", ""))
            handle.data = data
        return data[offset : offset + size]

    def release(self, path: str, fh: int) -> int:
        with self._handles_lock:
            self._handles.pop(fh, None)
        return 0

    def flush(self, path: str, fh: int) -> int:
        return 0

    def fsync(self, path: str, datasync: int, fh: int) -> int:
        """Every write was acknowledged at the mount's commit level: nothing is pending."""
        return 0

    def statfs(self, path: str) -> dict[str, int]:
        total, inodes = fsview.usage(self._entries())
        return fsview.statfs(total, inodes).as_dict()

    # --- writing ---------------------------------------------------------------------------

    def create(self, path: str, mode: int, flags: int) -> int:
        name = fsview.normalize(path)
        self._refuse_reserved(name)
        try:
            self._store_write("create", name)
        except OSError as exc:
            if exc.errno != errno.EEXIST or flags & os.O_EXCL:
                raise
        return self._new_handle(OpenFile(name, b""))

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        handle = self._handle(fh)
        if handle.special:
            raise _fail(errno.EACCES)
        if fsview.exceeds_limit(offset, len(data)):
            raise _fail(errno.EFBIG)  # refused whole: no chunk of this write is applied
        written = 0
        name = self._current(path, handle)
        try:
            for chunk_offset, chunk in fsview.write_chunks(offset, data):
                self._store_write(
                    "pwrite",
                    name,
                    offset=chunk_offset,
                    data=base64.b64encode(chunk).decode(),
                )
                written += len(chunk)
        finally:
            self._invalidate(name)
        return written

    def truncate(self, path: str, length: int, fh: int | None = None) -> int:
        name = self._handle(fh).path if fh else fsview.normalize(path)
        self._refuse_reserved(name)
        if fsview.exceeds_limit(length, 0):
            raise _fail(errno.EFBIG)
        try:
            self._store_write("pwrite", name, offset=length, data="", truncate=True)
        finally:
            self._invalidate(name)
        return 0

    def mkdir(self, path: str, mode: int) -> int:
        name = fsview.normalize(path)
        self._refuse_reserved(name)
        self._store_write("mkdir", name)
        return 0

    def unlink(self, path: str) -> int:
        name = fsview.normalize(path)
        self._refuse_reserved(name)
        if self._stat(name)["dir"]:
            raise _fail(errno.EISDIR)
        self._store_write("delete", name)
        return 0

    def rmdir(self, path: str) -> int:
        name = fsview.normalize(path)
        self._refuse_reserved(name)
        if not self._stat(name)["dir"]:
            raise _fail(errno.ENOTDIR)
        self._store_write("delete", name)
        return 0

    def rename(self, old: str, new: str) -> int:
        source, target = fsview.normalize(old), fsview.normalize(new)
        self._refuse_reserved(source, target)
        self._store_write("rename", source, to=target)
        self._invalidate(source)
        return 0

    def utimens(self, path: str, mtime: int | None) -> int:
        """Called by ``CfsFuse`` with the new mtime in seconds (None: now)."""
        name = fsview.normalize(path)
        self._refuse_reserved(name)
        self._store_write("mtime", name, mtime=int(time.time()) if mtime is None else mtime)
        return 0

    def chmod(self, path: str, mode: int) -> int:
        name = fsview.normalize(path)
        if fsview.is_reserved(name):
            raise _fail(errno.EPERM)
        if not fsview.chmod_allowed(name, bool(self._stat(name)["dir"]), mode):
            raise _fail(errno.EPERM)
        return 0

    def chown(self, path: str, uid: int, gid: int) -> int:
        if not fsview.is_reserved(path):
            self._stat(fsview.normalize(path))
        if uid not in (-1, self.uid) or gid not in (-1, self.gid):
            raise _fail(errno.EPERM)
        return 0


def mount_options(fsname: str) -> dict[str, Any]:
    """pmxcfs's options (default_permissions, allow_other, direct_io) plus no kernel caching
    of attributes or lookups, so one node's mount sees another node's write at once."""
    options: dict[str, Any] = {
        "fsname": fsname,
        "subtype": FSNAME_PREFIX,
        "default_permissions": True,
        "direct_io": True,
        "attr_timeout": 0,
        "entry_timeout": 0,
        "negative_timeout": 0,
        "hard_remove": True,  # no .fuse_hidden* renames: they would replicate to every node
    }
    if os.geteuid() == 0:
        options["allow_other"] = True
    return options


def serve(operations: ConfigStoreFS, mountpoint: Path, fsname: str) -> None:
    """Mount and serve until unmounted (or SIGINT/SIGTERM, which unmount)."""
    os.environ.setdefault("FUSE_LIBRARY_NAME", "fuse3")  # not libfuse2 when both are there
    import mfusepy

    class CfsFuse(mfusepy.FUSE):  # type: ignore[misc]
        """renameat2 flags and UTIME_NOW/OMIT, which mfusepy's generic wrappers lose."""

        def rename_fuse_3(self, old: bytes, new: bytes, flags: int) -> int:
            if flags:
                return -errno.EINVAL  # RENAME_NOREPLACE/EXCHANGE: callers fall back
            return int(super().rename_fuse_3(old, new, flags))

        def utimens_fuse_3(self, path: bytes | None, buf: Any, fip: Any) -> int:
            mtime: int | None = None
            if buf:
                modtime = buf.contents.modtime
                if modtime.tv_nsec == UTIME_OMIT:
                    return 0
                if modtime.tv_nsec != UTIME_NOW:
                    mtime = int(modtime.tv_sec)
            decoded = "" if path is None else path.decode("utf-8", "surrogateescape")
            return int(operations.utimens(decoded, mtime))

    CfsFuse(operations, str(mountpoint), foreground=True, **mount_options(fsname))


def write_record(record: Path, **fields: Any) -> None:
    record.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = record.with_suffix(".tmp")
    tmp.write_text(json.dumps(fields) + "\n", encoding="utf-8")
    os.replace(tmp, record)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pvectl.node.fuse_mount")
    parser.add_argument("--socket", type=Path, required=True, help="the node's control socket")
    parser.add_argument("--config", type=Path, required=True, help="the node's corosync.conf")
    parser.add_argument("--node-id", type=int, required=True)
    parser.add_argument("--mountpoint", type=Path, required=True)
    parser.add_argument("--level", choices=LEVELS, default="local")
    parser.add_argument("--fsname", default=FSNAME_PREFIX)
    parser.add_argument("--record", type=Path, help="JSON file written once mounted")
    parser.add_argument("--lab", default="")
    args = parser.parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr, level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s"
    )
    record: Path | None = args.record
    mountpoint = args.mountpoint.resolve()

    def mounted() -> None:
        if record is not None:
            write_record(
                record,
                pid=os.getpid(),
                mountpoint=str(mountpoint),
                lab=args.lab,
                node=args.node_id,
                level=args.level,
                socket=str(args.socket),
            )

    try:
        config = node_config.load(args.config, args.node_id)
        operations = ConfigStoreFS(StoreClient(args.socket), config, args.level, mounted)
        serve(operations, mountpoint, args.fsname)
    except PvectlError as exc:
        print(f"pvectl fuse: error: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    except (OSError, RuntimeError) as exc:
        print(f"pvectl fuse: error: mount failed: {exc}", file=sys.stderr)
        return int(ExitCode.ERROR)
    finally:
        if record is not None:
            with contextlib.suppress(FileNotFoundError):
                record.unlink()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
