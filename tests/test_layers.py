"""The import graph has no cycle, so no import inside a function can be there to dodge one.

The layers themselves are checked by ``lint-imports`` (pyproject.toml); a function-level
import is allowed only to defer a heavy or optional dependency (start-up time, a node zip
without third-party packages), never to hide a cycle between modules.
"""

from __future__ import annotations

import grimp


def _cycles(graph: grimp.ImportGraph) -> list[tuple[str, str]]:
    found = []
    for module in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if imported != module and graph.chain_exists(importer=imported, imported=module):
                found.append((module, imported))
    return found


def test_pvectl_has_no_import_cycle() -> None:
    graph = grimp.build_graph("pvectl", cache_dir=None)
    cycles = _cycles(graph)
    assert not cycles, f"import cycles (module -> module that leads back): {cycles[:10]}"


def test_the_check_catches_a_planted_cycle() -> None:
    """Mutation test of the check above: a two-module cycle is reported."""
    graph = grimp.build_graph("pvectl", cache_dir=None)
    graph.add_import(importer="pvectl.totem.wire", imported="pvectl.totem.srp")
    assert ("pvectl.totem.srp", "pvectl.totem.wire") in _cycles(graph) or (
        "pvectl.totem.wire",
        "pvectl.totem.srp",
    ) in _cycles(graph)
