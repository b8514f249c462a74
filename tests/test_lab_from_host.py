"""``lab up --config FILE`` and ``lab up --from-host NODE`` (issue 12: "rehearse MY
cluster"): a corosync.conf with non-contiguous node ids served by a real OpenSSH server
whose /etc is overlaid in its own mount namespace, read with the project's SSH session."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from pvectl.errors import ExitCode
from pvectl.lab import conf_import
from tests.conftest import run_cli
from tests.helpers.sshd_harness import SshClientHome, Sshd, sshd_skip_reason

CONF = """\
logging {
  to_syslog: yes
}

nodelist {
  node {
    name: pve1
    nodeid: 1
    quorum_votes: 1
    ring0_addr: 192.168.7.11
  }
  node {
    name: pve2
    nodeid: 2
    quorum_votes: 1
    ring0_addr: 192.168.7.12
  }
  node {
    name: pve5
    nodeid: 5
    quorum_votes: 2
    ring0_addr: 192.168.7.15
  }
}

quorum {
  provider: corosync_votequorum
  expected_votes: 4
  wait_for_all: 1
}

totem {
  cluster_name: homelab
  config_version: 9
  interface {
    linknumber: 0
  }
  secauth: on
  token: 1000
  version: 2
}
"""


def test_a_corosync_conf_keeps_ids_names_votes_quorum_and_timing() -> None:
    cluster = conf_import.parse(CONF, "corosync.conf")
    assert cluster.node_ids == (1, 2, 5) and cluster.names == ("pve1", "pve2", "pve5")
    assert cluster.votes == (1, 1, 2) and cluster.token == 1000
    assert cluster.quorum == (("expected_votes", "4"), ("wait_for_all", "1"))
    fields = conf_import.up_fields(cluster, None, (("wait_for_all", "0"),), (), False)
    assert fields["quorum"] == (("expected_votes", "4"), ("wait_for_all", "0"))
    assert fields["nodes"] == 3 and fields["token"] == 1000


@pytest.mark.parametrize(
    ("edit", "code", "words"),
    [
        (("  wait_for_all: 1\n", "  wait_for_all: 1\n  bogus {\n"), ExitCode.DATA, "c.conf:"),
        (("quorum_votes: 2", "quorum_votes: two"), ExitCode.DATA, "c.conf"),
        (
            ("  wait_for_all: 1\n", "  last_man_standing: 1\n  device {\n    model: net\n  }\n"),
            ExitCode.CONFIG,
            "configuration error: quorum.device is not compatible with last_man_standing",
        ),
        (("  wait_for_all: 1\n", "  wait_for_all: maybe\n"), ExitCode.CONFIG, "wait_for_all"),
    ],
)
def test_bad_corosync_conf_is_one_line(
    tmp_path: Path, edit: tuple[str, str], code: int, words: str
) -> None:
    bad = tmp_path / "c.conf"
    bad.write_text(CONF.replace(*edit))
    run = run_cli(
        "lab",
        "up",
        "--config",
        str(bad),
        "--name",
        "tbad",
        env=dict(os.environ, XDG_RUNTIME_DIR=str(tmp_path)),
    )
    assert run.code == code, run.stderr
    assert words in run.stderr and len(run.stderr.strip().splitlines()) == 1


def test_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "c.conf"
    bad.write_text(CONF.replace("  wait_for_all: 1\n", "  wait_for_all: 1\n}\n}\n"))
    run = run_cli(
        "lab",
        "up",
        "--config",
        str(bad),
        "--name",
        "tbad",
        env=dict(os.environ, XDG_RUNTIME_DIR=str(tmp_path)),
    )
    assert run.code == ExitCode.DATA
    line = CONF.splitlines().index("  wait_for_all: 1") + 3  # the second, unmatched '}'
    assert f"{bad}:{line}: unexpected '}}'" in run.stderr, run.stderr


def _overlay_ready() -> str | None:
    if os.geteuid() != 0:
        return "needs root (a mount namespace with /etc overlaid for the sshd)"
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    return sshd_skip_reason()


@pytest.fixture
def pve_host(tmp_path: Path) -> Iterator[tuple[Sshd, SshClientHome]]:
    """An sshd that sees /etc/pve/corosync.conf (and a different /etc/corosync one)."""
    upper, work = tmp_path / "upper", tmp_path / "work"
    (upper / "pve").mkdir(parents=True)
    (upper / "corosync").mkdir()
    work.mkdir()
    (upper / "pve" / "corosync.conf").write_text(CONF)
    (upper / "corosync" / "corosync.conf").write_text(CONF.replace("pve5", "stale5"))
    script = (
        f"mount -t overlay overlay -o lowerdir=/etc,upperdir={upper},workdir={work} /etc "
        '&& exec "$@"'
    )
    prefix = ("unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh")
    server = Sshd(tmp_path / "sshd", prefix=prefix)
    home = SshClientHome(tmp_path / "home")
    server.authorize(home.pubkey)
    home.add_alias("pve1", server)
    home.trust(server)
    server.start()
    yield server, home
    server.stop()


@pytest.mark.skipif(_overlay_ready() is not None, reason=str(_overlay_ready()))
def test_lab_up_from_host_rehearses_that_cluster(
    pve_host: tuple[Sshd, SshClientHome], tmp_path: Path
) -> None:
    _, home = pve_host
    env = dict(home.env(), XDG_RUNTIME_DIR=str(tmp_path / "rt"))
    (tmp_path / "rt").mkdir(mode=0o700)
    run = run_cli("lab", "up", "--from-host", "pve1", "--name", "tfh", env=env)
    try:
        assert run.code == 0, run.stderr
        assert "pve1:/etc/pve/corosync.conf (homelab)" in run.stderr
        listing = json.loads(
            run_cli("lab", "ls", "--name", "tfh", "--output-format", "json", env=env).stdout
        )
        nodes = listing["labs"][0]["nodes"]
        assert [n["node_id"] for n in nodes] == [1, 2, 5]
        status = run_cli("status", "--target", "lab", "--name", "tfh", env=env)
        assert "Expected votes:   4" in status.stdout and "WaitForAll" in status.stdout
        assert "0x00000005          2" in status.stdout  # node 5 keeps its 2 votes
    finally:
        run_cli("lab", "down", "--name", "tfh", env=env)


@pytest.mark.skipif(sshd_skip_reason() is not None, reason=str(sshd_skip_reason()))
def test_from_host_without_a_corosync_conf_says_so(tmp_path: Path) -> None:
    server = Sshd(tmp_path / "sshd")
    home = SshClientHome(tmp_path / "home")
    server.authorize(home.pubkey)
    home.add_alias("plain", server)
    home.trust(server)
    server.start()
    try:
        if Path("/etc/corosync/corosync.conf").exists() or Path("/etc/pve").exists():
            pytest.skip("this machine has a corosync.conf of its own")
        env = dict(home.env(), XDG_RUNTIME_DIR=str(tmp_path))
        run = run_cli("lab", "up", "--from-host", "plain", "--name", "tfh2", env=env)
        assert run.code == ExitCode.NO_INPUT, run.stderr
        assert "/etc/pve/corosync.conf nor /etc/corosync/corosync.conf" in run.stderr
    finally:
        server.stop()
