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
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pvectl.errors import ExitCode, PvectlError

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
MAX_LINE = 16 * 1024 * 1024


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
        server = await asyncio.start_unix_server(on_client, path=str(path), limit=MAX_LINE)
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    return server


def call(socket_path: Path, cmd: str, timeout: float = 10.0, **args: Any) -> dict[str, Any]:
    """Send one request and wait for its reply (blocking: for the CLI and tests)."""
    request = json.dumps({"cmd": cmd, **args}).encode() + b"\n"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(socket_path))
        sock.sendall(request)
        buffer = b""
        while not buffer.endswith(b"\n"):
            chunk = sock.recv(1 << 16)
            if not chunk:
                break
            buffer += chunk
    except FileNotFoundError as exc:
        raise PvectlError(f"{socket_path}: no control socket (is the node running?)") from exc
    except ConnectionRefusedError as exc:
        raise PvectlError(f"{socket_path}: stale control socket, the node is not running") from exc
    except TimeoutError as exc:
        raise PvectlError(
            f"{socket_path}: node did not answer '{cmd}' within {timeout:g} s", ExitCode.TEMP_FAIL
        ) from exc
    finally:
        sock.close()
    if not buffer:
        raise PvectlError(f"{socket_path}: node closed the connection without answering '{cmd}'")
    reply = json.loads(buffer)
    if not isinstance(reply, dict):
        raise PvectlError(f"{socket_path}: malformed reply")
    if not reply.get("ok", False):
        raise PvectlError(
            str(reply.get("error", "request failed")),
            ExitCode(reply.get("exit_code", ExitCode.ERROR)),
        )
    return reply
