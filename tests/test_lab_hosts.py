"""``pvectl lab up 3 --host ...``: the embedded lab on "your own hosts", here three network
namespaces on one bridge, each with a real sshd; pvectl runs from a fourth ("laptop")
namespace and reaches them over SSH only. The nodes talk real UDP between the namespaces.

Names: namespaces ``pvt-lh*``, labs ``tlh*``, subnet 10.96.<pid-derived>.0/24.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.sshd_harness import SshClientHome, Sshd, sshd_skip_reason

pytestmark = [
    pytest.mark.skipif(sshd_skip_reason() is not None, reason=str(sshd_skip_reason())),
    pytest.mark.root,
    pytest.mark.slow,
]

TAG = os.getpid() % 10000
PREFIX = f"pvt-lh{TAG}"
HUB, CLIENT = f"{PREFIX}h", f"{PREFIX}c"
NODE_NS = [f"{PREFIX}n{i}" for i in (1, 2, 3)]
NET = f"10.96.{TAG % 250}."
LAB = f"tlh{TAG}"
REMOTE_LABS = Path(os.path.expanduser("~root")) / ".cache" / "pvectl" / "lab"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@dataclass
class Hosts:
    home: SshClientHome
    sshds: list[Sshd]
    no_python: Sshd  # an sshd whose sessions get a PATH without python3

    def pvectl(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", CLIENT, sys.executable, "-m", "pvectl", *args],
            capture_output=True,
            text=True,
            env=self.home.env(),
            timeout=timeout,
            check=False,
        )

    def host_args(self) -> list[str]:
        out: list[str] = []
        for server in self.sshds:
            out += ["--host", f"root@{server.address}"]
        return out


def _node_processes(lab: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"pvectl.node" in cmd and any(f"/{lab}-".encode() in part for part in cmd):
                found.append(int(entry.name))
    return found


def _remote_dirs(lab: str) -> list[Path]:
    return sorted(REMOTE_LABS.glob(f"{lab}-*")) if REMOTE_LABS.is_dir() else []


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hosts]:
    root = tmp_path_factory.mktemp("labhosts")
    home = SshClientHome(root / "home")
    sshds: list[Sshd] = []
    spaces = [HUB, CLIENT, *NODE_NS]
    try:
        for space in spaces:
            _ip("netns", "add", space)
            _ip("-n", space, "link", "set", "lo", "up")
        _ip("-n", HUB, "link", "add", "br0", "type", "bridge")
        _ip("-n", HUB, "link", "set", "br0", "up")
        for index, space in enumerate([CLIENT, *NODE_NS]):
            peer = f"p{index}"
            _ip("-n", space, "link", "add", "eth0", "type", "veth", "peer", "name", peer)
            _ip("-n", space, "link", "set", peer, "netns", HUB)
            _ip("-n", HUB, "link", "set", peer, "master", "br0", "up")
            address = NET + ("100" if space == CLIENT else str(index))
            _ip("-n", space, "addr", "add", address + "/24", "dev", "eth0")
            _ip("-n", space, "link", "set", "eth0", "up")
        for index, space in enumerate(NODE_NS, start=1):
            server = Sshd(root / f"sshd{index}", address=NET + str(index), port=22, netns=space)
            server.authorize(home.pubkey)
            server.start()
            sshds.append(server)
            home.trust(server)
        no_python = Sshd(root / "sshd-nopy", address=NET + "1", port=2222, netns=NODE_NS[0])
        with no_python.config.open("a") as handle:
            handle.write("SetEnv PATH=/nonexistent\n")
        no_python.authorize(home.pubkey)
        no_python.start()
        sshds_all = [*sshds, no_python]
        home.trust(no_python)
        yield Hosts(home, sshds, no_python)
    finally:
        subprocess.run(
            ["ip", "netns", "exec", CLIENT, sys.executable, "-m", "pvectl", "lab", "down",
             "--name", LAB],
            capture_output=True, env=home.env(), timeout=120, check=False,
        )  # fmt: skip
        for server in locals().get("sshds_all", sshds):
            server.stop()
        for space in spaces:
            subprocess.run(["ip", "netns", "del", space], capture_output=True, check=False)


def _json(proc: subprocess.CompletedProcess[str]) -> Any:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _wait_members(hosts: Hosts, want: dict[int, list[int]], timeout: float = 30) -> Any:
    """``lab ls`` until every listed node shows the wanted members."""
    deadline = time.monotonic() + timeout
    while True:
        doc = _json(hosts.pvectl("lab", "ls", "--name", LAB, "--output-format", "json"))
        seen = {n["node_id"]: n["members"] for n in doc["labs"][0]["nodes"]}
        if all(seen.get(k) == v for k, v in want.items()) or time.monotonic() > deadline:
            return doc["labs"][0]
        time.sleep(0.5)


def test_bad_hosts_start_nothing(hosts: Hosts, tmp_path: Path) -> None:
    a, b, _ = (s.address for s in hosts.sshds)
    # an unknown host key is refused (no known_hosts in this HOME), as OpenSSH would
    stranger = SshClientHome(tmp_path / "stranger")
    unknown = subprocess.run(
        ["ip", "netns", "exec", CLIENT, sys.executable, "-m", "pvectl",
         "lab", "up", "1", "--name", LAB, "--host", f"root@{a}"],
        capture_output=True, text=True, env=stranger.env(), timeout=120, check=False,
    )  # fmt: skip
    assert unknown.returncode == 77, unknown.stderr
    assert f"root@{a}: host key not known" in unknown.stderr
    assert "--accept-new-host-key" in unknown.stderr
    # one unreachable host among good ones: a per-host error, nothing started anywhere
    bad = hosts.pvectl(
        "lab", "up", "3", "--name", LAB, "--connect-timeout", "3",
        "--host", f"root@{a}", "--host", f"root@{b}", "--host", f"root@{NET}3:2",
    )  # fmt: skip
    assert bad.returncode == 69, bad.stderr
    assert bad.stderr.startswith("pvectl: error: lab not started (1 of 3 host(s) failed)")
    # one line per failing host, and a closed port is "connection refused"
    assert f"\n  root@{NET}3:2: connection refused: {NET}3:2: " in bad.stderr, bad.stderr
    assert "Traceback" not in bad.stderr
    assert _node_processes(LAB) == [] and _remote_dirs(LAB) == []
    # a busy UDP port on the host: the node's own message, with the way out (--port)
    holder = subprocess.Popen(
        ["ip", "netns", "exec", NODE_NS[0], sys.executable, "-c",
         "import socket, time; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
         f"s.bind(('{a}', 5405)); print('bound', flush=True); time.sleep(120)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "bound"
        busy = hosts.pvectl("lab", "up", "1", "--name", LAB, "--host", f"root@{a}")
        assert busy.returncode != 0
        assert f"UDP {a}:5405 is already in use" in busy.stderr, busy.stderr
        assert "'lab up --port N'" in busy.stderr
        assert _node_processes(LAB) == []
    finally:
        holder.kill()
        holder.wait()
    hosts.pvectl("lab", "down", "--name", LAB)
    # two hosts for three nodes: no plan for the third
    short = hosts.pvectl("lab", "up", "3", "--name", LAB, "--host", a, "--host", b)
    assert short.returncode == 64
    assert "3 nodes need 3 --host values" in short.stderr
    # python3 missing on a host: a clear per-host error
    nopy = f"root@{hosts.no_python.address}:{hosts.no_python.port}"
    missing = hosts.pvectl("lab", "up", "2", "--name", LAB, "--host", f"root@{b}", "--host", nopy)
    assert missing.returncode == 69, missing.stderr
    assert f"{nopy}: python3 not found there: a lab node needs python3 >= 3.11" in missing.stderr
    assert _node_processes(LAB) == [] and _remote_dirs(LAB) == []
    # a ring address the host does not have: the node cannot bind, lab up cleans up there
    elsewhere = hosts.pvectl(
        "lab", "up", "1", "--name", LAB, "--host", f"root@{a}", "--address", NET + "77"
    )
    assert elsewhere.returncode != 0
    assert f"node 1 on root@{a} exited at start" in elsewhere.stderr, elsewhere.stderr
    assert "Cannot assign requested address" in elsewhere.stderr  # the node's own words
    assert "Traceback" not in elsewhere.stderr
    assert _node_processes(LAB) == [] and _remote_dirs(LAB) == []
    assert hosts.pvectl("lab", "down", "--name", LAB).returncode == 0


def test_lab_on_three_hosts(hosts: Hosts) -> None:
    up = hosts.pvectl(
        "lab", "up", "3", "--name", LAB, "--token", "1000", *hosts.host_args(),
        "--output-format", "json",
    )  # fmt: skip
    state = _json(up)
    assert "ring formed in" in up.stderr
    try:
        addresses = [n["address"] for n in state["nodes"]]
        assert addresses == [s.address for s in hosts.sshds]  # the hosts' own addresses
        assert [n["host"] for n in state["nodes"]] == [f"root@{a}" for a in addresses]
        # every node runs from its own directory on its host, key readable by the owner only
        for node in state["nodes"]:
            directory = Path(node["dir"])
            assert directory.parent.parent == REMOTE_LABS
            assert (directory / "authkey").stat().st_mode & 0o777 == 0o600
            assert (directory / "pvectl.zip").is_file()
        assert len(_node_processes(LAB)) == 3

        ls = _wait_members(hosts, {1: [1, 2, 3], 2: [1, 2, 3], 3: [1, 2, 3]})
        assert [n["host"] for n in ls["nodes"]] == [f"root@{a}" for a in addresses]
        assert len({n["ring_id"] for n in ls["nodes"]}) == 1
        text = hosts.pvectl("lab", "ls", "--name", LAB)
        assert f"root@{addresses[0]}" in text.stdout and "host" in text.stdout

        # --target lab answers what each node itself says on its host
        for node in state["nodes"]:
            cli = _json(
                hosts.pvectl("status", "--target", "lab", "--name", LAB, "--node",
                             str(node["node_id"]), "--output-format", "json")
            )  # fmt: skip
            own = subprocess.run(
                [sys.executable, f"{node['dir']}/pvectl.zip", "call", node["dir"], "status"],
                input="{}", capture_output=True, text=True, check=True,
            )  # fmt: skip
            said = json.loads(own.stdout)["status"]
            assert {k: v for k, v in cli.items() if k not in ("source", "schema_version")} == {
                k: v for k, v in said.items() if k != "source"
            }
            assert cli["quorate"] is True and cli["node_id"] == node["node_id"]
        nodes = _json(
            hosts.pvectl("nodes", "--target", "lab", "--name", LAB, "--output-format", "json")
        )
        assert len(nodes["members"]) == 3
        expected = hosts.pvectl("expected", "3", "--target", "lab", "--name", LAB, "--node", "2")
        assert expected.returncode == 0, expected.stderr
        below = hosts.pvectl("expected", "1", "--target", "lab", "--name", LAB)
        assert below.returncode != 0 and below.stderr.startswith("pvectl: error:")
        # exec runs on the node's host, in its directory
        where = hosts.pvectl(
            "lab", "exec", "2", "--name", LAB, "--", "sh", "-c", 'echo "$PVECTL_NODE $(pwd)"'
        )
        assert where.stdout.split() == ["2", state["nodes"][1]["dir"]], where.stderr

        # crash node 3: the others re-form and stay quorate
        kill = _json(hosts.pvectl("lab", "kill", "3", "--name", LAB, "--output-format", "json"))
        assert kill["members"] == [1, 2] and kill["quorate"] is True, kill
        assert kill["seconds"] is not None
        print(f"\n{up.stderr.strip()}\nkill 3 (token 1000 ms): new ring after {kill['seconds']} s")
        assert len(_node_processes(LAB)) == 2
        start = _json(hosts.pvectl("lab", "start", "3", "--name", LAB, "--output-format", "json"))
        assert start["members"] == [1, 2, 3], start
        assert start["seconds"] >= 0.05, start  # from the spawn, not after the wait

        # partition: node 3 alone, not quorate; heal: one ring again
        cut = hosts.pvectl("lab", "partition", "1,2", "3", "--name", LAB)
        assert cut.returncode == 0, cut.stderr
        # partition waits for the new rings and reports them, as kill does
        assert "new rings after" in cut.stdout, cut.stdout + cut.stderr
        assert "group 1,2: members 1,2, quorate" in cut.stdout
        assert "group 3: members 3, NOT quorate" in cut.stdout
        split = _wait_members(hosts, {1: [1, 2], 2: [1, 2], 3: [3]})
        assert {n["node_id"]: n["quorate"] for n in split["nodes"]} == {1: True, 2: True, 3: False}
        hosts.pvectl("lab", "heal", "--name", LAB)
        healed = _wait_members(hosts, {1: [1, 2, 3], 2: [1, 2, 3], 3: [1, 2, 3]})
        assert all(n["quorate"] for n in healed["nodes"])

        # loss and slow-disk reach every node's control socket on its host
        for args in (("loss", "0"), ("slow-disk", "1", "0")):
            done = hosts.pvectl("lab", *args, "--name", LAB)
            assert done.returncode == 0, done.stderr

        # pause: frozen on its host (SIGSTOP over SSH), then back in the ring
        pause = _json(
            hosts.pvectl("lab", "pause", "2", "0.5", "--name", LAB, "--output-format", "json")
        )
        assert pause["members"] == [1, 2, 3], pause

        # a node whose host cannot be reached is "unreachable", not "stopped", and ls fails
        hosts.sshds[2].stop()
        try:
            lost = hosts.pvectl("lab", "ls", "--name", LAB, "--output-format", "json")
            assert lost.returncode == 1, lost.stderr
            rows = {n["node_id"]: n for n in json.loads(lost.stdout)["labs"][0]["nodes"]}
            assert rows[3]["unreachable"] and rows[1]["unreachable"] is None, rows
            assert f"node 3 on root@{addresses[2]}: unreachable" in lost.stderr
            text = hosts.pvectl("lab", "ls", "--name", LAB)
            assert f"unreachable (host root@{addresses[2]}: " in text.stdout, text.stdout
        finally:
            hosts.sshds[2].start()
    finally:
        down = hosts.pvectl("lab", "down", "--name", LAB)
    assert down.returncode == 0, down.stderr
    assert _node_processes(LAB) == []
    assert _remote_dirs(LAB) == []
    assert hosts.pvectl("lab", "ls", "--name", LAB).returncode != 0
