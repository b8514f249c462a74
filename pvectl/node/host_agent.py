"""``python3 -m pvectl.node.host_agent ...``: the lab's hands on a node's host (stdlib only).

``pvectl lab`` runs this over SSH on a host of a ``--host`` lab (the pvectl zip on
PYTHONPATH) and locally for its own nodes: one short process per request, printing one
JSON object. Every process request names the node's state directory, and a pid is only
signalled when its command line is that node's (pids get reused).

Subcommands::

    info PID DIR            {"pid": PID|null, "stopped": bool, "info": {...}|null}
    call DIR CMD            stdin: JSON arguments; stdout: the node's reply
    start CONFIG ID DIR     start the node detached; {"pid": N}
    signal PID DIR SIG WAIT {"sent": bool, "gone": bool}
    files DIR               {"files": [...]}
    tail DIR                {"line": the node's last line on stderr}
    serve                   the above as JSON lines on stdin/stdout (one per SSH connection)
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from pvectl.errors import PvectlError
from pvectl.node import control_socket

NODE_MODULE = "pvectl.node"


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _proc_state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[0]


def node_pid(pid: int | None, state_dir: str) -> int | None:
    """``pid`` if that process still runs the node of ``state_dir`` (not a zombie)."""
    if pid is None:
        return None
    cmd = cmdline(pid)
    if NODE_MODULE in cmd and state_dir in cmd and _proc_state(pid) not in ("", "Z"):
        return pid
    return None


def is_stopped(pid: int) -> bool:
    return _proc_state(pid) in ("T", "t")


def processes_under(directory: str) -> list[int]:
    """Every node process whose command line names a path under ``directory``."""
    prefix = directory.rstrip("/") + "/"
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            cmd = cmdline(int(entry.name))
            if NODE_MODULE in cmd and any(
                part == directory or part.startswith(prefix) for part in cmd
            ):
                found.append(int(entry.name))
    return found


def start(config: str, node_id: int, state_dir: str) -> int:
    """The node in its own session, so neither an SSH channel closing nor a terminal's
    hangup reaches it; its output goes to ``stderr.log`` in its directory."""
    base = Path(state_dir)
    base.mkdir(parents=True, exist_ok=True, mode=0o700)
    (base / "control.sock").unlink(missing_ok=True)
    env = dict(os.environ)
    if sys.path and sys.path[0].endswith(".zip"):  # run from the uploaded zip
        env["PYTHONPATH"] = sys.path[0]
    log = open(base / "stderr.log", "ab")  # noqa: SIM115 - handed to the child
    try:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                NODE_MODULE,
                "--config",
                config,
                "--node-id",
                str(node_id),
                "--state-dir",
                state_dir,
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            env=env,
        )
    finally:
        log.close()
    return proc.pid


def send_signal(pid: int, state_dir: str, sig: int, wait: float) -> dict[str, bool]:
    if node_pid(pid, state_dir) is None:
        return {"sent": False, "gone": True}
    if sig == signal.SIGTERM:
        os.kill(pid, signal.SIGCONT)  # a paused node must run to leave cleanly
    os.kill(pid, sig)
    deadline = time.monotonic() + wait
    while node_pid(pid, state_dir) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    return {"sent": True, "gone": node_pid(pid, state_dir) is None}


def stop_all(directory: str, grace: float = 5.0) -> list[int]:
    """SIGTERM (a clean leave), then SIGKILL for whatever still runs after ``grace``."""
    pids = processes_under(directory)
    for pid in pids:
        _kill(pid, signal.SIGCONT)
        _kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(cmdline(p) for p in pids):
        time.sleep(0.05)
    for pid in pids:
        if cmdline(pid):
            _kill(pid, signal.SIGKILL)
    return sorted(pids)


def _kill(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def info(pid: int | None, state_dir: str) -> dict[str, Any]:
    running = node_pid(pid, state_dir)
    seen: dict[str, Any] | None = None
    if running is not None:
        try:
            seen = control_socket.call(Path(state_dir) / "control.sock", "info", timeout=2.0)
        except PvectlError:
            seen = None
    return {
        "pid": running,
        "stopped": running is not None and is_stopped(running),
        "info": seen,
    }


def call(state_dir: str, cmd: str, args: dict[str, Any], timeout: float) -> dict[str, Any]:
    try:
        return control_socket.call(Path(state_dir) / "control.sock", cmd, timeout=timeout, **args)
    except PvectlError as exc:
        return {"ok": False, "error": str(exc), "exit_code": int(exc.exit_code)}


def files(state_dir: str) -> list[str]:
    base = Path(state_dir)
    return [
        str(p.relative_to(base)) for p in sorted(base.rglob("*")) if p.is_file() or p.is_socket()
    ]


def last_words(state_dir: str) -> str:
    """The last line the node wrote on stderr (why it exited at start)."""
    log = Path(state_dir) / "stderr.log"
    try:
        lines = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1] if lines else ""


def _pid(text: str) -> int | None:
    return None if text in ("", "-") else int(text)


def handle(argv: list[str], stdin: str) -> Any:
    """One request; ValueError for a malformed one."""
    what, rest = (argv[0], argv[1:]) if argv else ("", [])
    if what == "info" and len(rest) == 2:
        return info(_pid(rest[0]), rest[1])
    if what == "call" and len(rest) in (2, 3):
        timeout = float(rest[2]) if len(rest) == 3 else 10.0
        return call(rest[0], rest[1], json.loads(stdin or "{}"), timeout)
    if what == "start" and len(rest) == 3:
        return {"pid": start(rest[0], int(rest[1]), rest[2])}
    if what == "signal" and len(rest) == 4:
        return send_signal(int(rest[0]), rest[1], int(rest[2]), float(rest[3]))
    if what == "files" and len(rest) == 1:
        return {"files": files(rest[0])}
    if what == "tail" and len(rest) == 1:
        return {"line": last_words(rest[0])}
    raise ValueError(f"bad request {argv!r}")


def serve() -> int:
    """Requests as JSON lines ``{"argv": [...], "stdin": "..."}`` until end of input: one
    process per SSH connection instead of one per request."""
    for line in sys.stdin:
        try:
            request = json.loads(line)
            reply = {"ok": True, "result": handle(request["argv"], request.get("stdin", ""))}
        except (ValueError, KeyError, TypeError, OSError) as exc:
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
    return 0


def main(argv: list[str]) -> int:
    if argv == ["serve"]:
        return serve()
    try:
        result = handle(argv, sys.stdin.read() if argv[:1] == ["call"] else "")
    except ValueError as exc:
        print(f"pvectl.node.host_agent: {exc}\n{__doc__}", file=sys.stderr)
        return 64
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
