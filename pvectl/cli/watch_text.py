"""One dashboard frame of ``pvectl watch``: header, one row per node, the event log.

Sized for 80x24: nine narrow columns, and as many recent events as the height leaves.
Rows of a node that stopped answering keep their last values, dimmed and marked STALE.
"""

from __future__ import annotations

import time

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from pvectl.monitor.model import ClusterSnapshot, NodeView

FIXED_LINES = 7  # header (2), table head and rule (3), event title, spare


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds >= 10:
        return f"{seconds:.0f}s"
    if seconds >= 1:
        return f"{seconds:.1f}s"
    return f"{seconds * 1000:.3g}ms"


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.0f}h"


def _row(view: NodeView, at: float) -> list[str]:
    if view.last_seen is None:
        return [view.node, "-", "-", "-", "-", "-", "-", "-", "-", "NO DATA"]
    votes = f"{view.total_votes}/{view.expected_votes}/{view.quorum}"
    qdevice = "-" if view.qdevice_votes is None else str(view.qdevice_votes)
    retx = "-" if view.retransmits_per_s is None else f"{view.retransmits_per_s:.3g}"
    link = _ms(view.worst_link_latency_s)
    if view.links_down:
        link = f"{view.links_down} DOWN"
    state = f"STALE {_age(at - view.last_seen)}" if view.stale else "ok"
    return [
        view.node,
        view.ring_id or "-",
        ",".join(str(n) for n in view.members) or "-",
        "yes" if view.quorate else "NO",
        votes,
        qdevice,
        _ms(view.token_rotation_s),
        retx,
        link,
        state,
    ]


def _header(snap: ClusterSnapshot) -> Text:
    style = "bold green" if snap.quorate and not snap.split_brain else "bold red"
    line = Text.assemble((f"{snap.cluster}: ", "bold"), (snap.verdict, style))
    since = _age(snap.seconds_since_membership_change)
    changed = (
        f"last membership change {since} ago"
        if snap.membership_change_seen
        else f"no membership change in {since} of watching"
    )
    clock = time.strftime("%H:%M:%S", time.localtime(snap.at))
    extra = f"{clock}  {changed}"
    if snap.fsync_probe is not None:
        extra += f"  fsync p99 {_ms(snap.fsync_probe.p99_s)}"
    return Text.assemble(line, "\n", (extra, "dim"))


def render(snap: ClusterSnapshot, height: int = 24) -> RenderableType:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 1, 0, 0), expand=False)
    for title, justify in (
        ("node", "left"),
        ("ring", "left"),
        ("members", "left"),
        ("quor", "left"),
        ("v/e/q", "left"),
        ("qdev", "right"),
        ("token", "right"),
        ("retx/s", "right"),
        ("link", "right"),
        ("state", "left"),
    ):
        table.add_column(title, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for view in snap.nodes:
        cells = _row(view, snap.at)
        style = "dim" if view.stale else ("red" if view.quorate is False else "")
        table.add_row(*cells, style=style)
    room = max(height - FIXED_LINES - len(snap.nodes), 1)
    shown = snap.events[-room:]
    log = Text()
    log.append("events" if snap.events else "events: none yet", style="bold")
    for event in shown:
        clock = time.strftime("%H:%M:%S", time.localtime(event.at))
        log.append(f"\n{clock} ", style="dim")
        log.append(event.text, style="red" if _bad(event.text) else "")
    return Group(_header(snap), table, log)


def _bad(text: str) -> bool:
    return any(word in text for word in ("LOST", "DOWN", "not answering", "SPLIT"))
