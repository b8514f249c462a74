"""SshRunner against a real OpenSSH server on 127.0.0.1 (Debian's sshd, started here)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pvectl.targets.hosts import parse_host
from pvectl.targets.ssh import (
    AuthenticationFailed,
    HostKeyChanged,
    HostKeyUnknown,
    HostUnreachable,
    RemoteTimeout,
    RemoteToolMissing,
    SshSession,
    SshSettings,
)
from tests.helpers.sshd_harness import SshClientHome, Sshd, keygen, sshd_skip_reason

pytestmark = pytest.mark.skipif(sshd_skip_reason() is not None, reason=str(sshd_skip_reason()))


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[Sshd]:
    server = Sshd(tmp_path / "sshd")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def client(tmp_path: Path, sshd: Sshd, monkeypatch: pytest.MonkeyPatch) -> SshClientHome:
    home = SshClientHome(tmp_path / "home")
    sshd.authorize(home.pubkey)
    home.add_alias("node1", sshd)
    monkeypatch.setenv("HOME", str(home.home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    return home


def session(accept_new: bool = False, timeout: float = 5.0) -> SshSession:
    return SshSession(SshSettings(accept_new_host_key=accept_new, connect_timeout=timeout))


def test_commands_run_and_return_output_exit_code_and_stdin(
    client: SshClientHome, sshd: Sshd
) -> None:
    client.trust(sshd)
    with session() as ssh:
        runner = ssh.runner(parse_host("node1"))
        result = runner.run(["echo", "hello", "$(id -u)", "a b;c"])
        assert result.returncode == 0
        # each word arrives verbatim: no remote expansion, no word splitting
        assert result.stdout == "hello $(id -u) a b;c\n"
        failed = runner.run(["sh", "-c", "echo oops >&2; exit 3"])
        assert (failed.returncode, failed.stderr) == (3, "oops\n")
        echoed = runner.run_input(["cat"], "line1\nline2\n")
        assert echoed.stdout == "line1\nline2\n"
        assert runner.read_file(str(sshd.config)) == sshd.config.read_text()
        assert runner.read_file("/nonexistent/pvectl-file") is None


def test_one_connection_per_host_per_run(client: SshClientHome, sshd: Sshd) -> None:
    client.trust(sshd)
    with session() as ssh:
        spec = parse_host("node1")
        first = ssh.client(spec)
        for _ in range(3):
            ssh.runner(spec).run(["true"])
        assert ssh.client(spec) is first
    time.sleep(0.2)
    assert sshd.log().count("Accepted publickey") == 1


def test_unknown_host_key_is_refused_with_its_fingerprint(
    client: SshClientHome, sshd: Sshd
) -> None:
    with session() as ssh, pytest.raises(HostKeyUnknown) as caught:
        ssh.runner(parse_host("node1")).run(["true"])
    message = str(caught.value)
    assert sshd.fingerprint() in message
    assert "--accept-new-host-key" in message
    assert not client.known_hosts.exists()


def test_accept_new_records_the_key_like_openssh(client: SshClientHome, sshd: Sshd) -> None:
    with session(accept_new=True) as ssh:
        assert ssh.runner(parse_host("node1")).run(["echo", "ok"]).stdout == "ok\n"
    recorded = client.known_hosts.read_text()
    assert f"[127.0.0.1]:{sshd.port} ssh-ed25519 {sshd.host_public_key()}" in recorded
    with session() as ssh:  # and from now on without the flag
        assert ssh.runner(parse_host("node1")).run(["echo", "ok"]).stdout == "ok\n"


def test_changed_host_key_is_refused_even_with_accept_new(
    client: SshClientHome, sshd: Sshd
) -> None:
    client.trust(sshd)
    old = sshd.fingerprint()
    sshd.stop()
    sshd.new_host_key()
    sshd.start()
    before = client.known_hosts.read_text()
    with session(accept_new=True) as ssh, pytest.raises(HostKeyChanged) as caught:
        ssh.runner(parse_host("node1")).run(["true"])
    message = str(caught.value)
    assert "HOST KEY CHANGED" in message
    assert old in message and sshd.fingerprint() in message
    name = f"[127.0.0.1]:{sshd.port}"
    assert f"ssh-keygen -f {client.known_hosts} -R '{name}'" in message
    assert client.known_hosts.read_text() == before


def test_changed_host_key_hint_names_the_user_known_hosts_file_it_came_from(
    client: SshClientHome, sshd: Sshd, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "fleet_known_hosts"
    elsewhere.write_text(f"[127.0.0.1]:{sshd.port} ssh-ed25519 {sshd.host_public_key()}\n")
    with client.config.open("a") as handle:
        handle.write(
            f"Host fleet\n  HostName 127.0.0.1\n  Port {sshd.port}\n  User root\n"
            f"  UserKnownHostsFile {elsewhere}\n"
        )
    sshd.stop()
    sshd.new_host_key()
    sshd.start()
    with session() as ssh, pytest.raises(HostKeyChanged) as caught:
        ssh.runner(parse_host("fleet")).run(["true"])
    assert f"ssh-keygen -f {elsewhere} -R '[127.0.0.1]:{sshd.port}'" in str(caught.value)


def test_nologin_shell_says_so(client: SshClientHome, sshd: Sshd) -> None:
    """An account whose shell is nologin(8): the cause, not a parse error downstream."""
    client.trust(sshd)
    sshd.stop()
    with sshd.config.open("a") as handle:
        handle.write("ForceCommand /usr/sbin/nologin\n")
    sshd.start()
    with session() as ssh, pytest.raises(AuthenticationFailed) as caught:
        ssh.runner(parse_host("node1")).run(["python3", "-c", "print(1)"])
    message = str(caught.value)
    assert "no login shell there" in message
    assert "This account is currently not available." in message
    assert "chsh -s /bin/sh root" in message


def test_wrong_user_key_fails_clearly(client: SshClientHome, sshd: Sshd, tmp_path: Path) -> None:
    client.trust(sshd)
    stranger = tmp_path / "stranger"
    keygen(stranger)
    with client.config.open("a") as handle:
        handle.write(
            f"Host stranger\n  HostName 127.0.0.1\n  Port {sshd.port}\n  User root\n"
            f"  IdentityFile {stranger}\n  IdentitiesOnly yes\n"
        )
    with session() as ssh, pytest.raises(AuthenticationFailed) as caught:
        ssh.runner(parse_host("stranger")).run(["true"])
    message = str(caught.value)
    assert "authentication failed for root@127.0.0.1" in message
    assert str(stranger) in message or "stranger" in message


def test_stopped_sshd_is_unreachable_within_the_timeout(client: SshClientHome, sshd: Sshd) -> None:
    client.trust(sshd)
    sshd.stop()
    started = time.monotonic()
    with session(timeout=2.0) as ssh, pytest.raises(HostUnreachable) as caught:
        ssh.runner(parse_host("node1")).run(["true"])
    assert time.monotonic() - started < 3.0
    # the host answered (RST): "connection refused", not "host unreachable"
    assert "connection refused" in str(caught.value)
    assert "host unreachable" not in str(caught.value)
    assert "is sshd running there?" in str(caught.value)


def test_silent_server_is_unreachable_within_the_connect_timeout(
    client: SshClientHome,
) -> None:
    import socket

    # a TCP port that accepts but never speaks SSH (a hung sshd, a wrong service)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        started = time.monotonic()
        with session(timeout=1.0) as ssh, pytest.raises(HostUnreachable) as caught:
            ssh.runner(parse_host(f"root@127.0.0.1:{port}")).run(["true"])
        assert time.monotonic() - started < 3.0
    assert "did not complete the SSH handshake within 1 s" in str(caught.value)


def test_command_timeout(client: SshClientHome, sshd: Sshd) -> None:
    client.trust(sshd)
    with session() as ssh:
        runner = ssh.runner(parse_host("node1"))
        started = time.monotonic()
        with pytest.raises(RemoteTimeout) as caught:
            runner.run(["sleep", "10"], timeout=0.5)
        assert time.monotonic() - started < 2.0
        assert "timed out after 0.5 s" in str(caught.value)
        assert runner.run(["echo", "still usable"]).stdout == "still usable\n"


def test_missing_corosync_is_named(client: SshClientHome, sshd: Sshd) -> None:
    client.trust(sshd)
    with session() as ssh, pytest.raises(RemoteToolMissing) as caught:
        ssh.runner(parse_host("node1")).run(["corosync-nonexistent-tool", "-s"])
    assert "corosync is not installed there" in str(caught.value)


def test_user_at_host_port_without_config(client: SshClientHome, sshd: Sshd) -> None:
    client.trust(sshd)
    client.config.unlink()
    with session() as ssh:
        spec = parse_host(f"root@127.0.0.1:{sshd.port}")
        assert ssh.runner(spec).run(["id", "-un"]).stdout == "root\n"


def test_proxy_jump_through_a_jump_host(client: SshClientHome, sshd: Sshd) -> None:
    client.trust(sshd)
    # the jump host is the same sshd: it forwards to itself (AllowTcpForwarding yes)
    with client.config.open("a") as handle:
        handle.write(
            f"Host behind\n  HostName 127.0.0.1\n  Port {sshd.port}\n  User root\n"
            "  ProxyJump node1\n"
        )
    with session() as ssh:
        assert ssh.runner(parse_host("behind")).run(["echo", "via jump"]).stdout == "via jump\n"
    assert sshd.log().count("Accepted publickey") == 2


def test_ssh_config_accept_new_and_hashed_known_hosts(client: SshClientHome, sshd: Sshd) -> None:
    with client.config.open("a") as handle:
        handle.write(
            f"Host hashed\n  HostName 127.0.0.1\n  Port {sshd.port}\n  User root\n"
            "  StrictHostKeyChecking accept-new\n  HashKnownHosts yes\n"
            f"  UserKnownHostsFile {client.ssh_dir / 'kh_custom'}\n"
        )
    with session() as ssh:  # no flag: the config's accept-new is enough
        assert ssh.runner(parse_host("hashed")).run(["echo", "ok"]).stdout == "ok\n"
    recorded = (client.ssh_dir / "kh_custom").read_text()
    assert recorded.startswith("|1|")  # hashed, as OpenSSH writes with HashKnownHosts
    assert "127.0.0.1" not in recorded
    assert not client.known_hosts.exists()
    with session() as ssh:  # and the hashed entry is found again
        assert ssh.runner(parse_host("hashed")).run(["echo", "again"]).stdout == "again\n"


def test_ssh_config_strict_yes_refuses_unknown_keys(client: SshClientHome, sshd: Sshd) -> None:
    with client.config.open("a") as handle:
        handle.write(
            f"Host strict\n  HostName 127.0.0.1\n  Port {sshd.port}\n  User root\n"
            "  StrictHostKeyChecking yes\n"
        )
    with session() as ssh, pytest.raises(HostKeyUnknown):
        ssh.runner(parse_host("strict")).run(["true"])


def test_connection_lost_mid_run_is_not_mistaken_for_a_missing_tool(
    client: SshClientHome, sshd: Sshd
) -> None:
    import os
    import signal

    import psutil

    from pvectl.targets.remote import corosync_target

    client.trust(sshd)
    with session() as ssh:
        runner = ssh.runner(parse_host("node1"))
        runner.connect()
        assert sshd.proc is not None
        # the listener and its per-connection children (they run in their own sessions)
        listener = psutil.Process(sshd.proc.pid)
        for proc in [*listener.children(recursive=True), listener]:
            os.kill(proc.pid, signal.SIGKILL)
        sshd.proc.wait(5)
        time.sleep(0.3)
        with pytest.raises(HostUnreachable) as caught:
            corosync_target(runner).status()
        assert "not found" not in str(caught.value)
        assert "node1" in str(caught.value)


def test_keys_from_a_real_ssh_agent(
    client: SshClientHome, sshd: Sshd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import shutil
    import signal
    import subprocess

    if shutil.which("ssh-agent") is None or shutil.which("ssh-add") is None:
        pytest.skip("needs ssh-agent and ssh-add (openssh-client)")
    client.trust(sshd)
    socket_path = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(socket_path)], stdout=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 5
        while not socket_path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        env = {**os.environ, "SSH_AUTH_SOCK": str(socket_path)}
        subprocess.run(["ssh-add", str(client.key)], env=env, check=True, capture_output=True)
        # the key file is gone: only the agent can authenticate us now
        client.key.rename(tmp_path / "elsewhere")
        monkeypatch.setenv("SSH_AUTH_SOCK", str(socket_path))
        with session() as ssh:
            assert ssh.runner(parse_host("node1")).run(["echo", "agent"]).stdout == "agent\n"
        monkeypatch.delenv("SSH_AUTH_SOCK")
        with session() as ssh, pytest.raises(AuthenticationFailed):
            ssh.runner(parse_host("node1")).run(["true"])
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(5)


def test_global_known_hosts_file_is_trusted_read_only(client: SshClientHome, sshd: Sshd) -> None:
    # Proxmox VE links /etc/ssh/ssh_known_hosts to the cluster-wide known_hosts
    cluster_known = client.home / "cluster_known_hosts"
    cluster_known.write_text(f"[127.0.0.1]:{sshd.port} ssh-ed25519 {sshd.host_public_key()}\n")
    with client.config.open("a") as handle:
        handle.write(f"Host *\n  GlobalKnownHostsFile {cluster_known}\n")
    with session() as ssh:
        assert ssh.runner(parse_host("node1")).run(["echo", "ok"]).stdout == "ok\n"
    assert not client.known_hosts.exists()
