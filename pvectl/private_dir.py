"""Per-user private directories for runtime state and local sockets.

A directory in a shared place (``/tmp``) may have been created first by another local
user, or be a symlink into somewhere else: trusting it lets that user plant files we read
(a lab's state, a fake qnetd control socket) or squat the name we need. Every such
directory is therefore created ``0700`` and then ``lstat``-checked: ours, a real
directory, and closed to group and others, or refused with exit 77.
"""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

from pvectl.errors import PermissionNeeded

SHARED_TMP = Path("/tmp")


def _owner(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _refuse(path: Path, problem: str) -> PermissionNeeded:
    return PermissionNeeded(
        f"{path}: {problem}; refusing to use it; remove it or set XDG_RUNTIME_DIR"
    )


def check_private_dir(path: Path) -> Path:
    """Refuse ``path`` unless it is a directory (not a symlink) owned by the effective
    user with no group or other permission bits; a missing path is left to the caller."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return path
    except OSError as exc:
        raise PermissionNeeded(f"{path}: {exc.strerror or exc}") from exc
    owner = _owner(st.st_uid)
    if stat.S_ISLNK(st.st_mode):
        raise _refuse(path, f"is a symlink owned by {owner}")
    if not stat.S_ISDIR(st.st_mode):
        raise _refuse(path, f"is not a directory (owned by {owner})")
    if st.st_uid != os.geteuid():
        raise _refuse(path, f"owned by {owner}, not by {_owner(os.geteuid())}")
    if st.st_mode & 0o077:
        raise _refuse(
            path,
            f"owned by {owner} with mode {stat.S_IMODE(st.st_mode):04o}: "
            "group or others have access",
        )
    return path


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) mode 0700 if needed, then check it as
    :func:`check_private_dir` does. Returns ``path``."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass  # checked below, whoever made it
    except OSError as exc:
        raise PermissionNeeded(f"{path}: cannot create it: {exc.strerror or exc}") from exc
    else:
        os.chmod(path, 0o700)  # a umask may have taken bits we need away; never adds any
    return check_private_dir(path)


def runtime_dir() -> Path:
    """Where this user's runtime state and sockets live (not yet created or checked):
    ``$XDG_RUNTIME_DIR/pvectl`` when that is set and valid, else ``/run/pvectl`` for
    root, else ``/tmp/pvectl-$UID``."""
    xdg = os.environ.get("XDG_RUNTIME_DIR", "")
    if xdg and os.path.isabs(xdg):
        try:
            st = os.lstat(xdg)
        except OSError:
            st = None
        valid = (
            st is not None
            and stat.S_ISDIR(st.st_mode)
            and st.st_uid == os.geteuid()
            and not st.st_mode & 0o077
        )
        if valid:
            return Path(xdg) / "pvectl"
    if os.geteuid() == 0:
        return Path("/run/pvectl")
    return SHARED_TMP / f"pvectl-{os.geteuid()}"
