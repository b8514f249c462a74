"""Two labs started at the same moment can pick the same free /24: the probe that finds it
free must be released before the node binds. ``lab up`` then picks another subnet instead
of failing (a CI run once lost a test to exactly this)."""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from pvectl.errors import PvectlError
from pvectl.lab import embedded_engine
from pvectl.lab.options import DEFAULT_PORT, UpOptions


@pytest.fixture
def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    directory = tmp_path / "xdg"
    directory.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(directory))
    yield directory
    embedded_engine.down("race")


def _free_subnet_held_by_another(holder: socket.socket) -> ipaddress.IPv4Network:
    """A /24 whose first node address is free, then taken by ``holder``."""
    for third in range(250, 200, -1):  # above the automatic range's usual picks
        net = ipaddress.IPv4Network(f"127.77.{third}.0/24")
        try:
            holder.bind((str(net.network_address + 1), DEFAULT_PORT))
        except OSError:
            continue
        return net
    pytest.skip("no free 127.77.x.1 to hold")


def test_a_subnet_taken_between_probe_and_bind_is_replaced(
    runtime: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        taken = _free_subnet_held_by_another(holder)
        real_allocate = embedded_engine._allocate_subnet
        picks: list[str] = []

        def racing_allocate(requested: str | None, lab_dir: str = "") -> ipaddress.IPv4Network:
            # the first pick is the one another lab bound right after our probe
            net = taken if not picks else real_allocate(requested, lab_dir)
            picks.append(str(net))
            return net

        monkeypatch.setattr(embedded_engine, "_allocate_subnet", racing_allocate)
        said: list[str] = []
        state = embedded_engine.up(
            "race", UpOptions(nodes=2, token=1000, wait_timeout=30.0), progress=said.append
        )
        assert picks[0] == str(taken)
        assert state.subnet != str(taken), picks
        assert len(picks) == 2
        assert any("subnet was taken meanwhile" in line for line in said), said
        assert all(embedded_engine.membership(n) == (1, 2) for n in state.nodes)
    finally:
        holder.close()


def test_a_subnet_the_user_chose_is_not_replaced(runtime: Path) -> None:
    holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        taken = _free_subnet_held_by_another(holder)
        with pytest.raises(PvectlError, match="is already in use"):
            embedded_engine.up("race", UpOptions(nodes=2, token=1000, subnet=str(taken)))
    finally:
        holder.close()
    assert os.path.isdir(runtime)
