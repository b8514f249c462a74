"""``pvectl qdevice status``: corosync-qdevice-tool -sv as captured from real
corosync-qdevice 3.0.3 in the pvt-qd lab (tests/data)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pvectl.cli.qdevice_text import render_qdevice_status
from pvectl.targets.qdevice.status import (
    parse_qdevice_tool,
    votequorum_qdevice_view,
)
from tests.conftest import run_cli

DATA = Path(__file__).parent / "data"


def test_connected_and_casting() -> None:
    status = parse_qdevice_tool((DATA / "qdevice-tool-sv.connected.txt").read_text())
    assert status.model == "Net" and status.node_id == 1
    assert status.state == "Connected" and status.casting_vote
    assert status.qnetd_host == "10.98.0.100:5403" and status.cluster_name == "pvtqd"
    assert status.algorithm == "Fifty-Fifty split"
    assert status.tie_breaker == "Node with lowest node ID"
    assert status.configured_nodes == (1, 2) and status.membership == (1, 2)
    assert status.quorate is True and status.expected_votes == 3 and status.ring_id == "1.9"
    # both sections have "HB interval"; the net one is kept apart
    assert status.fields["HB interval"] == "10000ms"
    assert status.fields["net.HB interval"] == "8000ms"
    assert "casting its vote" in render_qdevice_status(status)


def test_qnetd_down_is_not_casting() -> None:
    status = parse_qdevice_tool((DATA / "qdevice-tool-sv.qnetd-down.txt").read_text())
    assert status.state == "Connect failed"
    assert not status.casting_vote
    assert status.tls == "Unsupported"


@pytest.mark.skipif(shutil.which("corosync-qdevice-tool") is None, reason="corosync-qdevice")
@pytest.mark.skipif(
    Path("/run/corosync-qdevice/corosync-qdevice.sock").exists(), reason="a qdevice runs here"
)
def test_no_daemon_is_a_one_line_error() -> None:
    run = run_cli("qdevice", "status")  # the real tool, with no daemon on this machine
    assert run.code == 1
    assert "Can't connect to QDevice socket" in run.stderr
    assert "is corosync-qdevice running?" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


def test_votequorum_side_from_quorumtool() -> None:
    casting = """Membership information
----------------------
    Nodeid      Votes    Qdevice Name
         1          1    A,V,NMW node1 (local)
         2          1    A,V,NMW node2
         0          1            Qdevice
"""
    assert votequorum_qdevice_view(casting) == ("A,V,NMW", 1, True)
    lost = """    Nodeid      Votes    Qdevice Name
0x00000001          1   A,NV,NMW 10.98.0.1 (local)
0x00000000          0            Qdevice (votes 1)
"""
    assert votequorum_qdevice_view(lost) == ("A,NV,NMW", 1, False)


def test_pvecm_layout_of_a_device_that_does_not_vote() -> None:
    # the row as real corosync-quorumtool -s printed it with qnetd down (pvt-qd lab)
    from pvectl.cli.pvecm_text import membership_block
    from pvectl.results import Member, QdeviceRow

    block = membership_block(
        (Member(1, 1, "node1", local=True, qdevice="A,NV,NMW"),),
        QdeviceRow(votes=1, casting=False),
        hex_ids=False,
    )
    assert block.splitlines()[-1] == "         0          0            Qdevice (votes 1)"
    assert block.splitlines()[-2] == "         1          1   A,NV,NMW node1 (local)"
