"""The optional fsync probe: a small write and fdatasync every few seconds in a chosen
directory, kept as a rolling p99. A slow disk stalls a cluster's config writes (pmxcfs
commits every change to disk), so the watch shows how long the disk takes right now."""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from pathlib import Path

from pvectl.errors import ExitCode, PvectlError
from pvectl.monitor.derive import percentile
from pvectl.monitor.model import ProbeReading

BLOCK = b"\0" * 4096
WINDOW = 120  # samples in the rolling p99


class FsyncProbe:
    """Runs in a daemon thread; ``reading()`` is safe from any thread."""

    def __init__(self, directory: str, interval_s: float = 10.0, window: int = WINDOW) -> None:
        self.directory = directory
        self.interval_s = interval_s
        self.samples: deque[float] = deque(maxlen=window)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.path = Path(directory) / f".pvectl-fsync-probe.{os.getpid()}"
        if not Path(directory).is_dir():
            raise PvectlError(f"--fsync-probe {directory}: not a directory", ExitCode.NO_INPUT)

    def sample(self) -> float:
        """One write+fdatasync of 4 KiB at the start of the probe file, in seconds."""
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
        except OSError as exc:
            raise PvectlError(
                f"--fsync-probe {self.directory}: cannot write: {exc.strerror}",
                ExitCode.CANT_CREATE,
            ) from exc
        try:
            started = time.perf_counter()
            os.pwrite(fd, BLOCK, 0)
            os.fdatasync(fd)
            took = time.perf_counter() - started
        finally:
            os.close(fd)
        with self._lock:
            self.samples.append(took)
        return took

    def start(self) -> None:
        self.sample()  # fail now, on the command line, if the directory is not writable
        self._thread = threading.Thread(target=self._run, name="fsync-probe", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.sample()
            except PvectlError:
                continue  # a full or read-only disk: the p99 simply stops moving

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.path.unlink(missing_ok=True)

    def reading(self) -> ProbeReading:
        with self._lock:
            values = list(self.samples)
        return ProbeReading(
            directory=self.directory,
            samples=len(values),
            p99_s=percentile(values, 0.99),
            last_s=values[-1] if values else None,
        )
