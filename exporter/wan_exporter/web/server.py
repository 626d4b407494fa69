"""HTTP endpoints: /metrics, a landing page, /-/healthy and /-/ready, served with limits.

/metrics is prometheus_client's own WSGI app (content negotiation, gzip, ``name[]``
filtering) over our registry, so a scrape only serialises the current snapshot.

The server keeps serving when clients misbehave (see :class:`Limits`):

* a connection that is idle or still sending its request head costs a selector entry, not a
  thread (:mod:`wan_exporter.web.connections`); it gets ``header_timeout`` in total for the TLS
  handshake, request line and headers, then it is dropped;
* at most ``max_connections`` connections are open; at the cap the stalest half-open one is
  closed to make room, so a client holding many idle connections cannot keep a scraper out;
* at most ``max_requests`` requests are served at once, each on a kept thread; one more is
  answered 503 at once, never queued. ``/-/healthy`` has slots of its own, so liveness probes
  pass under load;
* writing an answer is bounded by ``write_timeout``, or by the scrape's own budget from
  ``X-Prometheus-Scrape-Timeout-Seconds``; a scrape whose rendering already overran that
  budget gets 503 rather than a late answer Prometheus would discard anyway.

TLS, basic auth and headers come from ``--web.config.file`` (:mod:`wan_exporter.web.config`);
each connection's handshake uses the context current when it was accepted, so certificates
rotate without a restart.
"""

from __future__ import annotations

import html
import io
import logging
import math
import queue
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler

from prometheus_client import CollectorRegistry, make_wsgi_app

from .. import __version__
from .connections import Handoff, Intake

if TYPE_CHECKING:
    from .config import WebSecurity

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
LISTEN_BACKLOG = 1024  # bursts of connections wait in the kernel, not refused
FD_RESERVE = 256  # descriptors kept for the rest of the exporter when capping connections


@dataclass(frozen=True)
class Limits:
    max_requests: int = 16  # served at once; beyond: 503 at once (/-/healthy has as many of its own)
    max_connections: int = 4096  # open at all; at the cap the stalest half-open one is closed for a new one
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
             version: Callable[[], tuple] | None = None, sections: Callable[[], list] | None = None,
             status: WSGIApp | None = None, not_ready: Callable[[], str | None] | None = None) -> WSGIApp:
    """The exporter's endpoints. With ``version`` (objects whose identity changes whenever the
    exposition may change: the snapshot and the config), /metrics is served pre-rendered
    (:mod:`wan_exporter.web.exposition`), part by part when ``sections`` gives the registry's parts
    with their keys; the cache is the returned app's ``metrics_cache``. With ``status``
    (:class:`wan_exporter.status.StatusPages`), it serves ``/``, ``/api/v1/status`` and the
    page's stylesheet instead of the plain landing page. ``not_ready`` says why a started
    exporter is not ready now (a stuck job), or None."""
    from ..status import PATHS as STATUS_PATHS

    metrics_raw = make_wsgi_app(registry)
    cache = None
    if version is not None:
        from .exposition import PrerenderedMetrics

        cache = PrerenderedMetrics(registry, version, sections=sections)
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
            why = None if is_ready() else "first snapshot not built yet"
            if why is None and not_ready is not None:
                why = not_ready()
            if why is None:
                start_response("200 OK", [TEXT])
                return [b"Ready.\n"]
            start_response("503 Service Unavailable", [TEXT])
            return [f"Not ready: {why}.\n".encode("utf-8", "replace")]
        start_response("404 Not Found", [TEXT])
        return [b"Not found.\n"]

    gated = methods(app)
    gated.metrics_cache = cache  # type: ignore[attr-defined]
    return gated


ALLOW = "GET, HEAD, OPTIONS"


def methods(app: WSGIApp) -> WSGIApp:
    """One method policy for every path: GET, HEAD (GET's headers, no body) and OPTIONS; anything
    else a 405 whose ``Allow`` lists exactly those, so what it advertises is what is served."""

    def gate(environ: dict, start_response: Callable) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        if method == "OPTIONS":
            start_response("200 OK", [("Allow", ALLOW), ("Content-Length", "0")])
            return [b""]
        if method not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [TEXT, ("Allow", ALLOW)])
            return [f"Method {method[:32]} not allowed; allowed: {ALLOW}.\n".encode("ascii", "replace")]
        if method == "GET":
            return app(environ, start_response)
        body = app({**environ, "REQUEST_METHOD": "GET"}, start_response)
        length = 0
        try:
            for chunk in body:
                length += len(chunk)
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()
        return _Empty(length)

    return gate


class _Empty(list):
    """A HEAD answer: no body, and the length GET's would have had (set by ``_ServerHandler``)."""

    def __init__(self, length: int) -> None:
        super().__init__()
        self.length = length


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


class _Server:
    """What the request handler needs of a server: the app, the limits, the shared state."""

    def __init__(self, app: WSGIApp, host: str, port: int, limits: Limits, web: "WebSecurity | None") -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.socket = socket.create_server((host, port), family=family, backlog=LISTEN_BACKLOG, reuse_port=False)
        self.server_address = self.socket.getsockname()
        self.app = app
        self.limits = limits
        self.web = web
        self.request_slots = threading.BoundedSemaphore(limits.max_requests)
        self.exempt_slots = threading.BoundedSemaphore(limits.max_requests)  # /-/healthy's own
        self.reaper = _Reaper()
        self.stats = _Stats()
        self.base_environ = {"SERVER_NAME": host, "GATEWAY_INTERFACE": "CGI/1.1", "SERVER_PORT": str(self.port),
                             "REMOTE_HOST": "", "CONTENT_LENGTH": "", "SCRIPT_NAME": ""}
        self.cap = connection_cap(limits.max_connections)
        # As many as there are request slots (both kinds): a complete request never waits for a thread.
        self.workers = _Workers(2 * limits.max_requests, self._serve)
        self.intake = Intake(self.socket, cap=self.cap, header_timeout=limits.header_timeout, web=web,
                             admit=self._admit, busy=self._busy, dispatch=self._dispatch, count=self.stats.inc,
                             own_auth_paths=frozenset(getattr(app, "own_auth_paths", ())))

    @property
    def port(self) -> int:
        return self.server_address[1]

    def get_app(self) -> WSGIApp:
        return self.app

    def _admit(self, path: str) -> threading.Semaphore | None:
        slots = self.exempt_slots if path == HEALTH_PATH else self.request_slots
        return slots if slots.acquire(blocking=False) else None

    def _busy(self, path: str) -> bytes:
        return f"Too many concurrent requests (limit {self.limits.max_requests}); try again.\n".encode()

    def _dispatch(self, handoff: Handoff) -> None:
        self.workers.submit(handoff)

    def _serve(self, handoff: Handoff) -> None:
        try:
            _Handler(handoff, self)
        except Exception:  # noqa: BLE001 - one request's failure must not end the thread quietly
            log.debug("connection from %s failed", handoff.addr, exc_info=True)
        finally:
            self.intake.done()


class _Workers:
    """Threads kept for requests, started as needed: handing a request to an idle one costs the
    event loop a queue put, not a thread start (which waits for the new thread to run)."""

    def __init__(self, limit: int, serve: Callable[[Handoff], None]) -> None:
        self._limit = limit
        self._serve = serve
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        self._threads = 0

    def submit(self, handoff: Handoff) -> None:
        with self._lock:
            # _idle: threads waiting for a request less requests waiting for a thread.
            if self._idle > 0 or self._threads >= self._limit:
                self._idle -= 1  # an idle thread takes it, or the next one to finish
                self._queue.put(handoff)
                return
            self._threads += 1  # a new thread takes it
        try:
            threading.Thread(target=self._run, name="http-request", daemon=True).start()
        except BaseException:
            # Not queued: the caller answers for this request (frees its slot, closes its socket).
            with self._lock:
                self._threads -= 1
            raise
        self._queue.put(handoff)  # only once a thread is there to take it

    @property
    def threads(self) -> int:
        return self._threads

    def stop(self) -> None:
        with self._lock:
            n = self._threads
        for _ in range(n):
            self._queue.put(None)

    def _run(self) -> None:
        while True:
            handoff = self._queue.get()
            if handoff is None:
                return
            self._serve(handoff)
            with self._lock:
                self._idle += 1


def connection_cap(wanted: int) -> int:
    """``wanted``, or fewer when the process cannot have that many descriptors open.

    The soft RLIMIT_NOFILE is raised towards the hard limit first (as Go's runtime does), keeping
    FD_RESERVE descriptors for the rest of the exporter."""
    try:
        import resource
    except ImportError:  # not on POSIX
        return wanted
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = wanted + FD_RESERVE
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft != resource.RLIM_INFINITY and soft < need:
        cap = max(8, soft - FD_RESERVE)
        log.warning("open-file limit %d allows %d connections, not the %d configured", soft, cap, wanted)
        return cap
    return wanted


class _ServerHandler(ServerHandler):
    server_software = "wan-exporter"  # not wsgiref's "WSGIServer/0.2 CPython/3.x": no interpreter version

    def finish_content(self) -> None:
        if isinstance(self.result, _Empty) and not self.headers_sent:  # HEAD: GET's length, no body
            self.headers.setdefault("Content-Length", str(self.result.length))
        super().finish_content()

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


class _Prefixed(io.RawIOBase):
    """Reads the bytes the event loop already read, then the socket."""

    def __init__(self, prefix: bytes, sock: socket.socket) -> None:
        self._prefix = memoryview(prefix)
        self._sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # noqa: ANN001 - io's signature
        if self._prefix:
            n = min(len(b), len(self._prefix))
            b[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            return n
        return self._sock.recv_into(b)


class _Writer(io.RawIOBase):
    """The answer goes straight to the socket (no buffering to flush)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:  # noqa: ANN001 - io's signature
        self._sock.sendall(b)
        return len(b)


class _Handler(WSGIRequestHandler):
    """One request per connection (HTTP/1.0), handed over with its head already read, within
    :class:`Limits`."""

    server: _Server  # type: ignore[assignment]
    server_version = "wan-exporter"  # the Server header of send_error answers, without the Python version

    def version_string(self) -> str:
        return self.server_version

    def __init__(self, handoff: Handoff, server: _Server) -> None:
        self.handoff = handoff
        super().__init__(handoff.sock, handoff.addr, server)  # type: ignore[arg-type]

    def setup(self) -> None:
        h, srv = self.handoff, self.server
        self.connection = self.request
        self._slot: threading.Semaphore | None = h.slot
        self._header_deadline = h.deadline
        self.request.setblocking(True)
        self.request.settimeout(max(0.05, h.deadline - time.monotonic()))  # per operation
        srv.reaper.set(id(self), self.request, h.deadline)  # in total
        self.rfile = io.BufferedReader(_Prefixed(h.head, self.request))
        self.wfile = _Writer(self.request)

    def handle(self) -> None:
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

    def finish(self) -> None:
        self.server.reaper.clear(id(self))
        if self._slot is not None:
            self._slot.release()
            self._slot = None
        if isinstance(self.request, ssl.SSLSocket):
            _close_tls(self.request)
            return
        try:
            self.request.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        self.request.close()

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
    :func:`wan_exporter.web.config.make_wrapper`'s wrapper sets, so ``App.start(listen,
    wsgi_wrapper)`` needs no other wiring.
    """

    def __init__(self, app: WSGIApp, address: str, *, limits: Limits | None = None,
                 web: "WebSecurity | None" = None, poll_interval: float = 0.5) -> None:
        host, port = parse_listen_address(address)
        self.limits = limits or Limits()
        self.web = web if web is not None else getattr(app, "web_security", None)
        self.httpd = _Server(app, host, port, self.limits, self.web)
        self.thread = threading.Thread(target=self.httpd.intake.run, name="http", daemon=True)

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    @property
    def scheme(self) -> str:
        return "https" if self.web is not None and self.web.tls_enabled else "http"

    @property
    def stats(self) -> dict[str, int]:
        """Counts of refused connections, rejected requests, timeouts, failed handshakes."""
        return {**self.httpd.stats.counts, "reaped": self.httpd.reaper.reaped,
                "open_connections": self.httpd.intake.open_connections}

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
        self.httpd.intake.stop()
        if self.thread.is_alive():
            self.thread.join(5)
        self.httpd.socket.close()
        self.httpd.reaper.stop()
        self.httpd.workers.stop()
