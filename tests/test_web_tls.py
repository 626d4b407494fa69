"""TLS details on the exporter's own server on loopback: client-auth modes, allowed SANs,
versions and ciphers, and clients that connect and then say nothing."""

from __future__ import annotations

import socket
import ssl
import time
from types import SimpleNamespace

import pytest
from prometheus_client import CollectorRegistry

from support.procs import http_get
from support.web_certs import CA
from support.web_procs import client_context, https_get
from wan_exporter.web.server import HttpServer, Limits, make_app
from wan_exporter.web.config import WebSecurity, peer_sans, san_allowed


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca = CA(d)
    stranger = CA(d / "other", name="stranger CA")
    return SimpleNamespace(ca=ca, server=ca.server(), client=ca.client(), other=ca.client("other", "other", ("other",)),
                           stranger=stranger.client("stranger"))


@pytest.fixture
def tls_server(pki, tmp_path):
    started: list[HttpServer] = []

    def start(extra: str = "", **limits) -> str:
        web = tmp_path / f"web{len(started)}.yml"
        web.write_text(f"tls_server_config:\n  cert_file: {pki.server.cert}\n  key_file: {pki.server.key}\n{extra}")
        app = WebSecurity(web)(make_app(CollectorRegistry(), lambda: True, lambda: []))
        srv = HttpServer(app, "127.0.0.1:0", limits=Limits(**limits), poll_interval=0.05)
        srv.start()
        started.append(srv)
        assert srv.scheme == "https"
        return f"https://127.0.0.1:{srv.port}"

    yield start
    for srv in started:
        srv.stop()


def ok(url: str, ctx: ssl.SSLContext) -> bool:
    try:
        return https_get(url + "/-/healthy", ctx=ctx, timeout=3)[0] == 200
    except (OSError, ssl.SSLError):  # urllib wraps handshake failures in URLError (an OSError)
        return False


def test_verify_client_cert_if_given(tls_server, pki):
    url = tls_server(f"  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: {pki.ca.cert_path}\n")
    assert ok(url, client_context(pki.ca.cert_path))
    assert ok(url, client_context(pki.ca.cert_path, pki.client.cert, pki.client.key))
    assert not ok(url, client_context(pki.ca.cert_path, pki.stranger.cert, pki.stranger.key))


def test_request_client_cert_lets_everyone_in_as_in_go(tls_server, pki):
    url = tls_server("  client_auth_type: RequestClientCert\n")
    assert ok(url, client_context(pki.ca.cert_path))


def test_client_allowed_sans(tls_server, pki):
    url = tls_server(f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {pki.ca.cert_path}\n"
                     "  client_allowed_sans: [prometheus, 10.0.0.1]\n")
    assert ok(url, client_context(pki.ca.cert_path, pki.client.cert, pki.client.key))
    assert not ok(url, client_context(pki.ca.cert_path, pki.other.cert, pki.other.key)), "signed by the CA, wrong SAN"
    assert not ok(url, client_context(pki.ca.cert_path))


def test_san_matching_compares_ip_addresses_as_addresses():
    cert = {"subjectAltName": (("DNS", "prometheus"), ("IP Address", "2001:DB8:0:0:0:0:0:1\n"))}
    assert peer_sans(cert) == ["prometheus", "2001:DB8:0:0:0:0:0:1"]
    assert san_allowed(peer_sans(cert), ["2001:db8::1"])
    assert san_allowed(peer_sans(cert), ["prometheus"])
    assert not san_allowed(peer_sans(cert), ["Prometheus", "2001:db8::2"])


def test_min_version_is_enforced(tls_server, pki):
    url = tls_server("  min_version: TLS13\n")
    old = client_context(pki.ca.cert_path)
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    assert not ok(url, old)
    assert ok(url, client_context(pki.ca.cert_path))


def test_cipher_suites_limit_tls12(tls_server, pki):
    url = tls_server("  max_version: TLS12\n  cipher_suites: [TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256]\n")
    ctx = client_context(pki.ca.cert_path)
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as raw, ctx.wrap_socket(raw, server_hostname="localhost") as s:
        assert s.version() == "TLSv1.2"
        assert s.cipher()[0] == "ECDHE-ECDSA-CHACHA20-POLY1305"


def test_silent_tls_client_is_dropped_and_others_are_served(tls_server, pki):
    url = tls_server(header_timeout=1.0)
    port = int(url.rsplit(":", 1)[1])
    ctx = client_context(pki.ca.cert_path)
    with socket.create_connection(("127.0.0.1", port)) as silent:  # no ClientHello ever
        t0 = time.monotonic()
        for _ in range(3):
            assert ok(url, ctx)
        silent.settimeout(4)
        assert silent.recv(1) == b""
        assert 0.5 < time.monotonic() - t0 < 2.5


def test_plain_http_to_the_tls_port_is_told_so(tls_server):
    url = tls_server()
    status, body = http_get(url.replace("https://", "http://") + "/metrics")
    assert status == 400 and b"HTTP request to an HTTPS server" in body
