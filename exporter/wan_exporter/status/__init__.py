"""The status page at ``/``, its JSON twin at ``/api/v1/status`` and the page's stylesheet.

Both are rendered from the snapshot the collectors read, never from work of their own, in
the requesting thread: a scrape never waits on them. The rendered bytes are kept per
snapshot and config identity, so a page open in many browsers costs one rendering per
snapshot.
"""

from __future__ import annotations

import json
import threading
from importlib import resources
from typing import Any, Callable, Iterable

from ..config import Config
from ..state import Snapshot
from . import html, model

PAGE_PATH = "/"
API_PATH = "/api/v1/status"
CSS_PATH = "/status.css"
PATHS = frozenset({PAGE_PATH, API_PATH, CSS_PATH})
HTML_TYPE = "text/html; charset=utf-8"
JSON_TYPE = "application/json"


def stylesheet() -> bytes:
    return resources.files("wan_exporter").joinpath("data", "status.css").read_bytes()


class StatusPages:
    """WSGI app for :data:`PATHS`, over a source of the current (snapshot, config)."""

    def __init__(self, current: Callable[[], tuple[Snapshot, Config]]) -> None:
        self.current = current
        self._css = stylesheet()
        self._lock = threading.Lock()
        self._key: tuple[Any, Any] | None = None  # (snapshot, config) the cache below was rendered from
        self._rendered: dict[str, bytes] = {}

    def render(self, kind: str) -> bytes:
        """``kind`` "html" or "json", from the current snapshot; cached until the snapshot or config changes."""
        snap, cfg = self.current()
        with self._lock:
            if self._key is None or self._key[0] is not snap or self._key[1] is not cfg:
                self._key, self._rendered = (snap, cfg), {}
            cached = self._rendered.get(kind)
        if cached is not None:
            return cached
        view = model.build(snap, cfg)
        body = (html.render(view) if kind == "html" else json.dumps(view, sort_keys=True, indent=1) + "\n").encode()
        with self._lock:
            if self._key[0] is snap and self._key[1] is cfg:
                self._rendered[kind] = body
        return body

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if environ.get("REQUEST_METHOD", "GET") not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [("Content-Type", "text/plain; charset=utf-8"), ("Allow", "GET, HEAD")])
            return [b"Method not allowed.\n"]
        if path == CSS_PATH:
            body, ctype = self._css, "text/css; charset=utf-8"
        elif path == API_PATH:
            body, ctype = self.render("json"), JSON_TYPE
        else:
            body, ctype = self.render("html"), HTML_TYPE
        start_response("200 OK", [("Content-Type", ctype), ("Content-Length", str(len(body))),
                                  ("Cache-Control", "no-cache"), ("X-Content-Type-Options", "nosniff")])
        return [b"" if environ.get("REQUEST_METHOD") == "HEAD" else body]


__all__ = ["API_PATH", "CSS_PATH", "PAGE_PATH", "PATHS", "StatusPages"]
