"""Certificates for ``pvectl qdevice serve``, made with the ``cryptography`` package.

The layout mirrors what corosync-qnetd-certutil keeps in its NSS database, as plain
PEM files in a directory the user names, so real corosync-qdevice nodes can use them
with their own tools:

* ``qnetd-cacert.crt`` - the CA certificate; nodes import it with
  ``corosync-qdevice-net-certutil -i -c qnetd-cacert.crt`` (same file name as corosync).
* ``ca.key`` (0600) - signs the server certificate and the clusters' certificates.
* ``server.crt`` / ``server.key`` (0600) - the server certificate, CN "Qnetd Server"
  (the name corosync-qdevice checks).
* ``cluster-NAME.crt`` - a cluster certificate, CN = cluster name (qnetd checks it),
  signed from the node's request (``corosync-qdevice-net-certutil -r`` output), as
  ``corosync-qnetd-certutil -s`` does.
"""

from __future__ import annotations

import datetime
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pvectl.errors import ConfigError, ExitCode, PvectlError

CA_CERT = "qnetd-cacert.crt"
CA_KEY = "ca.key"
SERVER_CERT = "server.crt"
SERVER_KEY = "server.key"
SERVER_CN = "Qnetd Server"  # corosync-qdevice's QDEVICE_NET_DEFAULT_NSS_QNETD_CN
CA_CN = "QNet CA"
VALIDITY_DAYS = 1200 * 30  # corosync-qnetd-certutil uses 1200 months


@dataclass(frozen=True)
class CertDir:
    path: Path

    @property
    def ca_cert(self) -> Path:
        return self.path / CA_CERT

    @property
    def ca_key(self) -> Path:
        return self.path / CA_KEY

    @property
    def server_cert(self) -> Path:
        return self.path / SERVER_CERT

    @property
    def server_key(self) -> Path:
        return self.path / SERVER_KEY

    def cluster_cert(self, cluster: str) -> Path:
        return self.path / f"cluster-{cluster}.crt"

    def exists(self) -> bool:
        return all(
            p.exists() for p in (self.ca_cert, self.ca_key, self.server_cert, self.server_key)
        )


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, 0o600)


def _key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def init_cert_dir(directory: str | Path, force: bool = False) -> CertDir:
    """Create the CA and the server certificate. Refuses to overwrite unless ``force``."""
    certs = CertDir(Path(directory))
    if certs.exists() and not force:
        raise PvectlError(
            f"{certs.path}: certificates already exist (use --force to replace them; "
            "every node would then need the new CA)",
            ExitCode.CANT_CREATE,
        )
    try:
        certs.path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise PvectlError(f"{certs.path}: {exc.strerror}", ExitCode.CANT_CREATE) from exc
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    start = _now() - datetime.timedelta(minutes=5)
    end = start + datetime.timedelta(days=VALIDITY_DAYS)
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name(CA_CN))
        .issuer_name(_name(CA_CN))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    server_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(_name(SERVER_CN))
        .issuer_name(ca_cert.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write_private(certs.ca_key, _key_pem(ca_key))
    _write_private(certs.server_key, _key_pem(server_key))
    certs.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    certs.server_cert.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    return certs


def _load_ca(certs: CertDir) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    if not certs.exists():
        raise PvectlError(
            f"{certs.path}: no qnetd certificates (run 'pvectl qdevice certs init {certs.path}')",
            ExitCode.NO_INPUT,
        )
    try:
        ca_cert = x509.load_pem_x509_certificate(certs.ca_cert.read_bytes())
        key = serialization.load_pem_private_key(certs.ca_key.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the CA: {exc}", str(certs.path)) from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError("the CA key is not an RSA key", str(certs.ca_key))
    return ca_cert, key


def _client_cert(
    ca_cert: x509.Certificate,
    ca_key: rsa.RSAPrivateKey,
    cluster: str,
    public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey,
) -> x509.Certificate:
    start = _now() - datetime.timedelta(minutes=5)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(cluster))
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=VALIDITY_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )


def check_cluster_name(cluster: str) -> None:
    if not cluster or len(cluster) > 255 or any(c in cluster for c in "\0/\n,=+"):
        raise PvectlError(f"invalid cluster name {cluster!r}", ExitCode.USAGE)


def sign_request(
    directory: str | Path, request: str | Path, cluster: str, output: str | Path | None = None
) -> Path:
    """Sign a node's certificate request (DER or PEM, as corosync-qdevice-net-certutil -r
    writes it) for ``cluster``; returns the written ``cluster-NAME.crt``."""
    check_cluster_name(cluster)
    certs = CertDir(Path(directory))
    ca_cert, ca_key = _load_ca(certs)
    try:
        raw = Path(request).read_bytes()
    except OSError as exc:
        raise PvectlError(f"{request}: {exc.strerror}", ExitCode.NO_INPUT) from exc
    try:
        pem = b"-----BEGIN" in raw
        csr = x509.load_pem_x509_csr(raw) if pem else x509.load_der_x509_csr(raw)
    except ValueError as exc:
        raise ConfigError(f"not a certificate request: {exc}", str(request)) from exc
    if not csr.is_signature_valid:
        raise ConfigError("the certificate request's signature is invalid", str(request))
    names = [a.value for a in csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if names and names[0] != cluster:
        raise PvectlError(
            f"{request}: request is for CN={names[0]!r}, not cluster {cluster!r}",
            ExitCode.DATA,
        )
    public_key = csr.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise ConfigError("unsupported key type in the request", str(request))
    cert = _client_cert(ca_cert, ca_key, cluster, public_key)
    out = Path(output) if output else certs.cluster_cert(cluster)
    out.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return out


def server_ssl_context(certs: CertDir, require_client_cert: bool) -> ssl.SSLContext:
    """TLS for the server side: our server certificate, client certificates checked
    against our CA (qnetd's -c on)."""
    if not certs.exists():
        raise PvectlError(
            f"{certs.path}: no qnetd certificates (run 'pvectl qdevice certs init "
            f"{certs.path}', or serve with --tls off)",
            ExitCode.NO_INPUT,
        )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(str(certs.server_cert), str(certs.server_key))
        ctx.load_verify_locations(cafile=str(certs.ca_cert))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load the server certificate: {exc}", str(certs.path)) from exc
    ctx.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    return ctx


def peer_names(cert: dict[str, object] | None) -> tuple[str, ...] | None:
    """Subject CNs and DNS names of a verified peer certificate (``getpeercert()``)."""
    if not cert:
        return None
    names: list[str] = []
    subject = cert.get("subject", ())
    if isinstance(subject, tuple):
        for rdn in subject:
            for pair in rdn:
                if isinstance(pair, tuple) and len(pair) == 2 and pair[0] == "commonName":
                    names.append(str(pair[1]))
    san = cert.get("subjectAltName", ())
    if isinstance(san, tuple):
        for entry in san:
            if isinstance(entry, tuple) and len(entry) == 2 and entry[0] == "DNS":
                names.append(str(entry[1]))
    return tuple(names)
