"""corosync-quorumtool -s figures, read the same way from real corosync and from pvectl, so
tests can compare two runs field by field."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@dataclass
class QuorumView:
    """The figures corosync-quorumtool -s shows, for comparing two runs."""

    quorate: bool
    expected: int
    total: int
    quorum: int
    flags: tuple[str, ...]
    qdevice_flags: dict[int, str]
    qdevice_row: str | None
    raw: str = field(repr=False, default="")

    def figures(self) -> tuple[object, ...]:
        return (
            self.quorate,
            self.expected,
            self.total,
            self.quorum,
            self.flags,
            tuple(sorted(self.qdevice_flags.items())),
            self.qdevice_row,
        )


def parse_quorumtool(text: str) -> QuorumView:
    def field_of(label: str) -> str:
        m = re.search(rf"^{label}:\s*(.*)$", text, re.M)
        return m.group(1).strip() if m else ""

    qd: dict[int, str] = {}
    row = None
    for line in text.splitlines():
        m = re.match(r"^\s+(\d+)\s+(\d+)\s+([A-Z,]+)\s+\S+", line)
        if m and int(m.group(1)) != 0:
            qd[int(m.group(1))] = m.group(3)
        if re.match(r"^\s+0\s+\d+", line):
            row = " ".join(line.split())
    return QuorumView(
        quorate=field_of("Quorate") == "Yes",
        expected=int(field_of("Expected votes") or 0),
        total=int(field_of("Total votes") or 0),
        quorum=int((field_of("Quorum").split() or ["0"])[0]),
        flags=tuple(field_of("Flags").split()),
        qdevice_flags=qd,
        qdevice_row=row,
        raw=text,
    )
