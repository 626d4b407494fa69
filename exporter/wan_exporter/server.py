"""HTTP endpoints: /metrics, a landing page, /-/healthy and /-/ready, served with limits.

A plain WSGI app served by a threading WSGI server: /metrics is prometheus_client's own
WSGI app (content negotiation, gzip, ``name[]`` filtering) over our registry, so a scrape
only serialises the current snapshot.

The server keeps serving when clients misbehave (see :class:`Limits`):

* a connection gets ``header_timeout`` in total for the TLS handshake, request line and
  headers, then it is dropped, so slow clients cannot pin threads;
* at most ``max_requests`` requests are served at once; one more is answered 503 at once,
  never queued. ``/-/healthy`` is exempt, so liveness probes pass under load;
* at most ``max_connections`` connections are open at all; beyond that they are closed on
  accept;
* writing an answer is bounded by ``write_timeout``, or by the scrape's own budget from
  ``X-Prometheus-Scrape-Timeout-Seconds``; a scrape whose rendering already overran that
  budget gets 503 rather than a late answer Prometheus would discard anyway.

TLS, basic auth and headers come from ``--web.config.file`` (:mod:`wan_exporter.webconfig`);
the server does the TLS handshake in the connection's thread, with the context current at
that moment, so certificates rotate without a restart.
"""

from __future__ import annotations

import html
import logging
import math
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Callable, Iterable
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

from . import __version__

if TYPE_CHECKING:
    from .webconfig import WebSecurity

log = logging.getLogger(__name__)

WSGIApp = Callable[[dict, Callable], Iterable[bytes]]

HEALTH_PATH = "/-/healthy"
SCRAPE_TIMEOUT_HEADER = "X-Prometheus-Scrape-Timeout-Seconds"
# environ keys: the monotonic time by which a scrape's answer must be complete (from its
# timeout header), and a callable that bounds the rest of the answer's writing to a time.
DEADLINE_KEY = "wan_exporter.deadline"
BOUND_WRITE_KEY = "wan_exporter.bound_write"
REFUSAL_GRACE = 1.0  # seconds granted to deliver a 503 once a scrape's budget has run out
TEXT = ("Content-Type", "text/plain; charset=utf-8")


@dataclass(frozen=True)
class Limits:
    max_requests: int = 16  # served at once; beyond: 503 at once (/-/healthy exempt)
    max_connections: int = 64  # open at all, incl. those still sending headers; beyond: closed on accept
    header_timeout: float = 5.0  # TLS handshake + request line + headers, in total
    write_timeout: float = 30.0  # one answer, in total (a scrape's budget when that is shorter)


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


def _within_budget(app: WSGIApp) -> WSGIApp:
    """Render fully, then answer 503 instead if the scrape's budget has already run out;
    otherwise the writing of the answer must end within that budget."""

    def wrapped(environ: dict, start_response: Callable) -> Iterable[bytes]:
        deadline = environ.get(DEADLINE_KEY)
        if deadline is None:
            return app(environ, start_response)
        captured: list = []
        body = b"".join(app(environ, lambda status, headers, exc_info=None: captured.append((status, headers))))
        bound_write = environ.get(BOUND_WRITE_KEY, lambda t: None)
        if time.monotonic() > deadline:
            bound_write(time.monotonic() + REFUSAL_GRACE)
            budget = environ.get("HTTP_X_PROMETHEUS_SCRAPE_TIMEOUT_SECONDS", "?")
            log.warning("scrape took longer than its %ss budget; answered 503", budget)
            start_response("503 Service Unavailable", [TEXT])
            return [f"Scrape budget of {budget}s exceeded while rendering.\n".encode()]
        bound_write(deadline)
        start_response(*captured[-1])
        return [body]

    return wrapped


def make_app(registry: CollectorRegistry, is_ready: Callable[[], bool], models: Callable[[], list[str]],
             version: Callable[[], tuple] | None = None, status: WSGIApp | None = None) -> WSGIApp:
    """The exporter's endpoints. With ``version`` (objects whose identity changes whenever the
    exposition may change: the snapshot and the config), /metrics is served pre-rendered
    (:mod:`wan_exporter.exposition`); the cache is the returned app's ``metrics_cache``. With
    ``status`` (:class:`wan_exporter.status.StatusPages`), it serves ``/``, ``/api/v1/status`` and
    the page's stylesheet instead of the plain landing page."""
    from .status import PATHS as STATUS_PATHS

    metrics_raw = make_wsgi_app(registry)
    cache = None
    if version is not None:
        from .exposition import PrerenderedMetrics

        cache = PrerenderedMetrics(registry, version)
        metrics_raw = cache.wsgi(metrics_raw)
    metrics_app = _within_budget(metrics_raw)

    def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            return metrics_app(environ, start_response)
        if status is not None and path in STATUS_PATHS:
            return status(environ, start_response)
        if path == "/":
            body = landing_page(models())
            start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
            return [body]
        if path == HEALTH_PATH:
            start_response("200 OK", [TEXT])
            return [b"Healthy.\n"]
        if path == "/-/ready":
            if is_ready():
                start_response("200 OK", [TEXT])
                return [b"Ready.\n"]
            start_response("503 Service Unavailable", [TEXT])
            return [b"Not ready: first snapshot not built yet.\n"]
        start_response("404 Not Found", [TEXT])
        return [b"Not found.\n"]

    app.metrics_cache = cache  # type: ignore[attr-defined]
    return app


def parse_scrape_timeout(value: str | None) -> float | None:
    """Seconds from ``X-Prometheus-Scrape-Timeout-Seconds``; None when absent or unusable."""
    if not value:
        return None
    try:
        v = float(value)
    except ValueError:
        return None
    return v if math.isfinite(v) and v > 0 else None


# --------------------------------------------------------------------------- limits


class _Reaper:
    """Shuts down connections that overrun their deadline, whatever they are blocked on.

    A per-operation socket timeout alone would let a client that trickles one byte at a time
    keep a connection forever; this bounds the total.
    """

    def __init__(self, tick: float = 0.1) -> None:
        self.tick = tick
        self._cond = threading.Condition()
        self._items: dict[int, tuple[float, socket.socket]] = {}
        self._stopped = False
        self.reaped = 0
        self._thread = threading.Thread(target=self._run, name="http-reaper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()

    def set(self, key: int, sock: socket.socket, deadline: float) -> None:
        with self._cond:
            self._items[key] = (deadline, sock)
            self._cond.notify()

    def clear(self, key: int) -> None:
        with self._cond:
            self._items.pop(key, None)

    def _run(self) -> None:
        with self._cond:
            while not self._stopped:
                self._cond.wait(self.tick if self._items else None)
                now = time.monotonic()
                for key, (deadline, sock) in list(self._items.items()):
                    if deadline <= now:
                        del self._items[key]
                        self.reaped += 1
                        try:
                            # The plain socket method: on an SSLSocket it shuts the fd down under the
                            # TLS layer, which wakes a blocked read or write in the handler thread.
                            socket.socket.shutdown(sock, socket.SHUT_RDWR)
                        except OSError:
                            pass  # already closed


class _Stats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: dict[str, int] = {}

    def inc(self, name: str) -> None:
        with self._lock:
            self.counts[name] = self.counts.get(name, 0) + 1


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    block_on_close = False  # stopping never waits for a slow client
    allow_reuse_address = True
    request_queue_size = 128  # listen backlog: bursts of scrapes wait in the kernel, not refused

    limits: Limits
    web: "WebSecurity | None"

    def configure(self, limits: Limits, web: "WebSecurity | None") -> None:
        self.limits = limits
        self.web = web
        self.conn_slots = threading.BoundedSemaphore(limits.max_connections)
        self.request_slots = threading.BoundedSemaphore(limits.max_requests)
        self.reaper = _Reaper()
        self.stats = _Stats()

    def process_request(self, request: socket.socket, client_address: tuple) -> None:
        if not self.conn_slots.acquire(blocking=False):
            self.stats.inc("connections_refused")
            log.debug("too many open connections (%d): closing %s", self.limits.max_connections, client_address)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.conn_slots.release()
            raise

    def process_request_thread(self, request: socket.socket, client_address: tuple) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.conn_slots.release()

    def handle_error(self, request: object, client_address: tuple) -> None:
        log.debug("connection from %s failed", client_address, exc_info=True)


class _DualStackServer(_Server):
    address_family = socket.AF_INET6


class _ServerHandler(ServerHandler):
    def log_exception(self, exc_info: tuple) -> None:
        what = (self.environ.get("REQUEST_METHOD"), self.environ.get("PATH_INFO"), exc_info[1])
        if isinstance(exc_info[1], OSError):  # the client went away or stalled past its deadline
            log.debug("answering %s %s cut short: %s", *what)
        else:
            log.error("error while answering %s %s: %r", *what, exc_info=exc_info)


def _close_tls(conn: ssl.SSLSocket) -> None:
    """Send close_notify without waiting for the peer's, then close."""
    try:
        conn.setblocking(False)
        conn.unwrap()
    except (OSError, ValueError):
        pass
    finally:
        conn.close()


def _refuse_plain_http(conn: socket.socket) -> None:
    """Plain HTTP reached the TLS port: say so in plain HTTP, as Go's server does."""
    sock = socket.socket  # the plain methods: below the TLS layer that refused the bytes
    try:
        sock.sendall(conn, b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
                           b"Connection: close\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
        sock.shutdown(conn, socket.SHUT_WR)
        # Drain what is left of the request briefly, so closing does not reset the answer away.
        conn.settimeout(0.2)
        for _ in range(16):
            if not sock.recv(conn, 4096):
                break
    except OSError:
        pass


class _Handler(WSGIRequestHandler):
    """One request per connection (HTTP/1.0), within :class:`Limits`."""

    server: _Server

    def setup(self) -> None:
        srv = self.server
        self._ready = False
        self._slot = False
        raw = self.request
        deadline = self._header_deadline = time.monotonic() + srv.limits.header_timeout
        raw.settimeout(srv.limits.header_timeout)  # per operation; the reaper bounds the total
        srv.reaper.set(id(self), raw, deadline)
        ctx = srv.web.ssl_context() if srv.web is not None and srv.web.tls_enabled else None
        if ctx is not None:
            try:
                conn = ctx.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
            except (OSError, ValueError) as e:
                log.debug("TLS setup for %s failed: %s", self.client_address, e)
                return
            self.request = conn
            srv.reaper.set(id(self), conn, deadline)  # raw is now detached from its fd
            try:
                conn.do_handshake()
                problem = srv.web.check_client_cert(conn)
            except (OSError, ValueError) as e:
                srv.stats.inc("tls_handshake_failed")
                log.debug("TLS handshake with %s failed: %s", self.client_address, e)
                if isinstance(e, ssl.SSLError) and e.reason == "HTTP_REQUEST":
                    _refuse_plain_http(conn)
                return
            if problem:
                srv.stats.inc("tls_client_refused")
                log.info("refused TLS client %s: %s", self.client_address[0], problem)
                return
        super().setup()
        self._ready = True

    def handle(self) -> None:
        if not self._ready:
            return
        srv = self.server
        self.raw_requestline = b""
        try:
            self.raw_requestline = self.rfile.readline(65537)
            if not self.raw_requestline:
                return
            if len(self.raw_requestline) > 65536:
                self.requestline = self.request_version = self.command = ""
                self.send_error(414)
                return
            if not self.parse_request():
                return
        except (OSError, ValueError) as e:
            srv.stats.inc("requests_dropped")
            log.debug("dropped %s while reading the request: %s", self.client_address, e)
            return
        now = time.monotonic()
        if now > self._header_deadline:  # the reaper cut it off mid-headers: what we have is partial
            srv.stats.inc("requests_dropped")
            return
        budget = parse_scrape_timeout(self.headers.get(SCRAPE_TIMEOUT_HEADER))
        self._bound_write(now + srv.limits.write_timeout)
        path = self.path.split("?", 1)[0]
        if path != HEALTH_PATH:
            if not srv.request_slots.acquire(blocking=False):
                srv.stats.inc("requests_rejected")
                self._overloaded()
                return
            self._slot = True
        environ = self.get_environ()
        if budget is not None:
            environ[DEADLINE_KEY] = now + budget
            environ[BOUND_WRITE_KEY] = self._bound_write
        handler = _ServerHandler(self.rfile, self.wfile, self.get_stderr(), environ, multithread=True)
        handler.request_handler = self
        try:
            handler.run(srv.get_app())
        except (OSError, ValueError) as e:
            log.debug("answer to %s cut short: %s", self.client_address, e)

    def _bound_write(self, deadline: float) -> None:
        """The answer must be written by ``deadline``: per send (socket timeout) and in total (reaper)."""
        self.server.reaper.set(id(self), self.request, deadline)
        self.request.settimeout(max(0.05, deadline - time.monotonic()))

    def _overloaded(self) -> None:
        body = f"Too many concurrent requests (limit {self.server.limits.max_requests}); try again.\n".encode()
        try:
            self.send_response(503)
            for k, v in (TEXT, ("Content-Length", str(len(body))), ("Retry-After", "1"), ("Connection", "close"),
                         *(self.server.web.extra_headers() if self.server.web else ())):
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass

    def finish(self) -> None:
        try:
            if self._ready:
                super().finish()
        except (OSError, ValueError):
            pass
        finally:
            self.server.reaper.clear(id(self))
            if self._slot:
                self.server.request_slots.release()
                self._slot = False
            if isinstance(self.request, ssl.SSLSocket):
                _close_tls(self.request)

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
    """Serves ``app`` on ``address`` within ``limits``.

    ``web`` (TLS for the socket) defaults to the ``web_security`` attribute of ``app``, which
    :func:`wan_exporter.webconfig.make_wrapper`'s wrapper sets, so ``App.start(listen,
    wsgi_wrapper)`` needs no other wiring.
    """

    def __init__(self, app: WSGIApp, address: str, *, limits: Limits | None = None,
                 web: "WebSecurity | None" = None, poll_interval: float = 0.5) -> None:
        host, port = parse_listen_address(address)
        cls = _DualStackServer if ":" in host else _Server
        self.limits = limits or Limits()
        self.web = web if web is not None else getattr(app, "web_security", None)
        self.httpd = make_server(host, port, app, server_class=cls, handler_class=_Handler)
        self.httpd.configure(self.limits, self.web)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(poll_interval,), name="http",
                                       daemon=True)

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    @property
    def scheme(self) -> str:
        return "https" if self.web is not None and self.web.tls_enabled else "http"

    @property
    def stats(self) -> dict[str, int]:
        """Counts of refused connections, rejected requests, timeouts, failed handshakes."""
        return {**self.httpd.stats.counts, "reaped": self.httpd.reaper.reaped}

    def start(self) -> None:
        self.httpd.reaper.start()
        self.thread.start()
        if self.web is not None:
            cfg = self.web.state.config
            log.info("web config %s: TLS %s%s, basic auth %s", self.web.path,
                     "on" if self.web.tls_enabled else "off",
                     f" (client_auth_type {cfg.tls.client_auth_type})" if cfg.tls else "",
                     f"on ({len(cfg.users)} users)" if cfg.users else "off")

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.httpd.reaper.stop()
