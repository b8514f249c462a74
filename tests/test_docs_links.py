"""Every relative link in README.md and docs/ points at a file of the repository, and a
``#fragment`` at a heading of that file (GitHub's anchors)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
# Pages other branches write (docs/json.md: JSON schemas; docs/architecture.md: the
# structure). Empty this once they are merged, so links to them are checked too.
PENDING: set[str] = set()  # pages linked before they are written


def _pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def _prose(text: str) -> str:
    """The text outside code blocks and code spans, where links are links."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    found: set[str] = set()
    for line in _prose(page.read_text(encoding="utf-8")).splitlines():
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*$", line)
        if match:
            slug = re.sub(r"[^\w\- ]", "", match.group(1).lower()).replace(" ", "-")
            found.add(slug)
    return found


def broken_links(pages: list[Path]) -> list[str]:
    broken = []
    for page in pages:
        for target in LINK.findall(_prose(page.read_text(encoding="utf-8"))):
            if re.match(r"^[a-z]+:", target):
                continue  # https:, mailto:
            path, _, fragment = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            rel = dest.relative_to(ROOT).as_posix() if dest.is_relative_to(ROOT) else str(dest)
            if rel in PENDING and not dest.exists():
                continue
            if not dest.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}: no such file")
            elif fragment and dest.suffix == ".md" and fragment not in anchors(dest):
                broken.append(f"{page.relative_to(ROOT)}: {target}: no such heading")
    return broken


def test_every_relative_link_resolves() -> None:
    assert not broken_links(_pages())


def test_a_broken_link_or_anchor_is_reported(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    (tmp_path / "other.md").write_text("# Other page\n\n## A (b, c)\n")
    page.write_text(
        "[ok](other.md) [ok](other.md#a-b-c) [bad](missing.md) [bad](other.md#nope)\n"
        "`[not a link](missing.md)`\n```\n[not a link](missing.md)\n```\n"
    )
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        assert broken_links([page]) == [
            "page.md: missing.md: no such file",
            "page.md: other.md#nope: no such heading",
        ]
    finally:
        ROOT = saved


def test_no_reference_to_documents_outside_the_repository() -> None:
    pattern = re.compile(r"reference/|proxmox-spec|totem-spec")
    files = [*_pages(), *ROOT.glob("pvectl/**/*.py"), *ROOT.glob("tests/*.py")]
    files += ROOT.glob("benchmarks/*.py")
    hits = [
        str(f.relative_to(ROOT))
        for f in files
        if f.name != "test_docs_links.py" and pattern.search(f.read_text(encoding="utf-8"))
    ]
    assert not hits


def test_readme_is_short() -> None:
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 250
