"""Request limits of the HTTP server, on a real server on loopback with small limits.

The server is the exporter's own (:class:`wan_exporter.web.server.HttpServer` over ``make_app``);
only the limits are made small, and a collector that blocks stands in for slow work.
"""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily

from support.procs import http_get, wait_for
from wan_exporter.web.server import HttpServer, Limits, make_app


class GatedCollector:
    """Blocks each collect() until released, or sleeps ``delay``; counts callers inside."""

    def __init__(self, delay: float = 0.0) -> None:
        self.gate = threading.Event()
        self.delay = delay
        self.inside = 0
        self.lock = threading.Lock()

    def collect(self):
        with self.lock:
            self.inside += 1
        try:
            if self.delay:
                time.sleep(self.delay)
            else:
                self.gate.wait(10)
            yield GaugeMetricFamily("wan_test_gauge", "A test gauge.", value=1)
        finally:
            with self.lock:
                self.inside -= 1


def serve(collector=None, app=None, **limits) -> HttpServer:
    registry = CollectorRegistry(auto_describe=False)
    if collector is not None:
        registry.register(collector)
    srv = HttpServer(app or make_app(registry, lambda: True, lambda: ["m"]), "127.0.0.1:0", limits=Limits(**limits),
                     poll_interval=0.05)
    srv.start()
    return srv


@pytest.fixture
def server_factory():
    started: list[HttpServer] = []

    def make(*args, **kw) -> HttpServer:
        srv = serve(*args, **kw)
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()


def url(srv: HttpServer, path: str) -> str:
    return f"http://127.0.0.1:{srv.port}{path}"


def timed_get(u: str, **kw) -> tuple[int, float, bytes]:
    t0 = time.monotonic()
    status, body = http_get(u, **kw)
    return status, time.monotonic() - t0, body


def closed_within(sock: socket.socket, timeout: float) -> float:
    """Seconds until the server closes ``sock`` (EOF or reset); fails after ``timeout``."""
    sock.settimeout(timeout)
    t0 = time.monotonic()
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        pass
    except socket.timeout:
        pytest.fail(f"server kept the connection open longer than {timeout}s")
    return time.monotonic() - t0


def test_request_beyond_the_cap_gets_503_at_once_and_health_still_answers(server_factory):
    gated = GatedCollector()
    srv = server_factory(gated, max_requests=3)
    with ThreadPoolExecutor(3) as pool:
        held = [pool.submit(http_get, url(srv, "/metrics"), 15) for _ in range(3)]
        wait_for(lambda: gated.inside == 3, 5, 0.02, "3 scrapes held inside collect()")

        status, elapsed, body = timed_get(url(srv, "/metrics"))
        assert status == 503 and elapsed < 1.0, (status, elapsed)  # the held ones wait up to 10 s
        assert b"Too many concurrent requests" in body
        status, elapsed, _ = timed_get(url(srv, "/-/healthy"))
        assert status == 200 and elapsed < 1.0, "liveness must not depend on the request cap"

        gated.gate.set()
        assert [f.result()[0] for f in held] == [200, 200, 200]
    assert http_get(url(srv, "/metrics"))[0] == 200, "slots are given back"
    assert srv.stats["requests_rejected"] == 1


def test_slow_client_sending_half_a_request_is_dropped_and_others_are_served(server_factory):
    srv = server_factory(GatedCollector(delay=0.001), header_timeout=2.0)
    with socket.create_connection(("127.0.0.1", srv.port)) as slow:
        slow.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # headers never finished
        t0 = time.monotonic()
        for _ in range(5):
            assert http_get(url(srv, "/metrics"))[0] == 200
        assert time.monotonic() - t0 < 1.5, "others were served while the slow client waited"
        assert 1.0 < time.monotonic() - t0 + closed_within(slow, 5) < 3.5


def test_trickling_client_cannot_extend_the_header_deadline(server_factory):
    srv = server_factory(header_timeout=1.0)
    with socket.create_connection(("127.0.0.1", srv.port)) as slow:
        slow.sendall(b"GET /-/healthy HTTP/1.1\r\n")
        t0 = time.monotonic()
        closed = False
        while time.monotonic() - t0 < 4:
            try:
                slow.sendall(b"X")  # one byte per 0.2 s: each read succeeds, none times out
            except OSError:
                closed = True
                break
            slow.settimeout(0.2)
            try:
                if slow.recv(4096) == b"":
                    closed = True
                    break
            except socket.timeout:
                pass
            except OSError:
                closed = True
                break
        assert closed and time.monotonic() - t0 < 2.5, "a trickle must not outlive header_timeout"


def test_at_the_connection_cap_the_stalest_half_open_connection_makes_room(server_factory):
    srv = server_factory(max_connections=3, header_timeout=3.0)
    t0 = time.monotonic()
    idle = []
    try:
        for _ in range(3):
            idle.append(socket.create_connection(("127.0.0.1", srv.port)))
            time.sleep(0.05)  # accepted in this order
        wait_for(lambda: srv.stats["open_connections"] == 3, 3, 0.02, "3 idle connections held")
        status, elapsed, _ = timed_get(url(srv, "/-/healthy"), timeout=3)
        assert status == 200 and elapsed < 1.0, "the newest connection is served, not refused"
        assert closed_within(idle[0], 1) < 1.0, "the stalest idle connection was closed to make room"
        for s in idle[1:]:
            closed_within(s, 5)
            assert time.monotonic() - t0 > 2.5, "the others stay until their header deadline"
    finally:
        for s in idle:
            s.close()
    assert srv.stats["connections_evicted"] >= 1
    assert http_get(url(srv, "/-/healthy"))[0] == 200


def test_connection_beyond_the_cap_is_refused_only_when_none_is_half_open(server_factory):
    gated = GatedCollector()
    srv = server_factory(gated, max_connections=2, max_requests=2)
    with ThreadPoolExecutor(2) as pool:
        held = [pool.submit(http_get, url(srv, "/metrics"), 15) for _ in range(2)]
        wait_for(lambda: gated.inside == 2, 5, 0.02, "2 scrapes held inside collect()")
        with socket.create_connection(("127.0.0.1", srv.port)) as extra:
            assert closed_within(extra, 3) < 1.0, "nothing to evict: the newest is closed on accept"
        gated.gate.set()
        assert [f.result()[0] for f in held] == [200, 200]
    assert srv.stats["connections_refused"] >= 1


def test_scrape_that_overruns_its_budget_gets_503_instead_of_a_late_answer(server_factory):
    srv = server_factory(GatedCollector(delay=0.3))
    hdr = "X-Prometheus-Scrape-Timeout-Seconds"
    status, _, body = timed_get(url(srv, "/metrics"), headers={hdr: "0.1"})
    assert status == 503 and b"budget" in body
    assert http_get(url(srv, "/metrics"), headers={hdr: "5"})[0] == 200
    assert http_get(url(srv, "/metrics"), headers={hdr: "not-a-number"})[0] == 200
    assert http_get(url(srv, "/metrics"))[0] == 200


class BigCollector:
    """About 16 MB of exposition, quick to render: more than the socket buffers hold when the
    client stops reading."""

    def collect(self):
        g = GaugeMetricFamily("wan_test_big", "A big test family.", labels=["pad"])
        pad = "p" * 8000
        for i in range(2000):
            g.add_metric([f"{pad}{i}"], i)
        yield g


def _stall_after_first_bytes(srv: HttpServer, request: bytes) -> socket.socket:
    reader = socket.create_connection(("127.0.0.1", srv.port))
    reader.sendall(request)
    reader.settimeout(10)
    assert reader.recv(1024).startswith(b"HTTP/1.0 200")  # the answer started; now stop reading
    return reader


def test_writing_a_scrape_is_bounded_by_its_budget(server_factory):
    srv = server_factory(BigCollector(), max_requests=1)
    t0 = time.monotonic()
    with _stall_after_first_bytes(srv, b"GET /metrics HTTP/1.1\r\nHost: x\r\n"
                                       b"X-Prometheus-Scrape-Timeout-Seconds: 3\r\n\r\n"):
        assert http_get(url(srv, "/-/ready"), 2)[0] == 503, "the stalled scrape still holds the only slot"
        wait_for(lambda: http_get(url(srv, "/-/ready"), 2)[0] == 200, 6, 0.1,
                 "the stalled write to be cut at the scrape budget, freeing its slot")
    assert 2.5 < time.monotonic() - t0 < 5.5


def test_writing_any_answer_is_bounded_by_write_timeout(server_factory):
    big = b"x" * (32 << 20)

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(big)))])
        return [big]

    srv = server_factory(app=app, max_requests=1, write_timeout=1.0)
    t0 = time.monotonic()
    with _stall_after_first_bytes(srv, b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n"):
        wait_for(lambda: http_get(url(srv, "/other"), 2)[0] == 200, 4, 0.1, "the stalled write to be cut")
    assert time.monotonic() - t0 < 3.0


def test_requests_reuse_kept_threads_instead_of_starting_one_each(server_factory):
    srv = server_factory(GatedCollector(delay=0.001))
    for _ in range(30):
        assert http_get(url(srv, "/metrics"))[0] == 200
    assert 1 <= srv.httpd.workers.threads <= 2, "one request at a time needs one kept thread"
    with ThreadPoolExecutor(4) as pool:
        assert [f.result()[0] for f in [pool.submit(http_get, url(srv, "/metrics")) for _ in range(40)]] == [200] * 40
    assert srv.httpd.workers.threads <= 2 * srv.limits.max_requests


def test_a_request_whose_thread_could_not_start_is_never_served_later(monkeypatch):
    from wan_exporter.web.server import _Workers

    served: list[str] = []
    workers = _Workers(2, served.append)
    start = threading.Thread.start

    def cannot_start(self):
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", cannot_start)
    with pytest.raises(RuntimeError):
        workers.submit("refused")  # type: ignore[arg-type]
    monkeypatch.setattr(threading.Thread, "start", start)
    workers.submit("next")  # type: ignore[arg-type]
    wait_for(lambda: served, 5, 0.01, "the next request to be served")
    time.sleep(0.2)
    assert served == ["next"] and workers.threads == 1
    workers.stop()
