"""Every command's --help, rendered in an 80-column terminal, is whole and names its values.

Walks the real command tree, so a command added later is checked too.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest

from pvectl.cli import docs
from pvectl.cli.helpfmt import is_flag, param_help, summary
from pvectl.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = [doc.path for doc in docs.walk()]

# typer's <bool>, <str>, <int>, <float range>, <list[str]>, <path>, and click's TEXT/INTEGER
PYTHON_TYPE = re.compile(
    r"<\s*(bool|str|int|float|list|path|text|tuple|datetime|uuid)\b[^>]*>"
    r"|(^  |, |-\w+ )(TEXT|INTEGER|FLOAT|BOOLEAN|FILENAME|DIRECTORY)( RANGE)?\b",
    re.M,
)


def _help(path: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> str:
    assert main([*path, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Usage: pvectl"), out
    return out


def _words(text: str) -> str:
    """Text with its wrapping undone (click may also break a line after a hyphen)."""
    return re.sub(r"-\s+", "-", " ".join(text.split()))


@functools.cache
def _root() -> object:
    return docs.build_command()


def _click_command(path: tuple[str, ...]) -> tuple[object, object]:
    """The click command at ``path`` and a context for it."""
    from typer import _click as click

    command = _root()
    ctx = click.Context(command, info_name="pvectl")
    for name in path:
        command = command.get_command(ctx, name)  # type: ignore[attr-defined]
        ctx = click.Context(command, info_name=name, parent=ctx)
    return command, ctx


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "pvectl")
def test_help_at_80_columns_is_whole(
    path: tuple[str, ...], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    out = _help(path, capsys)
    assert "…" not in out, out
    too_wide = [line for line in out.splitlines() if len(line) > 80]
    assert not too_wide, too_wide
    assert not PYTHON_TYPE.search(out), PYTHON_TYPE.search(out)
    assert "\\" not in out, "a stray backslash (rich escaping) in the help"
    flat = _words(out)
    command, ctx = _click_command(path)
    for param in command.params:  # type: ignore[attr-defined]
        if getattr(param, "hidden", False):
            continue
        # the whole help text is there, and every option name in full
        assert _words(param_help(param, ctx)) in flat, (param.name, out)
        for name in (*param.opts, *param.secondary_opts):
            if param.param_type_name == "option":
                assert re.search(rf"(^|[ ,]){re.escape(name)}( |,|$)", out, re.M), name
        if param.param_type_name == "option" and is_flag(param):
            # a flag is followed by its help or another name, never by a value's name
            line = next(  # its row in the options list, not a mention in the text above
                line
                for line in out.splitlines()
                if line.lstrip().startswith("-") and param.opts[0] in line
            )
            after = line.split(param.opts[0], 1)[1]
            assert re.match(r"(\s*$|\s{2,}\S|\s*/|,)", after), line
        if param.param_type_name == "option" and not is_flag(param):
            assert param.metavar or docs.param_choices(param), (
                f"{' '.join(path)} {param.opts[0]}: give it a metavar that names the value"
            )
    for name in getattr(command, "commands", {}):
        sub = command.commands[name]  # type: ignore[attr-defined]
        if not sub.hidden:
            assert _words(f"{name} {summary(sub)}") in flat, (name, out)


def test_a_too_long_name_would_be_caught(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checks above can fail: rich's panels (typer's default) cut at 80 columns."""
    import typer
    from typer import _click as click

    app = typer.Typer(rich_markup_mode="rich")

    @app.command()
    def cmd(
        auto_tie_breaker: bool = typer.Option(False, "--auto-tie-breaker", help="x " * 40),
        nodes: int = typer.Option(3, "--nodes", help="How many."),
    ) -> None:
        """A command."""

    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("TERMINAL_WIDTH", "80")
    command = typer.main.get_command(app)
    with pytest.raises(SystemExit), click.Context(command):
        command.main(["--help"], prog_name="pvectl")
    out = capsys.readouterr().out
    assert PYTHON_TYPE.search(out)  # <int>, <bool>


def test_man_pages_have_no_stray_backslash() -> None:
    for page in sorted((ROOT / "man").glob("*.1")):
        for line in page.read_text(encoding="utf-8").splitlines():
            if line.startswith('.\\"'):
                continue
            # \e prints a backslash; "\[" would be a roff glyph escape
            assert "\\e" not in line and "\\[" not in line, f"{page.name}: {line}"


def test_man_pages_label_options_as_help_does(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # one option per line
    for doc in docs.walk():
        page = (ROOT / "man" / f"{doc.page_name}.1").read_text(encoding="utf-8")
        lines = page.splitlines()
        labels = [
            re.sub(r"\\f[BIR]", "", lines[i + 1]).replace("\\-", "-")
            for i, line in enumerate(lines)
            if line == ".TP" and "\\fB-" in lines[i + 1].replace("\\-", "-")
        ]
        out = _help(doc.path, capsys)
        for label in labels:
            assert re.search(rf"^  {re.escape(label)}( {{2,}}|$)", out, re.M), (doc.path, label)


def test_a_group_without_its_command_prints_its_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 64
    assert capsys.readouterr().out.startswith("Usage: pvectl [OPTIONS] COMMAND")
    assert main(["lab"]) == 64
    assert "Commands:" in capsys.readouterr().out
