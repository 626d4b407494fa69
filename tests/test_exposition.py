"""Pre-rendered /metrics: same bytes as prometheus_client renders, rendered ahead of periodic scrapes."""

from __future__ import annotations

import gzip
import time

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily

from wan_exporter.web.exposition import PrerenderedMetrics

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


# -- part by part ----------------------------------------------------------------------

def exporter_parts():
    """The exporter's own registry and parts over the golden test's populated snapshot."""
    from dataclasses import replace

    from test_metrics_golden import CONFIG, fixed_snapshot
    from wan_exporter.app import App
    from wan_exporter.config import parse_config

    app = App(parse_config(CONFIG))
    app.store.update(lambda s: fixed_snapshot())
    col = app.snapshot_collector
    cache = PrerenderedMetrics(app.registry, lambda: (app.store.snapshot, app.config()), sections=col.sections)
    return app, cache, replace


def test_a_snapshot_change_re_renders_only_the_parts_that_read_it() -> None:
    from prometheus_client.openmetrics.exposition import generate_latest as om_latest

    app, cache, replace = exporter_parts()
    n_parts = len(app.snapshot_collector.parts)
    for accept, enc in ((None, None), (OM, "gzip")):
        _, body = cache.get(accept, enc)
        full = generate_latest(app.registry) if accept is None else om_latest(app.registry)
        assert (gzip.decompress(body) if enc else body) == full, "part by part gives the same bytes as one render"
    assert cache.part_renders == {"rendered": 2 * n_parts, "reused": 0}

    # A GPU poll: new readings (same memory totals) and the GPU collector's status, which the
    # exporter's own part publishes too.
    snap = app.store.snapshot
    gpus = tuple(replace(g, temperature_celsius=(g.temperature_celsius or 0) + 1) for g in snap.gpus)
    app.store.update(lambda s: replace(s, gpus=gpus, collectors={**s.collectors, "gpu": replace(s.collectors["gpu"],
                                                                                                duration_seconds=0.5)}))
    before = dict(cache.part_renders)
    _, body = cache.get(OM, "gzip")
    assert gzip.decompress(body) == om_latest(app.registry)
    assert sorted(cache.last_rendered) == ["exporter", "gpu"]
    assert cache.part_renders["reused"] - before["reused"] == n_parts - 2
    cache.close()


def test_gzip_body_is_one_member_any_decoder_reads(tmp_path) -> None:
    import shutil
    import subprocess
    import zlib

    app, cache, _ = exporter_parts()
    _, body = cache.get(OM, "gzip")
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)  # one gzip member, as single-member decoders read it
    assert d.decompress(body) == gzip.decompress(body) and d.eof and not d.unused_data
    if shutil.which("gzip"):
        (tmp_path / "m.gz").write_bytes(body)
        out = subprocess.run(["gzip", "-dc", str(tmp_path / "m.gz")], capture_output=True, check=True).stdout
        assert out == gzip.decompress(body)
    cache.close()


def test_a_part_reading_a_field_it_did_not_declare_is_reported_not_served_stale(caplog) -> None:
    from wan_exporter.collectors import SnapshotCollector
    from wan_exporter.state import Store

    class Sneaky:
        name = "sneaky"
        reads = ("host",)

        def families(self, snap, cfg):
            g = GaugeMetricFamily("wan_test_gpus", "GPUs.")
            g.add_metric([], len(snap.gpus))  # not declared
            return [g]

    col = SnapshotCollector(Store(), lambda: None, [Sneaky()])
    assert col.part_families(Sneaky(), Store().snapshot, None) is None
    assert "without declaring it in reads" in caplog.text


def test_a_part_whose_family_fails_to_encode_is_left_out_and_the_scrape_still_answers(caplog) -> None:
    from wan_exporter.collectors import SnapshotCollector
    from wan_exporter.state import Store

    class Good:
        name = "good"
        reads = ()

        def families(self, snap, cfg):
            g = GaugeMetricFamily("wan_test_good", "Good.")
            g.add_metric([], 1.0)
            return [g]

    class Unencodable:
        name = "unencodable"
        reads = ()

        def families(self, snap, cfg):
            g = GaugeMetricFamily("wan_test_bad", "Bad.", labels=["a"])
            g.add_metric([1], 1.0)  # a label value that is not a string: the encoder raises
            return [g]

    store = Store()
    col = SnapshotCollector(store, lambda: None, [Unencodable(), Good()])
    cache = PrerenderedMetrics(CollectorRegistry(), lambda: (store.snapshot,), sections=col.sections)
    for accept, enc in ((None, None), (OM, "gzip")):
        _, body = cache.get(accept, enc)
        text = gzip.decompress(body) if enc else body
        assert b"wan_test_good 1.0" in text and b"wan_test_bad" not in text
    assert text.endswith(b"# EOF\n")
    assert "encoding the unencodable metrics failed" in caplog.text
    cache.close()
