"""``pvectl completion SHELL``: the completion script, for people who install it themselves.

The same text as the committed completions/ files (both come from pvectl.cli.docs), so a
pip-installed pvectl without the repository can still have tab completion.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from typing import Annotated

import typer


class Shell(StrEnum):
    bash = "bash"
    zsh = "zsh"
    fish = "fish"


def completion(
    shell: Annotated[Shell, typer.Argument(metavar="SHELL", help="The shell to complete in.")],
) -> None:
    """Print the tab-completion script for bash, zsh or fish.

    bash: pvectl completion bash > ~/.local/share/bash-completion/completions/pvectl
    (or source it from ~/.bashrc); zsh: save it as _pvectl in a directory of $fpath;
    fish: pvectl completion fish > ~/.config/fish/completions/pvectl.fish.
    scripts/install.sh does this for you.
    """
    from pvectl.cli import docs

    walked = list(docs.walk())
    render = {
        Shell.bash: docs.bash_script,
        Shell.zsh: docs.zsh_script,
        Shell.fish: docs.fish_script,
    }[shell]
    sys.stdout.write(render(walked))
    sys.stdout.flush()


def register(app: typer.Typer) -> None:
    app.command()(completion)
