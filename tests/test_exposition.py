"""Pre-rendered /metrics: same bytes as prometheus_client renders, rendered ahead of periodic scrapes."""

from __future__ import annotations

import gzip
import time

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily

from wan_exporter.exposition import PrerenderedMetrics

OM = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"


class Box:
    """A collector over a value whose identity changes on every update, like the store's snapshot."""

    def __init__(self) -> None:
        self.value = (1.0,)

    def collect(self):
        g = GaugeMetricFamily("wan_test_value", "A test value.")
        g.add_metric([], self.value[0])
        yield g


def make() -> tuple[Box, PrerenderedMetrics, CollectorRegistry]:
    box = Box()
    reg = CollectorRegistry()
    reg.register(box)
    return box, PrerenderedMetrics(reg, lambda: (box.value,)), reg


def test_same_bytes_as_prometheus_client_and_cached_while_unchanged() -> None:
    box, cache, reg = make()
    headers, body = cache.get("text/plain", None)
    assert body == generate_latest(reg)
    assert ("Content-Type", "text/plain; version=0.0.4; charset=utf-8") in headers
    cache.get("text/plain", None)
    assert cache.renders["scrape"] == 1  # unchanged snapshot: served from the cache
    box.value = (2.0,)
    _, body = cache.get("text/plain", None)
    assert b"wan_test_value 2.0" in body
    h, gz = cache.get(OM, "gzip")
    assert ("Content-Encoding", "gzip") in h and gzip.decompress(gz).rstrip().endswith(b"# EOF")
    cache.close()


def test_periodic_scrapes_get_bytes_rendered_ahead() -> None:
    box, cache, _ = make()
    gap = 0.4
    bodies = []
    for i in range(8):
        box.value = (float(i),)  # the snapshot changes between every two scrapes
        time.sleep(gap)
        bodies.append(cache.get("text/plain", None)[1])
    cache.close()
    # The first two scrapes render (no interval known yet); later ones find bytes rendered ahead.
    assert cache.renders["scrape"] <= 3, cache.renders
    assert cache.renders["ahead"] >= 4, cache.renders
    # Rendered ahead, after the change: every scrape still sees the value set before it.
    assert all(f"wan_test_value {float(i)}".encode() in b for i, b in enumerate(bodies))
