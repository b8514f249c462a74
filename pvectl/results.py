"""Result types shared by every target (corosync, ssh, lab): one shape, many sources.

Field names follow corosync-quorumtool's labels in snake_case, so the JSON schema reads
like the text users already know.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from pvectl.totem.ring_id import RingId as RingId  # a result field type; defined by Totem

_T = TypeVar("_T")


@dataclass(frozen=True)
class ClusterInfo:
    """The header ``pvecm status`` prints from corosync.conf's totem section."""

    name: str
    config_version: int  # -1 when not an integer
    transport: str
    secure_auth: str
    config_version_text: str = ""  # as written in corosync.conf: what pvecm prints


@dataclass(frozen=True)
class Member:
    """One row of the membership table."""

    node_id: int
    votes: int
    name: str
    local: bool = False
    qdevice: str | None = None  # "A,V,NMW" / "NR"; None when no qdevice column is shown
    addresses: tuple[str, ...] = ()


@dataclass(frozen=True)
class QdeviceRow:
    """The pseudo-node 0 row shown when a quorum device is registered."""

    votes: int
    name: str = "Qdevice"
    casting: bool = True  # False: shown as 0 votes plus "(votes N)"


@dataclass(frozen=True)
class LinkStatus:
    """One knet/udpu link as ``corosync-cfgtool -s`` reports it from the local node."""

    link_id: int
    address: str
    peers: tuple[tuple[int, str], ...] = ()  # (node id, "localhost"/"connected"/...)


@dataclass(frozen=True)
class QuorumStatus:
    """What ``corosync-quorumtool -s`` reports, from one node's point of view."""

    quorum_provider: str
    nodes: int
    node_id: int
    ring_id: RingId
    quorate: bool
    expected_votes: int
    highest_expected: int
    total_votes: int
    quorum: int
    flags: tuple[str, ...]
    members: tuple[Member, ...]
    qdevice: QdeviceRow | None = None
    cluster: ClusterInfo | None = None
    source: str = "corosync"  # which target answered: corosync, lab, ssh:HOST
    activity_blocked: bool = False  # quorumtool's "Quorum: N Activity blocked"
    links: tuple[LinkStatus, ...] = ()  # corosync-cfgtool -s, where available
    totem_token_ms: int | None = None  # runtime.config.totem.token (after coefficient)
    totem_consensus_ms: int | None = None  # runtime.config.totem.consensus


@dataclass(frozen=True)
class NodeList:
    """What ``corosync-quorumtool -l`` (``pvecm nodes``) reports."""

    members: tuple[Member, ...]
    qdevice: QdeviceRow | None = None
    source: str = "corosync"


@dataclass(frozen=True)
class ExpectedResult:
    """Outcome of a runtime expected-votes change."""

    requested: int
    previous_expected: int
    total_votes: int
    quorum_before: int
    quorum_after: int
    quorate_after: bool
    source: str = "corosync"
    warnings: tuple[str, ...] = field(default_factory=tuple)


def to_jsonable(value: Any) -> Any:
    """Dataclasses to dicts (snake_case keys as declared), tuples to lists, ring ids to
    quorumtool's ``1.1a8`` text."""
    import dataclasses
    from enum import Enum

    if isinstance(value, RingId):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return to_jsonable(value.value)
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    return value


def from_jsonable(cls: type[_T], data: object) -> _T:
    """Rebuild a result dataclass from its JSON form (the inverse of ``to_jsonable``):
    how a result crosses a control socket or SSH and comes back as the same type."""
    return cast(_T, _decode(cls, data))


def _decode(hint: object, data: object) -> object:
    import dataclasses
    import enum
    import types
    import typing

    if hint is RingId:
        return RingId.parse(str(data))
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return hint(data)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        return None if data is None else _decode(options[0], data)
    if origin is tuple:
        args = typing.get_args(hint)
        items = list(data) if isinstance(data, list | tuple) else []
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_decode(args[0], item) for item in items)
        return tuple(_decode(arg, item) for arg, item in zip(args, items, strict=True))
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if not isinstance(data, dict):
            raise ValueError(f"{hint.__name__}: expected an object")
        hints = typing.get_type_hints(hint)
        kwargs = {
            f.name: _decode(hints[f.name], data[f.name])
            for f in dataclasses.fields(hint)
            if f.name in data
        }
        return hint(**kwargs)
    return data
