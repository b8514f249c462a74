"""Whole nodes under the deterministic simulator (Totem + votequorum + the config store's
commit pipeline, the same ``NodeCore`` the runtime drives): crashes with a lost fsync
window, partitions, pauses, slow disks, writers on every node at both commit levels.

Each checker has a mutation test: a planted bug must be caught within the CI seed budget."""

from __future__ import annotations

import dataclasses
import os
import time

import pytest

from pvectl.cfs import dfsm
from pvectl.nodecore.commit import Command, CommitPipeline, Votes
from pvectl.nodecore.services import NodeServices, Output
from pvectl.sim.__main__ import main
from pvectl.sim.checker import InvariantViolation
from pvectl.sim.store import NodeSimulator, StoreResult
from pvectl.sim.world import Options

SEEDS = int(os.environ.get("PVECTL_STORE_SEEDS", "300"))
CHUNK = 50  # the swarm runs as parallel test chunks (pytest-xdist spreads them)
SAFETY_S = 3.0
MUTATION_BUDGET = range(SEEDS)


def run(seed: int) -> StoreResult:
    return NodeSimulator(seed, Options.draw(seed, safety_s=SAFETY_S)).run_store()


def first_violation() -> str:
    """Run the CI seeds until one fails; its message (or "" when none did)."""
    for seed in MUTATION_BUDGET:
        try:
            run(seed)
        except InvariantViolation as exc:
            assert str(exc).startswith(f"seed {seed}:")
            print(f"caught at seed {seed}")
            return str(exc)
    return ""


@pytest.mark.slow
@pytest.mark.parametrize("first", range(0, SEEDS, CHUNK))
def test_swarm_keeps_every_acknowledged_write(first: int) -> None:
    seeds = range(first, min(first + CHUNK, SEEDS))
    acknowledged = acknowledged_all = 0
    sizes: set[int] = set()
    started = time.perf_counter()
    for seed in seeds:
        try:
            result = run(seed)
        except InvariantViolation as exc:
            pytest.fail(
                f"replay with: python -m pvectl.sim --seed {seed} --safety {SAFETY_S}\n{exc}"
            )
        sizes.add(result.totem.options.nodes)
        acknowledged += result.acknowledged
        acknowledged_all += result.acknowledged_all
    elapsed = time.perf_counter() - started
    print(
        f"\nwhole nodes: {len(seeds)} seeds in {elapsed:.1f}s = {len(seeds) / elapsed * 60:.0f}/min"
    )
    assert sizes == {3, 4, 5, 6, 7}
    assert acknowledged_all > len(seeds) and acknowledged - acknowledged_all > len(seeds)


def test_mutant_inquorate_node_applies_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Drop the quorum gate at the delivery position: an inquorate partition applies."""
    monkeypatch.setattr(NodeServices, "_may_apply_writes", lambda self: True)
    found = first_violation()
    assert "is no quorum" in found


def test_mutant_local_write_answered_before_it_is_durable_on_a_quorum(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Answer a ``local`` writer once durable on its own node: a writer cut off right after
    its own agreed delivery, or whose peers crash before their fsync, loses the write."""
    monkeypatch.setattr(CommitPipeline, "durable_votes", lambda self, count, votes: 10**6)
    found = first_violation()
    assert "level local" in found and "lost" in found


def run_stalled(seed: int) -> StoreResult:
    """A seed with stalled disks forced on: a node's fsyncs lag its memory by seconds."""
    options = dataclasses.replace(Options.draw(seed, safety_s=SAFETY_S), disk_stalls=True)
    return NodeSimulator(seed, options).run_store()


# seeds with stalled disks: the mutant below is caught at seed 107 (and 233). A sync leader
# ranked by version alone (the epoch ignored) is no longer caught in 600 seeds since the
# queue and acknowledgement fixes closed seed 71's path another way; the epoch rule is kept
# as a second line and pinned by tests/test_cfs_dfsm.py's leader test.
STALL_BUDGET = range(108)


def first_stalled_violation() -> str:
    for seed in STALL_BUDGET:
        try:
            run_stalled(seed)
        except InvariantViolation as exc:
            print(f"caught at seed {seed}")
            return str(exc)
    return ""


def test_regression_acknowledged_write_survives_a_newer_quorate_history_on_an_older_disk() -> None:
    """Seed 71: nodes 1 and 2 apply up to version 67; node 2's fsync is stalled when it
    crashes, so it restarts on version 61; {2, 3} are quorate and acknowledge f2.2.141 at
    version 62; at the heal node 1's version 67 must not win the sync (its extra writes
    were never durable on a quorum, so never acknowledged at ``local``)."""
    result = run_stalled(71)
    assert result.acknowledged > 0 and result.split_brain is None


def test_regression_an_all_write_is_not_acknowledged_by_a_member_that_left_first() -> None:
    """Seed 1066 (6 s of faults): node 1 delivers its level-all write 54 in ring {1, 3}
    after node 3 left (node 1's disk stalled it in coupled mode); node 3 comes back and
    acknowledges node 1's later write 57, "durable up to 57", which covered the gap at 54:
    node 1 answered a write only it held, and the heal's sync dropped it."""
    result = NodeSimulator(1066, Options.draw(1066, safety_s=6.0)).run_store()
    assert result.acknowledged_all > 0 and result.split_brain is None


def test_regression_a_write_refused_by_a_member_is_not_acknowledged() -> None:
    """Seed 7120 (QDevice, qnetd down): nodes 2 and 3 withdraw the device's vote a moment
    apart; node 3's level-all write delivered between is refused on node 2 and applied on
    node 3, and node 2's later "durable up to 17" counted for it."""
    result = NodeSimulator(7120, Options.draw(7120, safety_s=6.0)).run_store()
    assert result.acknowledged > 0


def test_regression_a_cut_off_nodes_tree_does_not_tie_with_the_quorums() -> None:
    """Seed 7404: node 2, cut off, delivered its own write in the old ring before it knew;
    nodes 1 and 3 delivered the rest of that ring in their (quorate) transitional
    configuration. Both trees reached (epoch 9, version 41) with other content, and the
    tie-break chose node 2's, dropping a write nodes 1 and 3 had acknowledged."""
    result = NodeSimulator(7404, Options.draw(7404, safety_s=6.0)).run_store()
    assert result.acknowledged > 0


def test_mutant_stalled_disks_local_answered_when_durable_here_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(CommitPipeline, "durable_votes", lambda self, count, votes: 10**6)
    found = first_stalled_violation()
    assert "level local" in found and "lost" in found


def test_mutant_all_write_answered_without_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    """Answer an ``all`` writer once durable here, without the members' acknowledgements."""
    original = CommitPipeline.answer

    def early(self: CommitPipeline, members: tuple[int, ...], votes: Votes) -> list[Command]:
        for pending in self.writes.values():
            pending.members = ()  # nobody else to wait for
        return original(self, members, votes)

    monkeypatch.setattr(CommitPipeline, "answer", early)
    found = first_violation()
    assert "level all" in found and "lost" in found


def test_mutant_tie_counts_as_quorate(monkeypatch: pytest.MonkeyPatch) -> None:
    """A node that takes half of the votes for quorum disagrees with the votequorum model."""
    original = NodeServices._deliver_votequorum

    def tie(self: NodeServices, sender: int, payload: bytes) -> list[Output]:
        out = original(self, sender, payload)
        q = self.quorum
        settled = not self.pending_nodeinfo and not q.quorate
        if settled and 2 * len(self.members) >= q.expected_votes:
            self.quorum = dataclasses.replace(q, quorate=True)
        return out

    monkeypatch.setattr(NodeServices, "_deliver_votequorum", tie)
    found = first_violation()
    assert "the votequorum model says" in found


def test_mutant_rejoin_skips_the_dfsm_sync(monkeypatch: pytest.MonkeyPatch) -> None:
    """A member whose tree differs from the leader's declares itself synced anyway."""
    original = dfsm.Dfsm._all_states_received

    def skip(self: dfsm.Dfsm, now_s: int) -> list[dfsm.Command]:
        out = original(self, now_s)
        if self.mode is dfsm.Mode.UPDATE:
            self.mode = dfsm.Mode.SYNCED
            out += self._drain_queue()
        return out

    monkeypatch.setattr(dfsm.Dfsm, "_all_states_received", skip)
    found = first_violation()
    assert "stores differ after heal" in found


def test_replay_is_deterministic() -> None:
    assert run(7) == run(7)


def test_cli_runs_whole_nodes_and_counts_writes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--seeds", "3", "--seed-start", "100", "--safety", "2"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("3 seeds passed") and last.endswith(", lost: 0")
    assert int(last.split("acknowledged writes: ")[1].split(",")[0]) > 0


def test_cli_prints_one_replay_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(NodeServices, "_may_apply_writes", lambda self: True)
    assert main(["--seeds", "40", "--safety", str(SAFETY_S), "--quiet"]) == 1
    replays = [line for line in capsys.readouterr().err.splitlines() if line.startswith("replay: ")]
    assert len(replays) == 1 and "--seed " in replays[0] and "nodes, code " in replays[0]


def test_jobs_change_nothing_but_the_speed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--jobs 2 runs the seeds in two processes: the same totals for passing seeds, and
    with a planted bug the same (lowest) failing seed and replay command as one process."""
    totals = []
    for jobs in ("1", "2"):
        assert main(["--seeds", "4", "--seed-start", "60", "--safety", "2", "--jobs", jobs]) == 0
        last = capsys.readouterr().out.strip().splitlines()[-1]
        totals.append(last.split("acknowledged writes: ")[1])
    assert totals[0] == totals[1] and not totals[0].startswith("0,")
    monkeypatch.setattr(NodeServices, "_may_apply_writes", lambda self: True)
    replays = []
    for jobs in ("1", "2"):
        args = ["--seeds", "40", "--safety", str(SAFETY_S), "--quiet", "--jobs", jobs]
        assert main(args) == 1
        err = capsys.readouterr().err.splitlines()
        replays.append([line.split("  #")[0] for line in err if line.startswith("replay: ")])
    assert len(replays[0]) == 1 and replays[0] == replays[1]


def test_shrink_keeps_only_the_faults_the_failure_needs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A planted bug fails seed 0; --shrink drops faults while it still fails, and the
    replay command it prints (with --skip-faults) fails the same way."""
    monkeypatch.setattr(NodeServices, "_may_apply_writes", lambda self: True)
    assert main(["--seed", "0", "--safety", str(SAFETY_S), "--shrink"]) == 1
    out = capsys.readouterr().out
    print(out)
    head = next(line for line in out.splitlines() if "still fails with" in line)
    kept, total = (
        int(x) for x in head.split("still fails with ")[1].split(" faults")[0].split(" of ")
    )
    assert kept < total
    replay = next(line for line in out.splitlines() if line.startswith("replay: "))
    argv = replay.split("python -m pvectl.sim ")[1].split("  #")[0].split()
    assert "--skip-faults" in argv
    assert main(argv) == 1
