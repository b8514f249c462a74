"""Many seeds: one seed's outcome as a small record, and seeds run over several processes.

Seeds are independent, so a swarm uses every core by running them in worker processes
(forked: a planted bug in a mutation test reaches the workers too). A worker sends back
a ``SeedOutcome``, never a simulator; ``outcomes`` yields them in seed order, so the first
violation reported is the lowest failing seed whatever the number of processes.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Generator, Iterable
from dataclasses import dataclass

from pvectl.sim.checker import InvariantViolation
from pvectl.sim.store import NodeSimulator
from pvectl.sim.world import Options, Simulator


@dataclass(frozen=True)
class SeedJob:
    """What to run: a seed and the options ``python -m pvectl.sim`` takes."""

    seed: int
    nodes: int | None = None  # None: drawn by seed (3-7)
    safety_s: float = 6.0
    accelerated: bool = False
    totem_only: bool = False
    skip_faults: frozenset[int] = frozenset()
    trace: bool = False  # keep the last events of a passing seed (a replay)

    def options(self) -> Options:
        return Options.draw(
            self.seed, self.nodes, safety_s=self.safety_s, accelerated=self.accelerated
        )


@dataclass(frozen=True)
class SeedOutcome:
    """How one seed went; ``violation`` is empty when it passed."""

    seed: int
    nodes: int
    qdevice: bool
    simulated_s: float = 0.0
    converge_s: float = 0.0
    deliveries: int = 0
    acknowledged: int = 0
    acknowledged_all: int = 0
    split_brain: bool = False  # disjoint sides quorate: pvecm expected, or a moved vote
    overruled: int = 0  # acknowledged writes the heal overruled there, as it warns
    violation: str = ""  # what broke, the options and the last events
    trace: str = ""  # a passing seed's last events, when the job asked for them
    cpu_s: float = 0.0

    @property
    def headline(self) -> str:
        """The violation's first line."""
        return self.violation.splitlines()[0] if self.violation else ""


def run_seed(job: SeedJob) -> SeedOutcome:
    """Run one seed in this process."""
    opts = job.options()
    began = time.process_time()
    trace_len = 400 if job.trace else 60
    qdevice = bool(opts.qdevice) and not job.totem_only
    sim: Simulator
    try:
        if job.totem_only:
            sim = Simulator(
                job.seed, opts, trace=True, trace_len=trace_len, skip_faults=job.skip_faults
            )
            result = sim.run()
            stored = None
        else:
            sim = NodeSimulator(
                job.seed, opts, trace=True, trace_len=trace_len, skip_faults=job.skip_faults
            )
            stored = sim.run_store()
            result = stored.totem
    except InvariantViolation as exc:
        return SeedOutcome(
            job.seed,
            opts.nodes,
            qdevice,
            violation=str(exc),
            cpu_s=time.process_time() - began,
        )
    return SeedOutcome(
        job.seed,
        opts.nodes,
        qdevice,
        simulated_s=result.simulated_s,
        converge_s=result.converge_s,
        deliveries=result.deliveries,
        acknowledged=stored.acknowledged if stored else 0,
        acknowledged_all=stored.acknowledged_all if stored else 0,
        split_brain=bool(stored and stored.split_brain is not None),
        overruled=stored.lost_to_split_brain if stored else 0,
        trace="\n".join(sim.trace) if job.trace else "",
        cpu_s=time.process_time() - began,
    )


def outcomes(
    jobs: Iterable[SeedJob], processes: int = 1, *, ordered: bool = True
) -> Generator[SeedOutcome, None, None]:
    """Run ``jobs`` over ``processes`` worker processes (1: in this one). ``ordered``:
    yield in job order (else as they finish). Closing the iterator early stops the
    workers."""
    if processes <= 1:
        yield from map(run_seed, jobs)
        return
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        run = pool.imap if ordered else pool.imap_unordered
        yield from run(run_seed, jobs, chunksize=4)
