"""Table-driven check of the votequorum model against corosync's formula, written apart.

The expected side is written here from votequorum.c's rules (calculate_quorum,
are_we_quorate, the option rules), independently of pvectl.quorum: a scenario is a
config plus a set of nodes that fail at once after the whole cluster was up.
Scenarios are generated from a seed (printed; replay with PVECTL_SEED=<seed>).
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

import pytest

from pvectl.quorum import cluster
from pvectl.quorum.votequorum import QuorumConfigError, QuorumOptions

SEED = int(os.environ.get("PVECTL_SEED", "20261121"))
SCENARIOS = 320


@dataclass(frozen=True)
class Scenario:
    votes: tuple[int, ...]  # node i+1 has votes[i]
    failed: tuple[int, ...]
    expected_votes: int = 0
    two_node: bool = False
    wait_for_all: bool | None = None
    atb: bool = False
    lms: bool = False
    qdevice: str = ""  # "", "ffsplit" (1 vote), "lms" (automatic N-1 votes)
    qnetd_up: bool = True

    def label(self) -> str:
        parts = [f"votes={','.join(map(str, self.votes))}", f"fail={self.failed}"]
        for name in ("expected_votes", "two_node", "wait_for_all", "atb", "lms", "qdevice"):
            value = getattr(self, name)
            if value not in (0, False, None, ""):
                parts.append(f"{name}={value}")
        if self.qdevice and not self.qnetd_up:
            parts.append("qnetd=down")
        return " ".join(parts)


@dataclass(frozen=True)
class Expected:
    error: str = ""
    quorate: bool = False
    quorum: int = 0
    total_votes: int = 0
    expected_votes: int = 0


def spec_answer(s: Scenario) -> Expected:
    """corosync 3.1's answer, straight from votequorum's formula."""
    n = len(s.votes)
    node_sum = sum(s.votes)
    # 3.3 / 3.5: startup errors
    if s.qdevice and s.two_node:
        return Expected(error="two_node and quorum device")
    atb = s.atb
    wfa = s.two_node if s.wait_for_all is None else s.wait_for_all
    two_node = s.two_node and not atb  # ATB disables two_node
    if atb and node_sum % 2 == 1 and not wfa:
        if s.lms:
            return Expected(error="auto_tie_breaker & last_man_standing")
        atb = False
    if s.qdevice and s.lms:
        return Expected(error="not compatible with last_man_standing")
    if s.qdevice and atb:
        return Expected(error="not compatible with auto_tie_breaker")
    qd_votes = 0
    if s.qdevice == "ffsplit":
        qd_votes = 1
    elif s.qdevice == "lms":
        qd_votes = n - 1  # automatic: N-1, expected becomes N + (N-1)
    configured = s.expected_votes or (node_sum + qd_votes)

    def quorum_for(expected: int, total: int, voters: int, floor: int) -> int:
        q = max((expected + 2) // 2, (total + 2) // 2, floor)  # quorum never drops by itself
        if two_node and voters <= 2:
            q = 1
        return q

    # whole cluster up, qnetd reachable: expected is raised to the votes present
    expected = max(configured, node_sum + qd_votes)
    total_up = node_sum + qd_votes
    voters_up = n + (1 if qd_votes else 0)
    q_up = quorum_for(expected, total_up, voters_up, 0)
    quorate_up = total_up >= q_up and (not wfa or total_up == expected)

    survivors = [i + 1 for i in range(n) if i + 1 not in s.failed]
    device_votes = qd_votes if (s.qdevice and s.qnetd_up) else 0
    total = sum(s.votes[i - 1] for i in survivors) + device_votes
    voters = len(survivors) + (1 if device_votes else 0)
    q = quorum_for(expected, total, voters, q_up)
    if wfa and not quorate_up and total != expected:
        return Expected(quorate=False, quorum=q, total_votes=total, expected_votes=expected)
    quorate = total >= q
    if atb and total == expected // 2 and n - len(survivors) < q and 1 in survivors:
        quorate = True  # lowest node id of the last quorate membership is node 1
    return Expected(quorate=quorate, quorum=q, total_votes=total, expected_votes=expected)


def generate(rng: random.Random) -> list[Scenario]:
    scenarios: list[Scenario] = []
    while len(scenarios) < SCENARIOS:
        n = rng.randint(1, 9)
        kind = rng.choice(["plain", "plain", "weights", "two_node", "qdevice", "atb", "lms", "ev"])
        votes = tuple(1 for _ in range(n))
        kw: dict[str, object] = {}
        if kind == "weights":
            votes = tuple(rng.choice([1, 1, 2, 3]) for _ in range(n))
        elif kind == "two_node":
            kw["two_node"] = True
            if rng.random() < 0.3:
                kw["wait_for_all"] = False
            if rng.random() < 0.15:
                kw["qdevice"] = "ffsplit"  # must be refused
        elif kind == "qdevice":
            kw["qdevice"] = rng.choice(["ffsplit", "lms"])
            kw["qnetd_up"] = rng.random() < 0.7
            if rng.random() < 0.1:
                kw["lms"] = True  # must be refused
        elif kind == "atb":
            kw["atb"] = True
            if rng.random() < 0.5:
                kw["wait_for_all"] = True
            if rng.random() < 0.2:
                kw["lms"] = True
            if rng.random() < 0.2:
                kw["two_node"] = True
        elif kind == "lms":
            kw["lms"] = True
        elif kind == "ev":
            kw["expected_votes"] = max(1, sum(votes) + rng.randint(-2, 2))
            if rng.random() < 0.4:
                kw["wait_for_all"] = True
        count = rng.randint(0, n - 1)  # at least one survivor to ask
        failed = tuple(sorted(rng.sample(range(1, n + 1), count)))
        scenarios.append(Scenario(votes=votes, failed=failed, **kw))  # type: ignore[arg-type]
    return scenarios


print(f"votequorum table: seed {SEED} (replay with PVECTL_SEED={SEED})")
ALL = generate(random.Random(SEED))


def model_answer(s: Scenario) -> Expected:
    try:
        options = QuorumOptions.build(
            [(i + 1, v) for i, v in enumerate(s.votes)],
            expected_votes=s.expected_votes,
            two_node=s.two_node,
            wait_for_all=s.wait_for_all,
            auto_tie_breaker=s.atb,
            last_man_standing=s.lms,
            qdevice_model="net" if s.qdevice else "",
            qdevice_votes=1 if s.qdevice == "ffsplit" else None,
            qdevice_algorithm=s.qdevice or "ffsplit",
        )
    except QuorumConfigError as exc:
        return Expected(error=str(exc))
    whole = cluster.start(options)
    survivors = [i + 1 for i in range(len(s.votes)) if i + 1 not in s.failed]
    after = cluster.reform(whole, [survivors], now=1.0, qnetd_up=s.qnetd_up)
    views = [after.state_of(node_id) for node_id in survivors]
    # every survivor must reach the same decision
    assert len({(v.quorate, v.quorum, v.total_votes) for v in views}) == 1, s.label()
    view = views[0]
    return Expected(
        quorate=view.quorate,
        quorum=view.quorum,
        total_votes=view.total_votes,
        expected_votes=view.expected_votes,
    )


def test_generated_scenarios_cover_the_space() -> None:
    assert len(ALL) >= 200
    assert {len(s.votes) for s in ALL} == set(range(1, 10))
    assert any(s.qdevice == "lms" for s in ALL) and any(s.qdevice == "ffsplit" for s in ALL)
    assert any(s.atb for s in ALL) and any(s.two_node for s in ALL)
    assert sum(1 for s in ALL if spec_answer(s).error) >= 5
    assert sum(1 for s in ALL if not spec_answer(s).error and not spec_answer(s).quorate) >= 30
    assert sum(1 for s in ALL if spec_answer(s).quorate) >= 30


@pytest.mark.parametrize("scenario", ALL, ids=[f"{i}" for i in range(len(ALL))])
def test_model_matches_corosync_formula(scenario: Scenario) -> None:
    want = spec_answer(scenario)
    got = model_answer(scenario)
    if want.error:
        assert want.error in got.error, f"seed {SEED}: {scenario.label()}"
        return
    assert not got.error, f"seed {SEED}: {scenario.label()}: {got.error}"
    assert got == want, f"seed {SEED}: {scenario.label()}"
