"""Minimal private stand-in for the votequorum model's runtime ``expected`` guard.

The full model (issue 2, part 4) is written on another branch; this module keeps only
the guard the corosync target needs, with the same signature, until the two meet.
"""

from __future__ import annotations

from pvectl.errors import CommandRefused


def quorum_for(expected_votes: int, total_votes: int) -> int:
    """votequorum's ``calculate_quorum``: more than half of max(expected, present)."""
    return max(expected_votes // 2 + 1, total_votes // 2 + 1)


def check_set_expected(requested: int, total_votes: int, currently_quorate: bool) -> None:
    """Refuse what corosync's setexpected handler refuses, saying why.

    corosync 3.1 rejects N below the votes present in the partition, and N whose quorum
    would exceed the votes present while the partition is quorate.
    """
    if requested < 1:
        raise CommandRefused(f"expected votes must be >= 1, got {requested}")
    if requested < total_votes:
        raise CommandRefused(
            f"{total_votes} votes are present in this partition: expected votes cannot go "
            f"below {total_votes}"
        )
    new_quorum = quorum_for(requested, total_votes)
    if currently_quorate and new_quorum > total_votes:
        raise CommandRefused(
            f"expected votes {requested} would need {new_quorum} votes for quorum, but only "
            f"{total_votes} are present: this quorate partition would become inquorate"
        )
