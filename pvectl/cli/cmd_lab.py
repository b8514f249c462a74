"""``pvectl lab ...``: start, break and inspect a rehearsal cluster. Thin: the engine
recorded in the lab's state does the work."""

from __future__ import annotations

import signal
from dataclasses import replace
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from pvectl.cli.helpfmt import PvectlTyper
from pvectl.cli.options import CommitLevel, OutputFormatOption
from pvectl.cli.output import OutputFormat, emit, stderr_console
from pvectl.errors import ExitCode, TargetUnavailable, UsageError
from pvectl.lab import engines
from pvectl.lab import state as lab_state

lab_app = PvectlTyper(
    name="lab",
    help="Run a rehearsal cluster on this machine and break it on purpose.",
    no_args_is_help=True,
)


class EngineChoice(StrEnum):
    embedded = "embedded"
    corosync = "corosync"


class Transport(StrEnum):
    knet = "knet"
    udpu = "udpu"


class Durability(StrEnum):
    fsync = "fsync"
    wal_normal = "wal-normal"


class Coupling(StrEnum):
    coupled = "coupled"
    decoupled = "decoupled"


class QdeviceAlgorithm(StrEnum):
    ffsplit = "ffsplit"
    lms = "lms"


class Qnetd(StrEnum):
    pvectl = "pvectl"
    corosync = "corosync"


class YesNo(StrEnum):
    yes = "yes"
    no = "no"


class QnetdAction(StrEnum):
    stop = "stop"
    start = "start"


NameOption = Annotated[
    str,
    typer.Option("--name", metavar="NAME", help="Lab name: several labs can run side by side."),
]
NodeArgument = Annotated[
    int, typer.Argument(metavar="NODE", help="Node id (1..N).", show_default=False)
]


def _say(message: str) -> None:
    stderr_console().print(message, markup=False, highlight=False)


def _parse_votes(text: str | None) -> tuple[int, ...]:
    if not text:
        return ()
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError as exc:
        raise UsageError(f"--votes {text!r}: give comma-separated integers, e.g. 1,1,2") from exc


def _ring_text(change: object) -> str:
    from pvectl.lab.reports import RingChange

    assert isinstance(change, RingChange)
    what = {
        "kill": "killed (SIGKILL)",
        "stop": "stopped (SIGTERM)",
        "start": "started",
        "pause": "resumed after pause",
    }[change.action]
    head = f"node {change.node_id} {what}"
    if change.action == "pause":
        head += (
            f" (the others dropped it after {change.dropped_after:.2f} s)"
            if change.dropped_after is not None
            else " (the others kept it in the ring)"
        )
    if not change.survivors:
        return head + "; no other node runs\n"
    if change.seconds is None:
        return head + "; the ring had not settled when pvectl stopped waiting\n"
    quorate = {True: "quorate", False: "NOT quorate", None: "quorate: unknown"}[change.quorate]
    members = ",".join(str(m) for m in change.members)
    when = "new ring after" if change.action in ("kill", "stop") else "in the ring after"
    return head + f"; {when} {change.seconds:.2f} s: members {members}, {quorate}\n"


@lab_app.command()
def up(
    nodes: Annotated[
        int | None,
        typer.Argument(
            metavar="N",
            help="Number of nodes (1-16); omitted with --config/--from-host.",
            show_default=False,
        ),
    ] = None,
    engine: Annotated[
        EngineChoice | None,
        typer.Option(
            "--engine",
            help="embedded (default: pvectl nodes on loopback, no root needed) or corosync "
            "(real corosync 3 in network namespaces, root).",
            case_sensitive=False,
        ),
    ] = None,
    name: NameOption = "default",
    transport: Annotated[
        Transport | None,
        typer.Option(
            "--transport",
            help="Totem transport (default: knet on the corosync engine; the embedded "
            "engine speaks udpu only).",
        ),
    ] = None,
    token: Annotated[
        int | None, typer.Option("--token", metavar="MS", help="totem token timeout in ms.")
    ] = None,
    two_node: Annotated[
        bool, typer.Option("--two-node", help="quorum two_node (same as --quorum two_node=1).")
    ] = False,
    wait_for_all: Annotated[
        bool | None,
        typer.Option("--wait-for-all/--no-wait-for-all", help="quorum wait_for_all."),
    ] = None,
    votes: Annotated[
        str | None, typer.Option("--votes", metavar="VOTES", help="Votes per node, e.g. 1,1,2.")
    ] = None,
    quorum: Annotated[
        list[str] | None,
        typer.Option(
            "--quorum",
            metavar="KEY=VALUE",
            help="A corosync.conf quorum key, repeatable: expected_votes, two_node, "
            "wait_for_all, last_man_standing, last_man_standing_window, auto_tie_breaker, "
            "auto_tie_breaker_node, allow_downscale, expected_votes_tracking "
            "(e.g. --quorum last_man_standing=1).",
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            metavar="PATH",
            help="Rehearse this corosync.conf: its nodelist (ids, names, votes), quorum "
            "(device included) and totem timing; the addresses are the lab's own.",
        ),
    ] = None,
    from_host: Annotated[
        str | None,
        typer.Option(
            "--from-host",
            metavar="HOST",
            help="Like --config, with the corosync.conf of a cluster node read over SSH "
            "([user@]host[:port]; /etc/pve/corosync.conf, else /etc/corosync/corosync.conf).",
        ),
    ] = None,
    start: Annotated[
        str | None,
        typer.Option(
            "--start",
            metavar="IDS",
            help="Only these nodes start (e.g. 1,2); the others stay down until 'lab start' "
            "(a cold start of a subset, what wait_for_all is about).",
        ),
    ] = None,
    subnet: Annotated[
        str | None,
        typer.Option(
            "--subnet",
            metavar="CIDR",
            help="The lab's /24 (default: a free one in 10.99.0.0/16).",
        ),
    ] = None,
    durability: Annotated[
        Durability,
        typer.Option(
            "--durability",
            help="Embedded config store: fsync every commit, or SQLite's WAL with "
            "synchronous=NORMAL.",
        ),
    ] = Durability.fsync,
    coupling: Annotated[
        Coupling,
        typer.Option(
            "--coupling",
            help="Embedded config store: coupled (fsync in the protocol loop, a slow disk "
            "stalls the token) or decoupled (group commit off the token path).",
        ),
    ] = Coupling.decoupled,
    qdevice: Annotated[
        bool,
        typer.Option(
            "--qdevice",
            help="Add a qnetd (see --qnetd; TLS) on the lab's network: embedded nodes run "
            "pvectl's qdevice client, the corosync engine the real corosync-qdevice.",
        ),
    ] = False,
    qdevice_algorithm: Annotated[
        QdeviceAlgorithm,
        typer.Option("--qdevice-algorithm", help="The QDevice's algorithm (with --qdevice)."),
    ] = QdeviceAlgorithm.ffsplit,
    qdevice_votes: Annotated[
        int | None,
        typer.Option(
            "--qdevice-votes",
            metavar="N",
            help="quorum.device.votes (default: as pvecm writes it).",
        ),
    ] = None,
    qdevice_start: Annotated[
        YesNo,
        typer.Option(
            "--qdevice-start",
            help="no: configured, but the qdevice daemons wait for 'lab qdevice start'.",
        ),
    ] = YesNo.yes,
    netmtu: Annotated[
        int | None,
        typer.Option(
            "--netmtu",
            metavar="BYTES",
            help="Embedded: totem netmtu in bytes (default 1400, as corosync); loopback "
            "carries up to 65507, which packs more messages per token visit.",
        ),
    ] = None,
    accelerated: Annotated[
        bool,
        typer.Option(
            "--accelerated",
            help="Embedded: the Accelerated Ring (totem accelerated: yes): a node passes the "
            "token before it multicasts its burst; corosync has no such option.",
        ),
    ] = False,
    hosts: Annotated[
        list[str] | None,
        typer.Option(
            "--host",
            metavar="HOST",
            help="Run the nodes on your own hosts over SSH ([user@]host[:port], repeat: one "
            "per node, or one host for all); they need python3 >= 3.11 only.",
        ),
    ] = None,
    addresses: Annotated[
        list[str] | None,
        typer.Option(
            "--address",
            metavar="ADDRESS",
            help="Ring address of each --host, in the same order (e.g. its corosync network); "
            "default: the address pvectl reached it at.",
        ),
    ] = None,
    port: Annotated[
        int,
        typer.Option(
            "--port",
            metavar="PORT",
            help="First UDP port of the nodes on a host (k nodes there: k ports).",
        ),
    ] = 5405,
    accept_new_host_key: Annotated[
        bool,
        typer.Option(
            "--accept-new-host-key",
            help="Record the host key of a host not yet in known_hosts (OpenSSH's "
            "accept-new). A changed key is refused even so.",
        ),
    ] = False,
    connect_timeout: Annotated[
        float,
        typer.Option(
            "--connect-timeout", metavar="SECONDS", help="Seconds to wait for each SSH connection."
        ),
    ] = 10.0,
    qnetd: Annotated[
        Qnetd,
        typer.Option(
            "--qnetd",
            help="With --qdevice, the qnetd: pvectl (pvectl qdevice serve) or corosync (the "
            "real corosync-qnetd from the Debian package corosync-qnetd, root).",
        ),
    ] = Qnetd.pvectl,
    qdevice_tls: Annotated[
        bool,
        typer.Option(
            "--qdevice-tls/--no-qdevice-tls",
            help="With --qdevice: TLS between qdevice and qnetd (client certificates).",
        ),
    ] = True,
    output_format: OutputFormatOption = OutputFormat.text,
) -> None:
    """Start an N-node lab and wait until its ring has formed."""
    lab_state.check_lab_name(name)
    chosen = engines.choose(engine.value if engine else None)
    module = engines.module_for(chosen)
    if not qdevice and (qnetd is not Qnetd.pvectl or not qdevice_tls):
        raise UsageError("--qnetd and --no-qdevice-tls go with --qdevice")
    if qdevice_start not in ("yes", "no"):
        raise UsageError(f"--qdevice-start takes yes or no, not {qdevice_start!r}")
    if not qdevice and (qdevice_start != "yes" or qdevice_votes is not None):
        raise UsageError("--qdevice-start and --qdevice-votes go with --qdevice")
    from pvectl.lab import conf_import, quorum_setup
    from pvectl.lab.options import EmbeddedUp, UpOptions

    if config is not None and from_host is not None:
        raise UsageError("--config and --from-host both name a corosync.conf: give one")
    imported = None
    if config is not None:
        imported = conf_import.read_file(config)
    elif from_host is not None:
        imported = conf_import.read_from_host(from_host, accept_new_host_key, connect_timeout)
    cluster = conf_import.up_fields(
        imported,
        nodes,
        quorum_setup.parse_assignments(quorum or ()),
        _parse_votes(votes),
        qdevice,
        token,
    )
    if imported is not None:
        _say(f"lab {name!r}: rehearsing {imported.source} ({imported.cluster_name})")
    # One options type for both engines; each engine refuses what it cannot honour.
    fields: dict[str, Any] = {
        **cluster,
        "start": quorum_setup.parse_ids(start),
        "transport": transport.value if transport else None,
        "two_node": two_node,
        "wait_for_all": wait_for_all,
        "subnet": subnet,
    }
    if qdevice:
        fields.update(
            qdevice=True,
            qdevice_algorithm=qdevice_algorithm.value,
            qdevice_start=qdevice_start is YesNo.yes,
            qdevice_votes=qdevice_votes,
            qnetd=qnetd.value,
            qdevice_tls=qdevice_tls,
        )
    options = UpOptions(
        **fields,
        embedded=EmbeddedUp(
            durability=durability.value,
            coupling=coupling.value,
            netmtu=netmtu,
            accelerated=accelerated,
            hosts=tuple(hosts or ()),
            addresses=tuple(addresses or ()),
            port=port,
            accept_new_host_key=accept_new_host_key,
            connect_timeout=connect_timeout,
        ),
    )
    from pvectl.progress import activity

    with activity(f"lab {name!r}: starting {nodes} node(s)") as shown:
        state = module.up(name, options, report=shown.say, progress=shown.now)
    emit(
        state,
        output_format,
        lambda: f"lab {name!r} is up: state in {state.state_dir}\n",
        kind="lab-up",
    )


@lab_app.command()
def down(name: NameOption = "default") -> None:
    """Stop every node, remove the lab's namespaces and state (also after a crash)."""
    lab_state.check_lab_name(name)
    removed = engines.for_lab(name).down(name, report=_say)
    if not removed:
        _say(f"lab {name!r}: nothing to remove")


@lab_app.command("ls")
def list_labs(
    name: Annotated[
        str | None, typer.Option("--name", metavar="NAME", help="Only this lab.")
    ] = None,
    output_format: OutputFormatOption = OutputFormat.text,
) -> None:
    """Labs with their nodes: pid, ring id, quorate, state dir."""
    names = [name] if name else [lab.name for lab in lab_state.all_labs()]
    views = [engines.for_lab(n).view(lab_state.check_lab_name(n)) for n in names]

    def text() -> str:
        if not views:
            return "no lab is up\n"
        out = []
        for lab in views:
            out.append(
                f"lab {lab.name} (engine {lab.engine}, {lab.transport}, {lab.subnet}): "
                f"{lab.state_dir}\n"
            )
            if getattr(lab, "qnetd", None):
                out.append(f"  {lab.qnetd}\n")
            width = max((len(n.host) for n in lab.nodes), default=0)
            host_head = f"{'host':<{width + 2}}" if width else ""
            out.append(
                f"  {'node':<6}{host_head}{'address':<16}{'pid':>8}  {'ring id':<10}"
                f"{'quorate':<9}members\n"
            )
            for node in lab.nodes:
                quorate = {True: "yes", False: "no", None: "-"}[node.quorate]
                if node.paused:
                    quorate = "paused"
                host = f"{node.host:<{width + 2}}" if width else ""
                if node.unreachable is not None:
                    out.append(
                        f"  {node.node_id:<6}{host}{node.address:<16}unreachable (host "
                        f"{node.host or 'localhost'}: {node.unreachable})\n"
                    )
                    continue
                out.append(
                    f"  {node.node_id:<6}{host}{node.address:<16}{node.pid or '-':>8}  "
                    f"{node.ring_id or '-':<10}{quorate:<9}"
                    f"{','.join(str(m) for m in node.members) or '-'}\n"
                )
        return "".join(out)

    emit(views, output_format, text, kind="lab-ls")
    lost = [
        f"lab {lab.name!r}: node {n.node_id} on {n.host}: unreachable"
        for lab in views
        for n in lab.nodes
        if n.unreachable is not None
    ]
    if lost:
        for line in lost:
            _say(f"pvectl: warning: {line}")
        raise typer.Exit(int(ExitCode.ERROR))


def _fault(action: str, name: str, node: int, output_format: OutputFormat) -> None:
    module = engines.for_lab(lab_state.check_lab_name(name))
    if action == "start":
        change = module.start_node(name, node)
    else:
        sig = signal.SIGKILL if action == "kill" else signal.SIGTERM
        change = module.stop_node(name, node, sig)
    emit(change, output_format, lambda: _ring_text(change), kind="lab-ring-change")


@lab_app.command("kill")
def kill_node(
    node: NodeArgument,
    name: NameOption = "default",
    output_format: OutputFormatOption = OutputFormat.text,
) -> None:
    """Crash a node (SIGKILL) and report when the survivors formed the new ring."""
    _fault("kill", name, node, output_format)


@lab_app.command("stop")
def stop_node(
    node: NodeArgument,
    name: NameOption = "default",
    output_format: OutputFormatOption = OutputFormat.text,
) -> None:
    """Stop a node cleanly (SIGTERM: it says goodbye to the ring)."""
    _fault("stop", name, node, output_format)


@lab_app.command("start")
def start_node(
    node: NodeArgument,
    name: NameOption = "default",
    output_format: OutputFormatOption = OutputFormat.text,
) -> None:
    """Start a stopped node and report when it has joined the ring."""
    _fault("start", name, node, output_format)


@lab_app.command()
def pause(
    node: NodeArgument,
    seconds: Annotated[float, typer.Argument(metavar="SECONDS", help="How long to freeze it.")],
    name: NameOption = "default",
    output_format: OutputFormatOption = OutputFormat.text,
) -> None:
    """Freeze a node (SIGSTOP) for SECONDS, then let it go on (SIGCONT)."""
    module = engines.for_lab(lab_state.check_lab_name(name))
    change = module.pause_node(name, node, seconds)
    emit(change, output_format, lambda: _ring_text(change), kind="lab-ring-change")


def _partition_text(change: object) -> str:
    from pvectl.lab.reports import PartitionChange

    assert isinstance(change, PartitionChange)
    head = "partitioned: " + " | ".join(",".join(str(n) for n in g) for g in change.groups)
    if change.seconds is None:
        head += "; the rings had not settled when pvectl stopped waiting"
    else:
        head += f"; new rings after {change.seconds:.2f} s"
    lines = [head + "\n"]
    for ring in change.rings:
        group = ",".join(str(n) for n in ring.group)
        if not ring.members:
            lines.append(f"  group {group}: no node runs\n")
            continue
        quorate = {True: "quorate", False: "NOT quorate", None: "quorate: unknown"}[ring.quorate]
        members = ",".join(str(m) for m in ring.members)
        lines.append(f"  group {group}: members {members}, {quorate}\n")
    return "".join(lines)


@lab_app.command()
def partition(
    groups: Annotated[
        list[str], typer.Argument(metavar="GROUP", help="Groups of node ids, e.g. 1,2 3,4.")
    ],
    name: NameOption = "default",
    output_format: OutputFormatOption = OutputFormat.text,
) -> None:
    """Split the nodes into groups that cannot reach each other, and report the ring each
    group forms (the embedded engine's nodes drop the others' packets; the corosync engine
    uses nftables)."""
    module = engines.for_lab(lab_state.check_lab_name(name))
    change = module.partition(name, groups)
    emit(change, output_format, lambda: _partition_text(change), kind="lab-partition")


@lab_app.command()
def heal(name: NameOption = "default") -> None:
    """Remove every partition and loss rule."""
    engines.for_lab(lab_state.check_lab_name(name)).heal(name)
    _say(f"lab {name!r}: healed")


@lab_app.command()
def loss(
    percent: Annotated[
        int, typer.Argument(metavar="PERCENT", help="Percent of packets each node drops (0-100).")
    ],
    name: NameOption = "default",
) -> None:
    """Drop PERCENT % of the packets every node receives (0 removes the rule)."""
    engines.for_lab(lab_state.check_lab_name(name)).loss(name, percent)
    _say(f"lab {name!r}: {percent} % random loss on every node's link")


@lab_app.command("slow-disk")
def slow_disk(
    node: NodeArgument,
    ms: Annotated[
        float, typer.Argument(metavar="MS", help="Extra milliseconds for every commit (0: off).")
    ],
    name: NameOption = "default",
) -> None:
    """Make a node's config-store disk slow (embedded engine): every commit takes MS more."""
    module = engines.for_lab(lab_state.check_lab_name(name))
    module.slow_disk(name, node, ms)
    _say(f"lab {name!r}: node {node} commits now take {ms:g} ms more")


@lab_app.command("qnetd")
def qnetd_command(
    action: Annotated[
        QnetdAction, typer.Argument(metavar="ACTION", help="What to do.", show_default=False)
    ],
    name: NameOption = "default",
) -> None:
    """Stop or start the lab's qnetd (lab up N --qdevice): rehearse "qnetd down"."""
    module = engines.for_lab(lab_state.check_lab_name(name))
    _say(f"lab {name!r}: " + module.qnetd_action(name, action.value))


@lab_app.command("qdevice")
def qdevice_command(
    action: Annotated[str, typer.Argument(help="start or stop.", show_default=False)],
    node: Annotated[
        int | None, typer.Argument(help="Only this node (default: every node).")
    ] = None,
    name: NameOption = "default",
) -> None:
    """Start or stop the qdevice daemons of the nodes (lab up N --qdevice): rehearse a
    QDevice added after the nodes, or one node's corosync-qdevice down."""
    module = engines.for_lab(lab_state.check_lab_name(name))
    _say(f"lab {name!r}: " + module.qdevice_action(name, action, node))


@lab_app.command(
    "exec", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
)
def exec_command(
    node: NodeArgument,
    command: Annotated[
        list[str], typer.Argument(metavar="COMMAND", help="The command and its arguments.")
    ],
    name: NameOption = "default",
) -> None:
    """Run any command on a node (its network, its /etc/corosync, /run, hostname)."""
    module = engines.for_lab(lab_state.check_lab_name(name))
    raise typer.Exit(module.exec_in_node(name, node, command))


@lab_app.command("mount")
def mount(
    node: NodeArgument,
    mountpoint: Annotated[
        Path,
        typer.Argument(metavar="DIR", help="An empty directory to mount on.", show_default=False),
    ],
    name: NameOption = "default",
    level: Annotated[
        CommitLevel,
        typer.Option(
            "--level",
            help="A write returns once this node and members holding quorum committed it "
            "(local) or once every member committed it (all).",
            case_sensitive=False,
        ),
    ] = CommitLevel.local,
    foreground: Annotated[
        bool,
        typer.Option("--foreground", help="Serve in this process until unmounted (Ctrl-C)."),
    ] = False,
    output_format: OutputFormatOption = OutputFormat.text,
) -> None:
    """Mount a node's config store (like /etc/pve) with FUSE; prints the FUSE process's pid."""
    if lab_state.load(lab_state.check_lab_name(name)) is None:
        raise TargetUnavailable(
            f"no lab named {name!r} is up (start one with 'pvectl lab up 3 --name {name}')"
        )
    module = engines.for_lab(name)
    if foreground:
        _say(f"mounting node {node} of lab {name!r} on {mountpoint} (Ctrl-C unmounts)")
        code = module.mount_node(name, node, mountpoint, level.value, foreground=True)
        raise typer.Exit(code if isinstance(code, int) else 0)
    record = module.mount_node(name, node, mountpoint, level.value)
    if isinstance(record, int):  # only a foreground mount returns its exit status
        raise typer.Exit(record)
    _say(
        f"node {node} of lab {name!r} mounted on {record.mountpoint} (commit level "
        f"{record.level}); 'pvectl lab umount {record.mountpoint}' unmounts"
    )
    emit(record, output_format, lambda: f"{record.pid}\n", kind="lab-mount")


@lab_app.command("umount")
def umount(
    mountpoint: Annotated[
        Path, typer.Argument(metavar="DIR", help="Where it is mounted.", show_default=False)
    ],
    lazy: Annotated[
        bool, typer.Option("--lazy", "-z", help="Detach now even if busy (fusermount3 -z).")
    ] = False,
) -> None:
    """Unmount a config store mounted with 'lab mount' (fusermount3 -u)."""
    from pvectl.lab import fuse_mounts

    record = fuse_mounts.unmount(mountpoint, lazy=lazy)
    where = f" (node {record.node} of lab {record.lab!r})" if record is not None else ""
    _say(f"unmounted {mountpoint}{where}")


ScenarioArgument = Annotated[
    str,
    typer.Argument(
        metavar="SCENARIO",
        help="A scenario file, or the name of a shipped one (e.g. three-lose-one).",
        show_default=False,
    ),
]


def _emit_comparison(comparison: object, output_format: OutputFormat) -> None:
    from pvectl.cli.scenario_text import render
    from pvectl.lab.scenario import Comparison

    assert isinstance(comparison, Comparison)
    data = {
        "scenario": comparison.scenario,
        "path": comparison.path,
        "agree": comparison.agree,
        "skipped": comparison.skipped,
        "notes": comparison.notes,
        "differences": comparison.differences,
        "runs": comparison.runs,
        "steps": comparison.steps,
    }
    emit(data, output_format, lambda: render(comparison), kind="lab-scenario")
    raise typer.Exit(comparison.exit_code())


@lab_app.command()
def compare(
    scenario: ScenarioArgument,
    engines_option: Annotated[
        str | None,
        typer.Option(
            "--engines",
            metavar="ENGINES",
            help="Comma-separated engines (default: embedded,corosync; corosync needs root).",
        ),
    ] = None,
    name: Annotated[
        str,
        typer.Option(
            "--name", metavar="PREFIX", help="Lab name prefix: labs PREFIX-e and PREFIX-c."
        ),
    ] = "cmp",
    sequential: Annotated[
        bool,
        typer.Option("--sequential", help="Run the engines one after the other, not at once."),
    ] = False,
    output_format: OutputFormatOption = OutputFormat.text,
) -> None:
    """Run a failure scenario on both engines and show their views side by side.

    Exit 0 when every quorum decision agrees and every expect passes on both, 1 otherwise,
    69 when the scenario needs something the engines lack (e.g. a QDevice).
    """
    from pvectl.lab import scenario as sc
    from pvectl.lab import scenario_run

    parsed = sc.load(scenario_run.resolve(scenario))
    requested = [e.strip() for e in engines_option.split(",")] if engines_option else None
    chosen, notes = scenario_run.choose_engines(requested)
    for note in notes:
        _say(f"note: {note}")
    from pvectl.progress import activity

    with activity(f"scenario {parsed.name}") as shown:
        result = scenario_run.compare(
            parsed, chosen, name, parallel=not sequential, report=shown.say, progress=shown.now
        )
    _emit_comparison(replace(result, notes=(*result.notes, *notes)), output_format)


@lab_app.command("run")
def run_scenario(
    scenario: ScenarioArgument,
    engine: Annotated[
        EngineChoice, typer.Option("--engine", help="The engine to run it on.")
    ] = EngineChoice.embedded,
    name: Annotated[
        str, typer.Option("--name", metavar="PREFIX", help="Lab name prefix: lab PREFIX-e/-c.")
    ] = "run",
    output_format: OutputFormatOption = OutputFormat.text,
) -> None:
    """Run a failure scenario on one engine and check its expectations (exit 0: all met)."""
    from pvectl.lab import scenario as sc
    from pvectl.lab import scenario_run

    parsed = sc.load(scenario_run.resolve(scenario))
    chosen, _ = scenario_run.choose_engines([engine.value])
    from pvectl.progress import activity

    with activity(f"scenario {parsed.name}") as shown:
        result = scenario_run.compare(parsed, chosen, name, report=shown.say, progress=shown.now)
    _emit_comparison(result, output_format)


fs_app = PvectlTyper(
    name="fs",
    help="Read and write an embedded node's config store (like /etc/pve) without FUSE.",
    no_args_is_help=True,
)
StorePath = Annotated[
    str, typer.Argument(metavar="PATH", help="Path in the store, e.g. nodes/node1/x.conf.")
]
LevelOption = Annotated[
    CommitLevel,
    typer.Option(
        "--level",
        help="Return once committed here and held by every member (local) or committed "
        "on every member (all).",
    ),
]


@fs_app.command("ls")
def fs_ls(
    node: NodeArgument,
    path: Annotated[
        str, typer.Argument(metavar="PATH", help="Directory or file in the store.")
    ] = "/",
    name: NameOption = "default",
    output_format: OutputFormatOption = OutputFormat.text,
) -> None:
    """List a directory of the store (name, size, version, writer)."""
    from pvectl.lab import store_access

    entries = store_access.ls(name, node, path)
    emit(
        entries,
        output_format,
        lambda: "".join(
            f"{e.size:>8} v{e.version:<6} w{e.writer:<3} {e.name}{'/' if e.dir else ''}\n"
            for e in entries
        ),
        kind="lab-fs-ls",
    )


@fs_app.command("cat")
def fs_cat(node: NodeArgument, path: StorePath, name: NameOption = "default") -> None:
    """Print a file of the store."""
    import sys

    from pvectl.lab import store_access

    sys.stdout.buffer.write(store_access.cat(name, node, path))
    sys.stdout.flush()


@fs_app.command("put")
def fs_put(
    node: NodeArgument,
    path: StorePath,
    file: Annotated[
        Path | None,
        typer.Argument(metavar="FILE", help="File to store (default: standard input)."),
    ] = None,
    name: NameOption = "default",
    level: LevelOption = CommitLevel.local,
) -> None:
    """Write a file (created if missing, in a directory that exists: 'lab fs mkdir'
    first); exits 0 only once committed at --level."""
    import sys

    from pvectl.lab import store_access

    data = store_access.read_input(path, file, sys.stdin.buffer)
    write_id = store_access.write(name, node, path, "put", data, level.value)
    _say(f"{path}: {len(data)} bytes committed ({level.value}), write {write_id}")


@fs_app.command("mkdir")
def fs_mkdir(
    node: NodeArgument,
    path: StorePath,
    name: NameOption = "default",
    level: LevelOption = CommitLevel.local,
) -> None:
    """Create a directory in the store."""
    from pvectl.lab import store_access

    store_access.write(name, node, path, "mkdir", level=level.value)


@fs_app.command("rm")
def fs_rm(
    node: NodeArgument,
    path: StorePath,
    name: NameOption = "default",
    level: LevelOption = CommitLevel.local,
) -> None:
    """Remove a file or an empty directory from the store."""
    from pvectl.lab import store_access

    store_access.write(name, node, path, "delete", level=level.value)


lab_app.add_typer(fs_app, name="fs")


def register(app: typer.Typer) -> None:
    app.add_typer(lab_app, name="lab")
