"""The qnetd of an embedded lab (``pvectl lab up N --qdevice``): ``pvectl qdevice serve`` by
default, or the real corosync-qnetd (``--qnetd corosync``, root), on a loopback address
of the lab's /24 (.100) and a free port. The lab's state dir holds everything: the qnetd's
certificates (pvectl's CA, or corosync-qnetd-certutil's NSS database) and the client
certificate every node's qdevice client presents (``pvectl.qdevice_cert_dir``).
"""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pvectl
from pvectl.corosync_conf import Section
from pvectl.errors import ExitCode, PermissionNeeded, PvectlError, UsageError

QNETD_KINDS = ("pvectl", "corosync")
QNETD_HOST_INDEX = 99  # .100 of the /24, as the corosync engine's lab


def client_files(cert_dir: Path, cluster: str) -> tuple[Path, Path, Path]:
    from pvectl.node.qdevice_task import client_files as files  # the node's naming

    return files(cert_dir, cluster)


def check(nodes: int, votes: tuple[int, ...], algorithm: str, two_node: bool, kind: str) -> None:
    from pvectl.lab import qdevice_lab  # imports cryptography: only when a qdevice is wanted

    qdevice_lab.check(nodes, votes, algorithm, two_node)
    if kind not in QNETD_KINDS:
        raise UsageError(f"--qnetd must be pvectl or corosync, got {kind!r}")
    if kind == "corosync" and os.geteuid() != 0:
        raise PermissionNeeded("--qnetd corosync runs the real corosync-qnetd: needs root")


def address(subnet: str) -> str:
    return str(list(ipaddress.IPv4Network(subnet).hosts())[QNETD_HOST_INDEX])


def free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def device_section(host: str, port: int, algorithm: str, tls: bool) -> Section:
    """quorum.device as pvecm qdevice setup writes it, plus the lab's port."""
    values = {"model": "net"}
    if algorithm == "ffsplit":
        values["votes"] = "1"
    net = Section(
        "net",
        {"algorithm": algorithm, "host": host, "port": str(port), "tls": "on" if tls else "off"},
    )
    return Section("device", values, [net])


def qnetd_dir(state_dir: str | Path) -> Path:
    return Path(state_dir) / "qnetd"


def client_cert_dir(state_dir: str | Path) -> Path:
    return Path(state_dir) / "qdevice"


# --- certificates ------------------------------------------------------------------------


def _client_key_and_request(cluster: str, cert_dir: Path, der: bool = False) -> bytes:
    """A client key (kept in cert_dir) and its request for CN=cluster (PEM, or DER as
    corosync-qnetd-certutil -s wants it)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _, _, key_path = client_files(cert_dir, cluster)
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    os.chmod(key_path, 0o600)
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cluster)]))
        .sign(key, hashes.SHA256())
    )
    return request.public_bytes(serialization.Encoding.DER if der else serialization.Encoding.PEM)


def _pem_certs(raw: bytes) -> str:
    """PEM blocks only (certutil's CA export starts with a text listing; -o writes DER)."""
    text = raw.decode(errors="replace")
    if "-----BEGIN CERTIFICATE-----" not in text:
        return ssl.DER_cert_to_PEM_cert(raw)
    blocks = text.split("-----BEGIN CERTIFICATE-----")[1:]
    return "".join(
        "-----BEGIN CERTIFICATE-----"
        + b.split("-----END CERTIFICATE-----")[0]
        + "-----END CERTIFICATE-----\n"
        for b in blocks
    )


def _pvectl_certs(state_dir: Path, cluster: str) -> Path:
    from pvectl.node.qnetd_certs import init_cert_dir, sign_request

    certs = init_cert_dir(qnetd_dir(state_dir) / "certs", force=True)
    cert_dir = client_cert_dir(state_dir)
    cert_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca, crt, _ = client_files(cert_dir, cluster)
    request = cert_dir / "client.crq"
    request.write_bytes(_client_key_and_request(cluster, cert_dir))
    sign_request(certs.path, request, cluster, crt)
    ca.write_text(certs.ca_cert.read_text())
    return certs.path


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


def _certutil(etc: Path, *args: str) -> None:
    proc = _in_etc(etc, ["corosync-qnetd-certutil", *args])
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise PvectlError(
            f"corosync-qnetd-certutil {' '.join(args)}: "
            + (detail[-1] if detail else f"exit {proc.returncode}")
        )


def _corosync_certs(state_dir: Path, cluster: str) -> Path:
    """The real qnetd's NSS CA; our client key signed by it (corosync-qnetd-certutil -s)."""
    etc = qnetd_dir(state_dir) / "etc"
    etc.mkdir(parents=True, exist_ok=True)
    _certutil(etc, "-i")
    nssdb = etc / "qnetd" / "nssdb"
    cert_dir = client_cert_dir(state_dir)
    cert_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    (etc / "client.crq").write_bytes(_client_key_and_request(cluster, cert_dir, der=True))
    _certutil(etc, "-s", "-c", "/etc/corosync/client.crq", "-n", cluster)
    signed = nssdb / f"cluster-{cluster}.crt"
    if not signed.exists() or not signed.stat().st_size:  # certutil -s exits 0 regardless
        raise PvectlError(f"corosync-qnetd-certutil -s did not sign the request ({signed})")
    ca, crt, _ = client_files(cert_dir, cluster)
    ca.write_text(_pem_certs((nssdb / "qnetd-cacert.crt").read_bytes()))
    crt.write_text(_pem_certs(signed.read_bytes()))
    return nssdb


# --- the process ---------------------------------------------------------------------------


def _argv(info: dict[str, Any]) -> list[str]:
    qdir = Path(info["dir"])
    host, port = str(info["address"]), str(info["port"])
    if info["kind"] == "corosync":
        settings = [f"lock_file={qdir / 'qnetd.pid'}", f"local_socket_file={qdir / 'qnetd.sock'}"]
        if info["tls"]:
            settings.append(f"nss_db_dir={info['certs']}")
        return [
            "corosync-qnetd",
            "-f",
            "-l",
            host,
            "-p",
            port,
            "-s",
            "on" if info["tls"] else "off",
            "-S",
            ",".join(settings),
        ]
    argv = [sys.executable, "-m", "pvectl", "qdevice", "serve", "--listen", host, "--port", port]
    argv += ["--control-socket", str(qdir / "qnetd.sock")]
    argv += ["--cert-dir", str(info["certs"])] if info["tls"] else ["--tls", "off"]
    return argv


def prepare(
    state_dir: Path, cluster: str, subnet: str, algorithm: str, kind: str, tls: bool
) -> tuple[dict[str, Any], Section]:
    """Certificates and the qnetd's facts (recorded in the lab state), and quorum.device."""
    host = address(subnet)
    port = free_port(host)
    qdir = qnetd_dir(state_dir)
    qdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    certs: Path | None = None
    if tls:
        certs = (_corosync_certs if kind == "corosync" else _pvectl_certs)(state_dir, cluster)
    info: dict[str, Any] = {
        "kind": kind,
        "algorithm": algorithm,
        "address": host,
        "port": port,
        "tls": tls,
        "dir": str(qdir),
        "certs": str(certs) if certs else None,
        "pid": None,
    }
    return info, device_section(host, port, algorithm, tls)


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


def start(info: dict[str, Any]) -> dict[str, Any]:
    """Start the qnetd and wait until it accepts connections; returns info with its pid."""
    if pid_of(info) is not None:
        return info
    qdir = Path(info["dir"])
    log = qdir / "qnetd.log"
    env = dict(os.environ, PYTHONPATH=str(Path(pvectl.__file__).resolve().parent.parent))
    try:
        with open(log, "ab") as handle:
            proc = subprocess.Popen(
                _argv(info),
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
                env=env,
            )
    except FileNotFoundError as exc:
        raise PvectlError(
            "corosync-qnetd not found: install the Debian package 'corosync-qnetd'",
            ExitCode.UNAVAILABLE,
        ) from exc
    info = {**info, "pid": proc.pid}
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection((info["address"], info["port"]), timeout=1).close()
            return info
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                lines = log.read_text(errors="replace").strip().splitlines()
                raise PvectlError(
                    f"the lab's qnetd ({info['kind']}) did not start: "
                    + (lines[-1] if lines else "?")
                ) from None
            time.sleep(0.1)


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


def describe(info: dict[str, Any]) -> str:
    pid = pid_of(info)
    what = "pvectl qdevice serve" if info["kind"] == "pvectl" else "corosync-qnetd"
    return (
        f"qnetd ({what}, {info['algorithm']}, TLS {'on' if info['tls'] else 'off'}) "
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
