"""Network namespaces, the node context wrapper and nftables fault rules for lab nodes.

Every node has its own network namespace (its own address, its own abstract unix
sockets, hence its own corosync IPC) joined to a bridge that lives in a hub namespace,
so nothing touches the host's network. Commands run "on" a node also get a private
mount and UTS namespace in which the node's directories cover corosync's fixed paths.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from pvectl.errors import ExitCode, PvectlError

NETNS_DIR = Path("/run/netns")
NAMESPACE_PREFIX = "pvcl"
PARTITION_TABLE = "pvectl_partition"
LOSS_TABLE = "pvectl_loss"

# Directories under a node's state dir, and the fixed path each one covers.
# /run goes last: the lab's own state dir may live under /run and must stay reachable
# until every other bind is in place.
NODE_MOUNTS = (
    ("etc", "/etc/corosync"),
    ("lib", "/var/lib/corosync"),
    ("log", "/var/log/corosync"),
    ("run", "/run"),
)

# Runs as: sh -c SCRIPT sh NODE_DIR HOSTNAME CMD...; exit 111 marks a failed setup.
_CONTEXT_SCRIPT = (
    'd=$1; h=$2; shift 2; hostname "$h" || exit 111; '
    + "; ".join(f'mount --bind "$d/{sub}" {target} || exit 111' for sub, target in NODE_MOUNTS)
    + '; exec "$@"'
)


def lab_prefix(lab_name: str) -> str:
    return f"{NAMESPACE_PREFIX}-{lab_name}-"


def hub_namespace(lab_name: str) -> str:
    return f"{lab_prefix(lab_name)}hub"


def node_namespace(lab_name: str, node_id: int) -> str:
    return f"{lab_prefix(lab_name)}n{node_id}"


def lab_namespaces(lab_name: str) -> list[str]:
    """This lab's namespaces only: an exact pattern, so lab ``a`` never matches ``a_b``."""
    pattern = re.compile(rf"^{re.escape(lab_prefix(lab_name))}(hub|n\d+|qnetd)$")
    return sorted(name for name in list_namespaces() if pattern.match(name))


def list_namespaces() -> list[str]:
    try:
        return sorted(entry.name for entry in NETNS_DIR.iterdir())
    except FileNotFoundError:
        return []


def node_context(namespace: str, node_dir: str, hostname: str) -> tuple[str, ...]:
    """argv prefix that runs a command inside a node: its netns plus private mounts."""
    return (
        "ip",
        "netns",
        "exec",
        namespace,
        "unshare",
        "--mount",
        "--uts",
        "--propagation",
        "private",
        "--",
        "/bin/sh",
        "-c",
        _CONTEXT_SCRIPT,
        "sh",
        node_dir,
        hostname,
    )


def net_only(namespace: str) -> tuple[str, ...]:
    """Cheaper prefix for tools that need only the node's network (corosync IPC)."""
    return ("ip", "netns", "exec", namespace)


def require_program(program: str, package: str) -> None:
    """A one-line error naming the Debian package when ``program`` is not on PATH."""
    if shutil.which(program) is None:
        raise PvectlError(
            f"{program} not found on PATH: install the Debian package '{package}' "
            f"(apt install {package})",
            ExitCode.UNAVAILABLE,
        )


def spawn_daemon(
    argv: Sequence[str], log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start a long-running process in its own session, output appended to ``log`` (a chain
    that execs all the way, like ip -> unshare -> sh -> corosync, keeps its pid)."""
    with open(log, "ab") as handle:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            env=env,
        )
    return proc


def run(
    argv: Sequence[str], input_text: str | None = None, check: bool = True, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(
            list(argv),
            input=input_text,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as exc:
        raise PvectlError(f"{argv[0]}: command not found", ExitCode.UNAVAILABLE) from exc
    except subprocess.TimeoutExpired as exc:
        raise PvectlError(f"{' '.join(argv)}: timed out", ExitCode.TEMP_FAIL) from exc
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise PvectlError(
            f"{' '.join(argv[:6])}: failed ({detail[-1] if detail else proc.returncode})"
        )
    return proc


def create_hub(namespace: str) -> None:
    run(["ip", "netns", "add", namespace])
    run(["ip", "-n", namespace, "link", "set", "lo", "up"])
    run(["ip", "-n", namespace, "link", "add", "br0", "type", "bridge"])
    run(["ip", "-n", namespace, "link", "set", "br0", "up"])


def create_node_namespace(namespace: str, hub: str, port: str, address_cidr: str) -> None:
    run(["ip", "netns", "add", namespace])
    run(["ip", "-n", namespace, "link", "set", "lo", "up"])
    run(["ip", "-n", namespace, "link", "add", "eth0", "type", "veth", "peer", "name", port])
    run(["ip", "-n", namespace, "link", "set", port, "netns", hub])
    run(["ip", "-n", hub, "link", "set", port, "master", "br0", "up"])
    run(["ip", "-n", namespace, "addr", "add", address_cidr, "dev", "eth0"])
    run(["ip", "-n", namespace, "link", "set", "eth0", "up"])


def namespace_pids(namespace: str) -> list[int]:
    proc = run(["ip", "netns", "pids", namespace], check=False)
    return [int(token) for token in proc.stdout.split() if token.isdigit()]


def namespace_inode(namespace: str) -> int | None:
    try:
        return (NETNS_DIR / namespace).stat().st_ino
    except FileNotFoundError:
        return None


def process_in_namespace(pid: int, namespace: str, comm: str | None = None) -> bool:
    """True if ``pid`` is alive, lives in ``namespace`` and (optionally) is named ``comm``;
    guards every signal we send against pid reuse."""
    inode = namespace_inode(namespace)
    if inode is None:
        return False
    try:
        if os.stat(f"/proc/{pid}/ns/net").st_ino != inode:
            return False
        if comm is not None:
            return Path(f"/proc/{pid}/comm").read_text().strip() == comm
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (FileNotFoundError, ProcessLookupError, PermissionError, IndexError):
        return False


def wait_gone(pids: Iterable[int], timeout: float) -> list[int]:
    """Wait for processes to exit; returns those still alive."""
    remaining = list(pids)
    deadline = time.monotonic() + timeout
    while remaining and time.monotonic() < deadline:
        remaining = [pid for pid in remaining if alive(pid)]
        if remaining:
            time.sleep(0.05)
    return [pid for pid in remaining if alive(pid)]


def is_stopped(pid: int) -> bool:
    """True while the process is frozen by SIGSTOP (state T)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"
    except (FileNotFoundError, IndexError):
        return False


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def signal_pid(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def destroy_namespaces(namespaces: Sequence[str]) -> dict[str, list[int]]:
    """SIGTERM (then SIGKILL) every process in the namespaces, all at once, then delete
    the namespaces; returns the pids that had to be stopped, per namespace."""
    pids = {namespace: namespace_pids(namespace) for namespace in namespaces}
    everyone = [pid for found in pids.values() for pid in found]
    for pid in everyone:
        signal_pid(pid, signal.SIGCONT)  # a paused node must be able to die cleanly
        signal_pid(pid, signal.SIGTERM)
    stubborn = wait_gone(everyone, 5.0)
    for pid in stubborn:
        signal_pid(pid, signal.SIGKILL)
    wait_gone(stubborn, 2.0)
    for namespace in namespaces:
        run(["ip", "netns", "del", namespace], check=False)
    return pids


def partition_rules(blocked: Sequence[str]) -> str:
    """nft script dropping all traffic to and from ``blocked`` addresses."""
    addresses = ", ".join(blocked)
    return (
        f"table inet {PARTITION_TABLE} {{\n"
        "  chain input {\n"
        "    type filter hook input priority 0; policy accept;\n"
        f"    ip saddr {{ {addresses} }} drop\n"
        "  }\n"
        "  chain output {\n"
        "    type filter hook output priority 0; policy accept;\n"
        f"    ip daddr {{ {addresses} }} drop\n"
        "  }\n"
        "}\n"
    )


def loss_rules(percent: int) -> str:
    """nft script dropping ``percent`` % of packets arriving on the node's link."""
    return (
        f"table inet {LOSS_TABLE} {{\n"
        "  chain input {\n"
        "    type filter hook input priority 0; policy accept;\n"
        f'    iifname "eth0" numgen random mod 100 < {percent} drop\n'
        "  }\n"
        "}\n"
    )


def replace_table(namespace: str, table: str, script: str | None) -> None:
    """Install ``script`` as ``table`` in the namespace, or just remove the table."""
    run([*net_only(namespace), "nft", "delete", "table", "inet", table], check=False)
    if script is not None:
        run([*net_only(namespace), "nft", "-f", "-"], input_text=script)
