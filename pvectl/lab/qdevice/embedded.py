"""The qnetd of an embedded lab (``pvectl lab up N --qdevice``): ``pvectl qdevice serve`` by
default, or the real corosync-qnetd (``--qnetd corosync``, root), on a loopback address
of the lab's /24 (.100) and a free port. The lab's state dir holds everything: the qnetd's
certificates (pvectl's CA, or corosync-qnetd-certutil's NSS database) and the client
certificate every node's qdevice client presents (``pvectl.qdevice_cert_dir``). The CA
and the process are the ones both engines share (``lab_qnetd``).
"""

from __future__ import annotations

import os
import socket
import ssl
from pathlib import Path
from typing import Any

from pvectl.corosync_conf import Section
from pvectl.errors import PermissionNeeded
from pvectl.lab.qdevice import qnetd as lab_qnetd
from pvectl.lab.qdevice.qnetd import address, qnetd_dir


def client_files(cert_dir: Path, cluster: str) -> tuple[Path, Path, Path]:
    from pvectl.node.qdevice.client_task import client_files as files  # the node's naming

    return files(cert_dir, cluster)


def check(nodes: int, votes: tuple[int, ...], algorithm: str, two_node: bool, kind: str) -> None:
    from pvectl.lab.qdevice import corosync as corosync_qdevice  # deferred: imports cryptography

    corosync_qdevice.check(nodes, votes, algorithm, two_node)
    lab_qnetd.check_kind(kind)
    if kind == "corosync" and os.geteuid() != 0:
        raise PermissionNeeded("--qnetd corosync runs the real corosync-qnetd: needs root")


def free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


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


def _client_certs(state_dir: Path, cluster: str, kind: str) -> Path:
    """The qnetd's CA, and the client certificate the embedded nodes present, signed by
    it as a qnetd host signs a cluster's request (PEM files for pvectl's qdevice client)."""
    certs = lab_qnetd.init_ca(state_dir, kind)
    cert_dir = client_cert_dir(state_dir)
    cert_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca, crt, _ = client_files(cert_dir, cluster)
    request = cert_dir / "client.crq"
    request.write_bytes(_client_key_and_request(cluster, cert_dir, der=kind == "corosync"))
    lab_qnetd.sign(kind, certs, request, cluster, crt)
    ca.write_text(_pem_certs(lab_qnetd.ca_certificate(kind, certs).read_bytes()))
    crt.write_text(_pem_certs(crt.read_bytes()))
    return certs


def prepare(
    state_dir: Path, cluster: str, subnet: str, algorithm: str, kind: str, tls: bool
) -> tuple[dict[str, Any], Section]:
    """Certificates and the qnetd's facts (recorded in the lab state), and quorum.device."""
    host = address(subnet)
    port = free_port(host)
    qdir = qnetd_dir(state_dir)
    qdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    certs = _client_certs(state_dir, cluster, kind) if tls else None
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
    return info, lab_qnetd.device_section(host, algorithm, tls, port)
