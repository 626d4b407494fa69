"""Real Prometheus, Alertmanager and a webhook receiver on loopback, for the alerting tests.

Each server gets a free port and its own temporary storage; ``stop()`` ends only the process
it started. The webhook receiver is a tiny ``http.server`` that records every JSON body
Alertmanager posts to it.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from support.peers import DEBIAN, PeerSet
from support.procs import WorkdirServer, free_port, wait_for  # noqa: F401 - free_port re-exported

REPO = Path(__file__).resolve().parents[2]
ALERTING = REPO / "alerting"

PROMETHEUS = "prometheus"
PROMTOOL = "promtool"
ALERTMANAGER = "prometheus-alertmanager"  # Debian's name for the alertmanager binary
AMTOOL = "amtool"


def binary(name: str) -> str | None:
    return shutil.which(name)


# The shared helpers, under the names these tests have always used.
wait_until = wait_for


def http_json(url: str, body: Any = None, method: str | None = None, timeout: float = 5.0) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method or ("POST" if data is not None else "GET"),
                                 headers={"Content-Type": "application/json"} if data is not None else {})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        raw = r.read()
    return json.loads(raw) if raw.strip() else None


def run(args: list[str], timeout: float = 60.0, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=str(cwd) if cwd else None)


# --------------------------------------------------------------------------- rules and configs


def render_rules(out_dir: Path, for_all: str | None = None, overrides: list[Path] = ()) -> Path:
    """Render the rule files with alerting/generate.py (e.g. a test variant with every for: shortened)."""
    args = [sys.executable, str(ALERTING / "generate.py"), "--out-dir", str(out_dir)]
    if for_all is not None:
        args += ["--for-all", for_all]
    for o in overrides:
        args += ["--override", str(o)]
    r = run(args)
    assert r.returncode == 0, r.stderr
    return out_dir


def alertmanager_test_config(dest: Path, webhook_url: str, group_wait: str = "0s", group_interval: str = "1s",
                             repeat_interval: str = "1h", source: Path = ALERTING / "alertmanager.yml") -> Path:
    """The committed Alertmanager config with every webhook pointed at ``webhook_url``, no email, short timers."""
    cfg = yaml.safe_load(source.read_text())
    for r in cfg["receivers"]:
        r.pop("email_configs", None)
        for w in r.get("webhook_configs", []):
            w["url"] = webhook_url
    for route in [cfg["route"], *cfg["route"].get("routes", [])]:
        route["group_wait"] = group_wait
        route["group_interval"] = group_interval
        route["repeat_interval"] = repeat_interval
    cfg["templates"] = [str(source.parent / t) for t in cfg.get("templates", [])]
    dest.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return dest


def prometheus_test_config(dest: Path, targets: list[str], rules_dir: Path, alertmanager: str | None,
                           interval: str = "1s", source: Path = ALERTING / "prometheus.yml",
                           serve_targets: list[str] = ()) -> Path:
    """The committed Prometheus config, with the test's targets (file_sd), rules and Alertmanager.

    ``serve_targets``: instrumented services for job wan-serve (none by default)."""
    cfg = yaml.safe_load(source.read_text())
    cfg["global"].update(scrape_interval=interval, evaluation_interval=interval, scrape_timeout=interval)
    cfg["rule_files"] = [str(rules_dir / "*.rules.yml")]
    targets_dir = dest.parent / "targets"
    targets_dir.mkdir(parents=True, exist_ok=True)
    (targets_dir / "wan-exporter.yml").write_text(yaml.safe_dump([{"targets": list(targets)}]))
    (targets_dir / "alertmanager.yml").write_text(yaml.safe_dump([{"targets": [alertmanager]}] if alertmanager else []))
    # Same discovery as the committed config, pointed at the test's own target files.
    for am in cfg["alerting"]["alertmanagers"]:
        for sd in am["file_sd_configs"]:
            sd.update(files=[str(targets_dir / "alertmanager*.yml")], refresh_interval="1s")
    (targets_dir / "wan-serve.yml").write_text(yaml.safe_dump([{"targets": list(serve_targets)}] if serve_targets else []))
    for name in ("wan-exporter", "wan-serve"):
        job = next(j for j in cfg["scrape_configs"] if j["job_name"] == name)
        for sd in job["file_sd_configs"]:
            sd.update(files=[str(targets_dir / f"{name}*.yml")], refresh_interval="1s")
    dest.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return dest


# --------------------------------------------------------------------------- processes


class _Server(WorkdirServer):
    """A child process serving HTTP on a free loopback port, with its log in ``workdir``."""

    def reload(self) -> None:
        self.signal(signal.SIGHUP)


class AlertmanagerProcess(_Server):
    """One Alertmanager of a peer set (Debian's by default), with that set's amtool."""

    name = "alertmanager"

    def __init__(self, config: Path, workdir: Path, peers: PeerSet = DEBIAN) -> None:
        super().__init__(workdir)
        self.config = Path(config)
        self.peers = peers.need("alertmanager")

    def args(self) -> list[str]:
        return [self.peers.alertmanager, f"--config.file={self.config}", f"--storage.path={self.workdir / 'data'}",
                f"--web.listen-address={self.address}", "--cluster.listen-address=", "--log.level=debug"]

    def post_alerts(self, alerts: list[dict]) -> None:
        http_json(self.url + "/api/v2/alerts", alerts)

    def alerts(self, **filters: str) -> list[dict]:
        q = [("filter", f'{k}="{v}"') for k, v in filters.items()]
        q += [("active", "true"), ("silenced", "true"), ("inhibited", "true"), ("unprocessed", "true")]
        return http_json(self.url + "/api/v2/alerts?" + urllib.parse.urlencode(q))

    def amtool(self, *args: str) -> subprocess.CompletedProcess:
        return run([self.peers.need("amtool").amtool, f"--alertmanager.url={self.url}", *args])


class PrometheusProcess(_Server):
    """One Prometheus of a peer set (Debian's by default)."""

    name = "prometheus"

    def __init__(self, config: Path, workdir: Path, resend_delay: str = "1s", peers: PeerSet = DEBIAN) -> None:
        super().__init__(workdir)
        self.config = Path(config)
        self.peers = peers.need("prometheus")
        # Firing alerts are re-sent every resend delay (1m by default): an alert that fired
        # before Alertmanager was discovered would otherwise wait a minute.
        self.resend_delay = resend_delay

    def args(self) -> list[str]:
        return [self.peers.prometheus, f"--config.file={self.config}", f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address={self.address}", "--web.enable-lifecycle", "--log.level=info",
                f"--rules.alert.resend-delay={self.resend_delay}"]

    def api(self, path: str, **params: str) -> Any:
        body = http_json(self.url + "/api/v1/" + path + ("?" + urllib.parse.urlencode(params) if params else ""))
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict]:
        return self.api("query", query=expr)["result"]

    def alerts(self) -> list[dict]:
        return self.api("alerts")["alerts"]

    def firing(self, alertname: str, **labels: str) -> list[dict]:
        return [a for a in self.alerts() if a["labels"].get("alertname") == alertname and a["state"] == "firing"
                and all(a["labels"].get(k) == v for k, v in labels.items())]


# --------------------------------------------------------------------------- webhook receiver


class WebhookReceiver:
    """Records the JSON bodies POSTed to it (Alertmanager's webhook payloads), with their paths.

    Start it with ``start()`` or as a context manager; ``url(path)`` is what to give Alertmanager.
    """

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict]] = []  # (path, body), in arrival order
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n)
                try:
                    body = json.loads(raw) if raw.strip() else {}
                except ValueError:
                    body = {"_raw": raw.decode(errors="replace")}
                with outer._lock:
                    outer.requests.append((self.path, body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, name="webhook", daemon=True)

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def url(self, path: str = "/alerts") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> "WebhookReceiver":
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():  # shutdown() waits for serve_forever, which never ran otherwise
            self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> "WebhookReceiver":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def payloads(self) -> list[dict]:
        """Every notification body so far, in arrival order."""
        with self._lock:
            return [b for _, b in self.requests]

    received = payloads

    def alerts(self, alertname: str | None = None, status: str | None = None, **labels: str) -> list[dict]:
        """Every alert of every notification so far, filtered by name, status and labels."""
        out = []
        for p in self.payloads():
            for a in p.get("alerts", []):
                lb = a.get("labels", {})
                if alertname is not None and lb.get("alertname") != alertname:
                    continue
                if status is not None and a.get("status") != status:
                    continue
                if all(lb.get(k) == v for k, v in labels.items()):
                    out.append(a)
        return out

    def count(self) -> int:
        with self._lock:
            return len(self.requests)
