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
* any other scrape whose cached bytes are out of date renders at once, as before.

gzip uses level 6 (Go's and node_exporter's default) rather than gzip.compress's 9: a quarter
of the CPU for a body about 5% larger.
"""

from __future__ import annotations

import gzip
import threading
import time
from typing import Callable, Iterable

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder, gzip_accepted

SLACK = 0.5  # a periodic scrape this late (beyond its lead) still gets the pre-rendered bytes
FORGET_AFTER = 600.0  # a variant nobody asked for in this long is dropped


class _Variant:
    def __init__(self, encoder: Callable, content_type: str, gz: bool) -> None:
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

    @property
    def lead(self) -> float:
        return 0.25 + 2.0 * self.render_seconds


class PrerenderedMetrics:
    """Serves the registry's exposition from a cache kept fresh ahead of periodic scrapes."""

    def __init__(self, registry: CollectorRegistry, version: Callable[[], tuple], compresslevel: int = 6,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.registry = registry
        self.version = version  # objects whose identity changes whenever the exposition may change
        self.compresslevel = compresslevel
        self.clock = clock
        self._variants: dict[tuple[str, bool], _Variant] = {}
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopped = False
        self.renders = {"scrape": 0, "ahead": 0}

    # -- the scrape --------------------------------------------------------------------
    def get(self, accept: str | None, accept_encoding: str | None) -> tuple[list[tuple[str, str]], bytes]:
        encoder, content_type = choose_encoder(accept or "")
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
        with v.lock:
            if not self._current(v) and not (v.ahead_ready and now - v.valid_at <= v.lead + SLACK):
                self._render(v)
                self.renders["scrape"] += 1
            v.ahead_ready = False
            body = v.body
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
        out = v.encoder(self.registry)
        if v.gzip:
            out = gzip.compress(out, compresslevel=self.compresslevel)
        v.body, v.version = out, version
        v.render_seconds = time.perf_counter() - t0
        v.valid_at = self.clock()

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
                            self._ahead(v)
                    finally:
                        self._cond.acquire()
                    continue
                self._cond.wait(None if wake_at is None else max(0.0, wake_at - now))
