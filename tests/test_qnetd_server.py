"""``pvectl qdevice serve`` as a real process on loopback: TLS with client certificates
from its own CA, hostile input, a second server on a used port, the control socket."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import ssl
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from pvectl.quorum.qdevice import wire as w
from tests.conftest import run_cli

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, tmp: Path, *extra: str) -> None:
        self.port = free_port()
        self.sock = tmp / "ctl.sock"
        self.log = tmp / "serve.log"
        argv = [sys.executable, "-m", "pvectl", "qdevice", "serve", "--listen", "127.0.0.1"]
        argv += ["--port", str(self.port), "--control-socket", str(self.sock), *extra]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(argv, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while not self.sock.exists():
            assert self.proc.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)


@pytest.fixture
def plain_server(tmp_path: Path) -> Iterator[Server]:
    server = Server(tmp_path, "--tls", "off")
    yield server
    server.stop()


def talk(sock: socket.socket, msg: w.Message, reader: w.FrameReader) -> list[w.Message]:
    sock.sendall(w.encode(msg))
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        frames = reader.feed(chunk)
        if frames:
            return [w.decode(f) for f in frames]
    raise TimeoutError


def hello(sock: socket.socket, reader: w.FrameReader, cluster: str = "c1") -> w.Message:
    talk(sock, w.Message(w.MsgType.PREINIT, seq_number=1, cluster_name=cluster), reader)
    return init(sock, reader)


def init(sock: socket.socket, reader: w.FrameReader) -> w.Message:
    """INIT as node 1 (after PREINIT, and after STARTTLS when TLS is on: corosync-qdevice
    names the cluster once, in plaintext PREINIT)."""
    (reply,) = talk(
        sock,
        w.Message(
            w.MsgType.INIT,
            seq_number=2,
            node_id=1,
            decision_algorithm=w.Algorithm.FFSPLIT,
            heartbeat_interval=8000,
            tie_breaker=w.TieBreaker(),
            ring_id=w.WireRingId(1, 4),
        ),
        reader,
    )
    return reply


def test_second_server_on_the_same_port_is_a_clear_error(
    plain_server: Server, tmp_path: Path
) -> None:
    run = run_cli(
        "qdevice",
        "serve",
        "--tls",
        "off",
        "--listen",
        "127.0.0.1",
        "--port",
        str(plain_server.port),
        "--control-socket",
        str(tmp_path / "other.sock"),
        timeout=30,
    )
    assert run.code == 69
    assert "already in use" in run.stderr and "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


def test_hostile_bytes_do_not_crash_the_server(plain_server: Server) -> None:
    rng = random.Random(int(os.environ.get("PVECTL_FUZZ_SEED", "20261121")))
    print(f"fuzz seed {rng.random()}")  # replay: PVECTL_FUZZ_SEED=<seed>
    for _ in range(40):
        with socket.create_connection(("127.0.0.1", plain_server.port), timeout=5) as s:
            junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
            if rng.random() < 0.5:  # a valid header so the TLV parser sees it
                junk = rng.randrange(20).to_bytes(2, "big") + len(junk).to_bytes(4, "big") + junk
            s.sendall(junk)
            s.settimeout(0.3)
            with contextlib.suppress(TimeoutError, ConnectionResetError):
                s.recv(4096)
    # a huge length field is refused with MESSAGE_TOO_LONG, not buffered
    with socket.create_connection(("127.0.0.1", plain_server.port), timeout=5) as s:
        s.sendall(b"\x00\x0a\xff\xff\xff\xf0")
        reply = w.decode(s.recv(4096))
        assert reply.reply_error_code == w.ErrorCode.MESSAGE_TOO_LONG
    assert plain_server.proc.poll() is None
    with socket.create_connection(("127.0.0.1", plain_server.port), timeout=5) as s:
        assert hello(s, w.FrameReader()).reply_error_code == w.ErrorCode.NO_ERROR
        run = run_cli("qdevice", "clients", "--control-socket", str(plain_server.sock))
        assert run.code == 0, run.stderr
        assert 'Cluster "c1":' in run.stdout and "Node ID 1:" in run.stdout
        assert "Connected clusters:\t\t1" in run.stdout


def test_control_socket_is_private(plain_server: Server) -> None:
    assert stat.S_IMODE(plain_server.sock.stat().st_mode) == 0o600
    run = run_cli(
        "qdevice", "clients", "--control-socket", str(plain_server.sock), "--output-format", "json"
    )
    assert run.code == 0 and '"connected_clients": 0' in run.stdout
    # junk on the control socket gets no answer and does not disturb the server
    for junk in (b"x" * 100_000, b"shutdown\n", b"\xff\xfe\n"):
        with socket.socket(socket.AF_UNIX) as ctl:
            ctl.settimeout(5)
            ctl.connect(str(plain_server.sock))
            with contextlib.suppress(OSError):
                ctl.sendall(junk)
                ctl.recv(1000)
    assert plain_server.proc.poll() is None
    again = run_cli("qdevice", "clients", "--control-socket", str(plain_server.sock))
    assert again.code == 0 and "Connected clients:" in again.stdout


def test_clients_without_a_server_is_a_clear_error(tmp_path: Path) -> None:
    run = run_cli("qdevice", "clients", "--control-socket", str(tmp_path / "none.sock"))
    assert run.code == 69
    assert "cannot reach" in run.stderr and len(run.stderr.strip().splitlines()) == 1


def _client_cert(tmp: Path, certs: Path, cluster: str) -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cluster)]))
        .sign(key, hashes.SHA256())
    )
    crq = tmp / f"{certs.name}-{cluster}.crq"
    crq.write_bytes(csr.public_bytes(serialization.Encoding.DER))  # certutil -r writes DER
    crt = tmp / f"{certs.name}-{cluster}.crt"
    run = run_cli(
        *("qdevice", "certs", "sign", str(crq), "-n", cluster),
        *("--cert-dir", str(certs), "-o", str(crt)),
    )
    assert run.code == 0, run.stderr
    keyfile = tmp / f"{certs.name}-{cluster}.key"
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return crt, keyfile


def _tls_session(port: int, certs: Path, crt: Path, key: Path, cluster: str) -> w.Message | None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(str(certs / "qnetd-cacert.crt"))
    ctx.load_cert_chain(str(crt), str(key))
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    reader = w.FrameReader()
    (pre,) = talk(raw, w.Message(w.MsgType.PREINIT, seq_number=1, cluster_name=cluster), reader)
    assert pre.tls_supported is w.TlsSupported.REQUIRED and pre.tls_client_cert_required
    raw.sendall(w.encode(w.Message(w.MsgType.STARTTLS, seq_number=2)))
    tls = ctx.wrap_socket(raw, server_hostname="Qnetd Server")  # the name qdevice checks
    try:
        return init(tls, w.FrameReader())  # type: ignore[arg-type]
    except (ConnectionError, ssl.SSLError, TimeoutError, IndexError, ValueError) as exc:
        print(f"TLS session refused: {exc!r}")
        return None
    finally:
        tls.close()


def test_tls_with_client_certificates_from_our_ca(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    run = run_cli("qdevice", "certs", "init", str(certs))
    assert run.code == 0, run.stderr
    assert stat.S_IMODE((certs / "ca.key").stat().st_mode) == 0o600
    again = run_cli("qdevice", "certs", "init", str(certs))
    assert again.code == 73 and "--force" in again.stderr
    server = Server(tmp_path, "--cert-dir", str(certs))
    try:
        crt, key = _client_cert(tmp_path, certs, "prod")
        reply = _tls_session(server.port, certs, crt, key, "prod")
        assert reply is not None and reply.reply_error_code == w.ErrorCode.NO_ERROR
        listing = run_cli("qdevice", "clients", "--control-socket", str(server.sock)).stdout
        assert "TLS:\t\t\t\tRequired (client certificate required)" in listing
        # a certificate for another cluster is refused (qnetd checks the CN)
        crt2, key2 = _client_cert(tmp_path, certs, "other")
        assert _tls_session(server.port, certs, crt2, key2, "prod") is None
        # a certificate from another CA fails the handshake
        foreign = tmp_path / "foreign"
        assert run_cli("qdevice", "certs", "init", str(foreign)).code == 0
        crt3, key3 = _client_cert(tmp_path, foreign, "prod")
        assert _tls_session(server.port, certs, crt3, key3, "prod") is None
        # STARTTLS followed by junk instead of a TLS handshake
        for junk in (b"\x16\x03\x01\xff\xff" + b"A" * 300, b"GET / HTTP/1.0\r\n\r\n"):
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
                preinit = w.Message(w.MsgType.PREINIT, seq_number=1, cluster_name="prod")
                starttls = w.Message(w.MsgType.STARTTLS, seq_number=2)
                raw.sendall(w.encode(preinit) + w.encode(starttls) + junk)
                raw.settimeout(5)
                with contextlib.suppress(OSError):
                    while raw.recv(4096):
                        pass
        assert server.proc.poll() is None
        reply = _tls_session(server.port, certs, crt, key, "prod")
        assert reply is not None and reply.reply_error_code == w.ErrorCode.NO_ERROR
    finally:
        server.stop()
    log = server.log.read_text()
    assert "not cluster 'prod'" in log and "TLS handshake failed" in log


def test_sign_refuses_a_request_for_another_cluster(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    assert run_cli("qdevice", "certs", "init", str(certs)).code == 0
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "a")]))
        .sign(key, hashes.SHA256())
    )
    crq = tmp_path / "a.crq"
    crq.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    run = run_cli("qdevice", "certs", "sign", str(crq), "-n", "b", "--cert-dir", str(certs))
    assert run.code == 65 and "not cluster 'b'" in run.stderr
    garbage = tmp_path / "g.crq"
    garbage.write_bytes(b"not a request")
    run = run_cli("qdevice", "certs", "sign", str(garbage), "-n", "b", "--cert-dir", str(certs))
    assert run.code == 65 and len(run.stderr.strip().splitlines()) == 1


def _status(sock: Path) -> str:
    run = run_cli("qdevice", "clients", "--control-socket", str(sock))
    assert run.code == 0, run.stderr
    return run.stdout


def test_server_with_certificates_refuses_plaintext_clients(tmp_path: Path) -> None:
    """Finding 3: a plaintext client must not take node 1 of "prod" on a server that has
    certificates (the real node, arriving later with its certificate, would be refused as
    a duplicate node id). ``--tls on`` keeps corosync-qnetd's optional TLS on request."""
    certs = tmp_path / "certs"
    assert run_cli("qdevice", "certs", "init", str(certs)).code == 0
    crt, key = _client_cert(tmp_path, certs, "prod")
    server = Server(tmp_path, "--cert-dir", str(certs))
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            reader = w.FrameReader()
            pre = w.Message(w.MsgType.PREINIT, seq_number=1, cluster_name="prod")
            (reply,) = talk(s, pre, reader)
            assert reply.tls_supported is w.TlsSupported.REQUIRED
            init = w.Message(
                w.MsgType.INIT,
                seq_number=2,
                node_id=1,
                decision_algorithm=w.Algorithm.FFSPLIT,
                heartbeat_interval=8000,
                tie_breaker=w.TieBreaker(),
                ring_id=w.WireRingId(1, 4),
            )
            (refused,) = talk(s, init, reader)
            assert refused.reply_error_code == w.ErrorCode.TLS_REQUIRED
            assert 'Cluster "prod"' not in _status(server.sock)
            # the real node with its certificate gets node 1 while the squatter is connected
            joined = _tls_session(server.port, certs, crt, key, "prod")
            assert joined is not None and joined.reply_error_code == w.ErrorCode.NO_ERROR
    finally:
        server.stop()
    optional = tmp_path / "optional"
    optional.mkdir(mode=0o700)
    server = Server(optional, "--cert-dir", str(certs), "--tls", "on")
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            assert hello(s, w.FrameReader(), "prod").reply_error_code == w.ErrorCode.NO_ERROR
            listing = _status(server.sock)
            assert "TLS:\t\t\t\tSupported (client certificate required)" in listing
            assert 'Cluster "prod"' in listing and "TLS active:\t\tNo" in listing
    finally:
        server.stop()


def test_connections_beyond_max_clients_are_closed_and_logged(tmp_path: Path) -> None:
    server = Server(tmp_path, "--tls", "off", "--max-clients", "2")
    held: list[socket.socket] = []
    try:
        for cluster in ("a", "b"):
            s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            held.append(s)
            assert hello(s, w.FrameReader(), cluster).reply_error_code == w.ErrorCode.NO_ERROR
        for _ in range(5):  # refused at once, however many try
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as extra:
                extra.sendall(
                    w.encode(w.Message(w.MsgType.PREINIT, seq_number=1, cluster_name="c"))
                )
                with contextlib.suppress(ConnectionResetError):
                    assert extra.recv(4096) == b""
        assert "Connected clients:\t\t2" in _status(server.sock)
        held.pop().close()
        deadline = time.monotonic() + 5
        while "Connected clients:\t\t1" not in _status(server.sock):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as again:
            assert hello(again, w.FrameReader(), "c").reply_error_code == w.ErrorCode.NO_ERROR
        assert server.proc.poll() is None
    finally:
        for s in held:
            s.close()
        server.stop()
    log = server.log.read_text()
    assert "refusing client 127.0.0.1:" in log and "2 clients connected" in log
    assert log.count("refusing client") < 5  # at most one line a second
