"""Every JSON document the CLI prints has a committed schema, and matches it.

The commands run as real processes against a real embedded lab (3 nodes and a qnetd), a
real FUSE mount and a real disk; the documents that need SSH to several hosts or a real
corosync-qdevice are validated where those tests run them (test_ssh_cli.py,
test_qdevice_setup_ssh.py, test_qdevice_interop.py), and a guard below checks that every
kind is validated somewhere.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pvectl.cli import docs, schemas
from pvectl.cli.output import DOCUMENTS
from tests.conftest import run_cli
from tests.helpers.json_schema import validate, validated

TESTS = Path(__file__).resolve().parent
LAB = f"tjs{os.getpid() % 100000}"

# Each command with --output-format, and the document kinds it prints.
COMMAND_KINDS: dict[tuple[str, ...], tuple[str, ...]] = {
    ("status",): ("status", "status-hosts"),
    ("nodes",): ("nodes", "nodes-hosts"),
    ("expected",): ("expected",),
    ("sync-trace",): ("sync-trace",),
    ("perf",): ("perf", "perf-hosts"),
    ("check",): ("check",),
    ("quorum", "what-if"): ("what-if",),
    ("lab", "up"): ("lab-up",),
    ("lab", "ls"): ("lab-ls",),
    ("lab", "kill"): ("lab-ring-change",),
    ("lab", "stop"): ("lab-ring-change",),
    ("lab", "start"): ("lab-ring-change",),
    ("lab", "pause"): ("lab-ring-change",),
    ("lab", "partition"): ("lab-partition",),
    ("lab", "mount"): ("lab-mount",),
    ("lab", "compare"): ("lab-scenario",),
    ("lab", "run"): ("lab-scenario",),
    ("lab", "fs", "ls"): ("lab-fs-ls",),
    ("qdevice", "clients"): ("qdevice-clients",),
    ("qdevice", "setup"): ("qdevice-change",),
    ("qdevice", "remove"): ("qdevice-change",),
    ("qdevice", "status"): ("qdevice-status", "qdevice-status-hosts"),
    ("watch",): ("watch",),
}


def test_every_command_with_output_format_has_a_schema() -> None:
    printing = {
        doc.path
        for doc in docs.walk()
        if any("--output-format" in option.names for option in doc.options)
    }
    assert printing, "no command found with --output-format: the walk is broken"
    unknown = printing - set(COMMAND_KINDS)
    assert not unknown, f"commands print JSON but name no schema here: {sorted(unknown)}"
    assert set(COMMAND_KINDS) <= printing, "COMMAND_KINDS lists a command that prints no JSON"
    kinds = {kind for found in COMMAND_KINDS.values() for kind in found}
    assert kinds == set(DOCUMENTS) == set(schemas.KINDS)
    for kind in kinds:
        assert schemas.schema_path(kind).exists(), f"docs/schema has no {kind}.schema.json"


def test_committed_schemas_are_fresh(capsys: pytest.CaptureFixture[str]) -> None:
    assert schemas.main([]) == 0, capsys.readouterr().out


def test_every_kind_is_validated_against_real_output_somewhere() -> None:
    """A kind no test validates could drift from its schema unnoticed."""
    source = "\n".join(p.read_text(encoding="utf-8") for p in TESTS.glob("test_*.py"))
    used = set(re.findall(r'validated?\([^()]*?,\s*"([a-z-]+)"\s*\)', source, re.S))
    used |= set(re.findall(r'_json\(\s*env,\s*"([a-z-]+)"', source))
    assert set(DOCUMENTS) - used == set()


def test_schema_version_policy() -> None:
    for kind, spec in DOCUMENTS.items():
        schema = schemas.schema_for(kind)
        assert schema["properties"]["schema_version"]["const"] == spec.version
        assert schema["required"][0] == "schema_version"
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def _needs(*programs: str) -> str | None:
    missing = [p for p in programs if shutil.which(p) is None]
    return f"needs {', '.join(missing)}" if missing else None


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    runtime = tmp_path_factory.mktemp("xdg")
    environ = dict(os.environ, XDG_RUNTIME_DIR=str(runtime), NO_COLOR="1")
    yield environ
    run_cli("lab", "down", "--name", LAB, env=environ)


def _json(env: dict[str, str], kind: str, *args: str, codes: tuple[int, ...] = (0,)) -> Any:
    run = run_cli(*args, "--output-format", "json", env=env)
    assert run.code in codes, f"{args}: exit {run.code}: {run.stderr}"
    return validated(run.stdout, kind)


def _wait_members(env: dict[str, str], members: list[int]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        doc = json.loads(
            run_cli("lab", "ls", "--name", LAB, "--output-format", "json", env=env).stdout
        )
        if all(n["members"] == members for n in doc["labs"][0]["nodes"] if n["running"]):
            return
        time.sleep(0.2)
    raise AssertionError(f"lab never settled on {members}")


@pytest.mark.slow
def test_every_lab_document_matches_its_schema(env: dict[str, str], tmp_path: Path) -> None:
    up = _json(env, "lab-up", "lab", "up", "3", "--name", LAB, "--token", "400", "--qdevice")
    assert up["name"] == LAB and len(up["nodes"]) == 3
    _wait_members(env, [1, 2, 3])
    status = _json(env, "status", "status", "--target", "lab", "--name", LAB)
    assert status["totem_token_ms"] == 525 and status["totem_consensus_ms"] == 630
    assert status["qdevice"] is not None
    with_what_if = _json(env, "status", "status", "--target", "lab", "--name", LAB, "--what-if")
    assert with_what_if["what_if"]["failures"]
    _json(env, "nodes", "nodes", "--target", "lab", "--name", LAB)
    _json(env, "check", "check", "--target", "lab", "--name", LAB, "--no-fsync", codes=(0, 1))
    listing = _json(env, "lab-ls", "lab", "ls", "--name", LAB)
    assert listing["labs"][0]["qnetd"]
    sockets = list(Path(up["state_dir"]).rglob("qnetd.sock"))
    assert sockets, f"no qnetd.sock under {up['state_dir']}"
    qnetd_sock = sockets[0]
    clients = _json(
        env, "qdevice-clients", "qdevice", "clients", "--control-socket", str(qnetd_sock)
    )
    assert clients["clusters"], clients

    assert run_cli("lab", "fs", "mkdir", "1", "/dir", "--name", LAB, env=env).code == 0
    entries = _json(env, "lab-fs-ls", "lab", "fs", "ls", "1", "/", "--name", LAB)
    assert "dir" in {e["name"] for e in entries["entries"]}
    trace = _json(env, "sync-trace", "sync-trace", "--name", LAB, "--count", "2", "--settle", "1")
    assert trace["writes"]

    stop = _json(env, "lab-ring-change", "lab", "stop", "3", "--name", LAB)
    assert stop["members"] == [1, 2] and stop["seconds"] > 0
    _json(env, "expected", "expected", "3", "--target", "lab", "--name", LAB)
    start = _json(env, "lab-ring-change", "lab", "start", "3", "--name", LAB)
    assert start["members"] == [1, 2, 3]
    _json(env, "lab-ring-change", "lab", "pause", "2", "0.2", "--name", LAB)
    split = _json(env, "lab-partition", "lab", "partition", "1,2", "3", "--name", LAB)
    assert [r["members"] for r in split["rings"]] == [[1, 2], [3]]
    assert run_cli("lab", "heal", "--name", LAB, env=env).code == 0
    _json(env, "lab-ring-change", "lab", "kill", "2", "--name", LAB)

    if os.path.exists("/dev/fuse") and shutil.which("fusermount3"):
        mountpoint = tmp_path / "mnt"
        mountpoint.mkdir()
        _json(env, "lab-mount", "lab", "mount", "1", str(mountpoint), "--name", LAB)
        assert run_cli("lab", "umount", str(mountpoint), env=env).code == 0


@pytest.mark.slow
def test_scenario_perf_and_what_if_documents(env: dict[str, str], tmp_path: Path) -> None:
    _json(env, "what-if", "quorum", "what-if", "--nodes", "5")
    run = _json(
        env, "lab-scenario", "lab", "run", "three-lose-one", "--name", f"{LAB}r", codes=(0, 1)
    )
    assert run["runs"] and run["scenario"] == "three-lose-one"
    quick = ["--runtime", "0.5", "--file-size", "1m", "--skip", "dns", str(tmp_path)]
    perf = _json(env, "perf", "perf", *quick)
    assert perf["durable"]
    as_yaml = run_cli("perf", *quick, "--output-format", "yaml", env=env)
    validate(yaml.safe_load(as_yaml.stdout), "perf")


def test_a_document_of_an_unknown_kind_is_refused() -> None:
    from pvectl.cli.output import OutputFormat, serialize

    with pytest.raises(KeyError):
        serialize({"x": 1}, OutputFormat.json, "no-such-kind")
