"""Failure scenarios for ``pvectl lab run`` / ``lab compare``: the YAML format, its strict
parser, what a run observes, and the comparison of two runs. Pure: no clock, no lab.

A scenario file::

    description: 3 nodes, one crashes; the two survivors keep quorum
    up: {nodes: 3, token: 1000}          # also two_node, wait_for_all, votes, qdevice
    steps:
      - kill: 3                          # SIGKILL; also stop / start NODE
      - expect: {node: 1, quorate: true, members: [1, 2], total_votes: 2, quorum: 2}
      - pause: {node: 2, seconds: 3}
      - partition: [[1], [2]]
      - heal
      - expected: {node: 1, votes: 1}    # or 'expected: 1' (asks node 1)
      - wait: 2                          # seconds
      - wait: {node: 1, members: [1, 2], timeout: 10}   # wait for a view (also quorate)

Every step's line is kept, so an unknown step or key is a one-line error naming it.
"""

from __future__ import annotations

import reprlib
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from pvectl.errors import ConfigError, ExitCode, UsageError
from pvectl.input_files import KIB, read_text
from pvectl.lab import quorum_setup

MAX_NODES = 16
MAX_FILE_BYTES = 64 * KIB  # the shipped ones are under 1 KiB; pure-Python YAML: ~0.5 s
MAX_DEPTH = 16  # the deepest valid shape (a partition group) is 5 levels
MAX_MESSAGE = 300  # characters of one error line
UP_KEYS = ("nodes", "token", "two_node", "wait_for_all", "votes", "qdevice", "quorum", "start")
QDEVICE_KEYS = ("algorithm", "votes", "start")
EXPECT_KEYS = (
    "node",
    "quorate",
    "members",
    "total_votes",
    "expected_votes",
    "quorum",
    "flags",
)
WAIT_FOR_KEYS = ("node", "members", "quorate", "timeout")


# ---- the format -------------------------------------------------------------------------


@dataclass(frozen=True)
class UpSpec:
    nodes: int
    token: int | None = None
    two_node: bool = False
    wait_for_all: bool | None = None
    votes: tuple[int, ...] = ()
    qdevice: bool = False
    quorum: tuple[tuple[str, str], ...] = ()  # corosync.conf quorum keys, as written
    start: tuple[int, ...] | None = None  # the nodes ``up`` starts (None: all)
    qdevice_algorithm: str = "ffsplit"
    qdevice_votes: int | None = None
    qdevice_start: bool = True


@dataclass(frozen=True)
class Step:
    """One scenario step. ``action`` is the YAML key; the other fields apply by action:
    kill/stop/start (node), pause (node, seconds), partition (groups), heal, expected
    (node, votes), qdevice/qnetd (``word``: start or stop), wait (seconds, or node +
    members/quorate + timeout), expect (node + the assertion fields that are not None)."""

    action: str
    line: int
    node: int | None = None
    seconds: float | None = None
    groups: tuple[tuple[int, ...], ...] = ()
    votes: int | None = None
    members: tuple[int, ...] | None = None
    quorate: bool | None = None
    total_votes: int | None = None
    expected_votes: int | None = None
    quorum: int | None = None
    flags: tuple[str, ...] | None = None
    timeout: float | None = None
    word: str = ""

    def describe(self) -> str:
        if self.action in ("qdevice", "qnetd"):
            return f"{self.action} {self.word}"
        if self.action in ("kill", "stop", "start"):
            return f"{self.action} {self.node}"
        if self.action == "pause":
            return f"pause {self.node} for {self.seconds:g} s"
        if self.action == "partition":
            return "partition " + " | ".join(",".join(map(str, g)) for g in self.groups)
        if self.action == "heal":
            return "heal"
        if self.action == "expected":
            return f"expected {self.votes} on node {self.node}"
        if self.action == "wait" and self.timeout is None:
            return f"wait {self.seconds:g} s"
        if self.action == "wait":
            want = []
            if self.members is not None:
                want.append("members " + ",".join(map(str, self.members)))
            if self.quorate is not None:
                want.append("quorate" if self.quorate else "not quorate")
            return f"wait for node {self.node}: {', '.join(want)} (<= {self.timeout:g} s)"
        checks = [
            f"{key} {_show(getattr(self, key))}"
            for key in EXPECT_KEYS[1:]
            if getattr(self, key) is not None
        ]
        return f"expect node {self.node}: " + ", ".join(checks)


@dataclass(frozen=True)
class Scenario:
    name: str
    path: str
    description: str
    up: UpSpec
    steps: tuple[Step, ...]


def _show(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, tuple):
        return "[" + ",".join(str(v) for v in value) + "]"
    return str(value)


# ---- parsing ----------------------------------------------------------------------------


class _Source:
    """The file's name and the line of every YAML node, for errors that name the line."""

    def __init__(self, path: str) -> None:
        self.path = path

    def error(self, line: int, message: str) -> ConfigError:
        one_line = " ".join(message.split())
        if len(one_line) > MAX_MESSAGE:
            one_line = one_line[: MAX_MESSAGE - 3] + "..."
        return ConfigError(one_line, self.path, line)


_ECHO = reprlib.Repr()
_ECHO.maxstring = _ECHO.maxother = 40
_ECHO.maxlist = _ECHO.maxtuple = _ECHO.maxdict = _ECHO.maxset = 6
_ECHO.maxlevel = 3


def _echo(value: object) -> str:
    """A value from the file, shown in an error: bounded, whatever its size (a plain
    ``repr`` of an expanded alias bomb was half a gigabyte; ``str`` of a 5000-digit int
    raises)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"a {value.bit_length()}-bit number"
    try:
        return _ECHO.repr(value)
    except ValueError:  # a huge int inside a list
        return f"a {type(value).__name__}"


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _mapping_items(node: yaml.Node) -> dict[str, tuple[yaml.Node, yaml.Node]]:
    assert isinstance(node, yaml.MappingNode)
    return {str(k.value): (k, v) for k, v in node.value}


def _int(src: _Source, node: yaml.Node, value: object, what: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise src.error(_line(node), f"{what} must be an integer, got {_echo(value)}")
    if not low <= value <= high:
        raise src.error(_line(node), f"{what} must be between {low} and {high}, got {_echo(value)}")
    return value


def _seconds(src: _Source, node: yaml.Node, value: object, what: str, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= high:
        raise src.error(_line(node), f"{what} must be a number of seconds in (0, {high:g}]")
    return float(value)


def _bool(src: _Source, node: yaml.Node, value: object, what: str) -> bool:
    if not isinstance(value, bool):
        raise src.error(_line(node), f"{what} must be true or false, got {_echo(value)}")
    return value


def _ids(src: _Source, node: yaml.Node, value: object, what: str, nodes: int) -> tuple[int, ...]:
    if not isinstance(value, list):
        raise src.error(_line(node), f"{what} must be a list of node ids, e.g. [1, 2]")
    ids = tuple(_int(src, node, v, f"{what} entry", 1, nodes) for v in value)
    if len(set(ids)) != len(ids):
        raise src.error(_line(node), f"{what} lists a node twice")
    return tuple(sorted(ids))


def _check_keys(
    src: _Source,
    items: Mapping[str, tuple[yaml.Node, yaml.Node]],
    allowed: Sequence[str],
    what: str,
) -> None:
    for key, (key_node, _) in items.items():
        if key not in allowed:
            raise src.error(
                _line(key_node), f"unknown key {_echo(key)} in {what} (known: {', '.join(allowed)})"
            )


def load(path: str | Path) -> Scenario:
    """Read and validate a scenario file: 66 missing or a directory, 77 not readable,
    74 I/O error, 65 not a valid scenario (too large, not UTF-8, bad YAML or content)."""
    file = Path(path)
    text = read_text(file, "scenario file", MAX_FILE_BYTES)
    return parse(text, str(file), name=file.stem)


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader without what a scenario never needs and a hostile file uses:
    aliases (a 415-byte "billion laughs" file expands to hundreds of megabytes), explicit
    tags and merge keys (some constructors fail with plain Python errors), duplicate keys
    (the last one would silently win), and nesting deeper than ``MAX_DEPTH`` (recursion).
    Every refusal is a ``yaml.MarkedYAMLError`` with the line."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self._depth = 0

    def fetch_flow_collection_start(self, token_class: type) -> None:
        # Refused in the scanner already: its simple-key lookahead over thousands of
        # open brackets is quadratic (0.3 s for 3000 '[') before the composer sees one.
        if self.flow_level >= MAX_DEPTH:
            raise _refused(f"nested deeper than {MAX_DEPTH} levels", self.get_mark())
        super().fetch_flow_collection_start(token_class)

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event: yaml.Event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent):
            raise _refused("aliases (*name) are not allowed in a scenario", event.start_mark)
        tag = getattr(event, "tag", None)
        if tag not in (None, "!"):
            shown = _echo(str(tag).replace("tag:yaml.org,2002:", "!!"))
            raise _refused(f"tags ({shown}) are not allowed in a scenario", event.start_mark)
        if self._depth >= MAX_DEPTH:
            raise _refused(f"nested deeper than {MAX_DEPTH} levels", event.start_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> object:
        try:
            return super().construct_object(node, deep)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            # e.g. an implicit timestamp 2024-13-45, an integer of 5000 digits
            shown = _echo(node.value) if isinstance(node, yaml.ScalarNode) else "here"
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read the value {shown}", node.start_mark
            ) from exc

    def construct_mapping(
        self, node: yaml.MappingNode, deep: bool = False
    ) -> dict[Hashable, object]:
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise _refused("merge keys (<<) are not allowed in a scenario", key_node.start_mark)
        mapping: dict[Hashable, object] = super().construct_mapping(node, deep)
        if len(mapping) != len(node.value):
            seen: set[object] = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node)
                if key in seen:
                    raise _refused(f"duplicate key {_echo(key)}", key_node.start_mark)
                seen.add(key)
        return mapping


class _Refused(yaml.MarkedYAMLError):
    """Valid YAML (mostly) that a scenario does not accept."""


def _refused(problem: str, mark: Any) -> _Refused:  # PyYAML has two Mark classes
    return _Refused(None, None, problem, mark)


def _load_yaml(src: _Source, text: str) -> tuple[yaml.Node | None, object]:
    """The node tree (for lines) and the data built from that same tree."""
    loader: _StrictLoader | None = None
    try:
        loader = _StrictLoader(text)  # checks the characters already
        root = loader.get_single_node()
        return root, (loader.construct_document(root) if root is not None else None)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = int(mark.line) + 1 if mark is not None else 0
        if isinstance(exc, _Refused):
            raise src.error(line, str(exc.problem)) from exc
        said = ", ".join(str(part) for part in (exc.context, exc.problem) if part)
        raise src.error(line, f"not valid YAML: {said or 'cannot parse'}") from exc
    except yaml.reader.ReaderError as exc:  # a control character, a lone surrogate
        line = text.count("\n", 0, exc.position) + 1
        code = exc.character if isinstance(exc.character, int) else 0
        raise src.error(line, f"not valid YAML: character U+{code:04X} is not allowed") from exc
    except yaml.YAMLError as exc:
        raise src.error(0, f"not valid YAML: {_echo(str(exc))}") from exc
    finally:
        if loader is not None:
            loader.dispose()


def parse(text: str, path: str = "<scenario>", name: str = "scenario") -> Scenario:
    """Validate a scenario's text; every refusal is one ``ConfigError`` line (exit 65)
    naming the line where there is one."""
    src = _Source(path)
    root, data = _load_yaml(src, text)
    if not isinstance(data, dict) or root is None:
        raise src.error(1, "a scenario is a mapping with 'up' and 'steps'")
    items = _mapping_items(root)
    _check_keys(src, items, ("description", "up", "steps"), "the scenario")
    for required in ("up", "steps"):
        if required not in items:
            raise src.error(1, f"the scenario has no '{required}'")
    description = data.get("description") or ""
    if not isinstance(description, str):
        raise src.error(_line(items["description"][1]), "description must be text")
    up = _parse_up(src, items["up"][1], data["up"])
    steps_node, steps = items["steps"][1], data["steps"]
    if not isinstance(steps, list) or not steps:
        raise src.error(_line(steps_node), "steps must be a non-empty list")
    assert isinstance(steps_node, yaml.SequenceNode)
    parsed = tuple(
        _parse_step(src, node, value, up.nodes)
        for node, value in zip(steps_node.value, steps, strict=True)
    )
    for step in parsed:
        if step.action in ("qdevice", "qnetd") and not up.qdevice:
            raise src.error(step.line, f"{step.action} steps need a QDevice in up (qdevice: ...)")
    return Scenario(name, path, description.strip(), up, parsed)


def _parse_up(src: _Source, node: yaml.Node, value: object) -> UpSpec:
    if isinstance(value, int) and not isinstance(value, bool):
        return UpSpec(nodes=_int(src, node, value, "up", 1, MAX_NODES))
    if not isinstance(value, dict):
        raise src.error(_line(node), "up must be a node count or a mapping with 'nodes'")
    items = _mapping_items(node)
    _check_keys(src, items, UP_KEYS, "up")
    if "nodes" not in items:
        raise src.error(_line(node), "up needs 'nodes'")

    def at(key: str) -> yaml.Node:
        return items[key][1]

    nodes = _int(src, at("nodes"), value["nodes"], "up nodes", 1, MAX_NODES)
    token = value.get("token")
    votes = value.get("votes")
    spec = UpSpec(
        nodes=nodes,
        token=None if token is None else _int(src, at("token"), token, "token (ms)", 100, 60_000),
        two_node=_bool(src, at("two_node"), value["two_node"], "two_node")
        if "two_node" in value
        else False,
        wait_for_all=_bool(src, at("wait_for_all"), value["wait_for_all"], "wait_for_all")
        if value.get("wait_for_all") is not None
        else None,
        votes=() if votes is None else _votes(src, at("votes"), votes, nodes),
        qdevice=value.get("qdevice") not in (None, False),
    )
    spec = _parse_up_reach(src, items, value, spec)
    if spec.start is not None and any(n > nodes for n in spec.start):
        raise src.error(_line(at("start")), f"start lists a node above {nodes}")
    return spec


def _parse_up_reach(
    src: _Source,
    items: Mapping[str, tuple[yaml.Node, yaml.Node]],
    value: dict[str, Any],
    spec: UpSpec,
) -> UpSpec:
    """``quorum`` (corosync.conf keys and values), ``start`` and a ``qdevice`` mapping."""
    if "quorum" in items:
        node = items["quorum"][1]
        if not isinstance(node, yaml.MappingNode) or not isinstance(value["quorum"], dict):
            raise src.error(_line(node), "quorum must be a mapping of corosync.conf quorum keys")
        pairs: list[tuple[str, str]] = []
        for key_node, value_node in node.value:
            raw = value["quorum"][key_node.value]
            if isinstance(raw, bool) or not isinstance(raw, int | str):
                raise src.error(
                    _line(value_node), f"quorum {key_node.value}: give it as corosync.conf does"
                )
            try:
                pairs += quorum_setup.check_values({str(key_node.value): raw}, "quorum")
            except (UsageError, ConfigError) as exc:
                message = str(exc).removeprefix("quorum: ")
                raise src.error(_line(key_node), message) from exc
        spec = replace(spec, quorum=tuple(pairs))
    if "start" in items:
        node = items["start"][1]
        raw = value["start"]
        if not isinstance(raw, list) or not raw:
            raise src.error(_line(node), "start must be a non-empty list of node ids, e.g. [1, 2]")
        spec = replace(spec, start=_ids(src, node, raw, "start", MAX_NODES))
    raw_device = value.get("qdevice")
    if "qdevice" in items and isinstance(raw_device, dict):
        node = items["qdevice"][1]
        device = _mapping_items(node)
        _check_keys(src, device, QDEVICE_KEYS, "qdevice")
        if "algorithm" in device:
            algorithm = raw_device["algorithm"]
            if algorithm not in ("ffsplit", "lms"):
                raise src.error(
                    _line(device["algorithm"][1]), "qdevice algorithm must be ffsplit or lms"
                )
            spec = replace(spec, qdevice_algorithm=algorithm)
        if "votes" in device:
            votes = _int(src, device["votes"][1], raw_device["votes"], "qdevice votes", 1, 65535)
            spec = replace(spec, qdevice_votes=votes)
        if "start" in device:
            start = _bool(src, device["start"][1], raw_device["start"], "qdevice start")
            spec = replace(spec, qdevice_start=start)
    elif "qdevice" in items and not isinstance(raw_device, bool):
        raise src.error(
            _line(items["qdevice"][1]),
            "qdevice must be true/false or a mapping of algorithm, votes, start",
        )
    return spec


def _votes(src: _Source, node: yaml.Node, value: object, nodes: int) -> tuple[int, ...]:
    if not isinstance(value, list) or len(value) != nodes:
        raise src.error(_line(node), f"votes must list one value per node ({nodes})")
    return tuple(_int(src, node, v, "votes entry", 0, 255) for v in value)


_SIMPLE_NODE_STEPS = ("kill", "stop", "start")
_SWITCH_STEPS = ("qdevice", "qnetd")
STEP_NAMES = (
    *_SIMPLE_NODE_STEPS,
    "pause",
    "partition",
    "heal",
    "expected",
    "wait",
    "expect",
    *_SWITCH_STEPS,
)


def _parse_step(src: _Source, node: yaml.Node, value: object, nodes: int) -> Step:
    line = _line(node)
    if isinstance(value, str):
        if value == "heal":
            return Step("heal", line)
        raise src.error(line, f"unknown step {_echo(value)} (known: {', '.join(STEP_NAMES)})")
    if not isinstance(value, dict) or len(value) != 1:
        raise src.error(line, "a step is one 'action: argument' pair, e.g. '- kill: 3'")
    ((action, arg),) = value.items()
    ((key_node, arg_node),) = node.value
    if action not in STEP_NAMES:
        raise src.error(
            _line(key_node), f"unknown step {_echo(action)} (known: {', '.join(STEP_NAMES)})"
        )
    if action in _SIMPLE_NODE_STEPS:
        return Step(action, line, node=_int(src, arg_node, arg, f"{action} NODE", 1, nodes))
    if action in _SWITCH_STEPS:
        if arg not in ("start", "stop"):
            raise src.error(line, f"{action} takes start or stop, got {_echo(arg)}")
        return Step(action, line, word=str(arg))
    if action == "heal":
        if arg not in (None, {}, True):
            raise src.error(line, "heal takes no argument")
        return Step("heal", line)
    if action == "partition":
        return Step("partition", line, groups=_groups(src, arg_node, arg, nodes))
    if action == "expected":
        if isinstance(arg, int) and not isinstance(arg, bool):
            votes = _int(src, arg_node, arg, "expected VOTES", 1, 65535)
            return Step("expected", line, node=1, votes=votes)
        items = _step_mapping(src, arg_node, arg, ("node", "votes"), "expected")
        if "votes" not in items:
            raise src.error(line, "expected needs 'votes'")
        return Step(
            "expected",
            line,
            node=_int(src, items["node"], arg["node"], "expected node", 1, nodes)
            if "node" in arg
            else 1,
            votes=_int(src, items["votes"], arg["votes"], "expected votes", 1, 65535),
        )
    if action == "pause":
        items = _step_mapping(src, arg_node, arg, ("node", "seconds"), "pause")
        for key in ("node", "seconds"):
            if key not in items:
                raise src.error(line, f"pause needs '{key}'")
        return Step(
            "pause",
            line,
            node=_int(src, items["node"], arg["node"], "pause node", 1, nodes),
            seconds=_seconds(src, items["seconds"], arg["seconds"], "pause seconds", 600),
        )
    if action == "wait":
        if not isinstance(arg, dict):
            return Step("wait", line, seconds=_seconds(src, arg_node, arg, "wait", 600))
        items = _step_mapping(src, arg_node, arg, WAIT_FOR_KEYS, "wait")
        if "members" not in arg and "quorate" not in arg:
            raise src.error(line, "wait for a view needs 'members' and/or 'quorate'")
        return Step(
            "wait",
            line,
            node=_int(src, items["node"], arg["node"], "wait node", 1, nodes)
            if "node" in arg
            else 1,
            members=_ids(src, items["members"], arg["members"], "members", nodes)
            if "members" in arg
            else None,
            quorate=_bool(src, items["quorate"], arg["quorate"], "quorate")
            if "quorate" in arg
            else None,
            timeout=_seconds(src, items["timeout"], arg["timeout"], "timeout", 600)
            if "timeout" in arg
            else 30.0,
        )
    items = _step_mapping(src, arg_node, arg, EXPECT_KEYS, "expect")
    if "node" not in arg:
        raise src.error(line, "expect needs 'node' (whose view is checked)")
    if len(arg) == 1:
        raise src.error(line, "expect needs at least one of " + ", ".join(EXPECT_KEYS[1:]))
    flags = arg.get("flags")
    if flags is not None and (
        not isinstance(flags, list) or not all(isinstance(f, str) for f in flags)
    ):
        raise src.error(_line(items["flags"]), "flags must be a list of names, e.g. [Quorate]")

    def number(key: str) -> int | None:
        return _int(src, items[key], arg[key], key, 0, 65535) if key in arg else None

    return Step(
        "expect",
        line,
        node=_int(src, items["node"], arg["node"], "expect node", 1, nodes),
        quorate=_bool(src, items["quorate"], arg["quorate"], "quorate")
        if "quorate" in arg
        else None,
        members=_ids(src, items["members"], arg["members"], "members", nodes)
        if "members" in arg
        else None,
        total_votes=number("total_votes"),
        expected_votes=number("expected_votes"),
        quorum=number("quorum"),
        flags=tuple(sorted(flags)) if flags is not None else None,
    )


def _step_mapping(
    src: _Source, node: yaml.Node, value: object, allowed: Sequence[str], action: str
) -> dict[str, yaml.Node]:
    if not isinstance(value, dict):
        raise src.error(_line(node), f"{action} takes a mapping of {', '.join(allowed)}")
    items = _mapping_items(node)
    _check_keys(src, items, allowed, action)
    return {key: v for key, (_, v) in items.items()}


def _groups(
    src: _Source, node: yaml.Node, value: object, nodes: int
) -> tuple[tuple[int, ...], ...]:
    if not isinstance(value, list) or len(value) < 2:
        raise src.error(_line(node), "partition takes two or more groups, e.g. [[1, 2], [3]]")
    groups = tuple(_ids(src, node, g, "partition group", nodes) for g in value)
    seen = [n for g in groups for n in g]
    if len(seen) != len(set(seen)):
        raise src.error(_line(node), "partition groups must not overlap")
    if any(not g for g in groups):
        raise src.error(_line(node), "a partition group is empty")
    rest = tuple(n for n in range(1, nodes + 1) if n not in seen)
    return (*groups, rest) if rest else groups


# ---- what a run observes ----------------------------------------------------------------


@dataclass(frozen=True)
class NodeState:
    """One running node's quorum decision: what ``corosync-quorumtool -s`` shows."""

    node_id: int
    members: tuple[int, ...]
    quorate: bool
    total_votes: int
    expected_votes: int
    quorum: int
    flags: tuple[str, ...]


@dataclass(frozen=True)
class Check:
    """An ``expect`` field: what the scenario wants and what the node showed."""

    key: str
    want: str
    got: str
    ok: bool


@dataclass(frozen=True)
class StepResult:
    """One step on one engine. ``seconds``: from the start of the step until every
    running node's view had settled (detection + new ring + quorum); None: not settled."""

    index: int
    line: int
    step: str
    seconds: float | None
    nodes: tuple[NodeState, ...]
    checks: tuple[Check, ...] = ()
    error: str | None = None
    dropped_after: float | None = None  # pause: when the others had removed the node
    refused: str | None = None  # expected: the cluster refused the change (a decision too)
    disagreements: tuple[str, ...] = ()  # members of one ring that decided differently

    @property
    def passed(self) -> bool:
        return self.error is None and all(c.ok for c in self.checks)


@dataclass(frozen=True)
class EngineRun:
    engine: str
    lab: str
    skipped: str | None = None  # why this engine could not run the scenario
    up_seconds: float | None = None
    steps: tuple[StepResult, ...] = ()
    error: str | None = None  # the run stopped here

    @property
    def passed(self) -> bool:
        return self.skipped is None and self.error is None and all(s.passed for s in self.steps)


QUORUM_FIELDS = ("members", "quorate", "total_votes", "expected_votes", "quorum", "flags")


def node_state(
    node_id: int,
    members: Sequence[int],
    quorate: bool,
    total_votes: int,
    expected_votes: int,
    quorum: int,
    flags: Sequence[str],
) -> NodeState:
    return NodeState(
        node_id,
        tuple(sorted(members)),
        quorate,
        total_votes,
        expected_votes,
        quorum,
        tuple(sorted(flags)),
    )


def check_expect(step: Step, states: Sequence[NodeState]) -> tuple[Check, ...]:
    """The assertions of an ``expect`` step against the views a run observed."""
    assert step.action == "expect" and step.node is not None
    state = next((s for s in states if s.node_id == step.node), None)
    checks = []
    for key in EXPECT_KEYS[1:]:
        want = getattr(step, key)
        if want is None:
            continue
        got = "not running" if state is None else _show(getattr(state, key))
        ok = state is not None and getattr(state, key) == want
        checks.append(Check(key, _show(want), got, ok))
    return tuple(checks)


def settled(states: Sequence[NodeState], running: Sequence[int]) -> bool:
    """Every running node answers, and the nodes of each view agree on that view and on
    its quorum: the ring has reformed and votequorum has run on it."""
    return formed(states, running) and not disagreements(states)


def formed(states: Sequence[NodeState], running: Sequence[int]) -> bool:
    """Every running node answers and the membership has re-formed: each node is in its
    own view, and every member of a view shows that same member list. Members may still
    decide differently (corosync can stay so): see ``disagreements``."""
    by_id = {s.node_id: s for s in states}
    if set(by_id) != set(running):
        return False
    for state in states:
        if state.node_id not in state.members:
            return False
        for other_id in state.members:
            other = by_id.get(other_id)
            if other is None or other.members != state.members:
                return False
    return True


DECISION_FIELDS = ("quorate", "total_votes", "expected_votes", "quorum", "flags")


def disagreements(states: Sequence[NodeState]) -> tuple[str, ...]:
    """Where the members of one ring decided differently, one line per ring and field,
    e.g. ``ring 1,2,3: expected_votes 5 on node 1, 3 on nodes 2,3``."""
    found = []
    rings = sorted({s.members for s in states})
    for ring in rings:
        members = [s for s in states if s.members == ring]
        for key in DECISION_FIELDS:
            values: dict[str, list[int]] = {}
            for state in members:
                values.setdefault(_show(getattr(state, key)), []).append(state.node_id)
            if len(values) > 1:
                parts = [
                    f"{value} on node{'s' if len(ids) > 1 else ''} {','.join(map(str, ids))}"
                    for value, ids in sorted(values.items(), key=lambda item: item[1])
                ]
                found.append(f"ring {','.join(map(str, ring))}: {key} " + ", ".join(parts))
    return tuple(found)


# ---- comparing two runs -----------------------------------------------------------------


@dataclass(frozen=True)
class Difference:
    step: int  # 0: after up
    node_id: int
    key: str
    left: str
    right: str


@dataclass(frozen=True)
class StepComparison:
    index: int
    line: int
    step: str
    left: StepResult | None
    right: StepResult | None
    differences: tuple[Difference, ...]


@dataclass(frozen=True)
class Comparison:
    scenario: str
    path: str
    description: str
    engines: tuple[str, ...]
    runs: tuple[EngineRun, ...]
    steps: tuple[StepComparison, ...] = ()
    skipped: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def differences(self) -> tuple[Difference, ...]:
        return tuple(d for s in self.steps for d in s.differences)

    @property
    def agree(self) -> bool:
        return not self.differences and all(r.passed for r in self.runs if r.skipped is None)

    def exit_code(self) -> int:
        if self.skipped is not None:
            return int(ExitCode.UNAVAILABLE)
        return int(ExitCode.OK) if self.agree else int(ExitCode.ERROR)


def state_differences(
    index: int, left: Sequence[NodeState], right: Sequence[NodeState]
) -> tuple[Difference, ...]:
    """Every quorum-decision field that differs between the two engines, node by node;
    a node that runs on one side only is a difference too."""
    lefts = {s.node_id: s for s in left}
    rights = {s.node_id: s for s in right}
    found = []
    for node_id in sorted(set(lefts) | set(rights)):
        a, b = lefts.get(node_id), rights.get(node_id)
        if a is None or b is None:
            found.append(
                Difference(
                    index,
                    node_id,
                    "running",
                    "yes" if a else "no",
                    "yes" if b else "no",
                )
            )
            continue
        for key in QUORUM_FIELDS:
            va, vb = getattr(a, key), getattr(b, key)
            if va != vb:
                found.append(Difference(index, node_id, key, _show(va), _show(vb)))
    return tuple(found)


def compare(scenario: Scenario, runs: Sequence[EngineRun]) -> Comparison:
    """Step-by-step comparison of two runs of one scenario (or one run, shown alone)."""
    engines = tuple(r.engine for r in runs)
    base = Comparison(scenario.name, scenario.path, scenario.description, engines, tuple(runs))
    active = [r for r in runs if r.skipped is None]
    if not active:
        return replace(base, skipped="; ".join(r.skipped or "" for r in runs))
    left = active[0]
    right = active[1] if len(active) > 1 else None
    rows = []
    labels = ["up", *(s.describe() for s in scenario.steps)]
    lines = [0, *(s.line for s in scenario.steps)]
    for index, label in enumerate(labels):
        a = _step_at(left, index)
        b = _step_at(right, index) if right is not None else None
        diffs: tuple[Difference, ...] = ()
        if right is not None and a is not None and b is not None:
            diffs = state_differences(index, a.nodes, b.nodes)
            if (a.refused is None) != (b.refused is None):
                refused = Difference(
                    index, 0, "refused", _show(bool(a.refused)), _show(bool(b.refused))
                )
                diffs = (refused, *diffs)
        elif right is not None and (a is None) != (b is None):
            diffs = (Difference(index, 0, "reached", "yes" if a else "no", "yes" if b else "no"),)
        rows.append(StepComparison(index, lines[index], label, a, b, diffs))
    return replace(base, steps=tuple(rows))


def _step_at(run: EngineRun, index: int) -> StepResult | None:
    return next((s for s in run.steps if s.index == index), None)
