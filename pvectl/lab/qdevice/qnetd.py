"""The qnetd of a lab, for both engines: ``pvectl qdevice serve`` (kind ``pvectl``) or the
real corosync-qnetd (kind ``corosync``), its certificate authority, and its process.

The facts live in a plain dict recorded in the lab's state (``options["qdevice"]``):
kind, algorithm, address, port, tls, dir (the lab's qnetd dir), certs (pvectl's CA dir or
corosync-qnetd's NSS database), pid, and for the corosync engine the network namespace
it runs in. The embedded engine runs it on a loopback address (no namespace).
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pvectl
from pvectl.corosync_conf import QNETD_PORT, Section, qdevice_section
from pvectl.errors import CommandRefused, PvectlError, UsageError
from pvectl.lab import netns
from pvectl.lab import state as lab_state
from pvectl.lab.state import LabState

QNETD_KINDS = ("pvectl", "corosync")
DEFAULT_PORT = QNETD_PORT
PACKAGE = "corosync-qnetd"
QNETD_HOST_INDEX = 99  # .100 of the lab's /24, as in the reference lab


def check_kind(kind: str) -> None:
    if kind not in QNETD_KINDS:
        raise UsageError(f"--qnetd must be pvectl or corosync, got {kind!r}")


def require_tools(kind: str) -> None:
    """The real qnetd's programs, named with their Debian package when missing."""
    if kind != "corosync":
        return
    for tool in ("corosync-qnetd", "corosync-qnetd-certutil"):
        netns.require_program(tool, PACKAGE)


def address(subnet: str) -> str:
    return str(list(ipaddress.IPv4Network(subnet).hosts())[QNETD_HOST_INDEX])


def tls_word(tls: bool) -> str:
    """A lab with certificates requires TLS on both sides: its qnetd takes no plaintext
    client, and its nodes refuse a qnetd that offers no TLS (``on`` would let either
    carry on in plaintext)."""
    return "required" if tls else "off"


def device_section(
    host: str, algorithm: str, tls: bool, port: int | None = None, votes: int | None = None
) -> Section:
    """The lab's quorum.device: pvecm's layout, with tls required when it has certificates."""
    return qdevice_section(host, algorithm, tls_word(tls), port, votes)


def qnetd_dir(state_dir: str | Path) -> Path:
    return Path(state_dir) / "qnetd"


def control_socket(info: dict[str, Any]) -> Path:
    """The qnetd's local socket: ``pvectl qdevice clients --control-socket`` or
    ``corosync-qnetd-tool -p`` reads it, from any namespace."""
    return Path(info["dir"]) / "qnetd.sock"


def listing_command(info: dict[str, Any]) -> list[str]:
    """The command that lists the qnetd's clients (corosync-qnetd-tool -lv or pvectl's)."""
    if info["kind"] == "corosync":
        return ["corosync-qnetd-tool", "-l", "-v", "-p", str(control_socket(info))]
    return [
        sys.executable,
        "-m",
        "pvectl",
        "qdevice",
        "clients",
        "--control-socket",
        str(control_socket(info)),
    ]


def listing_hint(info: dict[str, Any]) -> str:
    if info["kind"] == "corosync":
        return f"corosync-qnetd-tool -lv -p {control_socket(info)}"
    return f"pvectl qdevice clients --control-socket {control_socket(info)}"


# --- the certificate authority -------------------------------------------------------------


def _in_etc(etc: Path, argv: list[str]) -> subprocess.CompletedProcess[str]:
    """corosync-qnetd-certutil works on /etc/corosync/qnetd: a private mount of ours."""
    script = 'mount --bind "$1" /etc/corosync && shift && exec "$@"'
    return subprocess.run(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            script,
            "sh",
            str(etc),
            *argv,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _qnetd_certutil(etc: Path, *args: str) -> None:
    proc = _in_etc(etc, ["corosync-qnetd-certutil", *args])
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise PvectlError(
            f"corosync-qnetd-certutil {' '.join(args)}: "
            + (detail[-1] if detail else f"exit {proc.returncode}")
        )


def init_ca(state_dir: str | Path, kind: str) -> Path:
    """A fresh CA for the qnetd: pvectl's cert dir, or the NSS database that
    corosync-qnetd-certutil -i makes (as on a real qnetd host). Returns where it is."""
    require_tools(kind)
    qdir = qnetd_dir(state_dir)
    qdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if kind == "corosync":
        etc = qdir / "etc"
        etc.mkdir(parents=True, exist_ok=True)
        _qnetd_certutil(etc, "-i")
        return etc / "qnetd" / "nssdb"
    from pvectl.node.qdevice.certs import init_cert_dir  # imports cryptography

    return init_cert_dir(qdir / "certs", force=True).path


def ca_certificate(kind: str, certs: Path) -> Path:
    """The CA certificate the qdevice side imports (qnetd-cacert.crt in both kinds)."""
    return certs / "qnetd-cacert.crt"


def sign(kind: str, certs: Path, request: Path, cluster: str, out: Path) -> None:
    """Sign a client's certificate request for cluster ``cluster`` into ``out``: what
    ``corosync-qnetd-certutil -s`` does on a qnetd host (pvectl's CA signs it the same)."""
    if kind == "pvectl":
        from pvectl.node.qdevice.certs import sign_request

        sign_request(certs, request, cluster, out)
        return
    etc = certs.parent.parent  # <etc>/qnetd/nssdb
    staged = etc / "client.crq"
    shutil.copyfile(request, staged)
    _qnetd_certutil(etc, "-s", "-c", "/etc/corosync/client.crq", "-n", cluster)
    signed = certs / f"cluster-{cluster}.crt"
    if not signed.exists() or not signed.stat().st_size:  # certutil -s exits 0 regardless
        raise PvectlError(f"corosync-qnetd-certutil -s did not sign the request ({signed})")
    shutil.copyfile(signed, out)


# --- the process ---------------------------------------------------------------------------


def _argv(info: dict[str, Any]) -> list[str]:
    qdir = Path(info["dir"])
    host, port = str(info["address"]), str(info["port"])
    prefix = list(netns.net_only(info["namespace"])) if info.get("namespace") else []
    if info["kind"] == "corosync":
        settings = [f"lock_file={qdir / 'qnetd.pid'}", f"local_socket_file={control_socket(info)}"]
        if info["tls"]:
            settings.append(f"nss_db_dir={info['certs']}")
        return [
            *prefix,
            "corosync-qnetd",
            "-f",
            "-l",
            host,
            "-p",
            port,
            "-s",
            "req" if info["tls"] else "off",  # corosync-qnetd spells required "req"
            "-S",
            ",".join(settings),
        ]
    argv = [sys.executable, "-m", "pvectl", "qdevice", "serve", "--listen", host, "--port", port]
    argv += ["--control-socket", str(control_socket(info))]
    argv += ["--tls", tls_word(info["tls"])]
    argv += ["--cert-dir", str(info["certs"])] if info["tls"] else []
    return prefix + argv


def pid_of(info: dict[str, Any]) -> int | None:
    pid = info.get("pid")
    if not pid:
        return None
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    if stat.rsplit(")", 1)[1].split()[0] == "Z":
        return None
    return int(pid) if str(info["port"]).encode() in cmd else None


def _listening(info: dict[str, Any]) -> bool:
    if not info.get("namespace"):
        try:
            socket.create_connection((info["address"], info["port"]), timeout=1).close()
            return True
        except OSError:
            return False
    # the namespace's address is not reachable from here: ask its own socket table
    proc = subprocess.run(
        [*netns.net_only(info["namespace"]), "ss", "-Hltn", f"sport = :{info['port']}"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    return proc.returncode == 0 and bool(proc.stdout.strip())


def start(info: dict[str, Any]) -> dict[str, Any]:
    """Start the qnetd and wait until it accepts connections; returns info with its pid."""
    if pid_of(info) is not None:
        return info
    require_tools(info["kind"])
    qdir = Path(info["dir"])
    log = qdir / "qnetd.log"
    env = dict(os.environ, PYTHONPATH=str(Path(pvectl.__file__).resolve().parent.parent))
    proc = netns.spawn_daemon(_argv(info), log, env)
    info = {**info, "pid": proc.pid}
    deadline = time.monotonic() + 20
    while not _listening(info):
        if time.monotonic() > deadline or proc.poll() is not None:
            lines = log.read_text(errors="replace").strip().splitlines()
            raise PvectlError(
                f"the lab's qnetd ({info['kind']}) did not start: " + (lines[-1] if lines else "?")
            )
        time.sleep(0.1)
    return info


def stop(info: dict[str, Any]) -> dict[str, Any]:
    pid = pid_of(info)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while pid_of(info) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        if pid_of(info) is not None:
            os.kill(pid, signal.SIGKILL)
    return {**info, "pid": None}


def action(info: dict[str, Any], what: str) -> dict[str, Any]:
    """``lab qnetd stop|start``: rehearse "qnetd down" and its return."""
    if what == "stop":
        return stop(info)
    if what == "start":
        return start(info)
    raise UsageError(f"lab qnetd takes stop or start, not {what!r}")


def lab_action(state: LabState, what: str) -> str:
    """``lab qnetd stop|start`` on a lab of either engine; the new facts are saved."""
    info = state.options.get("qdevice")
    if not info:
        raise CommandRefused(f"lab {state.name!r} has no qdevice (lab up N --qdevice)")
    info = action(info, what)
    lab_state.save(replace(state, options={**state.options, "qdevice": info}))
    return describe(info)


def lab_description(state: LabState) -> str | None:
    """The line ``lab ls`` shows for the lab's qnetd, if it has one."""
    info = state.options.get("qdevice")
    return describe(info) if info else None


def describe(info: dict[str, Any]) -> str:
    pid = pid_of(info)
    what = "pvectl qdevice serve" if info["kind"] == "pvectl" else "corosync-qnetd"
    return (
        f"qnetd ({what}, {info['algorithm']}, TLS {tls_word(info['tls'])}) "
        f"{info['address']}:{info['port']} " + (f"pid {pid}" if pid else "stopped")
    )


def leftover_pids(state_dir: str | Path) -> list[int]:
    """qnetd processes of a lab whose state file is gone (found by their paths)."""
    qdir = str(qnetd_dir(state_dir))
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if any(qdir in part for part in cmd) and ("serve" in cmd or "corosync-qnetd" in cmd):
            found.append(int(entry.name))
    return found
