"""The node's control socket: a Unix socket (mode 0600) speaking JSON lines.

One request per line, ``{"cmd": "...", ...}``; one reply per line, ``{"ok": true, ...}`` or
``{"ok": false, "error": "..."}``. Only the owner can connect (the mode, and the runtime
directory's 0700), so no further authentication is needed on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from pvectl.errors import ExitCode, PvectlError

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
MAX_LINE = 16 * 1024 * 1024
_SUN_PATH_MAX = 107  # sockaddr_un.sun_path holds 108 bytes, NUL included


@contextlib.contextmanager
def addressable(path: Path) -> Iterator[str]:
    """A name the kernel accepts for ``path``: the path itself, or, when it is longer than
    AF_UNIX allows (deep state directories), the same file reached through an open file
    descriptor of its directory (``/proc/self/fd/N/name``)."""
    text = str(path)
    if len(text.encode()) <= _SUN_PATH_MAX:
        yield text
        return
    fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


async def serve(path: Path, handler: Handler) -> asyncio.AbstractServer:
    """Serve ``handler`` on ``path``; a stale socket from a crashed node is replaced."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                try:
                    request = json.loads(line)
                    if not isinstance(request, dict) or "cmd" not in request:
                        raise ValueError("a request is a JSON object with a 'cmd' key")
                    reply = await handler(request)
                except PvectlError as exc:
                    reply = {"ok": False, "error": str(exc), "exit_code": int(exc.exit_code)}
                except (ValueError, KeyError, TypeError) as exc:
                    reply = {"ok": False, "error": f"bad request: {exc}"}
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    old_umask = os.umask(0o177)
    try:
        with addressable(path) as name:
            server = await asyncio.start_unix_server(on_client, path=name, limit=MAX_LINE)
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    return server


def request(socket_path: Path, cmd: str, timeout: float = 10.0, **args: Any) -> dict[str, Any]:
    """Send one request and return the node's reply as is, refusals (``ok: false``) included.

    For callers that need the reply's ``errno`` (the FUSE layer); ``call`` raises instead.
    """
    connection = Connection(socket_path)
    try:
        return connection.request(cmd, timeout, **args)
    finally:
        connection.close()


class Connection:
    """A kept-open connection: one request at a time (the node answers in order).

    Not thread-safe: give each thread its own. After a timeout or a broken socket the
    connection is closed and the next request reconnects, so a late reply to an abandoned
    request is never read as the answer to a new one.
    """

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        self._sock: socket.socket | None = None
        self._buffer = b""

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock = None
        self._buffer = b""

    def request(self, cmd: str, timeout: float = 10.0, **args: Any) -> dict[str, Any]:
        line = json.dumps({"cmd": cmd, **args}).encode() + b"\n"
        path = self.socket_path
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self._sock.settimeout(timeout)
                with addressable(path) as name:
                    self._sock.connect(name)
            self._sock.settimeout(timeout)
            self._sock.sendall(line)
            while b"\n" not in self._buffer:
                chunk = self._sock.recv(1 << 16)
                if not chunk:
                    break
                self._buffer += chunk
        except FileNotFoundError as exc:
            self.close()
            raise PvectlError(f"{path}: no control socket (is the node running?)") from exc
        except ConnectionRefusedError as exc:
            self.close()
            raise PvectlError(f"{path}: stale control socket, the node is not running") from exc
        except TimeoutError as exc:
            self.close()
            raise PvectlError(
                f"{path}: node did not answer '{cmd}' within {timeout:g} s", ExitCode.TEMP_FAIL
            ) from exc
        except OSError as exc:
            self.close()
            raise PvectlError(f"{path}: connection to the node failed: {exc}") from exc
        if b"\n" not in self._buffer:
            self.close()
            raise PvectlError(f"{path}: node closed the connection without answering '{cmd}'")
        answer, self._buffer = self._buffer.split(b"\n", 1)
        reply = json.loads(answer)
        if not isinstance(reply, dict):
            self.close()
            raise PvectlError(f"{path}: malformed reply")
        return reply


def call(socket_path: Path, cmd: str, timeout: float = 10.0, **args: Any) -> dict[str, Any]:
    """Send one request and wait for its reply (blocking: for the CLI and tests)."""
    reply = request(socket_path, cmd, timeout, **args)
    if not reply.get("ok", False):
        raise PvectlError(
            str(reply.get("error", "request failed")),
            ExitCode(reply.get("exit_code", ExitCode.ERROR)),
        )
    return reply
