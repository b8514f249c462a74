"""``pvectl qdevice setup/remove/status`` against real clusters over real SSH.

Two real corosync labs (2 and 3 nodes, ``pvectl lab up --engine corosync``), a real sshd
inside every node, and a "qnetd host": its own namespace on both labs' bridges running
the Debian corosync-qnetd (its NSS database made by corosync-qnetd-certutil -i, as the
package's postinst does) and an sshd. pvectl runs from a "laptop" namespace on both
bridges, exactly as a user would run it against their nodes and their Raspberry Pi.

Names: labs ``tqs*``, our own namespaces ``pvt-qs*``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.json_schema import validated
from tests.helpers.sshd_harness import SshClientHome, Sshd, sshd_skip_reason


def _skip_reason() -> str | None:
    reason = sshd_skip_reason()
    if reason:
        return reason
    for tool in ("corosync", "corosync-qdevice", "corosync-qnetd", "corosync-qnetd-certutil"):
        if shutil.which(tool) is None:
            return f"needs {tool} (Debian packages corosync, corosync-qdevice, corosync-qnetd)"
    return None


pytestmark = [
    pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason())),
    pytest.mark.root,
    pytest.mark.corosync,
    pytest.mark.slow,
]

TAG = os.getpid() % 10000
LAB_A = f"tqsa{TAG}"  # 2 nodes
LAB_B = f"tqsb{TAG}"  # 3 nodes
CLIENT_NS = f"pvt-qs-c{TAG}"
QNETD_NS = f"pvt-qs-q{TAG}"


@dataclass
class Rig:
    home: SshClientHome
    labs: dict[str, Any]  # "a"/"b" -> LabState
    qnetd_address: dict[str, str]  # "a"/"b" -> the qnetd host's address on that lab
    root: Path
    qnetd_procs: list[subprocess.Popen[bytes]]  # the running corosync-qnetd is the last

    def start_qnetd(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        """A qnetd (the real one or pvectl's) in the qnetd host, listening on 5403."""
        log = (self.root / "qnetd.log").open("ab")
        proc = subprocess.Popen(argv, stdout=log, stderr=log, start_new_session=True, env=env)
        log.close()
        self.qnetd_procs.append(proc)
        deadline = time.monotonic() + 20
        while not _listening(QNETD_NS, 5403):
            assert proc.poll() is None, (self.root / "qnetd.log").read_text()
            assert time.monotonic() < deadline, "the qnetd did not listen on 5403"
            time.sleep(0.1)

    def stop_qnetd(self) -> None:
        proc = self.qnetd_procs[-1]
        proc.terminate()
        proc.wait(10)
        deadline = time.monotonic() + 10
        while _listening(QNETD_NS, 5403) and time.monotonic() < deadline:
            time.sleep(0.1)

    def pvectl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", CLIENT_NS, sys.executable, "-m", "pvectl", *args],
            capture_output=True,
            text=True,
            env=self.home.env(),
            timeout=240,
            check=False,
        )

    def hosts(self, lab: str) -> list[str]:
        out: list[str] = []
        for node in self.labs[lab].nodes:
            out += ["--host", f"{lab}{node.node_id}"]
        return out

    def conf(self, lab: str, node_id: int) -> str:
        node = self.labs[lab].node(node_id)
        return (Path(node.dir) / "etc" / "corosync.conf").read_text()

    def quorumtool(self, lab: str, node_id: int) -> str:
        from pvectl.lab import corosync_engine

        runner = corosync_engine.node_runner(self.labs[lab].node(node_id))
        return runner.run(["corosync-quorumtool", "-s"]).stdout

    def nssdb(self, lab: str, node_id: int) -> Path:
        node = self.labs[lab].node(node_id)
        return Path(node.dir) / "etc" / "qdevice" / "net" / "nssdb"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def _attach(namespace: str, hub: str, ifname: str, peer: str, address: str) -> None:
    _ip("-n", namespace, "link", "add", ifname, "type", "veth", "peer", "name", peer)
    _ip("-n", namespace, "link", "set", peer, "netns", hub)
    _ip("-n", hub, "link", "set", peer, "master", "br0", "up")
    _ip("-n", namespace, "addr", "add", f"{address}/24", "dev", ifname)
    _ip("-n", namespace, "link", "set", ifname, "up")


def _net(state: Any) -> str:
    return str(state.subnet).split("/")[0].rsplit(".", 1)[0] + "."


def _lab(command: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pvectl", "lab", command, *args],
        capture_output=True,
        text=True,
        timeout=180,
        env=dict(os.environ),
        check=False,
    )


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    from pvectl.lab import corosync_engine, netns
    from pvectl.lab import state as lab_state

    root = tmp_path_factory.mktemp("qdsetup")
    home = SshClientHome(root / "home")
    # our own lab registry: other labs on this machine (other pvectl versions) stay apart
    saved_runtime = os.environ.get("XDG_RUNTIME_DIR")
    os.environ["XDG_RUNTIME_DIR"] = str(root / "xdg")
    (root / "xdg").mkdir(mode=0o700)
    sshds: list[Sshd] = []
    qnetd_procs: list[subprocess.Popen[bytes]] = []
    try:
        for name, count in ((LAB_A, "2"), (LAB_B, "3")):
            up = _lab("up", count, "--engine", "corosync", "--name", name)
            assert up.returncode == 0, up.stderr
        labs = {"a": lab_state.load(LAB_A), "b": lab_state.load(LAB_B)}
        for ns in (CLIENT_NS, QNETD_NS):
            _ip("netns", "add", ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        addresses: dict[str, str] = {}
        for index, (key, state) in enumerate(labs.items()):
            _attach(CLIENT_NS, state.hub_namespace, f"eth{index}", "pvtqsc", _net(state) + "200")
            _attach(QNETD_NS, state.hub_namespace, f"eth{index}", "pvtqsq", _net(state) + "150")
            addresses[key] = _net(state) + "150"
        # the qnetd host: private /etc/corosync, /run ... like a lab node
        qdir = root / "qnetd"
        for sub, _ in netns.NODE_MOUNTS:
            (qdir / sub).mkdir(parents=True, exist_ok=True)
        context = netns.node_context(QNETD_NS, str(qdir), "qnetd")
        init = subprocess.run(
            [*context, "corosync-qnetd-certutil", "-i"], capture_output=True, text=True
        )
        assert init.returncode == 0, init.stderr
        (qdir / "run" / "corosync-qnetd").mkdir(exist_ok=True)
        rig = Rig(home, labs, addresses, root, qnetd_procs)
        rig.start_qnetd([*context, "corosync-qnetd", "-f", "-d"])
        qsshd = Sshd(
            root / "sshd-qnetd",
            address="0.0.0.0",
            port=22,
            netns=QNETD_NS,
            prefix=context,
            privsep_dir=qdir / "run" / "sshd",
        )
        qsshd.authorize(home.pubkey)
        qsshd.start()
        sshds.append(qsshd)
        with home.known_hosts.open("a") as handle:
            for address in addresses.values():
                handle.write(f"{address} ssh-ed25519 {qsshd.host_public_key()}\n")
        for key, state in labs.items():
            for node in state.nodes:
                server = Sshd(
                    root / f"sshd-{key}{node.node_id}",
                    address=node.address,
                    port=22,
                    netns=node.namespace,
                    prefix=corosync_engine.node_prefix(node),
                    privsep_dir=Path(node.dir) / "run" / "sshd",
                )
                server.authorize(home.pubkey)
                server.start()
                sshds.append(server)
                home.add_alias(f"{key}{node.node_id}", server)
                home.trust(server)
        yield rig
    finally:
        for server in sshds:
            server.stop()
        for proc in qnetd_procs:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(10)
        for name in (LAB_A, LAB_B):
            _lab("down", "--name", name)
        for ns in (CLIENT_NS, QNETD_NS):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        if saved_runtime is None:
            os.environ.pop("XDG_RUNTIME_DIR", None)
        else:
            os.environ["XDG_RUNTIME_DIR"] = saved_runtime


def _listening(namespace: str, port: int) -> bool:
    out = subprocess.run(
        ["ip", "netns", "exec", namespace, "ss", "-ltnH", f"sport = :{port}"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return bool(out.strip())


def _semantics(conf_text: str) -> str:
    """corosync.conf without its config_version: what the file means."""
    from pvectl import corosync_conf

    root = corosync_conf.parse(conf_text)
    totem = root.section("totem")
    assert totem is not None
    totem.values.pop("config_version")
    return corosync_conf.dump(root)


def _version(conf_text: str) -> int:
    from pvectl import corosync_conf

    return corosync_conf.cluster_info(corosync_conf.parse(conf_text)).config_version


def _rows(quorumtool: str) -> list[str]:
    """Membership rows of corosync-quorumtool -s (node id, votes, Qdevice column, name)."""
    lines = quorumtool.split("Membership information", 1)[1].splitlines()
    return [line for line in lines if line.strip() and line.strip()[0].isdigit()]


def test_dry_run_checks_and_changes_nothing(rig: Rig) -> None:
    before = [rig.conf("a", 1), rig.conf("a", 2)]
    result = rig.pvectl("qdevice", "setup", rig.qnetd_address["a"], *rig.hosts("a"), "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "Plan (would do):" in result.stdout
    assert "  1. " in result.stdout and "corosync-qnetd-certutil -s" in result.stdout
    assert "config_version 1 -> 2" in result.stdout
    assert "algorithm ffsplit" in result.stdout
    assert [rig.conf("a", 1), rig.conf("a", 2)] == before
    assert not rig.nssdb("a", 1).exists() and not rig.nssdb("a", 2).exists()
    assert "Qdevice" not in rig.quorumtool("a", 1)
    plan = rig.pvectl(
        "qdevice", "setup", rig.qnetd_address["a"], *rig.hosts("a"), "--dry-run",
        "--output-format", "json",
    )  # fmt: skip
    assert plan.returncode == 0, plan.stderr
    change = validated(plan.stdout, "qdevice-change")
    assert change["dry_run"] is True
    assert [rig.conf("a", 1), rig.conf("a", 2)] == before


def test_unreachable_qnetd_port_is_refused_before_any_change(rig: Rig) -> None:
    before = rig.conf("a", 1)
    silent = rig.qnetd_address["a"].rsplit(".", 1)[0] + ".151"  # nothing there
    result = rig.pvectl(
        "qdevice", "setup", silent, *rig.hosts("a"),
        "--qnetd-ssh", f"root@{rig.qnetd_address['a']}",
    )  # fmt: skip
    assert result.returncode == 69, result.stdout + result.stderr
    assert result.stderr.startswith("pvectl: error: qnetd ")
    assert f"{silent}:5403 is not reachable from a1, a2" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert rig.conf("a", 1) == before and not rig.nssdb("a", 1).exists()


def test_unreachable_qnetd_host(rig: Rig) -> None:
    silent = rig.qnetd_address["a"].rsplit(".", 1)[0] + ".151"
    result = rig.pvectl("qdevice", "setup", silent, *rig.hosts("a"), "--connect-timeout", "1.5")
    assert result.returncode == 69, result.stdout + result.stderr
    assert "qnetd host: " in result.stderr and "unreachable" in result.stderr


def test_cluster_name_mismatch(rig: Rig) -> None:
    result = rig.pvectl(
        "qdevice", "setup", rig.qnetd_address["a"], "--host", "a1", "--host", "b1", "--dry-run"
    )
    assert result.returncode == 78, result.stdout + result.stderr
    assert "cluster name mismatch: a1 is in 'tqsa" in result.stderr
    assert "b1 is in 'tqsb" in result.stderr


def test_missing_node_and_bad_address(rig: Rig) -> None:
    partial = rig.pvectl("qdevice", "setup", rig.qnetd_address["a"], "--host", "a1")
    assert partial.returncode == 64, partial.stderr
    assert "no --host reaches node(s)" in partial.stderr
    name = rig.pvectl("qdevice", "setup", "qnetd.example", *rig.hosts("a"))
    assert name.returncode == 64 and "IP address" in name.stderr


def test_used_certificate_store_is_refused_without_force(rig: Rig) -> None:
    store = rig.nssdb("a", 2)
    store.mkdir(parents=True)
    try:
        result = rig.pvectl("qdevice", "setup", rig.qnetd_address["a"], *rig.hosts("a"))
        assert result.returncode == 78, result.stdout + result.stderr
        assert "certificate store already initialised on a2" in result.stderr
        assert "--force" in result.stderr
        assert not rig.nssdb("a", 1).exists()
    finally:
        store.rmdir()


def test_odd_cluster_refused_without_force(rig: Rig) -> None:
    result = rig.pvectl("qdevice", "setup", rig.qnetd_address["b"], *rig.hosts("b"))
    assert result.returncode == 78, result.stdout + result.stderr
    assert "odd node count (3)" in result.stderr and "--force" in result.stderr
    assert not rig.nssdb("b", 1).exists()


def test_setup_two_nodes_then_refuse_second_then_remove(rig: Rig) -> None:
    original = rig.conf("a", 1)
    result = rig.pvectl("qdevice", "setup", rig.qnetd_address["a"], *rig.hosts("a"))
    assert result.returncode == 0, result.stdout + result.stderr
    print(result.stdout)  # the numbered plan with per-step seconds (pytest -s shows it)
    assert "[1/" in result.stdout and "Done:" in result.stdout
    assert "Qdevice column: a1 A,V,NMW, a2 A,V,NMW" in result.stdout
    # corosync.conf: identical on both nodes, version bumped, the device pvecm writes
    conf1, conf2 = rig.conf("a", 1), rig.conf("a", 2)
    assert conf1 == conf2
    assert _version(conf1) == _version(original) + 1
    assert "  device {\n    model: net\n    net {\n      algorithm: ffsplit\n" in conf1
    assert (
        f"      host: {rig.qnetd_address['a']}\n      tls: required\n    }}\n    votes: 1\n"
    ) in conf1
    # the rig's corosync-qnetd runs with its default -s on: the user is told what that means
    assert "has TLS Supported: it takes plaintext clients" in result.stdout
    # what real corosync says
    for node_id in (1, 2):
        text = rig.quorumtool("a", node_id)
        assert "Flags:            Quorate Qdevice" in text, text
        assert "Total votes:      3" in text and "Expected votes:   3" in text, text
        rows = _rows(text)
        assert len(rows) == 3 and all("A,V,NMW" in r for r in rows[:2]), text
        assert "Qdevice" in rows[2]
    status = rig.pvectl("qdevice", "status", *rig.hosts("a"), "--output-format", "json")
    assert status.returncode == 0, status.stdout + status.stderr
    doc = validated(status.stdout, "qdevice-status-hosts")["hosts"]
    assert [row["host"] for row in doc] == ["a1", "a2"]
    assert all(row["status"]["state"] == "Connected" for row in doc)
    assert all("no systemd" in row["service"] for row in doc)
    assert all(row["status"]["tls_active"].startswith("Yes") for row in doc)

    # a second setup is refused up front, and names the fix
    again = rig.pvectl("qdevice", "setup", rig.qnetd_address["a"], *rig.hosts("a"), "--force")
    assert again.returncode == 78, again.stdout + again.stderr
    assert "QDevice already configured" in again.stderr
    assert "pvectl qdevice remove --host a1 --host a2" in again.stderr
    assert rig.conf("a", 1) == conf1

    removed = rig.pvectl("qdevice", "remove", *rig.hosts("a"))
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert "Removed Qdevice." in removed.stdout
    after = rig.conf("a", 1)
    assert after == rig.conf("a", 2)
    assert _version(after) == _version(original) + 2
    assert _semantics(after) == _semantics(original)
    assert not rig.nssdb("a", 1).exists() and not rig.nssdb("a", 2).exists()
    deadline = time.monotonic() + 15
    while True:
        text = rig.quorumtool("a", 1)
        if "Qdevice" not in text or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert "Qdevice" not in text, text
    assert "Expected votes:   2" in text and "Total votes:      2" in text, text
    assert "Flags:            Quorate" in text
    gone = rig.pvectl("qdevice", "remove", *rig.hosts("a"))
    assert gone.returncode == 78 and "No QDevice configured" in gone.stderr


def test_three_nodes_with_force_use_lms(rig: Rig) -> None:
    result = rig.pvectl("qdevice", "setup", rig.qnetd_address["b"], *rig.hosts("b"), "--force")
    assert result.returncode == 0, result.stdout + result.stderr
    conf = rig.conf("b", 3)
    assert conf == rig.conf("b", 1)
    assert "algorithm: lms" in conf and "votes:" not in conf.split("device {", 1)[1]
    text = rig.quorumtool("b", 1)
    # lms: the device has N-1 = 2 votes
    assert "Flags:            Quorate Qdevice" in text, text
    assert "Expected votes:   5" in text and "Total votes:      5" in text, text
    rows = _rows(text)
    assert all("A,V,NMW" in r for r in rows[:3]), text
    removed = rig.pvectl("qdevice", "remove", *rig.hosts("b"))
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert "algorithm: lms" not in rig.conf("b", 2)


def test_wrong_certificates_end_in_a_clear_error(rig: Rig) -> None:
    """The qnetd host's NSS database signs the cluster certificate, but the server on
    port 5403 is another one (pvectl qdevice serve with its own CA): no vote, one line."""
    import pvectl

    rig.stop_qnetd()
    env = dict(os.environ, PYTHONPATH=str(Path(pvectl.__file__).resolve().parent.parent))
    rig.start_qnetd(
        [
            "ip", "netns", "exec", QNETD_NS, sys.executable, "-m", "pvectl", "qdevice",
            "serve", "--cert-dir", str(rig.root / "other-ca"),
            "--control-socket", str(rig.root / "other.sock"),
        ],
        env,
    )  # fmt: skip
    try:
        result = rig.pvectl(
            "qdevice", "setup", rig.qnetd_address["a"], *rig.hosts("a"), "--wait", "8"
        )
        assert result.returncode == 69, result.stdout + result.stderr
        error = result.stderr.strip()
        assert len(error.splitlines()) == 1
        assert "the QDevice gives no vote after 8 s" in error
        assert "check the certificates" in error and "pvectl qdevice remove" in error
    finally:
        removed = rig.pvectl("qdevice", "remove", *rig.hosts("a"))
        rig.stop_qnetd()
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert "device {" not in rig.conf("a", 1) and not rig.nssdb("a", 1).exists()
