"""votequorum's options as corosync reads them from a corosync.conf.

The votequorum model (``pvectl.quorum``) takes typed options and knows no file format;
this module is the one place where the parsed ``quorum``/``nodelist`` sections become
those options, with corosync's own value checks and wording.
"""

from __future__ import annotations

import re

from pvectl.corosync_conf import Section, nodelist
from pvectl.quorum import whatif
from pvectl.quorum.votequorum import (
    DEFAULT_LMS_WINDOW_MS,
    UINT32,
    QuorumConfigError,
    QuorumOptions,
    quorum_value,
)
from pvectl.results import QuorumStatus


def options_from_config(root: Section, path: str = "corosync.conf") -> QuorumOptions:
    """Read ``quorum { ... }``, ``quorum { device { ... } }`` and the nodelist."""
    quorum = root.section("quorum") or Section("quorum")
    device = quorum.section("device")
    net = device.section("net") if device else None
    entries = nodelist(root, path)

    def number(section: Section | None, key: str, default: int, high: int = UINT32) -> int:
        """As corosync reads them: decimal ASCII digits, uint32 (flags uint8)."""
        raw = section.get(key) if section else None
        if section is None or raw is None or raw == "":
            return default
        if re.fullmatch(r"[0-9]{1,20}", raw) and int(raw) <= high:
            return int(raw)
        raise QuorumConfigError(
            f"{section.name}.{key} must be an integer from 0 to {high}, got {raw[:40]!r}",
            path,
            section.line,
        )

    def flag(key: str) -> bool:
        raw = quorum.get(key)
        return raw is not None and quorum_value(key, raw, path, quorum.line) != 0

    def quorum_number(key: str, default: int) -> int:
        raw = quorum.get(key)
        return default if raw is None else int(quorum_value(key, raw, path, quorum.line))

    wfa_raw = quorum.get("wait_for_all")
    model = (device.get("model", "") or "") if device else ""
    qdevice_votes = number(device, "votes", -1) if device else -1
    return QuorumOptions.build(
        [(entry.node_id, entry.votes) for entry in entries],
        expected_votes=quorum_number("expected_votes", 0),
        two_node=flag("two_node"),
        wait_for_all=None if wfa_raw is None else flag("wait_for_all"),
        last_man_standing=flag("last_man_standing"),
        last_man_standing_window_ms=quorum_number(
            "last_man_standing_window", DEFAULT_LMS_WINDOW_MS
        ),
        auto_tie_breaker=flag("auto_tie_breaker"),
        auto_tie_breaker_node=quorum.get("auto_tie_breaker_node", "lowest") or "lowest",
        allow_downscale=flag("allow_downscale"),
        expected_votes_tracking=flag("expected_votes_tracking"),
        qdevice_model=model,
        qdevice_votes=None if qdevice_votes < 0 else qdevice_votes,
        qdevice_algorithm=((net.get("algorithm") if net else None) or "ffsplit"),
        qdevice_tie_breaker=((net.get("tie_breaker") if net else None) or "lowest"),
        no_nodelist_votes=number(quorum, "votes", 1),
        path=path,
    )


def options_from_status(
    status: QuorumStatus, config: Section | None = None
) -> tuple[QuorumOptions, dict[int, str]]:
    """The configuration behind a status: from corosync.conf when it has a nodelist, else
    inferred from the members, flags and expected votes (``whatif``)."""
    if config is not None:
        entries = nodelist(config)
        if entries:
            return options_from_config(config), {e.node_id: e.name for e in entries}
    return whatif.options_from_status(status)
