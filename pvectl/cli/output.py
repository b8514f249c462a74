"""How results reach the user: text through rich, or json/json-pretty/yaml for scripts.

Text honours NO_COLOR and plain (non-TTY) output; machine formats are produced from the
same frozen dataclasses, so every target speaks one schema. rich and yaml are imported
when something is printed, not when the CLI starts (deferred for start-up time).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pvectl.progress import stderr_console as stderr_console  # one stderr console

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

__all__ = ["DOCUMENTS", "Document", "OutputFormat", "emit", "serialize", "to_jsonable"]


@dataclass(frozen=True)
class Document:
    """A kind of JSON/YAML document: its schema version (docs/schema/KIND.schema.json) and,
    for a list, the key the list is printed under (a document is always an object)."""

    version: int
    list_key: str | None = None


# Bump a kind's version when a field is renamed, removed or changes type; adding a field
# does not change the version (docs/json.md). pvectl.cli.schemas builds the schemas.
DOCUMENTS: dict[str, Document] = {
    "status": Document(1),
    "status-hosts": Document(1),
    "nodes": Document(1),
    "nodes-hosts": Document(1, "hosts"),
    "expected": Document(1),
    "what-if": Document(1),
    "check": Document(1),
    "perf": Document(1),
    "perf-hosts": Document(1, "hosts"),
    "qdevice-status": Document(1),
    "qdevice-status-hosts": Document(1, "hosts"),
    "qdevice-change": Document(1),
    "qdevice-clients": Document(1),
    "lab-up": Document(1),
    "lab-ls": Document(1, "labs"),
    "lab-ring-change": Document(1),
    "lab-partition": Document(1),
    "lab-mount": Document(1),
    "lab-scenario": Document(1),
    "lab-fs-ls": Document(1, "entries"),
    "sync-trace": Document(1),
    "watch": Document(1),  # ClusterSnapshot carries its own schema_version
}


class OutputFormat(StrEnum):
    text = "text"
    json = "json"
    json_pretty = "json-pretty"
    yaml = "yaml"


def to_jsonable(value: Any) -> Any:
    from pvectl.results import to_jsonable as convert

    return convert(value)


def stdout_console() -> Console:
    from rich.console import Console

    return Console(
        no_color="NO_COLOR" in os.environ,
        highlight=False,
        soft_wrap=True,
        emoji=False,
    )


def document(value: Any, kind: str) -> dict[str, Any]:
    """``value`` as a document of ``kind``: ``schema_version`` first, lists under their key."""
    spec = DOCUMENTS[kind]
    data = to_jsonable(value)
    if spec.list_key is not None:
        data = {spec.list_key: data}
    if not isinstance(data, dict):
        raise TypeError(f"a {kind} document must be an object, not {type(data).__name__}")
    return {"schema_version": spec.version, **data}


def serialize(value: Any, fmt: OutputFormat, kind: str) -> str:
    data = document(value, kind)
    if fmt is OutputFormat.json:
        return json.dumps(data, sort_keys=False) + "\n"
    if fmt is OutputFormat.json_pretty:
        return json.dumps(data, indent=2, sort_keys=False) + "\n"
    if fmt is OutputFormat.yaml:
        import yaml

        return str(yaml.safe_dump(data, sort_keys=False, default_flow_style=False))
    raise ValueError(f"not a machine format: {fmt}")


def emit(
    value: Any,
    fmt: OutputFormat,
    text: Callable[[], str | RenderableType],
    *,
    kind: str,
) -> None:
    """Print ``value`` in ``fmt``; ``text`` builds the human view only when needed;
    ``kind`` names the document (its schema and ``schema_version``) in machine formats.

    A ``str`` from ``text`` is written verbatim (byte-exact layouts such as pvecm's);
    a rich renderable goes through the console.
    """
    if fmt is OutputFormat.text:
        rendered = text()
        if isinstance(rendered, str):
            sys.stdout.write(rendered)
            sys.stdout.flush()
        else:
            stdout_console().print(rendered)
        return
    sys.stdout.write(serialize(value, fmt, kind))
    sys.stdout.flush()
