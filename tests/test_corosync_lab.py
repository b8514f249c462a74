"""pvectl against real corosync 3 nodes in network namespaces, started by `pvectl lab`.

Every scenario compares pvectl's parsed figures with what corosync's own tool prints on
the same node, and pvectl's `status` text with `pvecm status` (header from corosync.conf,
then the real `corosync-quorumtool -siH`), the Date line aside. Labs use short tokens
(1000 ms) so a crash is detected in about 2.5 s.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pvectl import corosync_conf
from pvectl.lab import corosync_engine, netns
from pvectl.lab import state as lab_state
from pvectl.quorum.votequorum import quorum_for
from tests.conftest import CliRun, run_cli

ROOT = os.geteuid() == 0
COROSYNC = all(shutil.which(tool) for tool in ("corosync", "corosync-quorumtool", "ip", "nft"))
needs_lab = pytest.mark.skipif(
    not (ROOT and COROSYNC),
    reason="needs root (network namespaces) and the Debian packages corosync, iproute2, nftables",
)
TOKEN = "1000"
# Per-run lab names (test labs start with "t"), so two runs side by side never share a lab.
RUN = str(os.getpid() % 100000)
TBAD = "tbad" + RUN
TCS1 = "tcs1" + RUN
TCS2 = "tcs2" + RUN
TCS3 = "tcs3" + RUN
TCS4 = "tcs4" + RUN
TCSB = "tcsb" + RUN
TCSK = "tcsk" + RUN
TCU3 = "tcu3" + RUN
TCX = "tcx" + RUN
TNOC = "tnoc" + RUN
TNR = "tnr" + RUN


# ---- helpers ---------------------------------------------------------------------------


def lab(*args: str, timeout: float = 120) -> CliRun:
    return run_cli("lab", *args, timeout=timeout)


def one_line_error(run: CliRun) -> bool:
    return len(run.stderr.strip().splitlines()) == 1 and "Traceback" not in run.stderr


def tool(name: str, node: int, *args: str) -> CliRun:
    """corosync-quorumtool run on the node itself, in its namespaces (what `lab exec`
    does, without a pvectl process each time)."""
    state = lab_state.load(name)
    assert state is not None
    proc = subprocess.run(
        [*corosync_engine.node_prefix(state.node(node)), "corosync-quorumtool", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return CliRun(proc.returncode, proc.stdout, proc.stderr)


def pvectl_status(name: str, node: int, fmt: str = "json") -> CliRun:
    return run_cli(
        "status", "--target", "lab", "--name", name, "--node", str(node), "--output-format", fmt
    )


def label(raw: str, name: str) -> str:
    match = re.search(rf"^{re.escape(name)}:[ \t]*(.*?)[ \t]*$", raw, re.MULTILINE)
    assert match, f"no {name!r} line in:\n{raw}"
    return match.group(1)


def without_date(text: str) -> str:
    return "".join(line for line in text.splitlines(True) if not line.startswith("Date:"))


def pvecm_header(name: str, node: int) -> str:
    """What pvecm prints before exec'ing quorumtool: printf "%-17s %s\\n" from the conf."""
    state = lab_state.load(name)
    assert state is not None
    conf = (Path(state.node(node).dir) / "etc" / "corosync.conf").read_text()
    totem = corosync_conf.parse(conf).section("totem")
    assert totem is not None
    rows = [
        ("Name:", totem.get("cluster_name")),
        ("Config Version:", totem.get("config_version")),
        ("Transport:", totem.get("transport") or "knet"),
        ("Secure auth:", totem.get("secauth") or "off"),
    ]
    return (
        "Cluster information\n-------------------\n"
        + "".join(f"{key:<17} {value}\n" for key, value in rows)
        + "\n"
    )


def members_seen(name: str, node: int) -> tuple[int, ...] | None:
    state = lab_state.load(name)
    assert state is not None
    return corosync_engine.membership(state.node(node))


def wait_for(predicate: Callable[[], bool], timeout: float = 30, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def wait_members(name: str, node: int, want: tuple[int, ...], timeout: float = 30) -> None:
    wait_for(lambda: members_seen(name, node) == want, timeout, f"node {node} to see {want}")


def check_agrees(name: str, node: int, **expect: object) -> dict[str, object]:
    """pvectl's JSON and text against the real tool on the same node; returns the JSON."""
    ours = pvectl_status(name, node)
    raw = tool(name, node, "-s")
    assert ours.code in (0, 2), ours
    assert ours.code == raw.code, (ours, raw)  # 0 quorate, 2 not quorate: quorumtool's codes
    data = json.loads(ours.stdout)
    assert data["quorate"] == (label(raw.stdout, "Quorate") == "Yes")
    assert data["nodes"] == int(label(raw.stdout, "Nodes"))
    assert data["node_id"] == int(label(raw.stdout, "Node ID")) == node
    assert data["ring_id"] == label(raw.stdout, "Ring ID")
    assert data["expected_votes"] == int(label(raw.stdout, "Expected votes"))
    assert data["highest_expected"] == int(label(raw.stdout, "Highest expected"))
    assert data["total_votes"] == int(label(raw.stdout, "Total votes"))
    assert data["quorum"] == int(label(raw.stdout, "Quorum").split()[0])
    assert data["activity_blocked"] == ("Activity blocked" in label(raw.stdout, "Quorum"))
    assert data["flags"] == label(raw.stdout, "Flags").split()
    rows = re.findall(r"^\s+(\d+)\s+(\d+) (node\d+)", raw.stdout, re.MULTILINE)
    assert [(m["node_id"], m["votes"], m["name"]) for m in data["members"]] == [
        (int(i), int(v), n) for i, v, n in rows
    ]
    # corosync's formula, as our quorum model writes it (two_node pins quorum to 1)
    if "2Node" not in data["flags"]:
        assert data["quorum"] >= quorum_for(data["highest_expected"], data["total_votes"]) or (
            data["expected_votes"] < data["highest_expected"]
        )
    for key, value in expect.items():
        assert data[key] == value, (key, data[key], value)
    # text: byte for byte pvecm status (header + real -siH), the Date line aside
    text = pvectl_status(name, node, "text")
    real = tool(name, node, "-siH")
    assert text.code == real.code
    assert without_date(text.stdout) == without_date(pvecm_header(name, node) + real.stdout)
    return dict(data)


@pytest.fixture
def lab_factory() -> Iterator[Callable[..., CliRun]]:
    started: list[str] = []

    def start(name: str, nodes: int, *options: str) -> CliRun:
        started.append(name)
        run = lab(
            "up", str(nodes), "--name", name, "--engine", "corosync", "--token", TOKEN, *options
        )
        assert run.code == 0, run
        return run

    yield start
    for name in started:
        lab("down", "--name", name)


# ---- scenarios -------------------------------------------------------------------------


@needs_lab
def test_three_nodes_stop_one_two_then_expected_1(lab_factory: Callable[..., CliRun]) -> None:
    up = lab_factory(TCS3, 3)
    assert re.search(r"ring formed in \d+\.\d\d s", up.stderr), up.stderr
    for node in (1, 2, 3):
        check_agrees(
            TCS3,
            node,
            quorate=True,
            nodes=3,
            expected_votes=3,
            total_votes=3,
            quorum=2,
            flags=["Quorate"],
        )

    # pvecm nodes is `corosync-quorumtool -l`, byte for byte
    ours = run_cli("nodes", "--target", "lab", "--name", TCS3, "--node", "2")
    assert ours.code == 0 and ours.stdout == tool(TCS3, 2, "-l").stdout

    # the same lab, a second time, is refused
    again = lab("up", "3", "--name", TCS3, "--engine", "corosync")
    assert again.code == 1 and one_line_error(again) and "already up" in again.stderr

    stop = lab("stop", "3", "--name", TCS3)
    assert stop.code == 0, stop
    assert "members 1,2, quorate" in stop.stdout
    wait_members(TCS3, 1, (1, 2))
    check_agrees(TCS3, 1, quorate=True, nodes=2, total_votes=2, expected_votes=3, quorum=2)

    stop = lab("stop", "2", "--name", TCS3)
    assert "members 1, NOT quorate" in stop.stdout, stop
    wait_members(TCS3, 1, (1,))
    blocked = check_agrees(
        TCS3, 1, quorate=False, nodes=1, total_votes=1, quorum=2, activity_blocked=True, flags=[]
    )
    assert blocked["expected_votes"] == 3

    # expected 1 on the lone survivor: allowed, and quorate afterwards
    done = run_cli(
        "expected",
        "1",
        "--target",
        "lab",
        "--name",
        TCS3,
        "--node",
        "1",
        "--output-format",
        "json",
    )
    assert done.code == 0, done
    result = json.loads(done.stdout)
    assert result["quorate_after"] is True and result["quorum_after"] == 1
    assert result["previous_expected"] == 3
    check_agrees(TCS3, 1, quorate=True, expected_votes=1, quorum=1, flags=["Quorate"])

    # the nodes come back: expected votes return to the configured total
    for node in ("2", "3"):
        assert lab("start", node, "--name", TCS3).code == 0
    wait_members(TCS3, 1, (1, 2, 3))
    wait_for(
        lambda: json.loads(pvectl_status(TCS3, 1).stdout)["expected_votes"] == 3,
        15,
        "expected votes back to 3",
    )

    # refused where the votes present exceed it: our guard, then corosync's own refusal
    refused = run_cli("expected", "1", "--target", "lab", "--name", TCS3, "--node", "1")
    assert refused.code == 1 and one_line_error(refused)
    assert "3 votes are present in this partition: expected votes cannot go below 3" in (
        refused.stderr
    )
    real = tool(TCS3, 1, "-e", "1")
    assert real.code == 1 and "CS_ERR_INVALID_PARAM" in real.stderr
    check_agrees(TCS3, 1, quorate=True, expected_votes=3, total_votes=3)


@needs_lab
def test_corosync_refusal_is_mapped_when_our_guard_is_bypassed(
    lab_factory: Callable[..., CliRun], monkeypatch: pytest.MonkeyPatch
) -> None:
    from pvectl.errors import CommandRefused
    from pvectl.lab.target import LabTarget
    from pvectl.targets import corosync as corosync_target

    lab_factory(TCS1, 2)
    monkeypatch.setattr(corosync_target, "check_set_expected", lambda *_: None)
    with pytest.raises(CommandRefused, match="CS_ERR_INVALID_PARAM"):
        LabTarget(TCS1, 1).set_expected(1)


@needs_lab
def test_four_nodes_split_two_two_and_heal(lab_factory: Callable[..., CliRun]) -> None:
    lab_factory(TCS4, 4)
    check_agrees(TCS4, 1, quorate=True, nodes=4, expected_votes=4, quorum=3)
    auto = run_cli("nodes", "--name", TCS4, "--node", "2", "--output-format", "json")
    assert auto.code == 0 and json.loads(auto.stdout)["source"] == f"lab:{TCS4}:node2", auto
    overlap = lab("partition", "1,2", "2,3", "--name", TCS4)
    assert overlap.code == 64 and one_line_error(overlap) and "overlap" in overlap.stderr
    unknown = lab("partition", "1,2", "3,9", "--name", TCS4)
    assert unknown.code == 64 and one_line_error(unknown) and "no node 9" in unknown.stderr

    assert lab("partition", "1,2", "3,4", "--name", TCS4).code == 0
    wait_members(TCS4, 1, (1, 2))
    wait_members(TCS4, 3, (3, 4))
    for node in (1, 3):
        check_agrees(
            TCS4,
            node,
            quorate=False,
            nodes=2,
            expected_votes=4,
            total_votes=2,
            quorum=3,
            activity_blocked=True,
        )

    assert lab("heal", "--name", TCS4).code == 0
    wait_members(TCS4, 1, (1, 2, 3, 4), timeout=40)
    check_agrees(TCS4, 2, quorate=True, nodes=4, total_votes=4)

    # a crash: the survivors' new ring is reported with its quorum
    crash = lab("kill", "4", "--name", TCS4, "--output-format", "json")
    assert crash.code == 0, crash
    change = json.loads(crash.stdout)
    assert change["members"] == [1, 2, 3] and change["quorate"] is True
    assert 0 < change["seconds"] < 15

    # a node frozen longer than token + consensus is dropped, then rejoins
    frozen = lab("pause", "3", "4", "--name", TCS4, "--output-format", "json")
    assert frozen.code == 0, frozen
    paused = json.loads(frozen.stdout)
    assert paused["dropped_after"] is not None and 1.5 < paused["dropped_after"] < 4
    assert paused["members"] == [1, 2, 3]

    # random loss is an nftables rule inside each node, and heal removes it
    assert lab("loss", "30", "--name", TCS4).code == 0
    rules = lab("exec", "1", "--name", TCS4, "--", "nft", "list", "ruleset")
    assert "numgen random mod 100 < 30" in rules.stdout
    assert lab("heal", "--name", TCS4).code == 0
    rules = lab("exec", "1", "--name", TCS4, "--", "nft", "list", "ruleset")
    assert "numgen" not in rules.stdout

    listing = lab("ls", "--name", TCS4, "--output-format", "json")
    assert listing.code == 0
    (view,) = json.loads(listing.stdout)["labs"]
    assert view["engine"] == "corosync"
    by_id = {node["node_id"]: node for node in view["nodes"]}
    assert by_id[4]["running"] is False and by_id[4]["pid"] is None
    assert by_id[1]["running"] and by_id[1]["quorate"] is True
    assert "etc/corosync.conf" in by_id[1]["files"] and "etc/authkey" in by_id[1]["files"]
    assert Path(by_id[1]["state_dir"]).is_dir()


@needs_lab
def test_two_node_cluster_survives_one_crash(lab_factory: Callable[..., CliRun]) -> None:
    lab_factory(TCS2, 2, "--two-node")
    check_agrees(
        TCS2,
        1,
        quorate=True,
        nodes=2,
        expected_votes=2,
        quorum=1,
        flags=["2Node", "Quorate", "WaitForAll"],
    )
    crash = lab("kill", "2", "--name", TCS2)
    assert crash.code == 0 and "members 1, quorate" in crash.stdout, crash
    check_agrees(
        TCS2,
        1,
        quorate=True,
        nodes=1,
        total_votes=1,
        quorum=1,
        flags=["2Node", "Quorate", "WaitForAll"],
    )


@needs_lab
def test_udpu_votes_and_node_context(lab_factory: Callable[..., CliRun]) -> None:
    lab_factory(TCU3, 3, "--transport", "udpu", "--votes", "1,1,2")
    data = check_agrees(TCU3, 1, quorate=True, expected_votes=4, total_votes=4, quorum=3)
    assert data["cluster"] == {
        "name": TCU3,
        "config_version": 1,
        "transport": "udpu",
        "secure_auth": "off",
        "config_version_text": "1",
    }
    assert [m["votes"] for m in data["members"]] == [1, 1, 2]  # type: ignore[index]
    host = lab("exec", "3", "--name", TCU3, "--", "hostname")
    assert host.stdout.strip() == "node3"
    stats = lab("exec", "2", "--name", TCU3, "--", "corosync-cmapctl", "-m", "stats")
    assert stats.code == 0 and "stats." in stats.stdout
    failing = lab("exec", "2", "--name", TCU3, "--", "sh", "-c", "exit 7")
    assert failing.code == 7
    missing_node = lab("kill", "9", "--name", TCU3)
    assert missing_node.code == 64 and one_line_error(missing_node)
    assert "no node 9" in missing_node.stderr
    taken = lab(
        "up",
        "2",
        "--name",
        TCX,
        "--engine",
        "corosync",
        "--subnet",
        lab_state.load(TCU3).subnet,
    )  # type: ignore[union-attr]
    assert taken.code == 1 and f"already used by lab '{TCU3}'" in taken.stderr
    host = lab("up", "1", "--name", TCX, "--engine", "corosync", "--subnet", "127.0.0.0/24")
    assert host.code == 1 and one_line_error(host) and "overlaps 127.0.0.0/8" in host.stderr


@needs_lab
def test_broken_corosync_conf_names_the_line(lab_factory: Callable[..., CliRun]) -> None:
    lab_factory(TCSB, 1)
    state = lab_state.load(TCSB)
    assert state is not None
    conf = Path(state.node(1).dir) / "etc" / "corosync.conf"
    good = conf.read_text()
    lines = good.splitlines()
    lines.insert(3, "  this line is not corosync syntax")
    conf.write_text("\n".join(lines) + "\n")
    try:
        run = pvectl_status(TCSB, 1, "text")
        assert run.code == 65 and one_line_error(run), run
        assert "/etc/corosync/corosync.conf:4:" in run.stderr
    finally:
        conf.write_text(good)
    assert pvectl_status(TCSB, 1, "text").code == 0


@needs_lab
def test_down_after_pvectl_was_killed_mid_up() -> None:
    name = TCSK
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pvectl",
            "lab",
            "up",
            "3",
            "--name",
            name,
            "--engine",
            "corosync",
            "--token",
            TOKEN,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def some_corosync_runs() -> bool:
            state = lab_state.load(name)
            return state is not None and any(
                n.pid is not None and netns.process_in_namespace(n.pid, n.namespace)
                for n in state.nodes
            )

        wait_for(some_corosync_runs, 30, "a corosync of the lab to start")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    namespaces = netns.lab_namespaces(name)
    assert namespaces, "the killed 'lab up' should have left namespaces behind"
    pids = [pid for ns in namespaces for pid in netns.namespace_pids(ns)]
    assert pids

    down = lab("down", "--name", name)
    assert down.code == 0, down
    assert netns.lab_namespaces(name) == []
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert f"pvcl-{name}-" not in listed
    assert netns.wait_gone(pids, 5) == []
    assert f"pvcl-{name}-" not in Path("/proc/self/mountinfo").read_text()
    assert lab_state.load(name) is None
    again = lab("down", "--name", name)
    assert again.code == 0 and "nothing to remove" in again.stderr


# ---- bad input that needs no cluster ---------------------------------------------------


def test_lab_up_rejects_bad_arguments() -> None:
    for args in (
        ["0"],
        ["17"],
        ["abc"],
        ["3", "--bogus"],
        ["3", "--votes", "1,x,1"],
        ["3", "--votes", "1,1"],
        ["2", "--transport", "tcp"],
    ):
        run = lab("up", *args, "--name", TBAD, "--engine", "corosync")
        assert run.code == 64, (args, run)
        assert one_line_error(run), run
    run = lab("up", "3", "--name", TBAD, "--engine", "corosync", "--votes", "1,1")
    assert "--votes lists 2 values for 3 nodes" in run.stderr
    embedded = lab("up", "17", "--name", TBAD, "--engine", "embedded")
    assert embedded.code == 64 and "between 1 and 16" in embedded.stderr


def test_corosync_not_installed_says_which_package() -> None:
    env = dict(os.environ, PATH="/usr/bin:/bin")  # corosync's tools live in /usr/sbin
    if shutil.which("corosync-quorumtool", path=env["PATH"]):
        pytest.skip("corosync-quorumtool is on /usr/bin:/bin here")
    run = run_cli("status", "--target", "corosync", env=env)
    assert run.code == 69 and one_line_error(run)
    assert "install the Debian package 'corosync'" in run.stderr
    if ROOT:
        up = run_cli("lab", "up", "2", "--name", TNOC, "--engine", "corosync", env=env)
        assert up.code == 69 and "Debian package 'corosync'" in up.stderr


@pytest.mark.skipif(not COROSYNC, reason="needs the Debian package corosync")
def test_no_local_corosync_names_the_other_targets() -> None:
    from pvectl.targets.corosync import is_running

    if not ROOT:
        pytest.skip("as non-root the IPC refusal cannot tell 'not running' from 'not allowed'")
    if is_running():
        pytest.skip("a corosync runs on this machine")
    run = run_cli("status", "--target", "corosync")
    assert run.code == 1 and one_line_error(run)
    assert "no corosync runs here" in run.stderr
    assert "--target lab" in run.stderr and "--host" in run.stderr


def _as_nobody() -> list[str] | None:
    setpriv = shutil.which("setpriv")
    if not ROOT or setpriv is None:
        return None
    # nobody, but able to read this interpreter (it may live under /root)
    prefix = [
        setpriv,
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=+dac_read_search",
        "--ambient-caps=+dac_read_search",
    ]
    probe = subprocess.run(
        [*prefix, sys.executable, "-c", "import pvectl"],
        capture_output=True,
        cwd=Path(__file__).parent.parent,
        check=False,
    )
    return prefix if probe.returncode == 0 else None


@pytest.mark.skipif(_as_nobody() is None, reason="needs root and setpriv to become nobody")
def test_not_root_is_exit_77() -> None:
    prefix = _as_nobody()
    assert prefix is not None
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    for args in (
        ["lab", "up", "3", "--engine", "corosync", "--name", TNR],
        ["status", "--target", "corosync"],
    ):
        proc = subprocess.run(
            [*prefix, sys.executable, "-m", "pvectl", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 77, (args, proc.stderr)
        assert "root" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
