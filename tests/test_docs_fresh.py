"""Completions and man pages are generated from the CLI and must match what is committed."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import typer

from pvectl.cli import docs
from pvectl.errors import ExitCode

ROOT = Path(__file__).resolve().parents[1]


def test_committed_completions_and_man_pages_are_fresh() -> None:
    stale = docs.stale_files(ROOT)
    assert not stale, f"stale generated files {stale}: run 'python -m pvectl.cli.docs --write'"


def test_check_detects_an_edited_and_an_obsolete_file(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    shutil.copy(ROOT / docs.EXIT_CODES_PAGE, tmp_path / docs.EXIT_CODES_PAGE)
    assert docs.main(["--write", "--root", str(tmp_path)]) == 0
    assert docs.main(["--check", "--root", str(tmp_path)]) == 0
    page = tmp_path / "man" / "pvectl-status.1"
    page.write_text(page.read_text() + '.\\" edited by hand\n')
    (tmp_path / "man" / "pvectl-removed.1").write_text("old\n")
    (tmp_path / "docs" / "commands" / "removed.md").write_text("old\n")
    reference = tmp_path / "docs" / "commands" / "quorum.md"
    reference.write_text(reference.read_text().replace("--nodes N", "--nodes NODES"))
    assert set(docs.stale_files(tmp_path)) == {
        "man/pvectl-status.1",
        "man/pvectl-removed.1",
        "docs/commands/removed.md",
        "docs/commands/quorum.md",
    }
    assert docs.main(["--check", "--root", str(tmp_path)]) == 1
    docs.write(tmp_path)
    assert not (tmp_path / "man" / "pvectl-removed.1").exists()
    assert not (tmp_path / "docs" / "commands" / "removed.md").exists()
    assert docs.stale_files(tmp_path) == []


def test_main_page_documents_every_exit_code() -> None:
    """docs/exit-codes.md is the one table: every ExitCode, and the man page prints it."""
    page = (ROOT / "man" / "pvectl.1").read_text()
    rows = docs.exit_code_rows(ROOT / docs.EXIT_CODES_PAGE)
    assert [int(code) for code, _ in rows] == sorted(int(code) for code in ExitCode)
    assert ".SH EXIT STATUS" in page
    assert "\\fB64\\fR\nusage error (EX_USAGE)" in page
    assert "\\fB2\\fR\nnot quorate: status" in page


def test_every_command_has_a_page_and_completion() -> None:
    paths = [doc.path for doc in docs.walk()]
    assert ("quorum", "what-if") in paths and ("status",) in paths
    bash = (ROOT / "completions" / "pvectl.bash").read_text()
    for path in paths:
        assert (ROOT / "man" / f"{'-'.join(('pvectl', *path))}.1").is_file()
        assert f'"{" ".join(path)}")' in bash
    assert '"status|--output-format") echo "text json json-pretty yaml"' in bash


def _nested_app() -> typer.Typer:
    """A tree shaped like the commands other helpers will add (pvectl lab up ...)."""
    app = typer.Typer(context_settings={"help_option_names": ["-h", "--help"]})
    lab = typer.Typer(help="Run and break an embedded cluster.")

    @app.callback()
    def root(debug: bool = typer.Option(False, "--debug", help="Tracebacks.")) -> None:
        """Test root."""

    @lab.command("up")
    def up(
        nodes: int = typer.Argument(3, help="How many nodes."),
        transport: str = typer.Option("udp", "--transport", help="udp or knet."),
        data_dir: Path = typer.Option(Path("/tmp"), "--data-dir", help="Where."),
    ) -> None:
        """Start a lab."""

    @lab.command("down")
    def down() -> None:
        """Stop a lab."""

    app.add_typer(lab, name="lab")
    return app


def test_nested_groups_are_walked_and_completed(tmp_path: Path) -> None:
    command = typer.main.get_command(_nested_app())
    walked = list(docs.walk(command))
    assert [d.path for d in walked] == [(), ("lab",), ("lab", "up"), ("lab", "down")]
    up = walked[2]
    assert up.arguments[0].name == "NODES"
    assert any(o.is_path for o in up.options if "--data-dir" in o.names)
    page = docs.man_page(up, walked, [])
    assert "pvectl\\-lab\\-up" in page and "\\fB\\-\\-transport\\fR" in page
    if shutil.which("bash") is None:
        pytest.skip("bash not installed")
    script = tmp_path / "pvectl.bash"
    script.write_text(docs.bash_script(walked))
    probe = (
        f"source {script}\n"
        'COMP_WORDS=(pvectl --debug lab up --tr); COMP_CWORD=4; _pvectl; echo "${COMPREPLY[*]}"\n'
        "COMP_WORDS=(pvectl lab ''); COMP_CWORD=2; _pvectl; echo \"${COMPREPLY[*]}\"\n"
    )
    out = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == ["--transport", "up down"]


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash not installed")
def test_bash_completion_of_the_real_cli() -> None:
    script = ROOT / "completions" / "pvectl.bash"
    probe = (
        f"source {script}\n"
        't() { COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]}-1)); COMPREPLY=(); '
        '_pvectl; echo "${COMPREPLY[*]}"; }\n'
        "t pvectl qu\n"
        "t pvectl quorum what-if --qdevice ''\n"
        "t pvectl status --target lab --what\n"
    )
    out = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == ["quorum", "ffsplit lms", "--what-if"]


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh not installed (CI installs it)")
def test_zsh_completion_parses() -> None:
    subprocess.run(["zsh", "-n", str(ROOT / "completions" / "_pvectl")], check=True)


@pytest.mark.skipif(shutil.which("fish") is None, reason="fish not installed (CI installs it)")
def test_fish_completion_completes_nested_commands() -> None:
    script = ROOT / "completions" / "pvectl.fish"
    out = subprocess.run(
        ["fish", "-c", f"source {script}; complete -C 'pvectl quorum what-if --qdevice '"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert [line.split("\t")[0] for line in out.stdout.splitlines()] == ["ffsplit", "lms"]


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff not installed")
def test_man_pages_render_without_warnings() -> None:
    for page in sorted((ROOT / "man").glob("*.1")):
        out = subprocess.run(
            ["groff", "-man", "-Tutf8", "-ww", "-z", str(page)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert out.returncode == 0 and not out.stderr, f"{page.name}: {out.stderr}"


ZPTY_PROBE = r"""
zmodload zsh/zpty
zpty z zsh -f -i
zpty -w z 'PS1="> "; fpath=(%(dir)s $fpath); autoload -U compinit; compinit -u -D; pvectl() { :; }'
zpty -w z 'zstyle ":completion:*" verbose yes; zstyle ":completion:*:descriptions" format "[%%d]"'
zpty -w z $'pvectl \t\t'
sleep 2
zpty -w z $'\C-u'
zpty -w z $'pvectl quorum what-if --qdevice \t\t'
sleep 2
local all="" chunk
while zpty -rt z chunk; do all+=$chunk; done
print -r -- "$all"
zpty -d z
"""


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh not installed (CI installs it)")
def test_zsh_completion_completes_in_a_real_shell(tmp_path: Path) -> None:
    shutil.copy(ROOT / "completions" / "_pvectl", tmp_path / "_pvectl")
    probe = tmp_path / "probe.zsh"
    probe.write_text(ZPTY_PROBE % {"dir": str(tmp_path)})
    out = subprocess.run(
        ["zsh", "-f", str(probe)], capture_output=True, text=True, timeout=60, check=False
    ).stdout
    # zsh pads names to the longest command name, so the gap depends on the command set
    assert re.search(r"quorum +-- Quorum maths offline: what survives", out)
    assert "ffsplit" in out and "lms" in out
