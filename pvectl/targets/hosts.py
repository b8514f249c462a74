"""Which remote nodes a command talks to: ``--host [user@]host[:port]`` and named clusters.

A cluster is named once in ``$XDG_CONFIG_HOME/pvectl/config.yaml`` (default
``~/.config/pvectl/config.yaml``) so ``--cluster homelab`` expands to its hosts::

    clusters:
      homelab:
        hosts: [pve1, root@pve2, pve3:2222]
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pvectl.errors import ConfigError, UsageError

# Seconds to wait for an SSH connection: here, not in ssh.py, so the CLI can show the default
# without importing paramiko.
DEFAULT_CONNECT_TIMEOUT = 10.0

_USER = r"[A-Za-z0-9_.][A-Za-z0-9_.-]*"
_NAME = r"[A-Za-z0-9_.][A-Za-z0-9_.%-]*"
_HOST_RE = re.compile(
    rf"^(?:(?P<user>{_USER})@)?"
    rf"(?:\[(?P<v6>[0-9A-Fa-f:.%]+)\]|(?P<name>{_NAME}))"
    r"(?::(?P<port>[0-9]{1,5}))?$"
)


@dataclass(frozen=True)
class HostSpec:
    """One ``--host`` value; ``alias`` is what ~/.ssh/config is looked up with."""

    text: str
    alias: str
    user: str | None = None
    port: int | None = None

    def __str__(self) -> str:
        return self.text


def parse_host(text: str) -> HostSpec:
    """``[user@]host[:port]``, ``[v6addr]:port`` or an ~/.ssh/config alias."""
    value = text.strip()
    match = _HOST_RE.match(value)
    if match is None:
        raise UsageError(
            f"--host {text!r}: expected [user@]host[:port] (IPv6 as [addr]:port) "
            "or a Host alias from ~/.ssh/config"
        )
    port_text = match.group("port")
    port = int(port_text) if port_text else None
    if port is not None and not 1 <= port <= 65535:
        raise UsageError(f"--host {text!r}: port must be 1..65535")
    alias = match.group("v6") or match.group("name")
    return HostSpec(text=value, alias=alias, user=match.group("user"), port=port)


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "pvectl" / "config.yaml"


def load_config(path: Path | None = None) -> dict[str, Any]:
    """The user's pvectl config (empty when there is none)."""
    where = path or config_path()
    try:
        text = where.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", str(where)) from exc
    import yaml  # deferred for start-up time: only a command with --cluster reads the file

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 0
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise ConfigError(str(problem), str(where), line) from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping at the top (e.g. 'clusters:')", str(where), 1)
    return data


def cluster_hosts(name: str, path: Path | None = None) -> list[HostSpec]:
    where = path or config_path()
    clusters = load_config(where).get("clusters") or {}
    if not isinstance(clusters, dict):
        raise ConfigError("'clusters' must be a mapping of name -> {hosts: [...]}", str(where))
    entry = clusters.get(name)
    if entry is None:
        known = ", ".join(sorted(str(k) for k in clusters)) or "none defined"
        raise UsageError(f"--cluster {name!r}: not in {where} (known: {known})")
    hosts = entry.get("hosts") if isinstance(entry, dict) else entry
    if not isinstance(hosts, list) or not hosts:
        raise ConfigError(f"cluster {name!r}: 'hosts' must be a non-empty list", str(where))
    return [parse_host(str(h)) for h in hosts]


def select_hosts(hosts: list[str] | None, cluster: str | None) -> list[HostSpec]:
    """``--cluster`` hosts first, then each ``--host``; duplicates dropped, order kept."""
    chosen: list[HostSpec] = []
    if cluster:
        chosen.extend(cluster_hosts(cluster))
    chosen.extend(parse_host(h) for h in hosts or ())
    unique: dict[str, HostSpec] = {}
    for spec in chosen:
        unique.setdefault(spec.text, spec)
    return list(unique.values())
