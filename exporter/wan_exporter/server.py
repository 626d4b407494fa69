"""HTTP endpoints: /metrics, a landing page, /-/healthy and /-/ready.

A plain WSGI app served by a threading WSGI server: /metrics is prometheus_client's own
WSGI app (content negotiation, gzip, ``name[]`` filtering) over our registry, so a scrape
only serialises the current snapshot.
"""

from __future__ import annotations

import html
import logging
import socket
import threading
from socketserver import ThreadingMixIn
from typing import Callable, Iterable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

from . import __version__

log = logging.getLogger(__name__)

WSGIApp = Callable[[dict, Callable], Iterable[bytes]]


def landing_page(models: list[str]) -> bytes:
    items = "".join(f"<li><code>{html.escape(m)}</code></li>" for m in models) or "<li>none configured</li>"
    return (
        "<!doctype html><html><head><title>wan-exporter</title></head><body>"
        f"<h1>wan-exporter {html.escape(__version__)}</h1>"
        "<p>Prometheus exporter for Wan video-generation models.</p>"
        '<ul><li><a href="metrics">Metrics</a></li><li><a href="-/healthy">Health</a></li>'
        '<li><a href="-/ready">Readiness</a></li></ul>'
        f"<h2>Models</h2><ul>{items}</ul></body></html>"
    ).encode()


def make_app(registry: CollectorRegistry, is_ready: Callable[[], bool], models: Callable[[], list[str]]) -> WSGIApp:
    metrics_app = make_wsgi_app(registry)

    def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            return metrics_app(environ, start_response)
        if path == "/":
            body = landing_page(models())
            start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
            return [body]
        if path == "/-/healthy":
            start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"Healthy.\n"]
        if path == "/-/ready":
            if is_ready():
                start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
                return [b"Ready.\n"]
            start_response("503 Service Unavailable", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"Not ready: first snapshot not built yet.\n"]
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"Not found.\n"]

    return app


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _DualStackServer(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s - %s", self.address_string(), format % args)


def parse_listen_address(addr: str) -> tuple[str, int]:
    """``HOST:PORT``, ``:PORT`` (all interfaces) or ``[::1]:PORT``."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"invalid listen address {addr!r}, expected HOST:PORT")
    host = host.strip("[]")
    return host or "0.0.0.0", int(port)


class HttpServer:
    def __init__(self, app: WSGIApp, address: str) -> None:
        host, port = parse_listen_address(address)
        cls = _DualStackServer if ":" in host else _Server
        self.httpd = make_server(host, port, app, server_class=cls, handler_class=_QuietHandler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="http", daemon=True)

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
