"""Help that reads well in an 80-column terminal, the same words as the man pages.

Typer's rich panels squeeze six columns into 80 and cut option names and help text with
"…"; its plain layout names values by Python type (``<int>``, ``<list[str]>``) and click
shortens command summaries with "...". These classes keep click's plain layout, where a
long option moves its help to the next line instead of being cut, and name every value
after what it is: an option's ``metavar`` (NODE, MS, HOST), its choices, or its name.
Every ``typer.Typer`` in the CLI is a :class:`PvectlTyper`, so each command gets them.
"""

from __future__ import annotations

import enum
import inspect
from collections.abc import Callable
from typing import Any

import typer
from typer import _click as click
from typer.core import TyperCommand, TyperGroup

from pvectl.cli import coerce

__all__ = [
    "PvectlTyper",
    "is_flag",
    "option_label",
    "param_choices",
    "param_help",
    "plain_text",
    "summary",
    "value_name",
]


def plain_text(text: str | None) -> str:
    """Docstring text for a terminal or a man page: no indentation, `code` as 'code'."""
    return inspect.cleandoc(text or "").replace("`", "'").strip()


def param_choices(param: Any) -> tuple[str, ...]:
    """The fixed values an option or argument accepts (an Enum, Literal or click Choice)."""
    choices = getattr(getattr(param, "type", None), "choices", None)
    if choices:
        return tuple(str(getattr(c, "value", c)) for c in choices)
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is not None and getattr(descriptor, "is_choice", False):
        return tuple(str(getattr(c, "value", c)) for c in descriptor.choices or ())
    annotation = getattr(descriptor, "annotation", None)
    if inspect.isclass(annotation) and issubclass(annotation, enum.Enum):
        return tuple(str(member.value) for member in annotation)
    return ()


def is_flag(param: Any) -> bool:
    return bool(getattr(param, "is_flag", False)) or bool(getattr(param, "count", False))


def value_name(param: Any) -> str:
    """What a value is called: the declared metavar, else the choices (options only), else
    the parameter's name in capitals. Never a Python type name."""
    if param.metavar:
        return str(param.metavar)
    choices = param_choices(param)
    if choices and param.param_type_name == "option":
        return "|".join(choices)
    return (param.name or "value").upper()


def _short_first(names: Any) -> list[str]:
    return sorted(names, key=lambda name: (name.startswith("--"), name))


def option_label(param: Any) -> str:
    label = ", ".join(_short_first(param.opts))
    if not is_flag(param):
        label += f" {value_name(param)}"
    if param.secondary_opts:
        label += " / " + ", ".join(_short_first(param.secondary_opts))
    return label


def _usage_piece(param: Any) -> str:
    name = value_name(param)
    if param.nargs != 1:
        name += "..."
    return name if param.required else f"[{name}]"


def param_help(param: Any, ctx: click.Context) -> str:
    """An option's or argument's help as --help and the man pages print it: the text, an
    argument's choices, then click's notes ([default: ...], ranges, [required])."""
    record = param.get_help_record(ctx)
    if record is None:
        return ""
    text = plain_text(getattr(param, "help", None))
    notes = plain_text(record[1]).removeprefix(text).strip()
    choices = param_choices(param) if param.param_type_name == "argument" else ()
    if choices:
        text = f"{text} One of: {', '.join(choices)}.".strip()
    return f"{text}  {notes}" if text and notes else text or notes


def _records(command: click.Command, ctx: click.Context) -> tuple[list[Any], list[Any]]:
    arguments: list[tuple[str, str]] = []
    options: list[tuple[str, str]] = []
    for param in command.get_params(ctx):
        if getattr(param, "hidden", False):
            continue
        if param.param_type_name == "argument":
            arguments.append((value_name(param), param_help(param, ctx)))
        else:
            options.append((option_label(param), param_help(param, ctx)))
    return arguments, options


def _format_params(command: click.Command, ctx: click.Context, out: click.HelpFormatter) -> None:
    arguments, options = _records(command, ctx)
    if arguments:
        with out.section("Arguments"):
            out.write_dl(arguments)
    if options:
        with out.section("Options"):
            out.write_dl(options)


def _format_help_text(command: click.Command, out: click.HelpFormatter) -> None:
    text = plain_text(command.help).partition("\f")[0]
    if text:
        out.write_paragraph()
        with out.indentation():
            out.write_text(text)


def summary(command: click.Command) -> str:
    """A command's one-line description: its short_help, else its help's first paragraph,
    whole (click would cut it at the terminal's width with "...")."""
    text = plain_text(command.short_help) or plain_text(command.help)
    return " ".join(text.split("\n\n", 1)[0].split())


class _HelpLayout(click.Command):
    """What a leaf command and a group share: pydantic-free value parsing for every
    parameter (the help option included) and pvectl's help text and options layout."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            coerce.install(param)

    def get_help_option(self, ctx: click.Context) -> Any:
        option = super().get_help_option(ctx)
        coerce.install(option)
        return option

    def format_help_text(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        _format_help_text(self, formatter)

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        _format_params(self, ctx, formatter)


class HelpCommand(_HelpLayout, TyperCommand):
    """A leaf command with pvectl's help layout and pydantic-free value parsing."""

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                pieces.append(_usage_piece(param))
        return pieces


class HelpGroup(_HelpLayout, TyperGroup):
    """A command group with pvectl's help layout; subcommand summaries are never cut."""

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        return [*pieces, self.subcommand_metavar]

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_options(ctx, formatter)
        rows = []
        for name in self.list_commands(ctx):
            sub = self.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                rows.append((name, summary(sub)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


class PvectlTyper(typer.Typer):
    """``typer.Typer`` with pvectl's help classes, plain (not rich) help and -h."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("cls", HelpGroup)
        kwargs.setdefault("rich_markup_mode", None)
        kwargs.setdefault("context_settings", {"help_option_names": ["-h", "--help"]})
        super().__init__(**kwargs)

    def command(  # same keywords, a different default for cls
        self, name: str | None = None, **kwargs: Any
    ) -> Callable[[Any], Any]:
        kwargs.setdefault("cls", HelpCommand)
        return super().command(name, **kwargs)
