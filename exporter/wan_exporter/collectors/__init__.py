"""Exposition: translate one immutable snapshot into metric families, per concern.

Each part implements ``families(snapshot, config)``. :class:`SnapshotCollector` hands
every part the same snapshot, so one scrape is internally consistent, and a part that
raises is logged and skipped instead of failing the scrape.

A part declares the snapshot fields it reads (``reads``) and sees only those (a
:class:`SnapshotView`), so its output is a function of them and the config alone: the
pre-rendered /metrics (:mod:`wan_exporter.web.exposition`) re-renders a part only when one of
them changed. An entry of ``reads`` is a field name, compared by identity then equality
(snapshot mappings keep their identity across ``dataclasses.replace`` unless replaced), or
``(field, key)``: the part reads the field, but only ``key(value)`` matters to its output.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterable, Protocol, Sequence, Union

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


Read = Union[str, tuple[str, Callable[[Any], Any]]]


class Part(Protocol):
    name: str
    reads: Sequence[Read]  # optional: a part without it is rendered afresh every time

    def families(self, snap: Snapshot, cfg: Config) -> Iterable[Metric]: ...


class SnapshotView:
    """The snapshot fields a part declared; reading any other is an error, so that what the
    part declared is all its output can depend on."""

    __slots__ = ("_snap", "_fields", "_part")

    def __init__(self, snap: Snapshot, fields: frozenset[str], part: str) -> None:
        self._snap, self._fields, self._part = snap, fields, part

    def __getattr__(self, name: str) -> Any:
        if name in self._fields:
            return getattr(self._snap, name)
        raise AttributeError(f"part {self._part!r} reads snapshot field {name!r} without declaring it in reads")


def read_fields(part: Part) -> frozenset[str] | None:
    reads = getattr(part, "reads", None)
    return None if reads is None else frozenset(r if isinstance(r, str) else r[0] for r in reads)


def part_key(part: Part, snap: Snapshot, cfg: Config) -> tuple:
    """What the part's output depends on: the config and the fields it reads (or their keys)."""
    reads = getattr(part, "reads", None)
    if reads is None:
        return (object(),)  # never equal to an earlier key
    return (cfg, *(getattr(snap, r) if isinstance(r, str) else r[1](getattr(snap, r[0])) for r in reads))


def same_key(a: tuple, b: tuple) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if x is y:
            continue
        try:
            if not (x == y):
                return False
        except Exception:  # noqa: BLE001 - incomparable values: treat as changed
            return False
    return True


class SnapshotCollector(Collector):
    def __init__(self, store: Store, config: Callable[[], Config], parts: list[Part]) -> None:
        self.store = store
        self.config = config
        self.parts = parts

    def part_families(self, part: Part, snap: Snapshot, cfg: Config) -> list[Metric] | None:
        """The part's families from ``snap`` as the part may see it; None (logged) if it failed."""
        fields = read_fields(part)
        view: Any = snap if fields is None else SnapshotView(snap, fields, part.name)
        try:
            return list(part.families(view, cfg))
        except Exception:  # noqa: BLE001 - one broken part never fails the scrape
            log.exception("exposition of %s failed", part.name)
            return None

    def sections(self) -> list[tuple[str, tuple, Callable[[], list[Metric] | None]]]:
        """Per part, from one snapshot: its name, its key (:func:`part_key`), and a callable
        rendering its families."""
        snap = self.store.snapshot
        cfg = self.config()
        return [(part.name, part_key(part, snap, cfg), lambda part=part: self.part_families(part, snap, cfg))
                for part in self.parts]

    def collect(self) -> Iterable[Metric]:
        snap = self.store.snapshot
        cfg = self.config()
        for part in self.parts:
            yield from self.part_families(part, snap, cfg) or ()
