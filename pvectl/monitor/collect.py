"""The poll loop: every source read in parallel, none waited on past the deadline.

A node that does not answer within ``timeout`` keeps its last known values, marked stale;
its read goes on in the background and is not started again until it returns, so one dead
node never stalls a dashboard frame or a scrape.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait

from pvectl.corosync_conf import Section
from pvectl.errors import PvectlError
from pvectl.monitor import derive
from pvectl.monitor.fsync_probe import FsyncProbe
from pvectl.monitor.model import ClusterSnapshot, NodeReading, NodeView
from pvectl.monitor.sources import Source
from pvectl.results import QuorumStatus

Reading = tuple[NodeReading, Section | None]


class Collector:
    def __init__(
        self,
        sources: Sequence[Source],
        cluster: str = "",
        timeout: float = 5.0,
        probe: FsyncProbe | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if not sources:
            raise PvectlError("nothing to watch: no node given")
        self.sources = list(sources)
        self.cluster = cluster
        self.timeout = timeout
        self.probe = probe
        self._monotonic = monotonic
        self._wall = wall
        self._pool = ThreadPoolExecutor(max_workers=min(len(sources), 16))
        self._busy: dict[str, Future[Reading]] = {}
        self._previous: dict[str, tuple[NodeReading, float]] = {}
        self._views: dict[str, NodeView] = {}
        self._configs: dict[str, Section | None] = {}
        self._last_change_at: float | None = None
        self._since = wall()
        self._lock = threading.Lock()
        self.latest: ClusterSnapshot | None = None

    def poll(self) -> ClusterSnapshot:
        with self._lock:
            return self._poll()

    def _poll(self) -> ClusterSnapshot:
        for source in self.sources:
            if source.node not in self._busy:
                self._busy[source.node] = self._pool.submit(source.read)
        wait(list(self._busy.values()), timeout=self.timeout)
        now, at = self._monotonic(), self._wall()
        statuses: dict[str, QuorumStatus] = {}
        views: list[NodeView] = []
        for source in self.sources:
            node = source.node
            future = self._busy[node]
            if not future.done():
                view = derive.stale_view(
                    node, self._views.get(node), f"no answer within {self.timeout:g} s"
                )
            else:
                del self._busy[node]
                view = self._fresh(node, future, now, at, statuses)
            self._views[node] = view
            views.append(view)
        snap = derive.snapshot(
            self._cluster_name(statuses),
            at,
            views,
            statuses,
            self._configs,
            previous=self.latest,
            last_change_at=self._last_change_at,
            watching_since=self._since,
            probe=self.probe.reading() if self.probe is not None else None,
        )
        if snap.membership_change_seen:
            self._last_change_at = at - (snap.seconds_since_membership_change or 0.0)
        self.latest = snap
        return snap

    def _fresh(
        self,
        node: str,
        future: Future[Reading],
        now: float,
        at: float,
        statuses: dict[str, QuorumStatus],
    ) -> NodeView:
        try:
            reading, config = future.result()
        except PvectlError as exc:
            return derive.stale_view(node, self._views.get(node), str(exc))
        except Exception as exc:  # a bug reading one node must not stop the others
            return derive.stale_view(
                node, self._views.get(node), f"internal error: {type(exc).__name__}: {exc}"
            )
        previous = self._previous.get(node)
        self._previous[node] = (reading, now)
        self._configs[node] = config
        statuses[node] = reading.status
        return derive.node_view(
            node,
            reading,
            at,
            previous[0] if previous else None,
            now - previous[1] if previous else None,
        )

    def _cluster_name(self, statuses: dict[str, QuorumStatus]) -> str:
        for status in statuses.values():
            if status.cluster is not None and status.cluster.name:
                self.cluster = status.cluster.name
                break
        return self.cluster or "cluster"

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self.probe is not None:
            self.probe.stop()
