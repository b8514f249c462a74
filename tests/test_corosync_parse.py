"""The corosync output parsers and the pvecm layout, on texts in corosync 3.1's format.

The qdevice samples follow the layouts of a real corosync-qdevice lab (2 nodes + qnetd);
the namespace lab tests compare the same code with live corosync output.
"""

from __future__ import annotations

import pytest

from pvectl.cli import pvecm_text
from pvectl.errors import CommandRefused
from pvectl.quorum.votequorum import check_set_expected
from pvectl.targets import corosync_parse
from pvectl.targets.corosync_parse import ParseError

BLOCKED = """\
Quorum information
------------------
Date:             Sat Nov 21 23:42:22 2026
Quorum provider:  corosync_votequorum
Nodes:            1
Node ID:          0x00000001
Ring ID:          1.11
Quorate:          No

Votequorum information
----------------------
Expected votes:   3
Highest expected: 3
Total votes:      1
Quorum:           2 Activity blocked
Flags:            \n\
Membership information
----------------------
    Nodeid      Votes Name
0x00000001          1 10.99.1.1 (local)
""".replace("Flags:            \n", "Flags:            \n\n")

QDEVICE_NOT_CASTING = """\
Quorum information
------------------
Date:             Sat Nov 21 23:42:22 2026
Quorum provider:  corosync_votequorum
Nodes:            1
Node ID:          0x00000002
Ring ID:          2.1c
Quorate:          No

Votequorum information
----------------------
Expected votes:   3
Highest expected: 3
Total votes:      1
Quorum:           2 Activity blocked
Flags:            Qdevice \n\
Membership information
----------------------
    Nodeid      Votes    Qdevice Name
0x00000002          1   A,NV,NMW 10.99.0.2 (local)
0x00000000          0            Qdevice (votes 1)
""".replace("Qdevice \n", "Qdevice \n\n")

QDEVICE_CASTING = """\
Quorum information
------------------
Date:             Sat Nov 21 23:42:22 2026
Quorum provider:  corosync_votequorum
Nodes:            2
Node ID:          0x00000001
Ring ID:          1.1a
Quorate:          Yes

Votequorum information
----------------------
Expected votes:   3
Highest expected: 3
Total votes:      3
Quorum:           2 \x20
Flags:            Quorate Qdevice \n\
Membership information
----------------------
    Nodeid      Votes    Qdevice Name
0x00000001          1    A,V,NMW 10.99.0.1 (local)
0x00000002          1    A,V,NMW 10.99.0.2
0x00000000          1            Qdevice
""".replace("Qdevice \n", "Qdevice \n\n", 1)


def _without_date(text: str) -> str:
    return "".join(line for line in text.splitlines(True) if not line.startswith("Date:"))


@pytest.mark.parametrize("sample", [BLOCKED, QDEVICE_NOT_CASTING, QDEVICE_CASTING])
def test_render_of_parsed_status_gives_the_tool_text_back(sample: str) -> None:
    status = corosync_parse.parse_status(sample)
    # -siH shows addresses in the name column; the renderer shows addresses when known
    rendered = pvecm_text.quorum_block(status, True, "X") + pvecm_text.membership_block(
        status.members, status.qdevice, hex_ids=True
    )
    assert _without_date(rendered) == _without_date(sample)


def test_blocked_status_fields() -> None:
    status = corosync_parse.parse_status(BLOCKED)
    assert (status.quorate, status.activity_blocked, status.quorum) == (False, True, 2)
    assert status.flags == ()
    assert status.node_id == 1 and str(status.ring_id) == "1.11"
    assert [(m.node_id, m.local) for m in status.members] == [(1, True)]


def test_qdevice_rows() -> None:
    lost = corosync_parse.parse_status(QDEVICE_NOT_CASTING)
    assert lost.qdevice is not None and lost.qdevice.casting is False
    assert lost.qdevice.votes == 1
    assert lost.members[0].qdevice == "A,NV,NMW"
    won = corosync_parse.parse_status(QDEVICE_CASTING)
    assert won.qdevice is not None and won.qdevice.casting and won.qdevice.votes == 1
    assert [m.qdevice for m in won.members] == ["A,V,NMW", "A,V,NMW"]
    assert won.flags == ("Quorate", "Qdevice")


def test_node_list_skips_the_qdevice_pseudo_node() -> None:
    text = (
        "\nMembership information\n----------------------\n"
        "    Nodeid      Votes    Qdevice Name\n"
        "         1          1    A,V,NMW node1 (local)\n"
        "         2          1         NR node2\n"
        "         0          1            Qdevice\n"
    )
    listing = corosync_parse.parse_node_list(text)
    assert [(m.node_id, m.name, m.qdevice) for m in listing.members] == [
        (1, "node1", "A,V,NMW"),
        (2, "node2", "NR"),
    ]
    assert pvecm_text.pvecm_nodes(listing) == text


def test_garbage_is_a_parse_error_not_a_crash() -> None:
    with pytest.raises(ParseError):
        corosync_parse.parse_status("Cannot initialize CMAP service\n")
    with pytest.raises(ParseError):
        corosync_parse.parse_node_list("hello\n")


def test_cfgtool_links_and_cmap() -> None:
    links = corosync_parse.parse_links(
        "Local node ID 1, transport knet\nLINK ID 0 udp\n\taddr\t= 10.99.1.1\n\tstatus:\n"
        "\t\tnodeid:          1:\tlocalhost\n\t\tnodeid:          2:\tconnected\n"
    )
    assert len(links) == 1 and links[0].address == "10.99.1.1"
    assert links[0].peers == ((1, "localhost"), (2, "connected"))
    cmap = corosync_parse.parse_cmap("runtime.config.totem.token (u32) = 1125\n")
    assert cmap == {"runtime.config.totem.token": "1125"}


def test_error_name() -> None:
    text = "Unable to set expected votes: CS_ERR_INVALID_PARAM"
    assert corosync_parse.error_name(text) == "CS_ERR_INVALID_PARAM"
    assert corosync_parse.error_name("fine") is None


@pytest.mark.parametrize(
    ("requested", "total", "quorate", "refused"),
    [
        (1, 1, False, False),  # the lone survivor
        (1, 2, True, True),  # below the votes present
        (2, 2, True, False),
        (4, 3, True, False),  # quorum 3 <= 3 present
        (6, 3, True, True),  # quorum 4 > 3 present: would make it inquorate
        (6, 3, False, False),  # already inquorate: allowed
        (2, 3, True, True),
    ],
)
def test_expected_guard(requested: int, total: int, quorate: bool, refused: bool) -> None:
    if refused:
        with pytest.raises(CommandRefused) as info:
            check_set_expected(requested, total, quorate)
        assert str(total) in str(info.value)
    else:
        check_set_expected(requested, total, quorate)


def test_guard_message_says_why() -> None:
    with pytest.raises(
        CommandRefused,
        match="3 votes are present in this partition: expected votes cannot go below 3",
    ):
        check_set_expected(1, 3, True)


def test_build_status_joins_the_four_outputs() -> None:
    names = (
        "\nMembership information\n----------------------\n"
        "    Nodeid      Votes Name\n         1          1 node1 (local)\n"
    )
    status = corosync_parse.build_status(
        BLOCKED,
        names,
        "runtime.config.totem.token (u32) = 1125\nruntime.config.totem.consensus (u32) = 1350\n",
        "LINK ID 0 udp\n\taddr\t= 10.99.1.1\n",
        None,
        "ssh:pve1",
    )
    assert status.members[0].name == "node1" and status.members[0].addresses == ("10.99.1.1",)
    assert (status.totem_token_ms, status.totem_consensus_ms) == (1125, 1350)
    assert status.links[0].address == "10.99.1.1" and status.source == "ssh:pve1"
    rendered = pvecm_text.pvecm_status(status, "X")
    assert _without_date(rendered) == _without_date(BLOCKED)  # addresses, as pvecm shows
