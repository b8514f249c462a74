"""Reading a text file named on the command line (a corosync.conf, a scenario).

One place maps every way the read can fail to one line and its documented exit code,
and bounds the size, so a directory, ``/dev/zero`` or a binary file is a clear error and
never a traceback or an unbounded read.
"""

from __future__ import annotations

from pathlib import Path

from pvectl.errors import ConfigError, ExitCode, PvectlError

KIB = 1024
MIB = 1024 * KIB


def read_text(path: str | Path, what: str, limit: int = MIB) -> str:
    """The UTF-8 text of ``path`` (``what`` names the kind of file in messages).

    Exit codes: 66 missing or a directory, 77 permission denied, 74 any other read
    error, 65 larger than ``limit`` bytes or not UTF-8 text.
    """
    file = Path(path)
    try:
        with file.open("rb") as handle:
            data = handle.read(limit + 1)
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise PvectlError(f"{file}: no such file", ExitCode.NO_INPUT) from exc
    except IsADirectoryError as exc:
        raise PvectlError(
            f"{file}: is a directory; give the path of a {what}", ExitCode.NO_INPUT
        ) from exc
    except PermissionError as exc:
        raise PvectlError(
            f"{file}: permission denied (run as a user who can read it)",
            ExitCode.NO_PERMISSION,
        ) from exc
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise PvectlError(f"{file}: cannot read: {reason}", ExitCode.IO) from exc
    if len(data) > limit:
        raise ConfigError(f"larger than {_size(limit)}: not a {what}", str(file))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"not UTF-8 text (byte {exc.start}): not a {what}", str(file), line
        ) from exc


def _size(limit: int) -> str:
    if limit % MIB == 0:
        return f"{limit // MIB} MiB"
    if limit % KIB == 0:
        return f"{limit // KIB} KiB"
    return f"{limit} bytes"
