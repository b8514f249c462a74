"""Preparing the user's hosts for an embedded lab (``lab up N --host H ...``): check each
host before anything starts, then give every node its own directory there.

Each node gets ``~/.cache/pvectl/lab/NAME-TOKEN/nodeN/`` holding the node zip,
corosync.conf and the authkey (0600). Per node, not per host, so hosts that share a home
directory (NFS) or one host running several nodes never step on each other, and
``lab down`` removes exactly what it made.
"""

from __future__ import annotations

import base64
import json
import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from pvectl.errors import ExitCode, PvectlError, UsageError
from pvectl.lab import node_access
from pvectl.lab.state import LabNode

MIN_PYTHON = (3, 11)
REMOTE_ROOT = ".cache/pvectl/lab"
_PROBE = (
    "import json, os, sys; print(json.dumps({'version': list(sys.version_info[:2]), "
    "'executable': sys.executable, 'home': os.path.expanduser('~'), "
    "'ssh': os.environ.get('SSH_CONNECTION', '')}))"
)


@dataclass(frozen=True)
class HostFacts:
    host: str
    python: str
    home: str
    address: str  # the host's own address on the network we reached it through


def plan_hosts(hosts: tuple[str, ...], nodes: int) -> list[str]:
    """Which host runs which node: one ``--host`` per node (a host named twice runs two
    nodes), or a single host running them all."""
    if len(hosts) == nodes:
        return list(hosts)
    if len(hosts) == 1:
        return list(hosts) * nodes
    raise UsageError(
        f"{nodes} nodes need {nodes} --host values (one per node; name a host twice to run "
        f"two nodes there), or a single --host for all of them; got {len(hosts)}"
    )


def _probe(host: str, accept_new: bool, timeout: float) -> HostFacts:
    from pvectl.targets.hosts import parse_host
    from pvectl.targets.ssh import RemoteToolMissing

    runner = node_access.session(accept_new, timeout).runner(parse_host(host))
    runner.connect()
    try:
        result = runner.run(["python3", "-c", _PROBE], timeout=30)
    except RemoteToolMissing as exc:
        raise PvectlError(
            f"{host}: python3 not found there: a lab node needs python3 >= "
            f"{MIN_PYTHON[0]}.{MIN_PYTHON[1]} on the host (Debian 12 / Proxmox VE 8 have it)",
            ExitCode.UNAVAILABLE,
        ) from exc
    try:
        facts = json.loads(result.stdout)
        version = tuple(int(v) for v in facts["version"])
    except (ValueError, KeyError, TypeError) as exc:
        raise PvectlError(
            f"{host}: python3 did not run: {result.stderr.strip() or result.stdout.strip()}",
            ExitCode.UNAVAILABLE,
        ) from exc
    if version < MIN_PYTHON:
        raise PvectlError(
            f"{host}: python3 there is {version[0]}.{version[1]}; a lab node needs >= "
            f"{MIN_PYTHON[0]}.{MIN_PYTHON[1]} (Debian 12 / Proxmox VE 8)",
            ExitCode.UNAVAILABLE,
        )
    parts = str(facts.get("ssh", "")).split()
    if len(parts) != 4:
        raise PvectlError(
            f"{host}: cannot tell the host's address (no SSH_CONNECTION in its environment)",
            ExitCode.UNAVAILABLE,
        )
    address = parts[2].removeprefix("::ffff:")
    return HostFacts(host, str(facts["executable"]), str(facts["home"]), address)


def probe_hosts(hosts: list[str], accept_new: bool, timeout: float) -> dict[str, HostFacts]:
    """Every distinct host, checked in parallel; any failure names each failing host."""
    distinct = list(dict.fromkeys(hosts))
    found: dict[str, HostFacts] = {}
    failures: list[PvectlError] = []
    with ThreadPoolExecutor(max_workers=min(8, len(distinct))) as pool:
        futures = {h: pool.submit(_probe, h, accept_new, timeout) for h in distinct}
        for host, future in futures.items():
            try:
                found[host] = future.result()
            except PvectlError as exc:
                failures.append(exc)
    if failures:
        lines = "\n".join(f"  {exc}" for exc in failures)  # one line per failing host
        raise PvectlError(
            f"lab not started ({len(failures)} of {len(distinct)} host(s) failed):\n{lines}",
            failures[0].exit_code,
        )
    return found


def lab_root(name: str, home: str, token: str) -> str:
    return f"{home}/{REMOTE_ROOT}/{name}-{token}"


def new_token() -> str:
    return secrets.token_hex(4)


# Writes the node's files under umask 077: the directory 0700, every file 0600, the key
# never in a command line or a log (it travels on stdin).
_UPLOAD_SCRIPT = """
import base64, json, os, sys
os.umask(0o077)
d = sys.argv[1]
os.makedirs(d, mode=0o700, exist_ok=True)
for name, data in json.load(sys.stdin).items():
    path = os.path.join(d, name)
    with open(path + '.tmp', 'wb') as f:
        f.write(base64.b64decode(data))
    os.chmod(path + '.tmp', 0o600)
    os.replace(path + '.tmp', path)
"""


def upload(node: LabNode, conf: str, authkey: bytes, archive: bytes) -> None:
    """The node's directory (0700) with its zip, corosync.conf and authkey (0600), in one
    exec (no SFTP subsystem needed on the host)."""
    from pvectl.targets.hosts import parse_host

    payload = json.dumps(
        {
            name: base64.b64encode(data).decode("ascii")
            for name, data in (
                ("authkey", authkey),
                ("corosync.conf", conf.encode()),
                (node_access.ZIP_NAME, archive),
            )
        }
    )
    runner = node_access.session().runner(parse_host(node.host))
    result = runner.run_input([node.python, "-c", _UPLOAD_SCRIPT, node.dir], payload, timeout=120)
    if result.returncode != 0:
        detail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise PvectlError(
            f"{node.host}: cannot write node {node.node_id}'s files to {node.dir}: {detail}",
            ExitCode.CANT_CREATE,
        )
