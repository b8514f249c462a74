"""The fuzz harness: one registry of decoders that read bytes or text from outside.

Each ``targets_*.py`` module in this directory exposes ``TARGETS``, a list of
``FuzzTarget``. A target's ``run`` feeds one input to a decoder (or a protocol core) and
returns normally when the input is accepted *or* rejected with the decoder's documented
error; any other exception is a crash. The same registry drives the short CI budget
(``test_fuzz.py``) and the long run (``benchmarks/fuzz.py``), and every crashing input
found is kept under ``corpus/<target name>/`` so it is replayed on every run.
"""

from __future__ import annotations

import hashlib
import importlib
import pkgutil
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

CORPUS = Path(__file__).resolve().parent / "corpus"


@dataclass(frozen=True)
class FuzzTarget:
    """A decoder under fuzz: ``run(data)`` raises only on a bug."""

    name: str
    run: Callable[[bytes], None]
    seeds: Sequence[bytes] = field(default=())
    max_size: int = 4096


def all_targets() -> list[FuzzTarget]:
    """Every target of every ``targets_*`` module, sorted by name for stable test ids."""
    package = Path(__file__).resolve().parent
    found: list[FuzzTarget] = []
    for info in pkgutil.iter_modules([str(package)]):
        if info.name.startswith("targets_"):
            module = importlib.import_module(f"tests.fuzz.{info.name}")
            found.extend(module.TARGETS)
    names = [t.name for t in found]
    duplicated = {n for n in names if names.count(n) > 1}
    assert not duplicated, f"fuzz target names used twice: {sorted(duplicated)}"
    return sorted(found, key=lambda t: t.name)


def corpus_of(target: FuzzTarget) -> list[bytes]:
    """The kept inputs (crashes found once, interesting shapes) of one target."""
    directory = CORPUS / target.name
    if not directory.is_dir():
        return []
    return [path.read_bytes() for path in sorted(directory.iterdir()) if path.is_file()]


def keep(target: FuzzTarget, data: bytes) -> Path:
    """Store a crashing input in the corpus under its content hash."""
    directory = CORPUS / target.name
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / (hashlib.sha1(data).hexdigest()[:16] + ".bin")
    path.write_bytes(data)
    return path


_INTERESTING = (0, 1, 0x7F, 0x80, 0xFF)


def mutate(data: bytes, rng: random.Random, max_size: int, pool: Sequence[bytes]) -> bytes:
    """A few byte-level edits in the style of libFuzzer: flips, interesting bytes, inserts,
    deletes, duplicated ranges and splices with another input of the pool."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        choice = rng.randrange(7)
        if choice == 0 and buf:
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
        elif choice == 1 and buf:
            buf[rng.randrange(len(buf))] = rng.choice(_INTERESTING)
        elif choice == 2:
            i = rng.randrange(len(buf) + 1)
            buf[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif choice == 3 and buf:
            i = rng.randrange(len(buf))
            del buf[i : i + rng.randint(1, 16)]
        elif choice == 4 and buf:
            i = rng.randrange(len(buf))
            j = min(len(buf), i + rng.randint(1, 64))
            buf[i:i] = buf[i:j]
        elif choice == 5 and pool:
            other = rng.choice(pool)
            cut = rng.randrange(len(buf) + 1)
            buf = buf[:cut] + other[rng.randrange(len(other) + 1) :]
        elif choice == 6 and len(buf) >= 4:
            i = rng.randrange(len(buf) - 3)
            buf[i : i + 4] = rng.choice(
                (b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff")
            )
    return bytes(buf[:max_size])


def generate(target: FuzzTarget, rng: random.Random) -> bytes:
    """One input: mostly a mutated seed or corpus entry, sometimes random bytes."""
    pool = [*target.seeds, *corpus_of(target)]
    if pool and rng.random() < 0.85:
        return mutate(rng.choice(pool), rng, target.max_size, pool)
    return rng.randbytes(rng.randint(0, min(target.max_size, 512)))
