"""Slow clients must not starve Prometheus: scrapes succeed while another process holds
1,000 half-open connections to the exporter's server on loopback and re-opens every one it
loses (``benchmarks/slow_clients.py``)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily

from support.procs import http_get, wait_for
from support.web_certs import CA
from support.web_procs import client_context, https_get
from wan_exporter.web.server import HttpServer, Limits, make_app
from wan_exporter.web.config import WebSecurity

REPO = Path(__file__).resolve().parents[1]


class Series:
    def collect(self):
        g = GaugeMetricFamily("wan_test_series", "A test family.", labels=["i"])
        for i in range(200):
            g.add_metric([str(i)], i)
        yield g


class SlowClients:
    """The flood in its own process; its latest status line is kept."""

    def __init__(self, port: int, count: int, seconds: float) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.proc = subprocess.Popen([sys.executable, "-m", "benchmarks.slow_clients", "--port", str(port),
                                      "--count", str(count), "--seconds", str(seconds)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=REPO, env=env)
        self.status: dict = {}
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.status = json.loads(line)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def server():
    started: list[HttpServer] = []

    def start(**limits) -> HttpServer:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(Series())
        srv = HttpServer(make_app(registry, lambda: True, lambda: ["m"]), "127.0.0.1:0", limits=Limits(**limits))
        srv.start()
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()


def scrape_under_load(srv: HttpServer, count: int, held_at_least: int, seconds: float = 6.0) -> tuple[list, dict]:
    flood = SlowClients(srv.port, count, seconds + 30)
    results: list[int] = []
    try:
        wait_for(lambda: flood.status.get("most_held", 0) >= held_at_least, 30, 0.1,
                 f"the slow clients to hold {held_at_least} connections")
        end = time.monotonic() + seconds
        most_open = 0
        while time.monotonic() < end:
            most_open = max(most_open, srv.stats["open_connections"])
            status, body = http_get(f"http://127.0.0.1:{srv.port}/metrics", timeout=5)
            results.append(status if b"wan_test_series" in body else -status)
            time.sleep(0.2)
        return results, {**flood.status, "server_most_open": most_open, **srv.stats}
    finally:
        flood.stop()


def test_scrapes_succeed_with_1000_half_open_connections(server):
    srv = server(header_timeout=3.0)  # dropped and re-opened twice within the window
    results, seen = scrape_under_load(srv, 1000, 1000)
    assert results and all(r == 200 for r in results), (results, seen)
    assert seen["server_most_open"] >= 1000, seen
    assert seen["reopened"] > 0, "the server dropped half-open connections at their header deadline"


def test_scrapes_succeed_when_half_open_connections_exceed_the_cap(server):
    srv = server(max_connections=100)
    results, seen = scrape_under_load(srv, 400, 100)
    assert results and all(r == 200 for r in results), (results, seen)
    assert seen["connections_evicted"] > 0 and seen["server_most_open"] <= 100, seen


def test_tls_scrapes_succeed_while_300_clients_stall_their_handshake(tmp_path):
    """Handshakes run in the event loop without blocking: clients that connect and send half a
    ClientHello (or nothing) hold no thread, and every HTTPS scrape is answered."""
    ca = CA(tmp_path / "pki")
    server_cert = ca.server()
    web = tmp_path / "web.yml"
    web.write_text(f"tls_server_config:\n  cert_file: {server_cert.cert}\n  key_file: {server_cert.key}\n")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Series())
    srv = HttpServer(WebSecurity(web)(make_app(registry, lambda: True, lambda: [])), "127.0.0.1:0",
                     limits=Limits(header_timeout=3.0))
    srv.start()
    threads_before = threading.active_count()  # the suite's own threads too, whatever earlier tests left
    stalled: list[socket.socket] = []
    try:
        # The first bytes of a TLS record header announcing a ClientHello that never comes.
        for i in range(300):
            s = socket.create_connection(("127.0.0.1", srv.port))
            if i % 2:
                s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
            stalled.append(s)
        wait_for(lambda: srv.stats["open_connections"] >= 300, 10, 0.05, "300 stalled handshakes held")
        assert threading.active_count() - threads_before < 20, "a stalled handshake must not hold a thread"
        ctx = client_context(ca.cert_path)
        for _ in range(10):
            status, _, body = https_get(f"https://127.0.0.1:{srv.port}/metrics", ctx=ctx, timeout=5)
            assert status == 200 and b"wan_test_series" in body
    finally:
        for s in stalled:
            s.close()
        srv.stop()
