"""Option and argument values parsed without pydantic, for start-up time.

typer 0.29 parses every parameter of the command that runs through a pydantic
``TypeAdapter``: importing pydantic and building the adapters costs more than the rest of a
quick command such as ``quorum what-if``. pvectl's parameters are plain (str, int and float
with bounds, bool, Enum choices, Path, lists of those), so they are parsed here with the
same results; a parameter of any other kind keeps typer's own parsing.
tests/test_cli_coerce.py checks both agree on every parameter of the CLI.
"""

from __future__ import annotations

import enum
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args, get_origin

from typer._click.exceptions import BadParameter
from typer._coercion import RuntimeParam
from typer._param_types import coerce_cli_choice

__all__ = ["fast_runtime_param", "install"]

Parse = Callable[[Any, Any, Any], Any]  # value, param, ctx -> parsed value

_TRUE = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE = frozenset({"0", "off", "f", "false", "n", "no"})


@dataclass(frozen=True)
class _Parsed(RuntimeParam):
    parse: Parse

    def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
        return self.parse(value, param, ctx)


def _bad(message: str, param: Any, ctx: Any) -> BadParameter:
    return BadParameter(message, ctx=ctx, param=param)


def _bounded(kind: type, low: float | None, high: float | None) -> Parse:
    name = "integer" if kind is int else "number"

    def parse(value: Any, param: Any, ctx: Any) -> Any:
        if isinstance(value, kind) and not isinstance(value, bool):
            number = value
        else:
            text = str(value)
            try:
                number = kind(text.strip())
            except ValueError:
                raise _bad(f"{value!r} is not a valid {name}.", param, ctx) from None
        assert isinstance(number, int | float)
        if number != number and (low is not None or high is not None):  # NaN has no order
            raise _bad(f"{value!r} is not a valid {name}.", param, ctx)
        if low is not None and number < low:
            raise _bad(f"{number} is smaller than the minimum {low}.", param, ctx)
        if high is not None and number > high:
            raise _bad(f"{number} is larger than the maximum {high}.", param, ctx)
        return number

    return parse


def _parse_str(value: Any, param: Any, ctx: Any) -> str:
    return str(value)


def _parse_bool(value: Any, param: Any, ctx: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE or text == "":
        return False
    raise _bad(f"{value!r} is not a valid boolean.", param, ctx)


def _parse_path(value: Any, param: Any, ctx: Any) -> Path:
    return value if isinstance(value, Path) else Path(value)


def _choice(choices: list[Any], case_sensitive: bool) -> Parse:
    def parse(value: Any, param: Any, ctx: Any) -> Any:
        try:
            return coerce_cli_choice(value, choices=choices, case_sensitive=case_sensitive, ctx=ctx)
        except ValueError as exc:
            raise _bad(str(exc), param, ctx) from None

    return parse


_PATH_CHECKS = ("exists", "writable", "resolve_path", "allow_dash", "path_type")


def _leaf(annotation: Any, info: Any) -> Parse | None:
    if inspect.isclass(annotation) and issubclass(annotation, enum.Enum):
        return _choice(list(annotation), bool(info.case_sensitive))
    if annotation is bool:
        return _parse_bool
    if annotation in (int, float):
        if info.clamp:
            return None
        return _bounded(annotation, info.min, info.max)
    if annotation is str:
        return _parse_str
    if annotation is Path and not any(getattr(info, check, None) for check in _PATH_CHECKS):
        return _parse_path
    return None


def fast_runtime_param(descriptor: Any) -> RuntimeParam | None:
    """A pydantic-free parser for this parameter, or None when typer's is needed."""
    info = descriptor.parameter_info
    if descriptor.file_annotation is not None or info.parser is not None:
        return None
    annotation = descriptor.annotation
    if get_origin(annotation) is list:
        leaf = _leaf(get_args(annotation)[0], info)
        if leaf is None:
            return None
        item = leaf

        def parse_list(value: Any, param: Any, ctx: Any) -> list[Any]:
            values = value if isinstance(value, list | tuple) else [value]
            return [item(one, param, ctx) for one in values]

        return _Parsed(info, annotation, parse_list)
    leaf = _leaf(annotation, info)
    return None if leaf is None else _Parsed(info, annotation, leaf)


def install(param: Any) -> None:
    """Give a typer parameter the fast parser where it applies."""
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is not None and getattr(param, "_runtime_param", "") is None:
        fast = fast_runtime_param(descriptor)
        if fast is not None:
            param._runtime_param = fast
