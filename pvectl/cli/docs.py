"""Shell completions, man pages and the command reference, generated from the CLI's own
command tree.

``python -m pvectl.cli.docs --write`` (re)writes ``completions/pvectl.bash``,
``completions/_pvectl`` (zsh), ``completions/pvectl.fish``, ``man/pvectl.1``, one
``man/pvectl-<command>[-<sub>].1`` per command or group and one
``docs/commands/<group>.md`` per command group; ``--check`` exits 1 when the
committed files differ from what the CLI would generate now. The scripts are static (no
Python runs on <TAB>), so they stay fast and work where pvectl is not importable.
"""

from __future__ import annotations

import argparse
import enum
import inspect
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from typer import _click as click

from pvectl import __version__
from pvectl.cli.helpfmt import (
    is_flag,
    param_choices,
    param_help,
    plain_text,
    summary,
    value_name,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
MAN_SEE_ALSO = ("pvecm(1)", "corosync-quorumtool(8)", "votequorum(5)", "corosync.conf(5)")


@dataclass(frozen=True)
class OptionDoc:
    names: tuple[str, ...]  # --long and -s forms (secondary --no-x forms included)
    help: str
    takes_value: bool
    choices: tuple[str, ...] = ()
    is_path: bool = False
    metavar: str = ""
    default: str = ""
    negations: tuple[str, ...] = ()  # the --no-x forms, also in names
    details: str = ""  # the help text as --help prints it


@dataclass(frozen=True)
class ArgumentDoc:
    name: str
    required: bool
    choices: tuple[str, ...] = ()
    is_path: bool = False
    help: str = ""
    details: str = ""  # the help text as --help prints it


@dataclass(frozen=True)
class CommandDoc:
    path: tuple[str, ...]  # () for pvectl itself
    help: str
    short_help: str
    options: tuple[OptionDoc, ...]
    arguments: tuple[ArgumentDoc, ...]
    subcommands: tuple[str, ...]  # empty for a leaf command

    @property
    def full_name(self) -> str:
        return " ".join(("pvectl", *self.path))

    @property
    def page_name(self) -> str:
        return "-".join(("pvectl", *self.path))


# --- walking the click tree --------------------------------------------------------------


def build_command() -> click.Command:
    """The command tree exactly as ``pvectl`` builds it."""
    from pvectl.cli.main import build_app

    return typer.main.get_command(build_app())


def _is_path(param: Any) -> bool:
    click_type = getattr(param, "type", None)
    if click_type is not None and type(click_type).__name__ in ("Path", "File"):
        return True
    descriptor = getattr(param, "type_descriptor", None)
    annotation = getattr(descriptor, "annotation", None)
    return bool(getattr(descriptor, "is_path", False)) or (
        inspect.isclass(annotation) and issubclass(annotation, Path)
    )


def _default_text(param: Any) -> str:
    default = getattr(param, "default", None)
    if default is None or default is False or default == () or callable(default):
        return ""
    if isinstance(default, enum.Enum):
        return str(default.value)
    return str(default)


def _first_sentence(text: str) -> str:
    paragraph = text.split("\n\n", 1)[0].replace("\n", " ").strip()
    return paragraph


def _sorted_names(names: Any) -> tuple[str, ...]:
    """Short forms first, then long ones: click keeps option names in a set-like order."""
    return tuple(sorted(names, key=lambda name: (name.startswith("--"), name)))


def _is_group(command: click.Command) -> bool:
    """Typer's vendored click has no Group class: a group is what lists subcommands."""
    return callable(getattr(command, "list_commands", None))


def _describe(command: click.Command, path: tuple[str, ...], ctx: click.Context) -> CommandDoc:
    options: list[OptionDoc] = []
    arguments: list[ArgumentDoc] = []
    for param in command.params:
        if getattr(param, "hidden", False):
            continue
        if getattr(param, "param_type_name", "") == "argument":
            arguments.append(
                ArgumentDoc(
                    name=value_name(param),
                    required=bool(param.required),
                    choices=param_choices(param),
                    is_path=_is_path(param),
                    help=plain_text(getattr(param, "help", "")),
                    details=param_help(param, ctx),
                )
            )
            continue
        negations = _sorted_names(getattr(param, "secondary_opts", ()))
        options.append(
            OptionDoc(
                names=_sorted_names(param.opts) + negations,
                help=plain_text(getattr(param, "help", "")),
                takes_value=not is_flag(param),
                choices=param_choices(param),
                is_path=_is_path(param),
                metavar=value_name(param),
                default="" if is_flag(param) else _default_text(param),
                negations=negations,
                details=param_help(param, ctx),
            )
        )
    help_option = command.get_help_option(ctx)
    if help_option is not None:
        options.append(
            OptionDoc(
                names=_sorted_names(help_option.opts),
                help=plain_text(help_option.help),
                takes_value=False,
                details=param_help(help_option, ctx),
            )
        )
    subcommands: tuple[str, ...] = ()
    if _is_group(command):
        group: Any = command
        subcommands = tuple(
            name
            for name in group.list_commands(ctx)
            if (sub := group.get_command(ctx, name)) is not None and not sub.hidden
        )
    text = plain_text(command.help)
    short = summary(command)
    return CommandDoc(path, text, short, tuple(options), tuple(arguments), subcommands)


def walk(
    command: click.Command | None = None,
    path: tuple[str, ...] = (),
    parent: click.Context | None = None,
) -> Iterator[CommandDoc]:
    """Every visible command and group, depth first, in the CLI's own order."""
    root = command if command is not None else build_command()
    settings: dict[str, Any] = dict(getattr(root, "context_settings", None) or {})
    ctx = click.Context(root, info_name=path[-1] if path else "pvectl", parent=parent, **settings)
    doc = _describe(root, path, ctx)
    yield doc
    if _is_group(root):
        group: Any = root
        for name in doc.subcommands:
            sub = group.get_command(ctx, name)
            if sub is not None:
                yield from walk(sub, (*path, name), ctx)


# --- bash --------------------------------------------------------------------------------

GENERATED = "generated by 'python -m pvectl.cli.docs --write' from the CLI; do not edit"


def _global_options(docs: list[CommandDoc]) -> tuple[OptionDoc, ...]:
    """Options accepted after any subcommand too (main.py strips --debug anywhere)."""
    root = docs[0]
    return tuple(o for o in root.options if "--debug" in o.names)


def _options_for(doc: CommandDoc, extra: tuple[OptionDoc, ...]) -> tuple[OptionDoc, ...]:
    if not doc.path:
        return doc.options
    seen = {name for option in doc.options for name in option.names}
    return doc.options + tuple(o for o in extra if not seen.intersection(o.names))


def bash_script(docs: list[CommandDoc]) -> str:
    extra = _global_options(docs)
    lines = [
        f"# bash completion for pvectl: {GENERATED}",
        "# install: copy to /usr/share/bash-completion/completions/pvectl",
        "",
        "_pvectl_subcommands() {",
        '    case "$1" in',
    ]
    for doc in docs:
        if doc.subcommands:
            lines.append(f'        "{" ".join(doc.path)}") echo "{" ".join(doc.subcommands)}" ;;')
    lines += ["    esac", "}", "", "_pvectl_options() {", '    case "$1" in']
    for doc in docs:
        names = " ".join(n for o in _options_for(doc, extra) for n in o.names)
        lines.append(f'        "{" ".join(doc.path)}") echo "{names}" ;;')
    lines += [
        "    esac",
        "}",
        "",
        "# prints the values an option takes (__file__ for paths); fails for flags",
        "_pvectl_values() {",
        '    case "$1|$2" in',
    ]
    for doc in docs:
        for option in _options_for(doc, extra):
            if not option.takes_value:
                continue
            values = "__file__" if option.is_path else " ".join(option.choices)
            keys = "|".join(f'"{" ".join(doc.path)}|{name}"' for name in option.names)
            lines.append(f'        {keys}) echo "{values}" ;;')
    lines += [
        "        *) return 1 ;;",
        "    esac",
        "}",
        "",
        "_pvectl() {",
        "    local cur prev word path candidate i skip=0",
        '    cur="${COMP_WORDS[COMP_CWORD]}"',
        '    prev="${COMP_WORDS[COMP_CWORD-1]}"',
        '    path=""',
        "    for ((i = 1; i < COMP_CWORD; i++)); do",
        '        word="${COMP_WORDS[i]}"',
        "        if ((skip)); then skip=0; continue; fi",
        '        if [[ "$word" == -* ]]; then',
        '            _pvectl_values "$path" "$word" >/dev/null && skip=1',
        "            continue",
        "        fi",
        '        for candidate in $(_pvectl_subcommands "$path"); do',
        '            if [[ "$candidate" == "$word" ]]; then',
        '                path="${path:+$path }$word"',
        "                break",
        "            fi",
        "        done",
        "    done",
        "    local values",
        '    if [[ "$prev" == -* ]] && values="$(_pvectl_values "$path" "$prev")"; then',
        '        if [[ "$values" == "__file__" ]]; then',
        '            COMPREPLY=($(compgen -f -- "$cur"))',
        "        else",
        '            COMPREPLY=($(compgen -W "$values" -- "$cur"))',
        "        fi",
        "        return 0",
        "    fi",
        '    if [[ "$cur" == -* ]]; then',
        '        COMPREPLY=($(compgen -W "$(_pvectl_options "$path")" -- "$cur"))',
        "    else",
        '        COMPREPLY=($(compgen -W "$(_pvectl_subcommands "$path")" -- "$cur"))',
        "    fi",
        "    return 0",
        "}",
        "",
        "complete -F _pvectl pvectl",
        "",
    ]
    return "\n".join(lines)


# --- zsh ---------------------------------------------------------------------------------


def _zsh_text(text: str) -> str:
    first = _first_sentence(text)
    return (
        first.replace("\\", "\\\\")
        .replace("'", "'\\''")
        .replace("[", "(")
        .replace("]", ")")
        .replace(":", "\\:")
    )


def _zsh_function(path: tuple[str, ...]) -> str:
    return "_pvectl" + "".join("__" + re.sub(r"[^A-Za-z0-9_]", "_", part) for part in path)


def _zsh_option_specs(options: tuple[OptionDoc, ...]) -> list[str]:
    specs: list[str] = []
    for option in options:
        help_text = _zsh_text(option.help)
        if option.takes_value:
            if option.is_path:
                action = ":file:_files"
            elif option.choices:
                action = f":{option.metavar.lower()}:({' '.join(option.choices)})"
            else:
                action = f":{option.metavar.lower()}: "
        else:
            action = ""
        if len(option.names) > 1:
            group = " ".join(option.names)
            names = "{" + ",".join(option.names) + "}"
            specs.append(f"'({group})'{names}'[{help_text}]{action}'")
        else:
            specs.append(f"'{option.names[0]}[{help_text}]{action}'")
    return specs


def zsh_script(docs: list[CommandDoc]) -> str:
    extra = _global_options(docs)
    by_path = {doc.path: doc for doc in docs}
    out = ["#compdef pvectl", f"# zsh completion for pvectl: {GENERATED}", ""]
    for doc in docs:
        function = _zsh_function(doc.path)
        specs = _zsh_option_specs(_options_for(doc, extra))
        out.append(f"{function}() {{")
        if doc.subcommands:
            out.append('    local curcontext="$curcontext" state line')
            out.append("    typeset -A opt_args")
            out.append("    _arguments -C \\")
            for spec in specs:
                out.append(f"        {spec} \\")
            out.append("        '1: :->command' \\")
            out.append("        '*:: :->args'")
            out.append("    case $state in")
            out.append("        command)")
            out.append("            local -a commands")
            out.append("            commands=(")
            for name in doc.subcommands:
                sub = by_path[(*doc.path, name)]
                out.append(f"                '{name}:{_zsh_text(sub.short_help)}'")
            out.append("            )")
            out.append(f"            _describe -t commands '{doc.full_name} command' commands")
            out.append("            ;;")
            out.append("        args)")
            out.append("            case $line[1] in")
            for name in doc.subcommands:
                out.append(f"                {name}) {_zsh_function((*doc.path, name))} ;;")
            out.append("            esac")
            out.append("            ;;")
            out.append("    esac")
        else:
            args = []
            for argument in doc.arguments:
                prefix = ":" if argument.required else "::"
                action = (
                    "_files"
                    if argument.is_path
                    else (f"({' '.join(argument.choices)})" if argument.choices else " ")
                )
                args.append(f"'{prefix}{argument.name.lower()}:{action}'")
            out.append("    _arguments \\")
            for spec in [*specs, *args]:
                out.append(f"        {spec} \\")
            out[-1] = out[-1].removesuffix(" \\")
        out.append("}")
        out.append("")
    out += [
        'if [ "$funcstack[1]" = "_pvectl" ]; then',
        '    _pvectl "$@"',
        "else",
        "    compdef _pvectl pvectl",
        "fi",
        "",
    ]
    return "\n".join(out)


# --- fish --------------------------------------------------------------------------------


def _fish_quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def fish_script(docs: list[CommandDoc]) -> str:
    extra = _global_options(docs)
    paths = [" ".join(doc.path) for doc in docs if doc.path]
    out = [
        f"# fish completion for pvectl: {GENERATED}",
        "# install: copy to ~/.config/fish/completions/pvectl.fish",
        "",
        "set -g __pvectl_commands " + " ".join(_fish_quote(p) for p in paths),
        "",
        "function __pvectl_path --description 'the pvectl (sub)command being completed'",
        "    set -l path",
        "    for token in (commandline -opc)[2..-1]",
        "        string match -q -- '-*' $token; and continue",
        "        set -l candidate (string join ' ' $path $token)",
        "        contains -- $candidate $__pvectl_commands; and set path $path $token",
        "    end",
        "    string join ' ' $path",
        "end",
        "",
        "function __pvectl_at --description 'is the command path exactly $argv[1]?'",
        "    set -l path (__pvectl_path)",
        '    test "$path" = "$argv[1]"',
        "end",
        "",
        "complete -c pvectl -f",
    ]
    for doc in docs:
        condition = f"-n {_fish_quote('__pvectl_at ' + _fish_quote(' '.join(doc.path)))}"
        for name in doc.subcommands:
            sub = next(d for d in docs if d.path == (*doc.path, name))
            out.append(f"complete -c pvectl {condition} -a {name} -d {_fish_quote(sub.short_help)}")
        for option in _options_for(doc, extra):
            flags = []
            for name in option.names:
                if name.startswith("--"):
                    flags.append(f"-l {name[2:]}")
                else:
                    flags.append(f"-s {name[1:]}")
            if option.takes_value:
                if option.is_path:
                    flags.append("-r -F")
                elif option.choices:
                    flags.append(f"-x -a {_fish_quote(' '.join(option.choices))}")
                else:
                    flags.append("-x")
            out.append(
                f"complete -c pvectl {condition} {' '.join(flags)} "
                f"-d {_fish_quote(_first_sentence(option.help))}"
            )
    out.append("")
    return "\n".join(out)


# --- man pages ---------------------------------------------------------------------------


def _roff(text: str) -> str:
    escaped = text.replace("\\", "\\e").replace("-", "\\-")
    lines = []
    for line in escaped.split("\n"):
        if line.startswith((".", "'")):
            line = "\\&" + line
        lines.append(line)
    return "\n".join(lines)


def _roff_paragraphs(text: str) -> list[str]:
    out: list[str] = []
    for paragraph in text.split("\n\n"):
        if paragraph.strip():
            out.append(".PP")
            out.append(_roff(" ".join(line.strip() for line in paragraph.splitlines())))
    return out


EXIT_CODES_PAGE = "docs/exit-codes.md"


def exit_code_rows(page: Path) -> list[tuple[str, str]]:
    """The exit-code table of docs/exit-codes.md: the one place the codes are explained."""
    rows: list[tuple[str, str]] = []
    for line in page.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^\|\s*(\d+)\s*\|\s*(.+?)\s*\|\s*$", line)
        if match:
            rows.append((match.group(1), match.group(2).replace("\\|", "|")))
    return rows


def _markdown_to_text(text: str) -> str:
    return text.replace("`", "")


def _synopsis(doc: CommandDoc) -> str:
    parts = [f"\\fB{_roff(doc.full_name)}\\fR", "[\\fIOPTIONS\\fR]"]
    if doc.subcommands:
        parts.append("\\fICOMMAND\\fR [\\fIARGS\\fR]...")
    for argument in doc.arguments:
        name = f"\\fI{argument.name}\\fR"
        parts.append(name if argument.required else f"[{name}]")
    return " ".join(parts)


def _option_lines(options: tuple[OptionDoc, ...]) -> list[str]:
    """Each option labelled as --help labels it: -s, --long VALUE / --no-long."""
    out: list[str] = []
    for option in options:
        primary = [name for name in option.names if name not in option.negations]
        label = ", ".join(f"\\fB{_roff(name)}\\fR" for name in primary)
        if option.takes_value:
            label += f" \\fI{_roff(option.metavar)}\\fR"
        if option.negations:
            label += " / " + ", ".join(f"\\fB{_roff(name)}\\fR" for name in option.negations)
        out.append(".TP")
        out.append(label)
        out.append(_roff(" ".join(option.details.split())))
    return out


def man_page(doc: CommandDoc, docs: list[CommandDoc], exit_codes: list[tuple[str, str]]) -> str:
    title = doc.page_name.upper()
    out = [
        f'.\\" {GENERATED}',
        f'.TH "{_roff(title)}" "1" "" "pvectl {_roff(__version__)}" "pvectl manual"',
        ".SH NAME",
        f"{_roff(doc.page_name)} \\- {_roff(doc.short_help or doc.help)}",
        ".SH SYNOPSIS",
        _synopsis(doc),
        ".SH DESCRIPTION",
        *_roff_paragraphs(doc.help or doc.short_help),
    ]
    if doc.arguments:
        out.append(".SH ARGUMENTS")
        for argument in doc.arguments:
            out.append(".TP")
            out.append(f"\\fI{_roff(argument.name)}\\fR")
            out.append(_roff(" ".join(argument.details.split())))
    if doc.subcommands:
        out.append(".SH COMMANDS")
        for name in doc.subcommands:
            sub = next(d for d in docs if d.path == (*doc.path, name))
            out.append(".TP")
            out.append(f"\\fB{_roff(name)}\\fR")
            out.append(_roff(sub.short_help) + f" See \\fB{_roff(sub.page_name)}\\fR(1).")
    if doc.options:
        out.append(".SH OPTIONS")
        out.extend(_option_lines(doc.options))
        if doc.path:
            out.append(".PP")
            out.append(
                _roff("--debug is accepted anywhere on the command line (or PVECTL_DEBUG=1).")
            )
    if not doc.path and exit_codes:
        out.append(".SH EXIT STATUS")
        out.append(
            _roff(
                "Exit codes scripts can rely on. status follows corosync-quorumtool -s "
                "(0 quorate, 2 not quorate, 1 error); usage errors are 64 (EX_USAGE), never 2."
            )
        )
        for code, meaning in exit_codes:
            out.append(".TP")
            out.append(f"\\fB{code}\\fR")
            out.append(_roff(_markdown_to_text(meaning)))
    out.append(".SH SEE ALSO")
    related = [f"{d.page_name}(1)" for d in docs if d.path and d.path[:-1] == doc.path]
    if doc.path:
        related.insert(0, f"{'-'.join(('pvectl', *doc.path[:-1]))}(1)")
    out.append(_roff(", ".join([*related, *MAN_SEE_ALSO])))
    out.append("")
    return "\n".join(out)


# --- writing and checking ----------------------------------------------------------------


# --- command reference pages (docs/commands/) ----------------------------------------------

# Where each top-level command is documented at length, beside its reference page.
TOPICS = {
    "cluster": ("[SSH and several hosts](../ssh.md)", "[the quorum model](../quorum.md)"),
    "quorum": ("[the quorum model and what-if](../quorum.md)",),
    "lab": ("[the embedded lab](../lab.md)", "[the config store](../config-store.md)"),
    "sync-trace": ("[sync-trace explained](../sync-trace.md)",),
    "perf": ("[what perf measures](../perf.md)", "[benchmarks](../benchmarks.md)"),
    "check": ("[SSH and several hosts](../ssh.md)",),
    "qdevice": ("[QDevice](../qdevice.md)",),
    "completion": ("[installing](../install.md)",),
}


def _page_of(name: str) -> str:
    """docs/commands/<page>.md for a top-level command: named after its module."""
    from pvectl.cli.commands import MODULE_OF

    module = MODULE_OF[name].rsplit(".", 1)[1]
    return {"cmd_trace": "sync-trace"}.get(module, module.removeprefix("cmd_"))


def _markdown_command(doc: CommandDoc) -> list[str]:
    usage = " ".join(
        [doc.full_name, "[OPTIONS]"]
        + (["COMMAND [ARGS]..."] if doc.subcommands else [])
        + [a.name if a.required else f"[{a.name}]" for a in doc.arguments]
    )
    out = [f"## {doc.full_name}", "", "```", usage, "```", ""]
    for paragraph in (doc.help or doc.short_help).split("\n\n"):
        out += [" ".join(paragraph.split()), ""]
    if doc.subcommands:
        out += ["Commands: " + ", ".join(f"`{name}`" for name in doc.subcommands) + ".", ""]
    for argument in doc.arguments:
        out.append(f"- `{argument.name}`: {' '.join(argument.details.split())}")
    for option in doc.options:
        primary = [name for name in option.names if name not in option.negations]
        label = ", ".join(primary) + (f" {option.metavar}" if option.takes_value else "")
        if option.negations:
            label += " / " + ", ".join(option.negations)
        out.append(f"- `{label}`: {' '.join(option.details.split())}")
    return [*out, ""]


def command_pages(docs: list[CommandDoc]) -> dict[str, str]:
    """docs/commands/<page>.md: one reference page per command group, from the CLI."""
    pages: dict[str, list[CommandDoc]] = {}
    for doc in docs:
        if doc.path:
            pages.setdefault(_page_of(doc.path[0]), []).append(doc)
    files = {}
    for page, members in pages.items():
        names = ", ".join(f"`{d.full_name}`" for d in members if len(d.path) == 1)
        out = [
            f"<!-- {GENERATED} -->",
            f"# {names}",
            "",
            "The options and arguments as `--help` prints them; exit codes are in "
            "[exit-codes.md](../exit-codes.md). More: " + ", ".join(TOPICS.get(page, ())) + ".",
            "",
        ]
        for doc in members:
            out += _markdown_command(doc)
        files[f"docs/commands/{page}.md"] = "\n".join(out).rstrip() + "\n"
    index = [f"<!-- {GENERATED} -->", "# Command reference", ""]
    for page, members in pages.items():
        tops = [d for d in members if len(d.path) == 1]
        for top in tops:
            index.append(f"- [{top.full_name}]({page}.md): {top.short_help}")
    files["docs/commands/README.md"] = "\n".join(index) + "\n"
    return files


def generate(root: Path = REPO_ROOT) -> dict[str, str]:
    """Relative path -> content of every generated file."""
    docs = list(walk())
    page = root / EXIT_CODES_PAGE
    exit_codes = exit_code_rows(page) if page.is_file() else []
    files = {
        "completions/pvectl.bash": bash_script(docs),
        "completions/_pvectl": zsh_script(docs),
        "completions/pvectl.fish": fish_script(docs),
    }
    for doc in docs:
        files[f"man/{doc.page_name}.1"] = man_page(doc, docs, exit_codes)
    files.update(command_pages(docs))
    return files


def stale_files(root: Path = REPO_ROOT) -> list[str]:
    """Generated files that are missing or differ, plus obsolete man pages."""
    wanted = generate(root)
    stale = [
        rel
        for rel, content in wanted.items()
        if not (root / rel).is_file() or (root / rel).read_text(encoding="utf-8") != content
    ]
    for folder, pattern in (("man", "pvectl*.1"), ("docs/commands", "*.md")):
        for found in sorted((root / folder).glob(pattern)):
            rel = f"{folder}/{found.name}"
            if rel not in wanted:
                stale.append(rel)
    return stale


def write(root: Path = REPO_ROOT) -> list[str]:
    wanted = generate(root)
    changed = stale_files(root)
    for rel in changed:
        target = root / rel
        if rel in wanted:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(wanted[rel], encoding="utf-8")
        else:
            target.unlink()
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pvectl.cli.docs",
        description="Generate pvectl's shell completions and man pages from the CLI.",
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument(
        "--write", action="store_true", help="write completions/, man/ and docs/commands/"
    )
    mode.add_argument("--check", action="store_true", help="exit 1 if they are stale")
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help="repository root")
    args = parser.parse_args(argv)
    if args.write:
        changed = write(args.root)
        for rel in changed:
            print(f"updated {rel}")
        if not changed:
            print("completions and man pages are up to date")
        return 0
    stale = stale_files(args.root)
    for rel in stale:
        print(f"stale: {rel}", file=sys.stderr)
    if stale:
        print("run: python -m pvectl.cli.docs --write", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
