"""SSH as a place to run corosync's tools: paramiko with OpenSSH's habits.

What OpenSSH users expect, and what this module keeps:
- ~/.ssh/config is honoured (Host aliases, HostName, User, Port, IdentityFile,
  IdentitiesOnly, ProxyJump, StrictHostKeyChecking, UserKnownHostsFile, HashKnownHosts);
- keys come from ssh-agent and the key files; passwords are never asked for;
- an unknown host key is never accepted silently. ``accept_new_host_key`` (or
  ``StrictHostKeyChecking accept-new``) records a first-seen key in known_hosts like
  OpenSSH's accept-new; a key that differs from the recorded one is refused, always;
- one connection per host per run, reused by every command sent there.

Every failure is a ``PvectlError`` subclass naming the host, so a command over several
hosts reports each one and carries on with the others. Nothing here prints or logs key
material: only public-key fingerprints appear in messages.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import logging
import os
import select
import shlex
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import paramiko

from pvectl.errors import ExitCode, PvectlError
from pvectl.targets.hosts import DEFAULT_CONNECT_TIMEOUT, HostSpec, parse_host
from pvectl.targets.runner import CommandResult

# paramiko logs transport errors at ERROR level; with no handler Python would print them
# on stderr next to our own one-line message.
logging.getLogger("paramiko").addHandler(logging.NullHandler())

DEFAULT_KEY_NAMES = ("id_ed25519", "id_ecdsa", "id_rsa")
# OpenSSH's GlobalKnownHostsFile default; on Proxmox VE it links to the cluster-wide
# /etc/pve/priv/known_hosts, so every node's key is known there already.
GLOBAL_KNOWN_HOSTS = ("/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2")
# corosync's tools live in /usr/sbin, which a non-login PATH may lack.
_REMOTE_PATH_PREFIX = 'PATH="$PATH:/usr/sbin:/sbin"; export PATH; exec '


class SshError(PvectlError):
    """A failure reaching or using one host; ``host`` is what the user typed."""

    def __init__(self, host: str, message: str, exit_code: ExitCode | None = None) -> None:
        super().__init__(f"{host}: {message}", exit_code)
        self.host = host


class HostKeyUnknown(SshError):
    exit_code = ExitCode.NO_PERMISSION


class HostKeyChanged(SshError):
    exit_code = ExitCode.NO_PERMISSION


class AuthenticationFailed(SshError):
    exit_code = ExitCode.NO_PERMISSION


class HostUnreachable(SshError):
    exit_code = ExitCode.UNAVAILABLE


class RemoteTimeout(SshError):
    exit_code = ExitCode.TEMP_FAIL


class RemoteToolMissing(SshError):
    exit_code = ExitCode.UNAVAILABLE


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's ``SHA256:...`` form (base64, no padding), as ``ssh-keygen -lf`` prints."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def known_hosts_name(hostname: str, port: int) -> str:
    return hostname if port == 22 else f"[{hostname}]:{port}"


@dataclass(frozen=True)
class SshSettings:
    accept_new_host_key: bool = False
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    ssh_config: str | None = None  # default ~/.ssh/config


@dataclass(frozen=True)
class ResolvedHost:
    """A host after ~/.ssh/config: everything needed to connect, nothing secret."""

    label: str
    hostname: str
    port: int
    user: str
    identity_files: tuple[str, ...]
    identities_only: bool
    proxy_jump: tuple[str, ...]
    known_hosts_files: tuple[str, ...]  # the user's; new keys go to the first
    global_known_hosts_files: tuple[str, ...]  # read only (on Proxmox VE: the cluster's)
    strict_host_key_checking: str
    hash_known_hosts: bool

    @property
    def where(self) -> str:
        return f"{self.user}@{self.hostname}:{self.port}"


def _home() -> Path:
    return Path(os.path.expanduser("~"))


def load_ssh_config(path: str | None) -> paramiko.SSHConfig:
    where = Path(path) if path else _home() / ".ssh" / "config"
    try:
        return paramiko.SSHConfig.from_path(str(where))
    except FileNotFoundError:
        return paramiko.SSHConfig()
    except Exception as exc:  # paramiko raises ConfigParseError and friends
        raise PvectlError(f"{where}: cannot parse: {exc}", ExitCode.DATA) from exc


def resolve(spec: HostSpec, config: paramiko.SSHConfig) -> ResolvedHost:
    """Apply ~/.ssh/config to a ``--host``; values on the command line win, as with ssh."""
    found = config.lookup(spec.alias)
    hostname = str(found.get("hostname", spec.alias))
    try:
        port = spec.port or int(str(found.get("port", "22")))
    except ValueError as exc:
        raise PvectlError(
            f"~/.ssh/config: Port for {spec.alias!r} is not a number", ExitCode.DATA
        ) from exc
    user = spec.user or str(found.get("user", "")) or _local_user()
    identities = tuple(os.path.expanduser(str(p)) for p in found.get("identityfile", []) or [])
    jump = str(found.get("proxyjump", "") or "")
    known = str(found.get("userknownhostsfile", "") or "")
    known_files = tuple(os.path.expanduser(p) for p in known.split()) or (
        str(_home() / ".ssh" / "known_hosts"),
    )
    global_known = str(found.get("globalknownhostsfile", "") or "")
    global_files = tuple(os.path.expanduser(p) for p in global_known.split()) or (
        GLOBAL_KNOWN_HOSTS
    )
    return ResolvedHost(
        label=spec.text,
        hostname=hostname,
        port=port,
        user=user,
        identity_files=identities,
        identities_only=str(found.get("identitiesonly", "no")).lower() == "yes",
        proxy_jump=tuple(h for h in jump.split(",") if h and jump.lower() != "none"),
        known_hosts_files=known_files,
        global_known_hosts_files=global_files,
        strict_host_key_checking=str(found.get("stricthostkeychecking", "ask")).lower(),
        hash_known_hosts=str(found.get("hashknownhosts", "no")).lower() == "yes",
    )


def _local_user() -> str:
    import getpass

    return getpass.getuser()


class _KnownHostsPolicy(paramiko.MissingHostKeyPolicy):
    """Called by paramiko only for a host with no recorded key; changed keys never get here
    (paramiko raises BadHostKeyException first), so accept-new cannot override them."""

    def __init__(self, host: ResolvedHost, accept_new: bool) -> None:
        self.host = host
        self.accept_new = accept_new

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        record_in = self.host.known_hosts_files[0]
        if not self.accept_new:
            raise HostKeyUnknown(
                self.host.label,
                f"host key not known: {key.get_name()} {fingerprint(key)} for {hostname} "
                f"is not in {_tilde(record_in)}. Check it on the node "
                "(ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub), then rerun with "
                "--accept-new-host-key to record it (or connect once with ssh)",
            )
        _append_known_host(record_in, hostname, key, self.host.hash_known_hosts)
        client.get_host_keys().add(hostname, key.get_name(), key)


def _append_known_host(path: str, hostname: str, key: paramiko.PKey, hashed: bool) -> None:
    name = paramiko.HostKeys.hash_host(hostname) if hashed else hostname
    target = Path(path)
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    needs_newline = target.exists() and target.stat().st_size > 0 and not _ends_with_newline(target)
    with target.open("a", encoding="ascii") as handle:
        if needs_newline:
            handle.write("\n")
        handle.write(f"{name} {key.get_name()} {key.get_base64()}\n")


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"


def _tilde(path: str) -> str:
    home = str(_home())
    return "~" + path[len(home) :] if path.startswith(home + os.sep) else path


def _default_identities() -> tuple[str, ...]:
    ssh_dir = _home() / ".ssh"
    return tuple(str(ssh_dir / name) for name in DEFAULT_KEY_NAMES)


class SshSession:
    """The connections of one pvectl run: one per host, opened on first use, shared by
    threads, closed together. Use as a context manager."""

    def __init__(self, settings: SshSettings | None = None) -> None:
        self.settings = settings or SshSettings()
        self._config = load_ssh_config(self.settings.ssh_config)
        self._lock = threading.Lock()
        self._host_locks: dict[str, threading.Lock] = {}
        self._clients: dict[str, paramiko.SSHClient] = {}
        self._jumps: list[paramiko.SSHClient] = []

    def __enter__(self) -> SshSession:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def resolve(self, spec: HostSpec) -> ResolvedHost:
        return resolve(spec, self._config)

    def runner(self, spec: HostSpec) -> SshRunner:
        return SshRunner(self, spec)

    def client(self, spec: HostSpec) -> paramiko.SSHClient:
        """The open connection to ``spec``, connecting on first use."""
        with self._lock:
            host_lock = self._host_locks.setdefault(spec.text, threading.Lock())
        with host_lock:
            existing = self._clients.get(spec.text)
            transport = existing.get_transport() if existing is not None else None
            if existing is not None and transport is not None and transport.is_active():
                return existing
            client = self._connect(self.resolve(spec))
            self._clients[spec.text] = client
            return client

    def close(self) -> None:
        with self._lock:
            for client in [*self._clients.values(), *reversed(self._jumps)]:
                client.close()
            self._clients.clear()
            self._jumps.clear()

    # -- connecting -------------------------------------------------------------------

    def _connect(self, host: ResolvedHost) -> paramiko.SSHClient:
        sock: paramiko.Channel | None = None
        for hop_text in host.proxy_jump:
            hop = resolve(parse_host(hop_text), self._config)
            hop = dataclasses.replace(hop, label=f"{host.label} (via {hop_text})")
            jump_client = self._open(hop, sock)
            with self._lock:
                self._jumps.append(jump_client)
            sock = self._tunnel(jump_client, host, hop)
        return self._open(host, sock)

    def _tunnel(
        self, jump: paramiko.SSHClient, host: ResolvedHost, hop: ResolvedHost
    ) -> paramiko.Channel:
        transport = jump.get_transport()
        assert transport is not None  # just connected
        try:
            return transport.open_channel(
                "direct-tcpip",
                (host.hostname, host.port),
                ("127.0.0.1", 0),
                timeout=self.settings.connect_timeout,
            )
        except (paramiko.SSHException, OSError) as exc:
            raise HostUnreachable(
                host.label,
                f"host unreachable: jump host {hop.hostname} could not open "
                f"{host.hostname}:{host.port} ({exc})",
            ) from exc

    def _open(self, host: ResolvedHost, sock: paramiko.Channel | None) -> paramiko.SSHClient:
        timeout = self.settings.connect_timeout
        accept_new = self.settings.accept_new_host_key or host.strict_host_key_checking in (
            "accept-new",
            "no",
            "off",
        )
        client = paramiko.SSHClient()
        for path in (*host.known_hosts_files, *host.global_known_hosts_files):
            if os.path.exists(path):
                try:
                    client.load_system_host_keys(path)
                except (OSError, paramiko.SSHException) as exc:
                    raise PvectlError(f"{path}: cannot read known hosts: {exc}") from exc
        client.set_missing_host_key_policy(_KnownHostsPolicy(host, accept_new))
        keys = host.identity_files or (() if host.identities_only else _default_identities())
        key_files = [k for k in keys if os.path.exists(k)]
        try:
            client.connect(
                host.hostname,
                port=host.port,
                username=host.user,
                key_filename=key_files or None,  # type: ignore[arg-type]  # paramiko takes a list
                allow_agent=not host.identities_only,
                look_for_keys=False,
                timeout=timeout,
                banner_timeout=timeout,
                auth_timeout=timeout,
                channel_timeout=timeout,
                sock=sock,
            )
        except SshError:
            client.close()
            raise
        except paramiko.BadHostKeyException as exc:
            client.close()
            name = known_hosts_name(host.hostname, host.port)
            raise HostKeyChanged(
                host.label,
                "HOST KEY CHANGED, refusing to connect (someone may be intercepting the "
                f"connection): your known hosts record "
                f"{exc.expected_key.get_name()} {fingerprint(exc.expected_key)} for {name}, "
                f"the server offers {exc.key.get_name()} {fingerprint(exc.key)}. If the node "
                f"was reinstalled, verify the new key there and remove the old one with: "
                f"ssh-keygen -R {shlex.quote(name)}",
            ) from exc
        except paramiko.AuthenticationException as exc:
            client.close()
            tried = (["ssh-agent"] if not host.identities_only else []) + [
                _tilde(k) for k in key_files
            ]
            raise AuthenticationFailed(
                host.label,
                f"authentication failed for {host.where}: the server refused every key "
                f"offered (tried: {', '.join(tried) or 'nothing'}). Add your public key to "
                "the node's ~/.ssh/authorized_keys, or set IdentityFile in ~/.ssh/config "
                "(encrypted keys must be loaded in ssh-agent; pvectl never asks for "
                "passwords)",
            ) from exc
        except TimeoutError as exc:
            client.close()
            raise HostUnreachable(
                host.label,
                f"host unreachable: no answer from {host.hostname}:{host.port} "
                f"within {timeout:g} s",
            ) from exc
        except socket.gaierror as exc:
            client.close()
            raise HostUnreachable(
                host.label,
                f"host unreachable: cannot resolve host name {host.hostname!r} "
                "(not in DNS, /etc/hosts or as HostName in ~/.ssh/config)",
            ) from exc
        except paramiko.SSHException as exc:
            client.close()
            text = str(exc)
            if "No authentication methods available" in text:
                raise AuthenticationFailed(
                    host.label,
                    f"authentication failed for {host.where}: no key to offer "
                    "(no ssh-agent, no key file in ~/.ssh, no IdentityFile in ~/.ssh/config)",
                ) from exc
            # a silent peer fails in paramiko's thread ("banner") or, racing, in connect
            if "banner" in text or "No existing session" in text:
                raise HostUnreachable(
                    host.label,
                    f"host unreachable: {host.hostname}:{host.port} accepted the connection but "
                    f"did not complete the SSH handshake within {timeout:g} s (not sshd there, "
                    "or sshd hung)",
                ) from exc
            raise HostUnreachable(
                host.label, f"SSH handshake with {host.hostname}:{host.port} failed: {text}"
            ) from exc
        except OSError as exc:
            client.close()
            reason = _socket_reason(exc)
            raise HostUnreachable(
                host.label, f"host unreachable: {host.hostname}:{host.port}: {reason}"
            ) from exc
        return client


def _socket_reason(exc: OSError) -> str:
    errors = getattr(exc, "errors", None)  # paramiko.NoValidConnectionsError
    if isinstance(errors, dict) and errors:
        exc = next(iter(errors.values()))
    return (exc.strerror or str(exc)).lower()


class SshRunner:
    """``CommandRunner`` over one host of an ``SshSession``."""

    def __init__(self, session: SshSession, spec: HostSpec) -> None:
        self.session = session
        self.spec = spec
        self.describe = f"ssh:{spec.text}"

    def connect(self) -> None:
        """Open (or reuse) the connection now, so connection errors surface first."""
        self.session.client(self.spec)

    def run(self, argv: list[str], timeout: float = 30.0) -> CommandResult:
        return self.run_input(argv, None, timeout)

    def run_input(self, argv: list[str], stdin: str | None, timeout: float = 30.0) -> CommandResult:
        """Run ``argv`` (each word quoted, so no remote shell expansion) with ``stdin``."""
        transport = self.session.client(self.spec).get_transport()
        if transport is None or not transport.is_active():
            raise HostUnreachable(self.spec.text, "connection lost")
        command = _REMOTE_PATH_PREFIX + shlex.join(argv)
        try:
            channel = transport.open_session(timeout=self.session.settings.connect_timeout)
            channel.exec_command(command)
            if stdin is not None:
                channel.sendall(stdin.encode("utf-8"))
            channel.shutdown_write()
            out, err, code = _collect(channel, timeout)
        except _Timeout as exc:
            raise RemoteTimeout(
                self.spec.text, f"'{shlex.join(argv)}' timed out after {timeout:g} s"
            ) from exc
        except (paramiko.SSHException, OSError) as exc:
            raise HostUnreachable(self.spec.text, f"connection lost: {exc}") from exc
        if code == 127 and not out:
            if argv[0].startswith("corosync"):
                raise RemoteToolMissing(
                    self.spec.text,
                    f"{argv[0]} not found: corosync is not installed there "
                    "(Debian package 'corosync'; on Proxmox VE it comes with the cluster)",
                )
            raise RemoteToolMissing(self.spec.text, f"{argv[0]}: command not found there")
        return CommandResult(tuple(argv), code, out, err)

    def read_file(self, path: str) -> str | None:
        # exit 3 = absent, whatever language the remote error messages are in
        script = 'test -e "$1" || exit 3; exec cat -- "$1"'
        result = self.run(["sh", "-c", script, "sh", path])
        if result.returncode == 0:
            return result.stdout
        if result.returncode == 3:
            return None
        raise PvectlError(f"{self.spec.text}: cannot read {path}: {result.stderr.strip()}")


class _Timeout(Exception):
    pass


def _collect(channel: paramiko.Channel, timeout: float) -> tuple[str, str, int]:
    deadline = time.monotonic() + timeout
    out = bytearray()
    err = bytearray()
    try:
        while True:
            progressed = False
            while channel.recv_ready():
                out += channel.recv(65536)
                progressed = True
            while channel.recv_stderr_ready():
                err += channel.recv_stderr(65536)
                progressed = True
            if channel.exit_status_ready() and not channel.recv_ready():
                if not channel.recv_stderr_ready():
                    break
                continue
            if progressed:
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _Timeout()
            select.select([channel], [], [], min(remaining, 0.05))
        code = channel.recv_exit_status()
    finally:
        channel.close()
    return out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), code
