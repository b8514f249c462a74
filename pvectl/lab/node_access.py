"""How the embedded engine reaches one of its nodes: a process on this machine, or a process
on one of the user's hosts over SSH (``lab up --host``).

Both speak through ``pvectl.node.host_agent``: locally in-process, remotely as one short
``python3 pvectl.zip ...`` per request over the lab's SSH connection (the zip uploaded at
``lab up`` holds only the standard-library node runtime, so a host needs nothing but
python3 >= 3.11). The node itself is the same program either way.
"""

from __future__ import annotations

import atexit
import io
import json
import shlex
import signal
import threading
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pvectl.errors import ExitCode, PvectlError
from pvectl.lab.state import LabNode
from pvectl.node import control_socket, host_agent

if TYPE_CHECKING:  # paramiko and yaml load only for a lab on hosts
    from pvectl.targets.ssh import SshRunner, SshSession

ZIP_NAME = "pvectl.zip"
# What a node needs: the runtime and the sans-IO cores it drives; nothing with a
# third-party import (the CLI, targets, qnetd's certificates).
_ZIP_PACKAGES = ("node", "nodecore", "totem", "quorum", "cfs", "trace")
_ZIP_MODULES = (
    "__init__.py",
    "errors.py",
    "results.py",
    "corosync_conf.py",
    "quorum_conf.py",
    "input_files.py",
)
_ZIP_EXCLUDE = ("node/qdevice/qnetd.py", "node/qdevice/certs.py")
_ZIP_MAIN = (
    "import sys\nfrom pvectl.node.host_agent import main\nraise SystemExit(main(sys.argv[1:]))\n"
)


# ``lab down`` on a host: the node processes under DIR (SIGTERM, then SIGKILL after 5 s),
# then DIR and, once empty, the lab's directory above it.
_DOWN_SCRIPT = """
import json, os, shutil, signal, sys, time
d = sys.argv[1].rstrip('/')
def cmd(p):
    try:
        return open('/proc/%d/cmdline' % p, 'rb').read().decode(errors='replace').split('\\0')
    except OSError:
        return []
def mine(p):
    c = cmd(p)
    return 'pvectl.node' in c and any(x == d or x.startswith(d + '/') for x in c)
pids = [int(e) for e in os.listdir('/proc') if e.isdigit() and mine(int(e))]
for p in pids:
    for s in (signal.SIGCONT, signal.SIGTERM):
        try:
            os.kill(p, s)
        except ProcessLookupError:
            pass
end = time.monotonic() + 5
while time.monotonic() < end and any(mine(p) for p in pids):
    time.sleep(0.05)
for p in pids:
    if mine(p):
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
shutil.rmtree(d, ignore_errors=True)
try:
    os.rmdir(os.path.dirname(d))
except OSError:
    pass
print(json.dumps(sorted(pids)))
"""


class NodeAccess(Protocol):
    def pid(self) -> int | None: ...

    def probe(self) -> tuple[int | None, bool, dict[str, Any] | None]:
        """(pid if running, paused, its ``info`` reply if it answers)."""
        ...

    def call(self, cmd: str, timeout: float, **args: Any) -> dict[str, Any]: ...

    def start(self, config: str) -> int: ...

    def signal(self, pid: int, sig: signal.Signals, wait: float) -> bool:
        """Signal the node if ``pid`` still runs it; True once it is gone."""
        ...

    def down(self) -> list[int]: ...

    def files(self) -> tuple[str, ...]: ...

    def log_tail(self) -> str: ...


class LocalNode:
    def __init__(self, node: LabNode) -> None:
        self.node = node

    def pid(self) -> int | None:
        return host_agent.node_pid(self.node.pid, self.node.dir)

    def probe(self) -> tuple[int | None, bool, dict[str, Any] | None]:
        found = host_agent.info(self.node.pid, self.node.dir)
        return found["pid"], bool(found["stopped"]), found["info"]

    def call(self, cmd: str, timeout: float, **args: Any) -> dict[str, Any]:
        return control_socket.call(
            Path(self.node.dir) / "control.sock", cmd, timeout=timeout, **args
        )

    def start(self, config: str) -> int:
        return host_agent.start(config, self.node.node_id, self.node.dir)

    def signal(self, pid: int, sig: signal.Signals, wait: float) -> bool:
        try:
            return host_agent.send_signal(pid, self.node.dir, sig, wait)["gone"]
        except PermissionError as exc:
            raise PvectlError(
                f"cannot signal pid {pid}: permission denied", ExitCode.NO_PERMISSION
            ) from exc

    def down(self) -> list[int]:
        return host_agent.stop_all(self.node.dir)

    def files(self) -> tuple[str, ...]:
        return tuple(host_agent.files(self.node.dir)) if Path(self.node.dir).is_dir() else ()

    def log_tail(self) -> str:
        return host_agent.last_words(self.node.dir)


# --- SSH ----------------------------------------------------------------------------------

_sessions: list[SshSession] = []


def session(accept_new_host_key: bool = False, connect_timeout: float = 0.0) -> SshSession:
    """The one SSH session of this pvectl run (one connection per host, reused by every
    node request); the first caller's settings hold (``lab up`` passes its options)."""
    from pvectl.targets.hosts import DEFAULT_CONNECT_TIMEOUT
    from pvectl.targets.ssh import SshSession, SshSettings

    if not _sessions:
        atexit.register(close_sessions)
        settings = SshSettings(
            accept_new_host_key=accept_new_host_key,
            connect_timeout=connect_timeout or DEFAULT_CONNECT_TIMEOUT,
        )
        _sessions.append(SshSession(settings))
    return _sessions[0]


def close_sessions() -> None:
    for agent in list(_agents.values()):
        agent.channel.close()
    _agents.clear()
    for opened in _sessions:
        opened.close()
    _sessions.clear()


def node_zip() -> bytes:
    """The node runtime as a zip, run remotely through zipimport (pure Python)."""
    root = Path(__file__).resolve().parent.parent
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("__main__.py", _ZIP_MAIN)
        paths = [root / name for name in _ZIP_MODULES]
        for package in _ZIP_PACKAGES:
            paths += sorted((root / package).rglob("*.py"))
        for path in paths:
            relative = path.relative_to(root).as_posix()
            if relative not in _ZIP_EXCLUDE:
                archive.write(path, f"pvectl/{relative}")
    return buffer.getvalue()


class _Agent:
    """``pvectl.zip serve`` on one host: a python process kept for this pvectl run, fed one
    JSON line per request, so a request costs a round trip instead of a fork and a python
    start there (``lab kill`` polls the survivors many times)."""

    def __init__(self, host: str, runner: SshRunner, python: str, zip_path: str) -> None:
        from pvectl.targets.ssh import HostUnreachable

        self.host = host
        self.lock = threading.Lock()
        client = runner.session.client(runner.spec)
        transport = client.get_transport()
        if transport is None or not transport.is_active():
            raise HostUnreachable(host, "connection lost")
        self.channel = transport.open_session(timeout=runner.session.settings.connect_timeout)
        self.channel.exec_command(shlex.join([python, zip_path, "serve"]))
        self.reader = self.channel.makefile("rb")

    def request(self, argv: list[str], stdin: str, timeout: float, what: str) -> Any:
        line = json.dumps({"argv": argv, "stdin": stdin}).encode() + b"\n"
        with self.lock:
            try:
                self.channel.settimeout(timeout)
                self.channel.sendall(line)
                answer = self.reader.readline()
            except (OSError, EOFError) as exc:  # socket.timeout is an OSError
                self.channel.close()
                _agents.pop(self.host, None)
                raise PvectlError(
                    f"{self.host}: {what}: no answer to '{argv[0]}' ({exc or 'timed out'})",
                    ExitCode.TEMP_FAIL,
                ) from exc
        if not answer:
            _agents.pop(self.host, None)
            error = self.channel.recv_stderr(4096).decode(errors="replace").strip()
            raise PvectlError(
                f"{self.host}: {what}: the pvectl helper there stopped"
                + (f": {error.splitlines()[-1]}" if error else ""),
                ExitCode.UNAVAILABLE,
            )
        reply = json.loads(answer)
        if not reply.get("ok"):
            raise PvectlError(f"{self.host}: {what}: '{argv[0]}' failed: {reply.get('error')}")
        return reply["result"]


_agents: dict[str, _Agent] = {}
_agents_lock = threading.Lock()


def _agent(host: str, runner: SshRunner, python: str, zip_path: str) -> _Agent:
    with _agents_lock:
        if host not in _agents:
            _agents[host] = _Agent(host, runner, python, zip_path)
        return _agents[host]


class SshNode:
    """A node on ``node.host``, reached through that host's helper (``_Agent``)."""

    def __init__(self, node: LabNode) -> None:
        from pvectl.targets.hosts import parse_host

        self.node = node
        self.spec = parse_host(node.host)
        self.runner = session().runner(self.spec)

    @property
    def zip_path(self) -> str:
        return f"{self.node.dir}/{ZIP_NAME}"

    def _ctl(self, *args: str, stdin: str | None = None, timeout: float = 30.0) -> Any:
        agent = _agent(self.node.host, self.runner, self.node.python, self.zip_path)
        return agent.request(list(args), stdin or "", timeout, f"node {self.node.node_id}")

    def _pid_text(self) -> str:
        return "-" if self.node.pid is None else str(self.node.pid)

    def pid(self) -> int | None:
        return self.probe()[0]

    def probe(self) -> tuple[int | None, bool, dict[str, Any] | None]:
        found = self._ctl("info", self._pid_text(), self.node.dir)
        return found["pid"], bool(found["stopped"]), found["info"]

    def call(self, cmd: str, timeout: float, **args: Any) -> dict[str, Any]:
        reply = self._ctl(
            "call", self.node.dir, cmd, f"{timeout:g}", stdin=json.dumps(args), timeout=timeout + 15
        )
        if not isinstance(reply, dict):
            raise PvectlError(f"{self.node.host}: malformed reply")
        if not reply.get("ok", False):
            raise PvectlError(
                f"{self.node.host}: {reply.get('error', 'request failed')}",
                ExitCode(reply.get("exit_code", ExitCode.ERROR)),
            )
        return reply

    def start(self, config: str) -> int:
        return int(self._ctl("start", config, str(self.node.node_id), self.node.dir)["pid"])

    def signal(self, pid: int, sig: signal.Signals, wait: float) -> bool:
        found = self._ctl("signal", str(pid), self.node.dir, str(int(sig)), f"{wait:g}")
        return bool(found["gone"])

    def down(self) -> list[int]:
        # self-contained, so it also cleans up after an upload that never completed
        argv = [self.node.python or "python3", "-c", _DOWN_SCRIPT, self.node.dir]
        result = self.runner.run(argv, timeout=60)
        if result.returncode != 0:
            detail = (result.stderr.strip().splitlines() or ["no output"])[-1]
            raise PvectlError(
                f"{self.node.host}: node {self.node.node_id}: cleanup failed: {detail}",
                ExitCode.UNAVAILABLE,
            )
        return [int(p) for p in json.loads(result.stdout)]

    def files(self) -> tuple[str, ...]:
        return tuple(self._ctl("files", self.node.dir)["files"])

    def log_tail(self) -> str:
        return str(self._ctl("tail", self.node.dir)["line"])

    def exec(self, argv: list[str], env: dict[str, str]) -> int:
        """Run ``argv`` in the node's directory on its host; output is relayed after it ends."""
        import sys

        words = [f"{k}={shlex.quote(v)}" for k, v in env.items()]
        script = f"cd {shlex.quote(self.node.dir)} && {' '.join(words)} exec {shlex.join(argv)}"
        result = self.runner.run(["sh", "-c", script], timeout=3600)
        sys.stdout.write(result.stdout)
        sys.stderr.write(result.stderr)
        return result.returncode


def access(node: LabNode) -> NodeAccess:
    return SshNode(node) if node.host else LocalNode(node)
