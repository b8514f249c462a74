"""corosync.conf: parse and write the format, and read the facts pvectl needs from it.

One parser serves the corosync target (``/etc/pve/corosync.conf``,
``/etc/corosync/corosync.conf``), the SSH target and the embedded nodes, so they all
agree on what a file means. Errors name the file and line, as corosync's own do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from pvectl.errors import ConfigError
from pvectl.input_files import MIB, read_text
from pvectl.results import ClusterInfo

CONFIG_PATHS = ("/etc/pve/corosync.conf", "/etc/corosync/corosync.conf")
MAX_CONFIG_BYTES = MIB  # real files are a few KiB; this bounds a read of /dev/zero
NODEID_MAX = 2**32 - 1  # corosync reads nodeid as a uint32; 0 means "not set"
VOTES_MAX = 2**32 - 1  # quorum_votes is a uint32 too, and so is their sum
QNETD_PORT = 5403  # corosync-qnetd's default TCP port

_SECTION_OPEN = re.compile(r"^([A-Za-z0-9_.\-]+)\s*\{\s*$")
_KEY_VALUE = re.compile(r"^([A-Za-z0-9_.\-]+)\s*:\s*(.*?)\s*$")


@dataclass
class Section:
    """A ``name { ... }`` block: scalar keys plus repeated sub-blocks, in file order."""

    name: str
    values: dict[str, str] = field(default_factory=dict)
    children: list[Section] = field(default_factory=list)
    line: int = 0  # where ``name {`` is, for errors about the block (0: not from a file)

    def get(self, key: str, default: str | None = None) -> str | None:
        return self.values.get(key, default)

    def sections(self, name: str) -> list[Section]:
        return [child for child in self.children if child.name == name]

    def section(self, name: str) -> Section | None:
        found = self.sections(name)
        return found[0] if found else None

    def lookup(self, dotted: str) -> str | None:
        """``totem.cluster_name`` style access to the first matching block."""
        *path, key = dotted.split(".")
        node: Section | None = self
        for part in path:
            node = node.section(part) if node else None
        return node.get(key) if node else None


def parse(text: str, path: str = "corosync.conf") -> Section:
    root = Section("")
    stack = [root]
    for lineno, raw in enumerate(text.splitlines(), start=1):
        # Proxmox's parser drops everything from '#' to the end of the line, so a comment
        # after a value ("token: 3000  # 3 s") is not part of the value
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line == "}":
            if len(stack) == 1:
                raise ConfigError("unexpected '}' without an open section", path, lineno)
            stack.pop()
            continue
        opened = _SECTION_OPEN.match(line)
        if opened:
            child = Section(opened.group(1), line=lineno)
            stack[-1].children.append(child)
            stack.append(child)
            continue
        pair = _KEY_VALUE.match(line)
        if pair:
            if len(stack) == 1:
                raise ConfigError(f"key '{pair.group(1)}' outside of any section", path, lineno)
            stack[-1].values[pair.group(1)] = pair.group(2)
            continue
        raise ConfigError(f"cannot parse line: {line!r}", path, lineno)
    if len(stack) > 1:
        raise ConfigError(f"section '{stack[-1].name}' is not closed", path, len(text.splitlines()))
    return root


def load(path: str | Path) -> Section:
    """Parse a corosync.conf named by the user: 66 missing or a directory, 77 not
    readable, 74 I/O error, 65 not a corosync.conf (too large, not UTF-8, bad syntax)."""
    return parse(read_text(path, "corosync.conf file", MAX_CONFIG_BYTES), str(path))


def find_config(paths: tuple[str, ...] = CONFIG_PATHS) -> Path | None:
    for candidate in paths:
        if Path(candidate).is_file():
            return Path(candidate)
    return None


def dump(root: Section) -> str:
    """Write in the layout Proxmox's ``write_conf`` uses: sorted keys, two-space indent,
    a blank line after each top-level section."""
    out: list[str] = []

    def write(section: Section, depth: int) -> None:
        pad = "  " * depth
        out.append(f"{pad}{section.name} {{")
        entries: list[tuple[str, int, str | Section]] = [
            (key, 0, value) for key, value in section.values.items()
        ]
        entries += [(child.name, index, child) for index, child in enumerate(section.children)]
        for key, _, item in sorted(entries, key=lambda entry: (entry[0], entry[1])):
            if isinstance(item, Section):
                write(item, depth + 1)
            else:
                out.append(f"{pad}  {key}: {item}")
        out.append(f"{pad}}}")

    for top in sorted(root.children, key=lambda section: section.name):
        write(top, 0)
        out.append("")
    return "\n".join(out)


def cluster_info(root: Section) -> ClusterInfo:
    """The four header lines of ``pvecm status`` with pvecm's own fallbacks (typo kept)."""
    totem = root.section("totem") or Section("totem")
    version = totem.get("config_version", "-1") or "-1"
    try:
        config_version = int(version)
    except ValueError:
        config_version = -1
    return ClusterInfo(
        name=totem.get("cluster_name", "UNKOWN?") or "UNKOWN?",
        config_version=config_version,
        config_version_text=version,
        transport=totem.get("transport", "knet") or "knet",
        secure_auth=totem.get("secauth", "off") or "off",
    )


@dataclass(frozen=True)
class NodeEntry:
    """One ``nodelist.node`` block."""

    node_id: int
    name: str
    votes: int
    addresses: tuple[str, ...]


def nodelist(root: Section, path: str = "corosync.conf") -> tuple[NodeEntry, ...]:
    """The ``nodelist { node { ... } }`` blocks, checked as corosync checks them: a
    nodeid in 1..2^32-1 (decimal ASCII digits), used once; quorum_votes in 0..2^32-1
    with a sum that fits in corosync's 32-bit vote count."""
    entries: list[NodeEntry] = []
    nodes = root.section("nodelist")
    if nodes is None:
        return ()
    seen: dict[int, str] = {}
    for index, node in enumerate(nodes.sections("node"), start=1):
        where = f"nodelist node #{index}"
        raw_id = node.get("nodeid")
        if raw_id is None:
            raise ConfigError(f"{where} has no nodeid", path, node.line)
        node_id = _uint32(raw_id, f"{where}: nodeid", 1, NODEID_MAX, path, node.line)
        votes = _uint32(
            node.get("quorum_votes", "1") or "1",
            f"{where}: quorum_votes",
            0,
            VOTES_MAX,
            path,
            node.line,
        )
        name = node.get("name", str(node_id)) or ""
        if node_id in seen:
            raise ConfigError(
                f"{where}: nodeid {node_id} is used twice ({seen[node_id][:40]!r} and "
                f"{name[:40]!r}): every node needs its own",
                path,
                node.line,
            )
        seen[node_id] = name
        addresses = tuple(
            node.values[key] for key in sorted(node.values) if re.fullmatch(r"ring\d+_addr", key)
        )
        entries.append(NodeEntry(node_id, name, votes, addresses))
    total = sum(entry.votes for entry in entries)
    if total > VOTES_MAX:
        raise ConfigError(
            f"the nodes' quorum_votes add up to {total}, more than corosync counts ({VOTES_MAX})",
            path,
            nodes.line,
        )
    return tuple(sorted(entries, key=lambda entry: entry.node_id))


def _uint32(raw: str, what: str, low: int, high: int, path: str, line: int) -> int:
    """A decimal number of ASCII digits in [low, high]: ``int()`` alone would also take
    other scripts' digits (Arabic-Indic one is 1) and underscores, which corosync does not."""
    if not re.fullmatch(r"[0-9]{1,20}", raw):
        raise ConfigError(f"{what} must be a decimal number, got {raw[:40]!r}", path, line)
    value = int(raw)
    if not low <= value <= high:
        raise ConfigError(f"{what} must be between {low} and {high}, got {value}", path, line)
    return value


def qdevice_section(
    host: str, algorithm: str, tls: str, port: int | None = None, votes: int | None = None
) -> Section:
    """``quorum { device { ... } }`` as ``pvecm qdevice setup`` writes it: model net, votes 1
    for ffsplit and unset for lms (votequorum then gives it N-1), the port only when it is
    not qnetd's default. Every writer of a device section (``qdevice setup``, both lab
    engines) goes through here."""
    values = {"model": "net"}
    if votes is not None:
        values["votes"] = str(votes)
    elif algorithm == "ffsplit":
        values["votes"] = "1"
    net = {"algorithm": algorithm, "host": host, "tls": tls}
    if port is not None and port != QNETD_PORT:
        net["port"] = str(port)
    return Section("device", values, [Section("net", net)])
