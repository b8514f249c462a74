"""Where a lab keeps its state, and the JSON file that lets every later command find it.

The state file records the engine, so ``pvectl lab ...`` and ``--target lab`` dispatch
on it; a crashed ``pvectl`` leaves it behind and ``lab down`` still finds everything.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from pvectl.errors import ConfigError, PermissionNeeded, UsageError
from pvectl.private_dir import check_private_dir, user_runtime_dir

STATE_FILE = "lab.json"
SCHEMA_VERSION = 1
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,15}$")


def check_lab_name(name: str) -> str:
    """Lab names become namespace names and directory names: keep them short and plain."""
    if not _NAME.match(name):
        raise UsageError(
            f"invalid lab name {name!r}: use 1-16 letters, digits, '-' or '_', starting with a "
            "letter or digit"
        )
    return name


def labs_root() -> Path:
    """``lab/`` in this user's checked runtime directory (``$XDG_RUNTIME_DIR/pvectl``,
    ``/run/pvectl`` for root, else ``/tmp/pvectl-$UID``): runtime state that a reboot
    should forget, in a place no other user can have planted."""
    root = user_runtime_dir() / "lab"
    try:
        root.mkdir(mode=0o700, exist_ok=True)
    except OSError as exc:
        raise PermissionNeeded(f"{root}: cannot create it: {exc.strerror}") from exc
    check_private_dir(root)
    return root


def lab_dir(name: str) -> Path:
    return labs_root() / check_lab_name(name)


@contextmanager
def locked(name: str) -> Iterator[None]:
    """Serialise commands that change a lab (up, down, stop, start) across processes; the
    lock file sits beside the lab's directory (which ``down`` removes) and goes with the
    lab, so no lock files pile up."""
    root = labs_root()
    root.mkdir(parents=True, exist_ok=True)
    lock = root / f".{check_lab_name(name)}.lock"
    with open(lock, "a", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if not (root / name).exists():
                lock.unlink(missing_ok=True)
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass(frozen=True)
class LabNode:
    node_id: int
    name: str
    namespace: str
    address: str
    dir: str
    votes: int = 1
    pid: int | None = None
    host: str = ""  # lab up --host: the SSH host running this node ("" = this machine)
    python: str = ""  # that host's python3 (absolute path)
    port: int = 5405  # its UDP port


@dataclass(frozen=True)
class LabState:
    name: str
    engine: str
    state_dir: str
    namespace_prefix: str
    hub_namespace: str
    subnet: str
    cluster_name: str
    transport: str
    nodes: tuple[LabNode, ...]
    options: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    schema: int = SCHEMA_VERSION

    def node(self, node_id: int) -> LabNode:
        for node in self.nodes:
            if node.node_id == node_id:
                return node
        known = ", ".join(str(n.node_id) for n in self.nodes)
        raise UsageError(f"lab {self.name!r} has no node {node_id} (nodes: {known})")

    def with_pid(self, node_id: int, pid: int | None) -> LabState:
        nodes = tuple(replace(n, pid=pid) if n.node_id == node_id else n for n in self.nodes)
        return replace(self, nodes=nodes)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["nodes"] = [asdict(node) for node in self.nodes]
        return data


def save(state: LabState) -> None:
    directory = Path(state.state_dir)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(state.to_json(), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, directory / STATE_FILE)


def load(name: str) -> LabState | None:
    """The lab's recorded state, or None when no lab of that name was started."""
    path = lab_dir(name) / STATE_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"unreadable lab state: {exc}", str(path)) from exc
    try:
        nodes = tuple(LabNode(**node) for node in data.pop("nodes"))
        return LabState(nodes=nodes, **data)
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"lab state has an unexpected shape: {exc}", str(path)) from exc


def all_labs() -> list[LabState]:
    root = labs_root()
    if not root.is_dir():
        return []
    found = []
    for child in sorted(root.iterdir()):
        if _NAME.match(child.name) and (child / STATE_FILE).is_file():
            try:
                state = load(child.name)
            except ConfigError:
                continue  # another lab's unreadable state must not break this command
            if state is not None:
                found.append(state)
    return found
