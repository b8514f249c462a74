"""Short fuzz budget in CI: every kept corpus input, then hypothesis-driven inputs per target.

Inputs are raw bytes or mutated seeds and corpus entries (libFuzzer-style edits), so the
decoders see both noise and nearly valid messages; hypothesis shrinks a crash to a small
input. The budget is ``PVECTL_FUZZ_INPUTS`` examples per target (default 300). A failure
prints the seed, and ``PVECTL_FUZZ_SEED=<seed>`` replays the same inputs. The long run is
``benchmarks/fuzz.py``.
"""

from __future__ import annotations

import os
import random
import traceback

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from tests.fuzz.harness import FuzzTarget, all_targets, corpus_of, generate, keep, mutate

TARGETS = all_targets()
BUDGET = int(os.environ.get("PVECTL_FUZZ_INPUTS", "300"))
SEED = int(os.environ.get("PVECTL_FUZZ_SEED", "0")) or random.SystemRandom().randrange(1, 2**32)


@pytest.mark.parametrize("target", TARGETS, ids=[t.name for t in TARGETS])
def test_corpus_replays_clean(target: FuzzTarget) -> None:
    for data in [*target.seeds, *corpus_of(target)]:
        try:
            target.run(data)
        except Exception:  # any escape is the bug under test
            pytest.fail(
                f"{target.name} crashes on kept input {data[:200]!r}:\n{traceback.format_exc()}"
            )


def _inputs(target: FuzzTarget) -> st.SearchStrategy[bytes]:
    raw = st.binary(max_size=min(target.max_size, 512))
    pool = [*target.seeds, *corpus_of(target)]
    if not pool:
        return raw
    mutated = st.builds(
        lambda start, rng: mutate(start, rng, target.max_size, pool),
        st.sampled_from(pool),
        st.randoms(use_true_random=False),
    )
    return st.one_of(mutated, mutated, mutated, raw)


@pytest.mark.parametrize("target", TARGETS, ids=[t.name for t in TARGETS])
def test_random_inputs_do_not_crash(target: FuzzTarget) -> None:
    print(f"fuzz seed {SEED} (replay: PVECTL_FUZZ_SEED={SEED})")

    @seed(SEED)
    @settings(
        max_examples=BUDGET,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(_inputs(target))
    def check(data: bytes) -> None:
        try:
            target.run(data)
        except Exception:
            path = keep(target, data)
            pytest.fail(
                f"{target.name} crashed (seed {SEED}, replay: PVECTL_FUZZ_SEED={SEED}); input "
                f"kept as {path.name}: {data[:200]!r}\n{traceback.format_exc()}"
            )

    check()


def test_harness_catches_a_crashing_decoder() -> None:
    """Mutation test of the harness itself: a decoder that fails on one byte is found."""

    def fragile(data: bytes) -> None:
        if b"\xff" in data:
            raise IndexError("planted bug")

    target = FuzzTarget("planted", fragile, seeds=[b"hello world"])
    rng = random.Random(SEED)
    crashed = False
    for _ in range(BUDGET):
        try:
            target.run(generate(target, rng))
        except IndexError:
            crashed = True
            break
    assert crashed, f"the harness never produced a 0xff byte in {BUDGET} inputs (seed {SEED})"
