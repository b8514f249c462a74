"""A real OpenSSH server for tests: Debian's /usr/sbin/sshd on 127.0.0.1 (or inside a
network namespace), with generated ed25519 host and user keys in a temp dir.

The client side gets its own HOME (``home``) holding ~/.ssh/config, the user key and
known_hosts, so tests never touch the real user's files or agent.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pvectl.lab.state import LabState

SSHD = "/usr/sbin/sshd"


def sshd_skip_reason() -> str | None:
    if not os.path.exists(SSHD):
        return "needs Debian's openssh-server (/usr/sbin/sshd)"
    if shutil.which("ssh-keygen") is None:
        return "needs ssh-keygen (openssh-client)"
    if os.geteuid() != 0:
        return "needs root: sshd's privilege separation runs as root"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def keygen(path: Path, comment: str = "pvectl-test") -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
    )


@dataclass
class Sshd:
    """One sshd with its own host key; ``start``/``stop`` may be called repeatedly."""

    root: Path
    address: str = "127.0.0.1"
    port: int = field(default_factory=free_port)
    netns: str | None = None  # where to check that it listens
    prefix: tuple[str, ...] = ()  # argv prefix to start it with (a lab node's context)
    privsep_dir: Path = Path("/run/sshd")  # as the started sshd sees /run
    proc: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.host_key = self.root / "ssh_host_ed25519_key"
        if not self.host_key.exists():
            keygen(self.host_key, "pvectl-test-host")
        self.authorized_keys = self.root / "authorized_keys"
        self.authorized_keys.touch()
        self.config = self.root / "sshd_config"
        self.config.write_text(
            f"Port {self.port}\n"
            f"ListenAddress {self.address}\n"
            f"HostKey {self.host_key}\n"
            f"PidFile {self.root / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {self.authorized_keys}\n"
            "UsePAM no\n"
            "StrictModes no\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "PubkeyAuthentication yes\n"
            "PermitRootLogin prohibit-password\n"
            "AllowTcpForwarding yes\n"
            "LogLevel VERBOSE\n"
        )

    def new_host_key(self) -> None:
        """Simulate a reinstalled node: a different host key on the same address."""
        self.host_key.unlink()
        Path(str(self.host_key) + ".pub").unlink()
        keygen(self.host_key, "pvectl-test-host")

    def host_public_key(self) -> str:
        return Path(str(self.host_key) + ".pub").read_text().split()[1]

    def fingerprint(self) -> str:
        out = subprocess.run(
            ["ssh-keygen", "-lf", str(self.host_key) + ".pub"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        return out.split()[1]

    def authorize(self, pubkey_path: Path) -> None:
        with self.authorized_keys.open("a") as handle:
            handle.write(pubkey_path.read_text())

    def start(self) -> None:
        self.privsep_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        argv = [SSHD, "-D", "-e", "-f", str(self.config)]
        if self.prefix:
            argv = [*self.prefix, *argv]
        elif self.netns:
            argv = ["ip", "netns", "exec", self.netns, *argv]
        log = (self.root / "sshd.log").open("ab")
        self.proc = subprocess.Popen(argv, stdout=log, stderr=log, start_new_session=True)
        log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {(self.root / 'sshd.log').read_text()}")
            if self._listening():
                return
            time.sleep(0.05)
        raise RuntimeError("sshd did not start listening within 10 s")

    def _listening(self) -> bool:
        if self.netns:
            out = subprocess.run(
                ["ip", "netns", "exec", self.netns, "ss", "-ltnH", f"sport = :{self.port}"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout
            return bool(out.strip())
        try:
            with socket.create_connection((self.address, self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def log(self) -> str:
        path = self.root / "sshd.log"
        return path.read_text(errors="replace") if path.exists() else ""


@dataclass
class SshClientHome:
    """A client HOME with ~/.ssh/{config,known_hosts,id_ed25519}."""

    home: Path

    def __post_init__(self) -> None:
        self.ssh_dir = self.home / ".ssh"
        self.ssh_dir.mkdir(parents=True, mode=0o700, exist_ok=True)
        self.key = self.ssh_dir / "id_ed25519"
        if not self.key.exists():
            keygen(self.key, "pvectl-test-user")
        self.pubkey = Path(str(self.key) + ".pub")
        self.known_hosts = self.ssh_dir / "known_hosts"
        self.config = self.ssh_dir / "config"

    def trust(self, sshd: Sshd) -> None:
        name = sshd.address if sshd.port == 22 else f"[{sshd.address}]:{sshd.port}"
        with self.known_hosts.open("a") as handle:
            handle.write(f"{name} ssh-ed25519 {sshd.host_public_key()}\n")

    def add_alias(self, alias: str, sshd: Sshd, user: str = "root", extra: str = "") -> None:
        with self.config.open("a") as handle:
            handle.write(
                f"Host {alias}\n  HostName {sshd.address}\n  Port {sshd.port}\n"
                f"  User {user}\n{extra}"
            )

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}
        env["HOME"] = str(self.home)
        env["XDG_CONFIG_HOME"] = str(self.home / ".config")
        env["NO_COLOR"] = "1"
        return env

    def private_key_fragments(self) -> list[str]:
        """Every base64 line of the private key (what a leak would show)."""
        lines = self.key.read_text().splitlines()
        return [line for line in lines if line and not line.startswith("-----")]


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@dataclass
class SshLab:
    """A corosync lab whose nodes run real sshds, as the SSH tests use it."""

    name: str
    state: LabState
    home: SshClientHome
    sshds: dict[int, Sshd]
    root: Path


@contextmanager
def corosync_lab_with_sshd(
    name: str, root: Path, client_ns: str, client_octet: int, veth: str
) -> Iterator[SshLab]:
    """A 3-node corosync lab whose nodes each run a real sshd (``nodeN`` aliases, trusted
    host keys in ``home``), and a client namespace on the lab's bridge at ``.client_octet``:
    the laptop a user runs pvectl from. Everything is removed on exit."""
    import sys

    from pvectl.lab import corosync_engine
    from pvectl.lab import state as lab_state

    home = SshClientHome(root / "home")
    up = subprocess.run(
        [sys.executable, "-m", "pvectl", "lab", "up", "3", "--engine", "corosync", "--name", name],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert up.returncode == 0, up.stderr
    sshds: dict[int, Sshd] = {}
    try:
        state = lab_state.load(name)
        assert state is not None
        prefix_net = state.subnet.split("/")[0].rsplit(".", 1)[0] + "."
        _ip("netns", "add", client_ns)
        _ip("-n", client_ns, "link", "set", "lo", "up")
        _ip("-n", client_ns, "link", "add", "eth0", "type", "veth", "peer", "name", veth)
        _ip("-n", client_ns, "link", "set", veth, "netns", state.hub_namespace)
        _ip("-n", state.hub_namespace, "link", "set", veth, "master", "br0", "up")
        _ip("-n", client_ns, "addr", "add", f"{prefix_net}{client_octet}/24", "dev", "eth0")
        _ip("-n", client_ns, "link", "set", "eth0", "up")
        for node in state.nodes:
            server = Sshd(
                root / f"sshd{node.node_id}",
                address=node.address,
                port=22,
                netns=node.namespace,
                prefix=corosync_engine.node_prefix(node),
                privsep_dir=Path(node.dir) / "run" / "sshd",
            )
            server.authorize(home.pubkey)
            server.start()
            sshds[node.node_id] = server
            home.add_alias(f"node{node.node_id}", server)
            home.trust(server)
        yield SshLab(name, state, home, sshds, root)
    finally:
        for server in sshds.values():
            server.stop()
        subprocess.run(
            [sys.executable, "-m", "pvectl", "lab", "down", "--name", name],
            capture_output=True,
            timeout=120,
            check=False,
        )
        subprocess.run(["ip", "netns", "del", client_ns], capture_output=True, check=False)
