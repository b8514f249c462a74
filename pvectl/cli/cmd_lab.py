"""``pvectl lab ...``: start, break and inspect a rehearsal cluster. Thin: the engine
recorded in the lab's state does the work."""

from __future__ import annotations

import signal
from enum import StrEnum
from typing import Annotated

import typer

from pvectl.cli.options import OutputFormatOption
from pvectl.cli.output import OutputFormat, emit, stderr_console
from pvectl.errors import UsageError
from pvectl.lab import engines
from pvectl.lab import state as lab_state

lab_app = typer.Typer(
    name="lab",
    help="Run a rehearsal cluster on this machine and break it on purpose.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class EngineChoice(StrEnum):
    embedded = "embedded"
    corosync = "corosync"


class Transport(StrEnum):
    knet = "knet"
    udpu = "udpu"


NameOption = Annotated[
    str, typer.Option("--name", help="Lab name: several labs can run side by side.")
]
NodeArgument = Annotated[int, typer.Argument(help="Node id (1..N).", show_default=False)]


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
    from pvectl.lab.views import RingChange

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
    nodes: Annotated[int, typer.Argument(help="Number of nodes (1-16).", show_default=False)],
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
        Transport, typer.Option("--transport", help="corosync transport.")
    ] = Transport.knet,
    token: Annotated[int | None, typer.Option("--token", help="totem token timeout in ms.")] = None,
    two_node: Annotated[
        bool, typer.Option("--two-node", help="quorum two_node (2 nodes only).")
    ] = False,
    wait_for_all: Annotated[
        bool | None,
        typer.Option("--wait-for-all/--no-wait-for-all", help="quorum wait_for_all."),
    ] = None,
    votes: Annotated[
        str | None, typer.Option("--votes", help="Votes per node, e.g. 1,1,2.")
    ] = None,
    subnet: Annotated[
        str | None,
        typer.Option("--subnet", help="The lab's /24 (default: a free one in 10.99.0.0/16)."),
    ] = None,
    durability: Annotated[
        str,
        typer.Option("--durability", help="Embedded config store: fsync or wal-normal."),
    ] = "fsync",
    coupling: Annotated[
        str,
        typer.Option(
            "--coupling",
            help="Embedded config store: coupled (fsync in the protocol loop, a slow disk "
            "stalls the token) or decoupled (group commit off the token path).",
        ),
    ] = "decoupled",
    qdevice: Annotated[
        bool,
        typer.Option(
            "--qdevice",
            help="Add a qnetd (pvectl qdevice serve, TLS) on the lab's network: embedded "
            "nodes run pvectl's qdevice client, the corosync engine the real corosync-qdevice.",
        ),
    ] = False,
    qdevice_algorithm: Annotated[
        str, typer.Option("--qdevice-algorithm", help="ffsplit (default) or lms.")
    ] = "ffsplit",
    qnetd: Annotated[
        str,
        typer.Option(
            "--qnetd",
            help="Embedded engine: pvectl (pvectl qdevice serve) or corosync (the real "
            "corosync-qnetd, root).",
        ),
    ] = "pvectl",
    qdevice_tls: Annotated[
        bool, typer.Option("--qdevice-tls/--no-qdevice-tls", help="Embedded engine: TLS.")
    ] = True,
    output_format: OutputFormatOption = OutputFormat.text,
) -> None:
    """Start an N-node lab and wait until its ring has formed."""
    lab_state.check_lab_name(name)
    chosen = engines.choose(engine.value if engine else None)
    module = engines.module_for(chosen)
    if chosen != "embedded" and (qnetd != "pvectl" or not qdevice_tls):
        raise UsageError("--qnetd and --no-qdevice-tls are for the embedded engine")
    options = module.UpOptions(
        nodes=nodes,
        transport=transport.value,
        token=token,
        two_node=two_node,
        wait_for_all=wait_for_all,
        votes=_parse_votes(votes),
        subnet=subnet,
        **({"durability": durability, "coupling": coupling} if chosen == "embedded" else {}),
        **({"qdevice": True, "qdevice_algorithm": qdevice_algorithm} if qdevice else {}),
        **(
            {"qnetd": qnetd, "qdevice_tls": qdevice_tls} if qdevice and chosen == "embedded" else {}
        ),
    )
    state = module.up(name, options, report=_say)
    emit(
        state.to_json(), output_format, lambda: f"lab {name!r} is up: state in {state.state_dir}\n"
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
    name: Annotated[str | None, typer.Option("--name", help="Only this lab.")] = None,
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
            out.append(
                f"  {'node':<6}{'address':<16}{'pid':>8}  {'ring id':<10}{'quorate':<9}members\n"
            )
            for node in lab.nodes:
                quorate = {True: "yes", False: "no", None: "-"}[node.quorate]
                if node.paused:
                    quorate = "paused"
                out.append(
                    f"  {node.node_id:<6}{node.address:<16}{node.pid or '-':>8}  "
                    f"{node.ring_id or '-':<10}{quorate:<9}"
                    f"{','.join(str(m) for m in node.members) or '-'}\n"
                )
        return "".join(out)

    emit(views, output_format, text)


def _fault(action: str, name: str, node: int, output_format: OutputFormat) -> None:
    module = engines.for_lab(lab_state.check_lab_name(name))
    if action == "start":
        change = module.start_node(name, node)
    else:
        sig = signal.SIGKILL if action == "kill" else signal.SIGTERM
        change = module.stop_node(name, node, sig)
    emit(change, output_format, lambda: _ring_text(change))


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
    seconds: Annotated[float, typer.Argument(help="How long to freeze it.")],
    name: NameOption = "default",
    output_format: OutputFormatOption = OutputFormat.text,
) -> None:
    """Freeze a node (SIGSTOP) for SECONDS, then let it go on (SIGCONT)."""
    module = engines.for_lab(lab_state.check_lab_name(name))
    change = module.pause_node(name, node, seconds)
    emit(change, output_format, lambda: _ring_text(change))


@lab_app.command()
def partition(
    groups: Annotated[list[str], typer.Argument(help="Groups of node ids, e.g. 1,2 3,4.")],
    name: NameOption = "default",
) -> None:
    """Split the nodes into groups that cannot reach each other (nftables drops)."""
    module = engines.for_lab(lab_state.check_lab_name(name))
    parsed = module.partition(name, groups)
    _say("partitioned: " + " | ".join(",".join(str(n) for n in g) for g in parsed))


@lab_app.command()
def heal(name: NameOption = "default") -> None:
    """Remove every partition and loss rule."""
    engines.for_lab(lab_state.check_lab_name(name)).heal(name)
    _say(f"lab {name!r}: healed")


@lab_app.command()
def loss(
    percent: Annotated[int, typer.Argument(help="Percent of packets each node drops (0-100).")],
    name: NameOption = "default",
) -> None:
    """Drop PERCENT % of the packets every node receives (0 removes the rule)."""
    engines.for_lab(lab_state.check_lab_name(name)).loss(name, percent)
    _say(f"lab {name!r}: {percent} % random loss on every node's link")


@lab_app.command("slow-disk")
def slow_disk(
    node: NodeArgument,
    ms: Annotated[float, typer.Argument(help="Extra milliseconds for every commit (0: off).")],
    name: NameOption = "default",
) -> None:
    """Make a node's config-store disk slow (embedded engine): every commit takes MS more."""
    module = engines.for_lab(lab_state.check_lab_name(name))
    if not hasattr(module, "slow_disk"):
        raise UsageError("slow-disk needs the embedded engine (it slows pvectl's config store)")
    module.slow_disk(name, node, ms)
    _say(f"lab {name!r}: node {node} commits now take {ms:g} ms more")


@lab_app.command("qnetd")
def qnetd_command(
    action: Annotated[str, typer.Argument(help="stop or start.", show_default=False)],
    name: NameOption = "default",
) -> None:
    """Stop or start the lab's qnetd (embedded engine): rehearse "qnetd down"."""
    module = engines.for_lab(lab_state.check_lab_name(name))
    if not hasattr(module, "qnetd_action"):
        raise UsageError("lab qnetd needs the embedded engine")
    _say(f"lab {name!r}: " + module.qnetd_action(name, action))


@lab_app.command(
    "exec", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
)
def exec_command(
    node: NodeArgument,
    command: Annotated[list[str], typer.Argument(help="The command, after '--'.")],
    name: NameOption = "default",
) -> None:
    """Run any command on a node (its network, its /etc/corosync, /run, hostname)."""
    module = engines.for_lab(lab_state.check_lab_name(name))
    raise typer.Exit(module.exec_in_node(name, node, command))


def register(app: typer.Typer) -> None:
    app.add_typer(lab_app, name="lab")
