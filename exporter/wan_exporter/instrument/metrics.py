"""The traffic metric objects of one registry, built from the contract rows.

A serving process owns its metrics, so these are prometheus_client Counter/Histogram/Gauge
objects (not a custom collector): they work in the client's multiprocess mode
(``PROMETHEUS_MULTIPROC_DIR``) where every worker writes its own files and
``MultiProcessCollector`` adds them up. One set per registry, created on first use.
"""

from __future__ import annotations

import threading
from types import MappingProxyType
from typing import Any, Mapping

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from ..contract import traffic
from ..contract.family import Family

# How multiprocess mode combines each gauge across workers: requests in flight add up over the
# live workers; "last request" gauges take the most recent value written by any worker.
GAUGE_MULTIPROCESS_MODES = MappingProxyType({
    traffic.REQUESTS_IN_FLIGHT.name: "livesum",
    traffic.REQUEST_EXPERT_SWITCH_STEP.name: "mostrecent",
    traffic.REQUEST_PEAK_MEMORY_BYTES.name: "mostrecent",
    traffic.REQUEST_PEAK_FLOPS_PER_SECOND.name: "mostrecent",
    # Per-rank series carry an explicit rank label, so no pid label is added. What describes a rank
    # now (in flight, stalled) leaves with its process once the dead process's files are swept
    # (wan_exporter.instrument.multiprocess); the heartbeat and last figures stay, newest write wins.
    traffic.RANK_LAST_STEP_DURATION_SECONDS.name: "mostrecent",
    traffic.RANK_LAST_STEP_TIMESTAMP_SECONDS.name: "mostrecent",
    traffic.RANK_LAST_STEP.name: "mostrecent",
    traffic.RANK_PEAK_MEMORY_BYTES.name: "mostrecent",
    traffic.RANK_REQUESTS_IN_FLIGHT.name: "livesum",
    traffic.RANK_STALLED.name: "livemostrecent",
    traffic.RANK_COLLECTIVE_SEQUENCE.name: "livemostrecent",
})


class TrafficMetrics:
    """The metric objects, one attribute per contract row (``REQUESTS`` -> ``requests``)."""

    def __init__(self, registry: CollectorRegistry, buckets: Mapping[str, tuple[float, ...]]) -> None:
        self.registry = registry
        self.buckets = {name: tuple(float(b) for b in v) for name, v in buckets.items()}
        self._models: set[str] = set()
        self._lock = threading.Lock()
        t = traffic
        self.requests = self._make(t.REQUESTS)
        self.failures = self._make(t.REQUEST_FAILURES)
        self.in_flight = self._make(t.REQUESTS_IN_FLIGHT)
        self.duration = self._make(t.REQUEST_DURATION_SECONDS)
        self.queue_wait = self._make(t.REQUEST_QUEUE_WAIT_SECONDS)
        self.step = self._make(t.REQUEST_STEP_DURATION_SECONDS)
        self.phase = self._make(t.REQUEST_PHASE_DURATION_SECONDS)
        self.expert = self._make(t.REQUEST_EXPERT_DURATION_SECONDS)
        self.expert_switch = self._make(t.REQUEST_EXPERT_SWITCH_STEP)
        self.frames = self._make(t.REQUEST_FRAMES)
        self.video_seconds = self._make(t.REQUEST_VIDEO_SECONDS)
        self.pixels = self._make(t.REQUEST_PIXELS)
        self.peak_memory = self._make(t.REQUEST_PEAK_MEMORY_BYTES)
        self.output_checks = self._make(t.REQUEST_OUTPUT_CHECKS)
        self.sanity_failures = self._make(t.REQUEST_OUTPUT_SANITY_FAILURES)
        self.flops = self._make(t.REQUEST_FLOPS)
        self.peak_flops = self._make(t.REQUEST_PEAK_FLOPS_PER_SECOND)
        self.rank_step = self._make(t.RANK_STEP_DURATION_SECONDS)
        self.rank_last_step_duration = self._make(t.RANK_LAST_STEP_DURATION_SECONDS)
        self.rank_heartbeat = self._make(t.RANK_LAST_STEP_TIMESTAMP_SECONDS)
        self.rank_last_step = self._make(t.RANK_LAST_STEP)
        self.rank_in_flight = self._make(t.RANK_REQUESTS_IN_FLIGHT)
        self.rank_peak_memory = self._make(t.RANK_PEAK_MEMORY_BYTES)
        self.rank_stalled = self._make(t.RANK_STALLED)
        self.rank_collective_sequence = self._make(t.RANK_COLLECTIVE_SEQUENCE)
        self._ranks: set[tuple[str, str]] = set()

    def _make(self, fam: Family) -> Any:
        kw: dict[str, Any] = {"labelnames": fam.labels, "registry": self.registry}
        if fam.type == "counter":
            return Counter(fam.name, fam.help, **kw)
        if fam.type == "histogram":
            return Histogram(fam.name, fam.help, buckets=self.buckets[fam.name], **kw)
        return Gauge(fam.name, fam.help, multiprocess_mode=GAUGE_MULTIPROCESS_MODES.get(fam.name, "all"), **kw)

    def known(self, model: str) -> None:
        """Export zero for the series every model has, so rates and ratios exist before the first event."""
        with self._lock:
            if model in self._models:
                return
            self._models.add(model)
        for outcome in traffic.OUTCOMES:
            self.requests.labels(model, outcome)
        self.in_flight.labels(model)
        for counter in (self.frames, self.video_seconds, self.pixels, self.output_checks):
            counter.labels(model)

    def known_rank(self, model: str, rank: str) -> None:
        """Export zero for a rank's in-flight and stalled series from its first request on."""
        with self._lock:
            if (model, rank) in self._ranks:
                return
            self._ranks.add((model, rank))
        self.rank_in_flight.labels(model, rank)
        self.rank_stalled.labels(model, rank, "none")


_LOCK = threading.Lock()
_BY_REGISTRY: dict[int, TrafficMetrics] = {}


def for_registry(registry: CollectorRegistry | None = None,
                 buckets: Mapping[str, tuple[float, ...]] | None = None) -> TrafficMetrics:
    """The registry's traffic metrics, created on first use (default registry when None).

    ``buckets`` overrides the contract's defaults per family name; it applies when the metrics
    are created, and asking for other buckets later is an error rather than a silent no-op.
    """
    registry = REGISTRY if registry is None else registry
    wanted = dict(traffic.BUCKETS)
    unknown = set(buckets or {}) - set(wanted)
    if unknown:
        raise ValueError(f"no traffic histogram named {', '.join(sorted(unknown))}; histograms: "
                         f"{', '.join(sorted(wanted))}")
    wanted.update(buckets or {})
    with _LOCK:
        metrics = _BY_REGISTRY.get(id(registry))
        if metrics is None or metrics.registry is not registry:
            metrics = TrafficMetrics(registry, wanted)
            _BY_REGISTRY[id(registry)] = metrics
        elif buckets and any(metrics.buckets[k] != tuple(float(b) for b in v) for k, v in buckets.items()):
            raise ValueError("this registry's traffic histograms already exist with other buckets; "
                             "pass buckets= on the first instrument() or track.request() for the registry")
    return metrics


__all__ = ["GAUGE_MULTIPROCESS_MODES", "TrafficMetrics", "for_registry"]
