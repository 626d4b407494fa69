"""Real Prometheus, Alertmanager and VictoriaMetrics processes on loopback, for the dashboards' live test.

Prometheus and Alertmanager come from a peer set (tests/support/peers.py: Debian's or the current
built ones); VictoriaMetrics (single node) is built by scripts/peers.sh and receives Prometheus'
remote write.
"""

from __future__ import annotations

import json
import math
import urllib.parse
from pathlib import Path

import yaml

from .peers import DEBIAN, PeerSet
from .procs import WorkdirServer, http_get


class AlertmanagerProcess(WorkdirServer):
    name = "alertmanager"

    def __init__(self, workdir: Path, peers: PeerSet = DEBIAN) -> None:
        super().__init__(workdir)
        self.peers = peers.need("alertmanager")

    def args(self) -> list[str]:
        cfg = self.workdir / "alertmanager.yml"
        cfg.write_text(yaml.safe_dump({
            "route": {"receiver": "blackhole", "group_wait": "1s", "group_interval": "1s", "repeat_interval": "1h"},
            "receivers": [{"name": "blackhole"}],
        }))
        return [self.peers.alertmanager, f"--config.file={cfg}", f"--storage.path={self.workdir / 'am-data'}",
                f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address="]

    def silence(self, matchers: dict[str, str], hours: float = 1.0) -> str:
        """Create a silence (Alertmanager API v2); returns its id."""
        import datetime as dt
        import urllib.request

        now = dt.datetime.now(dt.timezone.utc)
        body = json.dumps({
            "matchers": [{"name": k, "value": v, "isRegex": False, "isEqual": True} for k, v in matchers.items()],
            "startsAt": now.isoformat(), "endsAt": (now + dt.timedelta(hours=hours)).isoformat(),
            "createdBy": "tests/test_dashboards_live.py", "comment": "dashboards live test",
        }).encode()
        req = urllib.request.Request(self.url + "/api/v2/silences", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read())["silenceID"]


class QueryAPI:
    """Prometheus' HTTP query API (VictoriaMetrics serves the same paths)."""

    url: str

    def api(self, path: str, **params) -> dict:
        query = urllib.parse.urlencode(params, doseq=True)
        status, body = http_get(f"{self.url}/api/v1/{path}?{query}", timeout=30)
        doc = json.loads(body)
        if status != 200 or doc.get("status") != "success":
            raise PromQLError(doc.get("errorType", str(status)), doc.get("error", body[:300]))
        return doc["data"]

    def query(self, expr: str, at: float | None = None) -> dict:
        return self.api("query", query=expr, **({"time": f"{at:.3f}"} if at is not None else {}))

    def query_range(self, expr: str, seconds: float, step: str = "5s") -> dict:
        import time

        end = time.time()
        return self.api("query_range", query=expr, start=f"{end - seconds:.3f}", end=f"{end:.3f}", step=step)

    def series(self, match: str) -> list[dict]:
        return self.api("series", **{"match[]": match})


class PrometheusProcess(QueryAPI, WorkdirServer):
    """Prometheus scraping the exporter (job wan-exporter, as the rules expect) and the Alertmanager.

    ``remote_write``: entries for its remote_write section (e.g. to VictoriaMetrics)."""

    name = "prometheus"

    def __init__(self, workdir: Path, exporter: str, alertmanager: str | None, rule_files: list[Path],
                 interval: str = "1s", serve: str | None = None, peers: PeerSet = DEBIAN,
                 remote_write: list[dict] = ()) -> None:
        super().__init__(workdir)
        self.peers = peers.need("prometheus")
        self.remote_write = list(remote_write)
        self.serve = serve  # an instrumented Wan service, scraped as job wan-serve (the traffic rules' selector)
        self.exporter = exporter
        self.alertmanager = alertmanager
        self.rule_files = rule_files
        self.interval = interval

    def args(self) -> list[str]:
        scrape = [{"job_name": "wan-exporter", "static_configs": [{"targets": [self.exporter]}]}]
        if self.serve:
            scrape.append({"job_name": "wan-serve", "static_configs": [{"targets": [self.serve]}]})
        cfg: dict = {
            "global": {"scrape_interval": self.interval, "evaluation_interval": self.interval},
            "rule_files": [str(p) for p in self.rule_files],
            "scrape_configs": scrape,
        }
        if self.alertmanager:
            scrape.append({"job_name": "alertmanager", "static_configs": [{"targets": [self.alertmanager]}]})
            cfg["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [self.alertmanager]}]}]}
        if self.remote_write:
            cfg["remote_write"] = self.remote_write
        path = self.workdir / "prometheus.yml"
        path.write_text(yaml.safe_dump(cfg))
        return [self.peers.prometheus, f"--config.file={path}", f"--storage.tsdb.path={self.workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}"]


class VictoriaMetricsProcess(QueryAPI, WorkdirServer):
    """Single-node VictoriaMetrics with temporary storage: a long-term store Prometheus remote-writes to.

    Queries see data up to ``latency_offset`` before now (its default, 30 s, hides the freshest samples
    while they may still be arriving); the response cache is off so every query reads the storage."""

    name = "victoria-metrics"
    ready_path = "/health"

    def __init__(self, workdir: Path, binary: str, latency_offset: str = "5s") -> None:
        super().__init__(workdir)
        self.binary = binary
        self.latency_offset = latency_offset

    @property
    def write_url(self) -> str:
        return f"{self.url}/api/v1/write"

    def args(self) -> list[str]:
        return [self.binary, f"-storageDataPath={self.workdir / 'vm-data'}", f"-httpListenAddr=127.0.0.1:{self.port}",
                "-retentionPeriod=1d", f"-search.latencyOffset={self.latency_offset}", "-search.disableCache",
                "-loggerLevel=WARN"]


class PromQLError(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind


def has_data(data: dict) -> bool:
    """A query result with at least one non-NaN value."""
    kind, result = data["resultType"], data["result"]
    if kind == "scalar":
        return not math.isnan(float(result[1]))
    if kind == "vector":
        return any(not math.isnan(float(s["value"][1])) for s in result)
    if kind == "matrix":
        return any(not math.isnan(float(v[1])) for s in result for v in s["values"])
    return bool(result)
