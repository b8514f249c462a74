"""Hostile or broken input files and arguments (security review, findings 7-9): every one
is a single error line with a documented exit code, never a traceback (exit 70), an
unbounded message or an unbounded read. Through the real CLI where the exit code is the
point."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pvectl import corosync_conf, quorum_conf
from pvectl.errors import ConfigError, ExitCode
from pvectl.lab import scenario as sc
from tests.conftest import CliRun, run_cli

WORKTREE = Path(__file__).resolve().parent.parent
ROOT = os.geteuid() == 0


def _env(tmp_path: Path) -> dict[str, str]:
    xdg = tmp_path / "xdg"
    xdg.mkdir(exist_ok=True)
    return dict(os.environ, XDG_RUNTIME_DIR=str(xdg))


def _one_line(run: CliRun) -> str:
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pvectl: error: "), run.stderr[:2000]
    assert "internal error" not in lines[0]
    return lines[0]


def _as_user(*args: str) -> CliRun:
    """As root, drop the capabilities that bypass file permissions, as a user lacks them."""
    if not ROOT:
        return run_cli(*args)
    drop = "-dac_override,-dac_read_search,-fowner"
    proc = subprocess.run(
        ["setpriv", "--inh-caps=-all", "--ambient-caps=-all", f"--bounding-set={drop}",
         sys.executable, "-m", "pvectl", *args],
        capture_output=True, text=True, cwd=WORKTREE, timeout=120, check=False,
    )  # fmt: skip
    return CliRun(proc.returncode, proc.stdout, proc.stderr)


needs_setpriv_as_root = pytest.mark.skipif(
    ROOT and shutil.which("setpriv") is None, reason="as root this needs setpriv"
)


# ---- finding 7: the scenario parser ------------------------------------------------------


def alias_bomb(levels: int) -> str:
    """ "Billion laughs": each level is nine aliases of the one before (9**levels items)."""
    lines = ['l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for n in range(1, levels):
        lines.append(f"l{n}: &l{n} [" + ",".join([f"*l{n - 1}"] * 9) + "]")
    return "\n".join(lines) + f"\nup: 3\nsteps:\n  - kill: *l{levels - 1}\n"


BAD_SCENARIOS = [
    # (text, line, words): each crashed (exit 70) or echoed unbounded before
    ("up: 3\nsteps:\n  - {kill: 1, kill: 2}\n", 3, "duplicate key 'kill'"),
    ("up: 3\nsteps:\n  - expected: {node: 2}\n", 3, "expected needs 'votes'"),
    ("up: 3\nsteps: " + "[" * 3000 + "\n", 2, "nested deeper than 16 levels"),
    (alias_bomb(7), 2, "aliases (*name) are not allowed"),
    # what PyYAML's own constructors fail on with plain Python errors
    ("up: !!int three\nsteps: [heal]\n", 1, "tags ('!!int') are not allowed"),
    ("up: 3\nsteps:\n  - kill: 2024-13-45\n", 3, "cannot read the value '2024-13-45'"),
    ("up: 3\nsteps:\n  - kill: " + "9" * 5000 + "\n", 3, "cannot read the value"),
    ("up: 3\nsteps:\n  - kill: 0x" + "f" * 5000 + "\n", 3, "got a 20000-bit number"),
    ("up: {<<: {nodes: 3}}\nsteps: [heal]\n", 1, "merge keys (<<) are not allowed"),
    ("up: 3\nsteps: [heal]\nsteps: [heal]\n", 3, "duplicate key 'steps'"),
    ("up: 3\x01\nsteps: [heal]\n", 1, "character U+0001 is not allowed"),
    ("up: 3\nsteps:\n  - kill: '" + "x" * 100_000 + "'\n", 3, "got 'xxxxxxxx"),
    ("up: 3\nsteps:\n  - '" + "y" * 100_000 + "'\n", 3, "unknown step 'yyyyy"),
    ("up: 3\nsteps:\n  - expect: {node: 1, " + "z" * 1000 + ": 1}\n", 3, "unknown key"),
]


@pytest.mark.parametrize(("text", "line", "words"), BAD_SCENARIOS)
def test_bad_scenario_is_one_bounded_line_naming_the_line(text: str, line: int, words: str) -> None:
    start = time.perf_counter()
    with pytest.raises(ConfigError) as caught:
        sc.parse(text, "bad.yaml")
    elapsed = time.perf_counter() - start
    message = str(caught.value)
    assert message.startswith(f"bad.yaml:{line}: "), message[:300]
    assert words in message, message[:300]
    assert "\n" not in message and len(message) <= 320, len(message)
    assert caught.value.exit_code == ExitCode.DATA
    assert elapsed < 2.0, f"{elapsed:.2f} s"  # the 9**7 alias bomb took seconds before


def test_valid_yaml_features_a_scenario_may_still_use() -> None:
    text = (
        "# comment\ndescription: 'quoted: yes'\nup: &n {nodes: 3}\nsteps:\n"
        "  - kill: 1\n  - expect: {node: 2, members: [2, 3], quorate: true}\n"
    )
    parsed = sc.parse(text, "ok.yaml")
    assert parsed.up.nodes == 3 and parsed.description == "quoted: yes"
    assert [s.describe() for s in parsed.steps] == [
        "kill 1",
        "expect node 2: quorate yes, members [2,3]",
    ]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("up: 3\nsteps:\n  - {kill: 1, kill: 2}\n", "duplicate key 'kill'"),
        ("up: 3\nsteps:\n  - expected: {node: 2}\n", "expected needs 'votes'"),
        ("up: 3\nsteps: " + "[" * 3000 + "\n", "nested deeper"),
        (alias_bomb(9), "aliases"),  # 415 bytes: 522 MB of error message before
    ],
    ids=["duplicate-key", "expected-without-votes", "deep-nesting", "alias-bomb"],
)
def test_cli_lab_run_refuses_crashing_scenarios_with_65(
    tmp_path: Path, text: str, words: str
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    run = run_cli("lab", "run", str(bad), env=_env(tmp_path), timeout=60)
    assert run.code == ExitCode.DATA, run.stderr[:500]
    line = _one_line(run)
    assert words in line and len(line) < 400, line[:400]


# ---- finding 8: corosync.conf ------------------------------------------------------------


def _conf(ids: list[str], votes: list[str] | None = None) -> str:
    blocks = ""
    for n, node_id in enumerate(ids):
        blocks += f"  node {{\n    name: pve{n + 1}\n    nodeid: {node_id}\n"
        if votes is not None:
            blocks += f"    quorum_votes: {votes[n]}\n"
        blocks += f"    ring0_addr: 10.0.0.{n + 1}\n  }}\n"
    return (
        "totem {\n  cluster_name: t\n  config_version: 1\n}\n"
        f"nodelist {{\n{blocks}}}\n"
        "quorum {\n  provider: corosync_votequorum\n}\n"
    )


@pytest.mark.parametrize(
    ("ids", "votes", "line", "words"),
    [
        (["1", "2", "2"], None, 16, "nodeid 2 is used twice ('pve2' and 'pve3')"),
        (["1", "\u0661", "3"], None, 11, "nodeid must be a decimal number, got '\u0661'"),
        (["1", "1_0"], None, 11, "nodeid must be a decimal number"),
        (["0", "1", "2"], None, 6, "nodeid must be between 1 and 4294967295, got 0"),
        (["1", "4294967296"], None, 11, "nodeid must be between 1 and 4294967295"),
        (["1", "2", "3"], ["1", "1", "-7"], 18, "quorum_votes must be a decimal number"),
        (["1", "2"], ["1", "99999999999999"], 12, "quorum_votes must be between 0 and"),
        (["1", "2"], ["4294967295", "1"], 5, "add up to 4294967296"),
    ],
)
def test_nodelist_is_checked_as_corosync_checks_it(
    ids: list[str], votes: list[str] | None, line: int, words: str
) -> None:
    root = corosync_conf.parse(_conf(ids, votes), "c.conf")
    with pytest.raises(ConfigError) as caught:
        corosync_conf.nodelist(root, "c.conf")
    assert str(caught.value).startswith(f"c.conf:{line}: "), str(caught.value)
    assert words in str(caught.value)


def test_nodelist_accepts_corosyncs_whole_range() -> None:
    root = corosync_conf.parse(_conf(["4294967295", "1"], ["0", "4294967295"]))
    entries = corosync_conf.nodelist(root)
    assert [(e.node_id, e.votes) for e in entries] == [(1, 4294967295), (4294967295, 0)]


@pytest.mark.parametrize(
    ("ids", "votes", "words"),
    [
        (["1", "2", "2"], None, "used twice"),  # IndexError, exit 70 before
        (["1", "\u0661", "3"], None, "decimal number"),  # int() read it as 1: exit 70
        (["0", "1", "2"], None, "between 1 and"),  # accepted before
        (["1", "2", "3"], ["1", "1", "-7"], "quorum_votes"),  # exit 0, "votes left -5"
        (["1", "2", "3"], ["1", "1", "99999999999999"], "quorum_votes"),  # exit 0
    ],
)
def test_cli_what_if_refuses_bad_nodelists_with_65(
    tmp_path: Path, ids: list[str], votes: list[str] | None, words: str
) -> None:
    conf = tmp_path / "corosync.conf"
    conf.write_text(_conf(ids, votes))
    run = run_cli("quorum", "what-if", "--config", str(conf))
    assert run.code == ExitCode.DATA, (run.stdout[-500:], run.stderr)
    assert words in _one_line(run)


def test_cli_what_if_config_read_failures_have_their_exit_codes(tmp_path: Path) -> None:
    run = run_cli("quorum", "what-if", "--config", str(tmp_path))  # IsADirectoryError, 70
    assert run.code == ExitCode.NO_INPUT, run.stderr
    assert "is a directory" in _one_line(run)
    run = run_cli("quorum", "what-if", "--config", str(tmp_path / "nope.conf"))
    assert run.code == ExitCode.NO_INPUT and "no such file" in _one_line(run)
    run = run_cli("quorum", "what-if", "--config", "/dev/zero")  # an unbounded read before
    assert run.code == ExitCode.DATA and "larger than 1 MiB" in _one_line(run)
    binary = tmp_path / "binary.conf"
    binary.write_bytes(b"totem {\n\xff\xfe\n}\n")
    run = run_cli("quorum", "what-if", "--config", str(binary))
    assert run.code == ExitCode.DATA and f"{binary}:2: not UTF-8 text" in _one_line(run)


@needs_setpriv_as_root
def test_cli_what_if_unreadable_config_is_77(tmp_path: Path) -> None:
    conf = tmp_path / "corosync.conf"
    conf.write_text(_conf(["1", "2", "3"]))
    conf.chmod(0o000)
    tmp_path.chmod(0o755)
    run = _as_user("quorum", "what-if", "--config", str(conf))
    assert run.code == ExitCode.NO_PERMISSION, run.stderr
    assert "permission denied" in _one_line(run)


def test_cli_what_if_beyond_32_nodes_is_a_usage_limit_64(tmp_path: Path) -> None:
    conf = tmp_path / "corosync.conf"
    conf.write_text(_conf([str(i) for i in range(1, 34)]))
    run = run_cli("quorum", "what-if", "--config", str(conf))
    assert run.code == ExitCode.USAGE, run.stderr  # 1 before, undocumented
    assert "up to 32 nodes, got 33" in _one_line(run)


# ---- finding 9: exit codes ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "words"),
    [
        ("99999999999g", "size too large"),  # OverflowError, exit 70 before
        ("65m", "at most 64m"),
        ("9" * 5000, "size too large"),
        ("\uff14k", "not a size"),  # a fullwidth 4: int() takes it, the probe must not
    ],
)
def test_cli_perf_block_size_is_bounded(size: str, words: str) -> None:
    run = run_cli("perf", "--block-size", size, "--quick", "--skip", "dns", "/")
    assert run.code == ExitCode.USAGE, run.stderr[:500]
    line = _one_line(run)
    assert line.startswith("pvectl: error: --block-size: ") and words in line


@pytest.mark.parametrize("where", ["/proc", "/sys"])
def test_cli_perf_on_a_virtual_filesystem_is_73_not_no_space(where: str) -> None:
    run = run_cli("perf", "--runtime", "1", "--skip", "dns", where)
    assert run.code == ExitCode.CANT_CREATE, run.stderr  # 74 "no space left" before
    line = _one_line(run)
    assert f"{where}: not a writable filesystem" in line and "no space" not in line


def test_cli_non_utf8_scenario_is_65(tmp_path: Path) -> None:
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("description: caf\u00e9\nup: 3\nsteps: [heal]\n".encode("latin-1"))
    run = run_cli("lab", "run", str(bad), env=_env(tmp_path))
    assert run.code == ExitCode.DATA, run.stderr  # 66 before
    assert f"{bad}:1: not UTF-8 text" in _one_line(run)


def test_cli_lab_run_on_a_directory_says_so(tmp_path: Path) -> None:
    folder = tmp_path / "scenarios"
    folder.mkdir()
    for command in ("run", "compare"):
        run = run_cli("lab", command, str(folder), env=_env(tmp_path))
        assert run.code == ExitCode.NO_INPUT, run.stderr
        line = _one_line(run)  # "no such scenario file" before
        assert f"{folder}: is a directory" in line and "no such" not in line


@pytest.mark.parametrize(
    ("quorum", "line", "words"),
    [
        (
            "  expected_votes: -5\n",
            22,
            '"quorum.expected_votes" is expected to be integer in range (0..4294967295), but "-5"',
        ),
        ("  expected_votes: \u0665\n", 22, '"quorum.expected_votes" is expected to be integer'),
        ("  expected_votes: 99999999999999999999\n", 22, "in range (0..4294967295)"),
        ("  expected_votes: 0x10\n", 22, 'but "0x10" was given'),  # corosync reads base 10 only
        ("  two_node: 256\n", 22, '"quorum.two_node" is expected to be integer in range (0..255)'),
        ("  device {\n    model: net\n    votes: 99999999999\n  }\n", 24, "device.votes must be"),
    ],
)
def test_quorum_numbers_are_read_as_corosync_reads_them(quorum: str, line: int, words: str) -> None:
    from pvectl.quorum.votequorum import QuorumConfigError

    text = _conf(["1", "2", "3"]).replace(
        "  provider: corosync_votequorum\n", "  provider: corosync_votequorum\n" + quorum
    )
    with pytest.raises(QuorumConfigError) as caught:  # accepted before, exit 0
        quorum_conf.options_from_config(corosync_conf.parse(text, "c.conf"), "c.conf")
    assert str(caught.value).startswith(f"c.conf:{line}: ") and words in str(caught.value)
