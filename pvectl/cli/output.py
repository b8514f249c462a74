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
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

__all__ = ["OutputFormat", "emit", "serialize", "to_jsonable"]


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


def stderr_console() -> Console:
    from rich.console import Console

    return Console(
        stderr=True,
        no_color="NO_COLOR" in os.environ,
        highlight=False,
        soft_wrap=True,
        emoji=False,
    )


def serialize(value: Any, fmt: OutputFormat) -> str:
    data = to_jsonable(value)
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
) -> None:
    """Print ``value`` in ``fmt``; ``text`` builds the human view only when needed.

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
    sys.stdout.write(serialize(value, fmt))
    sys.stdout.flush()
