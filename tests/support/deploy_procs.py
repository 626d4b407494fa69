"""Real Prometheus, Alertmanager and a webhook receiver on loopback, for the deployment tests.

The binaries are the Debian packages' (``prometheus``, ``prometheus-alertmanager``); tests that
need them skip with the install command when they are absent.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from support.procs import REPO, free_port, http_get, wait_for

PROMETHEUS = shutil.which("prometheus")
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
PROMTOOL = shutil.which("promtool")
AMTOOL = shutil.which("amtool")

needs_prometheus = pytest.mark.skipif(
    not (PROMETHEUS and ALERTMANAGER),
    reason="needs the prometheus and prometheus-alertmanager binaries: "
           "apt-get install --no-install-recommends prometheus prometheus-alertmanager")


def build_tiny_models(dest: Path) -> Path:
    """Build the tiny Wan pipelines into ``dest`` once (a child process; reused when complete)."""
    from wan_exporter.tiny import TINY_KINDS, is_built

    if all(is_built(dest / k) for k in TINY_KINDS):
        return dest
    env = dict(os.environ, PYTHONPATH=str(REPO / "exporter") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    subprocess.run([sys.executable, "-m", "wan_exporter", "tiny-models", str(dest)], check=True, timeout=600,
                   env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return dest


class Process:
    """A binary started on loopback with its output in a log file; stopped with SIGTERM, then SIGKILL."""

    def __init__(self, name: str, argv: list[str], log_path: Path, ready_url: str) -> None:
        self.name, self.argv, self.log_path, self.ready_url = name, argv, log_path, ready_url
        self.proc: subprocess.Popen | None = None
        self._log = None

    def start(self, timeout: float = 30.0) -> "Process":
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.argv, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_for(lambda: self._alive() and http_get(self.ready_url, 1)[0] == 200, timeout,
                 what=f"{self.name} at {self.ready_url}")
        return self

    def _alive(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited with {self.proc.returncode}: {self.log_tail()}")
        return True

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self._log is not None:
            self._log.close()
            self._log = None


def prometheus(config: Path, workdir: Path, port: int | None = None) -> Process:
    port = port or free_port()
    return Process("prometheus", [
        PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}", "--web.enable-lifecycle",
    ], workdir / "prometheus.log", f"http://127.0.0.1:{port}/-/ready")


def alertmanager(config: Path, workdir: Path, name: str, cluster_port: int | None = None,
                 peers: list[str] = (), port: int | None = None, peer_timeout: str = "2s") -> Process:
    """One Alertmanager; gossiping on ``cluster_port`` with ``peers`` when given, else with clustering off."""
    port = port or free_port()
    data = workdir / name
    data.mkdir(parents=True, exist_ok=True)
    argv = [ALERTMANAGER, f"--config.file={config}", f"--storage.path={data}",
            f"--web.listen-address=127.0.0.1:{port}", f"--web.external-url=http://127.0.0.1:{port}"]
    if cluster_port is None:
        argv.append("--cluster.listen-address=")
    else:
        argv += [f"--cluster.listen-address=127.0.0.1:{cluster_port}", f"--cluster.peer-timeout={peer_timeout}",
                 "--cluster.reconnect-timeout=30s", "--cluster.gossip-interval=100ms",
                 "--cluster.pushpull-interval=1s"]
        argv += [f"--cluster.peer={p}" for p in peers]
    proc = Process(name, argv, workdir / f"{name}.log", f"http://127.0.0.1:{port}/-/ready")
    proc.port = port  # type: ignore[attr-defined]
    return proc


def api(base: str, path: str, **params: str) -> dict | list:
    url = base + path + ("?" + urllib.parse.urlencode(params) if params else "")
    status, body = http_get(url, 10)
    data = json.loads(body)
    if status != 200:
        raise AssertionError(f"GET {url}: {status} {data}")
    return data


def query(prom: str, expr: str) -> list[dict]:
    """Instant query; raises with Prometheus' error for an expression that does not parse."""
    status, body = http_get(f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr}), 10)
    data = json.loads(body)
    if status != 200 or data.get("status") != "success":
        raise AssertionError(f"query failed ({status}): {expr}\n{data.get('error')}")
    return data["data"]["result"]


def active_targets(prom: str) -> list[dict]:
    return api(prom, "/api/v1/targets", state="active")["data"]["activeTargets"]


class WebhookReceiver:
    """An Alertmanager webhook receiver on loopback that records every POSTed notification."""

    def __init__(self) -> None:
        self.notifications: list[dict] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with outer._lock:
                    outer.notifications.append(json.loads(body or b"{}"))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        self._thread = threading.Thread(target=self.server.serve_forever, name="webhook", daemon=True)

    def received(self) -> list[dict]:
        with self._lock:
            return list(self.notifications)

    def __enter__(self) -> "WebhookReceiver":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
