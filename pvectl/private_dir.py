"""Private per-user directories that are checked before they are trusted.

State under a shared directory such as ``/tmp`` can be planted by another local user: a
directory made first, a symlink into the victim's home, a ``lab.json`` naming hosts and
paths to delete. Every per-user state directory therefore goes through
``ensure_private_dir``: it is created ``0700`` and then ``lstat``-ed, and anything not
owned by us, a symlink, or writable by group or others is refused, never repaired, since
its contents cannot be trusted either.
"""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

from pvectl.errors import PermissionNeeded


def _owner_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def check_private_dir(path: Path) -> None:
    """Refuse ``path`` unless it is a real directory of ours that no one else may write."""
    try:
        info = os.lstat(path)
    except OSError as exc:
        raise PermissionNeeded(f"{path}: cannot check it: {exc.strerror}") from exc
    fix = "remove it (as its owner or root), or set XDG_RUNTIME_DIR to a directory of yours"
    if stat.S_ISLNK(info.st_mode):
        raise PermissionNeeded(f"{path}: is a symlink, refusing to use it; {fix}")
    if not stat.S_ISDIR(info.st_mode):
        raise PermissionNeeded(f"{path}: is not a directory, refusing to use it; {fix}")
    if info.st_uid != os.geteuid():
        owner = _owner_name(info.st_uid)
        raise PermissionNeeded(f"{path}: owned by {owner}, not by you; refusing to use it; {fix}")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        mode = stat.S_IMODE(info.st_mode)
        raise PermissionNeeded(
            f"{path}: writable by other users (mode {mode:04o}); refusing to use it; "
            f"run 'chmod 700 {path}' if it is yours"
        )


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (mode 0700, parents as needed) unless it exists, then check it."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise PermissionNeeded(f"{path}: cannot create it: {exc.strerror}") from exc
    check_private_dir(path)
    return path


def user_runtime_dir() -> Path:
    """Where this user's runtime state of pvectl lives, checked.

    ``$XDG_RUNTIME_DIR/pvectl`` when that directory exists and is ours (``su`` without
    ``-`` keeps another user's), ``/run/pvectl`` for root, else ``pvectl-$UID`` in
    ``$TMPDIR`` (default ``/tmp``), which other users may have created first: hence the check.
    """
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if runtime:
        try:
            info = os.stat(runtime)
        except OSError:
            info = None
        if info is not None and stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid():
            return ensure_private_dir(Path(runtime) / "pvectl")
    if os.geteuid() == 0:
        return ensure_private_dir(Path("/run/pvectl"))
    shared = Path(os.environ.get("TMPDIR") or "/tmp")
    return ensure_private_dir(shared / f"pvectl-{os.geteuid()}")
