"""HTTPS clients, an exporter served over TLS, and a real Prometheus, for the web-security tests."""

from __future__ import annotations

import base64
import json
import shutil
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable

from support.procs import ExporterProcess, WorkdirServer, http_get, wait_for


def client_context(ca: Path | None = None, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca) if ca else None)
    if cert is not None:
        ctx.load_cert_chain(str(cert), str(key) if key else None)
    return ctx


def basic(user: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def https_get(url: str, *, ctx: ssl.SSLContext | None = None, headers: dict | None = None,
              timeout: float = 5.0) -> tuple[int, dict, bytes]:
    """(status, headers, body); raises on a failed handshake or connection."""
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ctx) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def peer_serial(host: str, port: int, ctx: ssl.SSLContext) -> int:
    """Serial number of the certificate the server presents now."""
    from cryptography import x509

    with socket.create_connection((host, port), timeout=5) as raw, ctx.wrap_socket(raw, server_hostname=host) as s:
        der = s.getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der).serial_number


def curl(*args: str, timeout: float = 20) -> tuple[int, str, str]:
    """Run curl; (exit code, HTTP status ('000' when no answer), headers + body)."""
    if shutil.which("curl") is None:
        import pytest

        pytest.skip("curl not installed")
    r = subprocess.run(["curl", "-sS", "-i", "--max-time", "10", "-w", "\n%{http_code}", *args],
                       capture_output=True, text=True, timeout=timeout)
    out, _, code = r.stdout.rpartition("\n")
    return r.returncode, code.strip(), out + r.stderr


class SecureExporter(ExporterProcess):
    """The real exporter with ``--web.config.file``; ready once it answers ``probe(url)``."""

    ready_interval = 0.1

    def __init__(self, args: list[str], probe: Callable[[str], bool], scheme: str = "https", **kw) -> None:
        super().__init__(args, **kw)
        self.probe = probe
        self.scheme = scheme  # url is <scheme>://127.0.0.1:<port>

    def ready(self) -> bool:
        return self.probe(self.url)


class PrometheusProcess(WorkdirServer):
    """A real Prometheus of a peer set (Debian's by default) on loopback with the given scrape config
    (skips the test when not installed)."""

    name = "prometheus"
    ready_interval = 0.1

    def __init__(self, config: str, workdir: Path, peers=None) -> None:
        from support.peers import DEBIAN

        super().__init__(workdir)
        self.peers = peers or DEBIAN
        self.dir = self.workdir
        self.config_path = self.dir / "prometheus.yml"
        self.config_path.write_text(config)

    def args(self) -> list[str]:
        binary = self.peers.need("prometheus").prometheus
        return [binary, f"--config.file={self.config_path}", f"--storage.tsdb.path={self.dir / 'data'}",
                f"--web.listen-address={self.address}", "--log.level=warn"]

    def api(self, path: str, **params: str) -> dict:
        q = ("?" + urllib.parse.urlencode(params)) if params else ""
        status, body = http_get(self.url + path + q)
        assert status == 200, body
        return json.loads(body)["data"]

    def targets(self) -> dict[str, dict]:
        """Active targets by job name."""
        return {t["labels"]["job"]: t for t in self.api("/api/v1/targets")["activeTargets"]}


def wait_targets(prom: PrometheusProcess, jobs: list[str], timeout: float = 20) -> dict[str, dict]:
    """Targets once each named job has been scraped at least once."""

    def done() -> dict | None:
        t = prom.targets()
        return t if all(j in t and t[j]["health"] != "unknown" for j in jobs) else None

    return wait_for(done, timeout, 0.25, f"prometheus to scrape {jobs}")


def write_atomically(path: Path, data: bytes | str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    tmp.replace(path)


def settle(seconds: float = 1.1) -> None:
    """Wait past the exporter's once-per-second rotation check."""
    time.sleep(seconds)
