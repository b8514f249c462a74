"""JSON Schemas (draft 2020-12) of every document the CLI prints, made from the result types.

The results are frozen dataclasses serialised by ``to_jsonable``, so their type hints are
the schema: generating it keeps ``docs/schema/`` in step with the code, and the test that
runs each command validates what it really printed against the committed files.

``python -m pvectl.cli.schemas --write`` rewrites ``docs/schema/``; ``--check`` exits 1
when a committed file is stale.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import sys
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pvectl.cli.output import DOCUMENTS

__all__ = ["KINDS", "SCHEMA_DIR", "DocumentKind", "main", "schema_for", "schema_path"]

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "docs" / "schema"
SCHEMA_BASE = "https://pvectl.invalid/schema/"  # an id, not a place to fetch from


@dataclass(frozen=True)
class DocumentKind:
    """One kind of document: where its shape comes from and what it is for."""

    title: str
    commands: tuple[str, ...]
    # the result type (imported lazily: the CLI starts fast); None: the schema file is
    # written by hand (docs/schema/KIND.schema.json) and only read here
    root: Callable[[], Any] | None
    extra: Callable[[], dict[str, Any]] = dict  # keys added beside the root type's fields
    optional: frozenset[str] = frozenset()  # keys that may be absent
    only: tuple[str, ...] | None = None  # keep only these fields of the root type


def _status() -> Any:
    from pvectl.results import QuorumStatus

    return QuorumStatus


def _status_extra() -> dict[str, Any]:
    from pvectl.quorum.whatif import WhatIfReport

    return {"what_if": WhatIfReport}


def _host_outcomes(result: Callable[[], Any]) -> Callable[[], Any]:
    def root() -> Any:
        from pvectl.targets.remote import HostOutcome

        return tuple[HostOutcome[result()], ...]  # type: ignore[misc]

    return root


def _nodes() -> Any:
    from pvectl.results import NodeList

    return NodeList


def _perf() -> Any:
    from pvectl.perf.report import PerfReport

    return PerfReport


def _lab_scenario_extra() -> dict[str, Any]:
    from pvectl.lab.scenario import Difference

    return {"agree": bool, "differences": tuple[Difference, ...]}


def _tuple_of(item: Callable[[], Any]) -> Callable[[], Any]:
    def root() -> Any:
        return tuple[item(), ...]  # type: ignore[misc]

    return root


def _import(module: str, name: str) -> Callable[[], Any]:
    def load() -> Any:
        import importlib

        return getattr(importlib.import_module(module), name)

    return load


KINDS: dict[str, DocumentKind] = {
    "status": DocumentKind(
        "Quorum status of one node",
        ("status", "status --host H", "status --what-if"),
        _status,
        _status_extra,
        optional=frozenset({"what_if"}),
    ),
    "status-hosts": DocumentKind(
        "Quorum status seen from several hosts, compared",
        ("status --host A --host B",),
        _import("pvectl.quorum.partitions", "ViewComparison"),
    ),
    "nodes": DocumentKind("Member list of one node", ("nodes", "nodes --host H"), _nodes),
    "nodes-hosts": DocumentKind(
        "Member lists from several hosts", ("nodes --host A --host B",), _host_outcomes(_nodes)
    ),
    "expected": DocumentKind(
        "Outcome of a runtime expected-votes change",
        ("expected",),
        _import("pvectl.results", "ExpectedResult"),
    ),
    "what-if": DocumentKind(
        "Which failures and splits keep quorum",
        ("quorum what-if",),
        _import("pvectl.quorum.whatif", "WhatIfReport"),
    ),
    "check": DocumentKind(
        "Health report with findings", ("check",), _import("pvectl.check.rules", "CheckReport")
    ),
    "perf": DocumentKind("Performance report of one host", ("perf", "perf --host H"), _perf),
    "perf-hosts": DocumentKind(
        "Performance reports of several hosts",
        ("perf --host A --host B",),
        _host_outcomes(_perf),
    ),
    "qdevice-status": DocumentKind(
        "The qdevice daemon's view of one node",
        ("qdevice status", "qdevice status --host H"),
        _import("pvectl.targets.qdevice.status", "QdeviceStatus"),
    ),
    "qdevice-status-hosts": DocumentKind(
        "The qdevice daemon's view on several hosts",
        ("qdevice status --host A --host B",),
        _tuple_of(_import("pvectl.targets.qdevice.setup", "RemoteQdeviceStatus")),
    ),
    "qdevice-change": DocumentKind(
        "What qdevice setup or remove changed (or would change with --dry-run)",
        ("qdevice setup", "qdevice remove"),
        _import("pvectl.targets.qdevice.setup", "QdeviceChange"),
    ),
    "qdevice-clients": DocumentKind(
        "Clusters and nodes a running qnetd serves",
        ("qdevice clients",),
        _import("pvectl.quorum.qdevice.server", "QnetdStatus"),
    ),
    "lab-up": DocumentKind(
        "The state of a lab just started", ("lab up",), _import("pvectl.lab.state", "LabState")
    ),
    "lab-ls": DocumentKind(
        "Labs with their nodes",
        ("lab ls",),
        _tuple_of(_import("pvectl.lab.reports", "LabView")),
    ),
    "lab-ring-change": DocumentKind(
        "A node fault or restart and the ring that followed",
        ("lab kill", "lab stop", "lab start", "lab pause"),
        _import("pvectl.lab.reports", "RingChange"),
    ),
    "lab-partition": DocumentKind(
        "A partition and the rings each group formed",
        ("lab partition",),
        _import("pvectl.lab.reports", "PartitionChange"),
    ),
    "lab-mount": DocumentKind(
        "A FUSE mount of a node's config store",
        ("lab mount",),
        _import("pvectl.lab.fuse_mounts", "MountRecord"),
    ),
    "lab-scenario": DocumentKind(
        "A scenario run on one or more engines, compared",
        ("lab run", "lab compare"),
        _import("pvectl.lab.scenario", "Comparison"),
        _lab_scenario_extra,
        only=("scenario", "path", "skipped", "notes", "runs", "steps"),
    ),
    "lab-fs-ls": DocumentKind(
        "A directory listing of a node's config store",
        ("lab fs ls",),
        _tuple_of(_import("pvectl.lab.store_access", "StoreEntry")),
    ),
    "watch": DocumentKind("One frame of the live cluster view", ("watch --once",), None),
    "sync-trace": DocumentKind(
        "The journey of config writes through the ring",
        ("sync-trace",),
        _import("pvectl.lab.sync_trace", "SyncTrace"),
    ),
}


def schema_path(kind: str) -> Path:
    return SCHEMA_DIR / f"{kind}.schema.json"


@dataclass
class _Builder:
    """Walks type hints; each dataclass becomes one entry of ``$defs``."""

    defs: dict[str, Any] = field(default_factory=dict)

    def of(self, hint: Any) -> dict[str, Any]:
        from pvectl.totem.ring_id import RingId

        if hint is RingId:
            return {"type": "string", "pattern": "^[0-9a-f]+\\.[0-9a-f]+$"}
        if hint is Any or hint is object:
            return {}
        if hint is type(None) or hint is None:
            return {"type": "null"}
        if hint is bool:
            return {"type": "boolean"}
        if hint is int:
            return {"type": "integer"}
        if hint is float:
            return {"type": "number"}
        if hint is str or hint is Path:
            return {"type": "string"}
        if isinstance(hint, type) and issubclass(hint, enum.Enum):
            return {"enum": [member.value for member in hint]}
        origin = typing.get_origin(hint)
        args = typing.get_args(hint)
        if origin is typing.Literal:
            return {"enum": list(args)}
        if origin in (typing.Union, types.UnionType):
            return {"anyOf": [self.of(arg) for arg in args]}
        if origin in (tuple, list) or hint in (tuple, list):
            if not args:
                return {"type": "array"}
            if origin is list or (len(args) == 2 and args[1] is Ellipsis):
                return {"type": "array", "items": self.of(args[0])}
            return {
                "type": "array",
                "prefixItems": [self.of(arg) for arg in args],
                "items": False,
                "minItems": len(args),
            }
        if origin is dict or hint is dict:
            value = args[1] if args else Any
            return {"type": "object", "additionalProperties": self.of(value)}
        if dataclasses.is_dataclass(origin or hint):
            return self._dataclass(hint)
        raise TypeError(f"no JSON Schema for {hint!r}")

    def _dataclass(self, hint: Any) -> dict[str, Any]:
        cls = typing.get_origin(hint) or hint
        args = typing.get_args(hint)
        name = cls.__name__ + "".join(
            getattr(arg, "__name__", "X") for arg in args if isinstance(arg, type)
        )
        if name not in self.defs:
            self.defs[name] = {}  # recursion guard
            self.defs[name] = self.object(hint)
        return {"$ref": f"#/$defs/{name}"}

    def object(
        self,
        hint: Any,
        extra: dict[str, Any] | None = None,
        optional: frozenset[str] = frozenset(),
        only: tuple[str, ...] | None = None,
    ) -> dict[str, Any]:
        cls = typing.get_origin(hint) or hint
        params = getattr(cls, "__parameters__", ())
        bound = dict(zip(params, typing.get_args(hint), strict=False))
        hints = typing.get_type_hints(cls)
        properties: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if only is not None and f.name not in only:
                continue
            properties[f.name] = self.of(_substitute(hints[f.name], bound))
        for key, value in (extra or {}).items():
            properties[key] = self.of(value)
        doc = (cls.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
        out: dict[str, Any] = {"type": "object"}
        if doc and not doc.startswith(cls.__name__ + "("):
            out["description"] = doc
        out["properties"] = properties
        out["required"] = [key for key in properties if key not in optional]
        out["additionalProperties"] = False
        return out


def _substitute(hint: Any, bound: dict[Any, Any]) -> Any:
    if isinstance(hint, typing.TypeVar):
        return bound.get(hint, Any)
    origin = typing.get_origin(hint)
    if origin is None or not bound:
        return hint
    args = tuple(_substitute(arg, bound) for arg in typing.get_args(hint))
    if origin is types.UnionType:
        return typing.Union[args]  # noqa: UP007
    return origin[args] if origin is not typing.Union else typing.Union[args]  # noqa: UP007


def schema_for(kind: str) -> dict[str, Any]:
    """The JSON Schema of documents of ``kind``, with ``schema_version`` pinned."""
    spec = KINDS[kind]
    if spec.root is None:
        loaded: dict[str, Any] = json.loads(schema_path(kind).read_text(encoding="utf-8"))
        return loaded
    builder = _Builder()
    root = spec.root()
    list_key = DOCUMENTS[kind].list_key
    if list_key is not None:
        body: dict[str, Any] = {
            "type": "object",
            "properties": {list_key: builder.of(root)},
            "required": [list_key],
            "additionalProperties": False,
        }
    else:
        body = builder.object(root, spec.extra(), spec.optional, spec.only)
    version = DOCUMENTS[kind].version
    body["properties"] = {
        "schema_version": {"const": version, "description": f"{kind} documents, version"},
        **body["properties"],
    }
    body["required"] = ["schema_version", *body["required"]]
    body.pop("description", None)
    schema: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"{SCHEMA_BASE}{kind}.schema.json",
        "title": f"pvectl {kind}: {KINDS[kind].title}",
        "description": "Printed by: "
        + ", ".join(f"pvectl {c} --output-format json" for c in spec.commands),
        **body,
    }
    if builder.defs:
        schema["$defs"] = dict(sorted(builder.defs.items()))
    return schema


def render(kind: str) -> str:
    return json.dumps(schema_for(kind), indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    write = "--write" in args
    stale = []
    for kind, spec in KINDS.items():
        path = schema_path(kind)
        if spec.root is None:  # hand-written: it must exist, its content is its author's
            if not path.exists():
                stale.append(f"{path} (hand-written schema missing)")
            continue
        text = render(kind)
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        if write:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
        else:
            stale.append(str(path))
    known = {schema_path(kind).name for kind in KINDS}
    for path in sorted(SCHEMA_DIR.glob("*.schema.json")):
        if path.name not in known:
            if write:
                path.unlink()
                print(f"removed {path}")
            else:
                stale.append(f"{path} (no such document kind)")
    if stale:
        print("stale: " + ", ".join(stale) + " (run python -m pvectl.cli.schemas --write)")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
