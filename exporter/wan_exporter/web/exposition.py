"""Pre-rendered /metrics: a scrape writes bytes rendered for it, instead of rendering them itself.

Rendering (collectors build families, prometheus_client serialises them, gzip) costs about
1.5 ms per 100 series on a slow core, so inside the scrape it is the scrape's latency and
grows with every model and GPU. The exposition is a pure function of the immutable snapshot
and the config, so it can be rendered ahead of time:

* every variant a client asks for (content type x gzip) is cached with the snapshot and config
  it was rendered from; a scrape while they are unchanged is served from the cache;
* a variant scraped periodically is re-rendered in the background just before its next
  expected scrape (the last gap between two of its scrapes, minus a lead of twice its render
  time plus 0.25 s), and only if the snapshot or config changed. So a periodic scraper such as
  Prometheus is answered with bytes rendered at most ``lead + SLACK`` seconds earlier, and the
  exporter still renders about once per scrape, never once per snapshot change;
* any other scrape whose cached bytes are out of date renders at once, as before;
* a scrape that finds a render of its variant under way is served the cached bytes at once if
  they matched the snapshot at most ``lead + SLACK`` seconds earlier, instead of waiting.

A render re-renders only what changed. Given ``sections`` (the registry's parts, each with a
key of what it reads: :meth:`wan_exporter.collectors.SnapshotCollector.sections`), each
variant keeps every part's encoded bytes with its key, and a part whose key is unchanged is
reused. With gzip each part is also kept as its own deflate segment (compressed alone and
flushed to a byte boundary, as pigz does), so the body is the concatenation of the segments
in one gzip member: an unchanged part is not compressed again either.

gzip uses level 6 (Go's and node_exporter's default) rather than gzip.compress's 9: a quarter
of the CPU for a body about 5% larger.
"""

from __future__ import annotations

import gzip
import logging
import struct
import threading
import time
import zlib
from typing import Callable, Iterable, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import gzip_accepted

from .encode import Encoder, encoder_for

log = logging.getLogger(__name__)

SLACK = 0.5  # a periodic scrape this late (beyond its lead) still gets the pre-rendered bytes
FORGET_AFTER = 600.0  # a variant nobody asked for in this long is dropped


Section = tuple  # (name, key, render: () -> families or None when the part failed)
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # deflate, no name, no mtime, unknown OS


class _PartBytes:
    __slots__ = ("key", "raw", "deflated")

    def __init__(self, key: tuple, raw: bytes, deflated: bytes) -> None:
        self.key, self.raw, self.deflated = key, raw, deflated


def deflate_segment(data: bytes, level: int) -> bytes:
    """``data`` as raw deflate blocks that stand alone (no history before them) and end on a byte
    boundary without a final block, so segments concatenate into one stream."""
    c = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
    return c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)


_FINAL_BLOCK = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS).flush()  # an empty last block


def gzip_member(segments: Sequence[bytes], raws: Sequence[bytes]) -> bytes:
    crc, size = 0, 0
    for r in raws:
        crc = zlib.crc32(r, crc)
        size += len(r)
    return b"".join((GZIP_HEADER, *segments, _FINAL_BLOCK, struct.pack("<II", crc, size & 0xFFFFFFFF)))


class _Variant:
    def __init__(self, encoder: Encoder, content_type: str, gz: bool) -> None:
        self.encoder = encoder
        self.headers = [("Content-Type", content_type)] + ([("Content-Encoding", "gzip")] if gz else [])
        self.gzip = gz
        self.lock = threading.Lock()  # one render of a variant at a time
        self.body: bytes | None = None
        self.version: tuple = ()
        self.valid_at = 0.0  # when the bytes last matched the snapshot (rendered, or checked unchanged)
        self.render_seconds = 0.0
        self.last_request: float | None = None
        self.gap: float | None = None
        self.ahead_pending = False  # a render-ahead is owed before the next expected scrape
        self.ahead_ready = False  # the cached bytes were rendered ahead for the next scrape
        self.parts: dict[str, _PartBytes] = {}
        self.trailer: bytes | None = None  # what the encoder ends every exposition with ("# EOF" in OpenMetrics)

    @property
    def lead(self) -> float:
        return 0.25 + 2.0 * self.render_seconds


class PrerenderedMetrics:
    """Serves the registry's exposition from a cache kept fresh ahead of periodic scrapes."""

    def __init__(self, registry: CollectorRegistry, version: Callable[[], tuple], compresslevel: int = 6,
                 clock: Callable[[], float] = time.monotonic,
                 sections: Callable[[], Sequence[Section]] | None = None) -> None:
        self.registry = registry
        self.version = version  # objects whose identity changes whenever the exposition may change
        self.sections = sections  # the registry's content, part by part (else rendered whole)
        self.compresslevel = compresslevel
        self.clock = clock
        self._variants: dict[tuple[str, bool], _Variant] = {}
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopped = False
        self.renders = {"scrape": 0, "ahead": 0, "served_while_rendering": 0}
        self.part_renders = {"rendered": 0, "reused": 0}
        self.last_rendered: list[str] = []  # the parts the last render re-rendered

    # -- the scrape --------------------------------------------------------------------
    def get(self, accept: str | None, accept_encoding: str | None) -> tuple[list[tuple[str, str]], bytes]:
        encoder, content_type = encoder_for(accept or "")
        gz = gzip_accepted(accept_encoding or "")
        now = self.clock()
        with self._cond:
            v = self._variants.get((content_type, gz))
            if v is None:
                v = self._variants[(content_type, gz)] = _Variant(encoder, content_type, gz)
            if v.last_request is not None:
                v.gap = now - v.last_request
            v.last_request = now
            self._start()
        if not v.lock.acquire(blocking=False):
            # A render of this variant is under way (ahead of a scrape, or for another client): bytes
            # that matched the snapshot at most lead + SLACK ago are served at once instead of waiting.
            body = v.body
            if body is not None and now - v.valid_at <= v.lead + SLACK:
                self.renders["served_while_rendering"] += 1
                return v.headers, body
            v.lock.acquire()
        try:
            if not self._current(v) and not (v.ahead_ready and now - v.valid_at <= v.lead + SLACK):
                self._render(v)
                self.renders["scrape"] += 1
            v.ahead_ready = False
            body = v.body
        finally:
            v.lock.release()
        with self._cond:
            v.ahead_pending = True
            self._cond.notify()
        assert body is not None
        return v.headers, body

    def wsgi(self, fallback: Callable) -> Callable:
        """A WSGI app: plain GETs from the cache, anything else (``name[]``, OPTIONS) by ``fallback``."""

        def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
            if environ.get("REQUEST_METHOD") != "GET" or "name[]" in environ.get("QUERY_STRING", ""):
                return fallback(environ, start_response)
            headers, body = self.get(environ.get("HTTP_ACCEPT"), environ.get("HTTP_ACCEPT_ENCODING"))
            start_response("200 OK", headers + [("Content-Length", str(len(body)))])
            return [body]

        return app

    # -- rendering ---------------------------------------------------------------------
    def _current(self, v: _Variant) -> bool:
        cur = self.version()
        return v.body is not None and len(cur) == len(v.version) and all(a is b for a, b in zip(cur, v.version))

    def _render(self, v: _Variant) -> None:
        version = self.version()  # taken first: a change during the render is caught by the next check
        t0 = time.perf_counter()
        if self.sections is not None:
            out = self._assemble(v, self.sections())
        else:
            out = v.encoder(self.registry.collect())
            if v.gzip:
                out = gzip.compress(out, compresslevel=self.compresslevel)
        v.body, v.version = out, version
        v.render_seconds = time.perf_counter() - t0
        v.valid_at = self.clock()

    def _assemble(self, v: _Variant, sections: Sequence[Section]) -> bytes:
        """The exposition from each part's bytes, re-rendering only the parts whose key changed."""
        from ..collectors import same_key

        if v.trailer is None:
            v.trailer = v.encoder(())
        parts: dict[str, _PartBytes] = {}
        rendered = []
        for i, (name, key, render) in enumerate(sections):
            slot = f"{i}:{name}"  # two parts may share a collector's name
            pb = v.parts.get(slot)
            if pb is not None and same_key(pb.key, key):
                self.part_renders["reused"] += 1
            else:
                families = render()
                try:
                    raw = v.encoder(families or ())
                except Exception:  # noqa: BLE001 - one part that fails to encode never fails the scrape
                    log.exception("encoding the %s metrics failed; the part is left out", name)
                    families, raw = None, v.trailer
                if v.trailer and raw.endswith(v.trailer):
                    raw = raw[: -len(v.trailer)]
                pb = _PartBytes(key if families is not None else (object(),), raw,
                                deflate_segment(raw, self.compresslevel) if v.gzip else b"")
                self.part_renders["rendered"] += 1
                rendered.append(name)
            parts[slot] = pb
        v.parts = parts  # parts no longer served are dropped
        self.last_rendered = rendered
        raws = [pb.raw for pb in parts.values()] + [v.trailer]
        if not v.gzip:
            return b"".join(raws)
        segments = [pb.deflated for pb in parts.values()] + [deflate_segment(v.trailer, self.compresslevel)]
        return gzip_member(segments, raws)

    def _ahead(self, v: _Variant) -> None:
        with v.lock:
            if self._current(v):
                v.valid_at = self.clock()
            else:
                self._render(v)
                self.renders["ahead"] += 1
            v.ahead_ready = True

    # -- the background thread -----------------------------------------------------------
    def _start(self) -> None:
        if self._thread is None and not self._stopped:
            self._thread = threading.Thread(target=self._run, name="metrics-prerender", daemon=True)
            self._thread.start()

    def close(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()

    def _run(self) -> None:
        with self._cond:
            while not self._stopped:
                now = self.clock()
                due, wake_at = [], None
                for key, v in list(self._variants.items()):
                    if v.last_request is not None and now - v.last_request > max(FORGET_AFTER, 10 * (v.gap or 0)):
                        del self._variants[key]
                        continue
                    if not v.ahead_pending or v.gap is None:
                        continue
                    at = v.last_request + v.gap - v.lead
                    if at <= now:
                        v.ahead_pending = False
                        due.append(v)
                    else:
                        wake_at = at if wake_at is None else min(wake_at, at)
                if due:
                    self._cond.release()
                    try:
                        for v in due:
                            try:
                                self._ahead(v)
                            except Exception:  # noqa: BLE001 - the thread serves every later scrape too
                                log.exception("rendering /metrics ahead of a scrape failed")
                    finally:
                        self._cond.acquire()
                    continue
                self._cond.wait(None if wake_at is None else max(0.0, wake_at - now))
