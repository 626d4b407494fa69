"""Exposition: translate one immutable snapshot into metric families, per concern.

Each part implements ``families(snapshot, config)``. :class:`SnapshotCollector` hands
every part the same snapshot, so one scrape is internally consistent, and a part that
raises is logged and skipped instead of failing the scrape.
"""

from __future__ import annotations

import logging
from typing import Callable, Iterable, Protocol

from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from ..config import Config
from ..state import Snapshot, Store

log = logging.getLogger(__name__)

# Every collector, by the name its --collector.NAME / --no-collector.NAME flags use (node_exporter
# style); all are on by default. "health" and "benchmark" switch their scheduled jobs off too.
COLLECTORS: dict[str, str] = {
    "exporter": "the exporter's own health: build, background collectors, scheduled jobs, config reloads",
    "models": "published capabilities of each model and what its checkpoint says",
    "gpu": "GPU figures from NVML (turn off where dcgm-exporter publishes them; NVML is still read "
           "for the benchmarks' busy-GPU check)",
    "host": "host memory and CPU, and the filesystems holding the models",
    "health": "model health checks (and their jobs) and the verdict",
    "benchmark": "scheduled benchmark generations (and their jobs), scores and recommendation",
}


class Part(Protocol):
    name: str

    def families(self, snap: Snapshot, cfg: Config) -> Iterable[Metric]: ...


class SnapshotCollector(Collector):
    def __init__(self, store: Store, config: Callable[[], Config], parts: list[Part]) -> None:
        self.store = store
        self.config = config
        self.parts = parts

    def collect(self) -> Iterable[Metric]:
        snap = self.store.snapshot
        cfg = self.config()
        for part in self.parts:
            try:
                families = list(part.families(snap, cfg))
            except Exception:  # noqa: BLE001 - one broken part never fails the scrape
                log.exception("exposition of %s failed", part.name)
                continue
            yield from families
