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
