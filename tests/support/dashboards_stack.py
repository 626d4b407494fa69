"""Real Prometheus and Alertmanager processes on loopback, for the dashboards' live test."""

from __future__ import annotations

import json
import math
import shutil
import urllib.parse
from pathlib import Path

import yaml

from .procs import WorkdirServer, http_get


def _binary(*names: str) -> str | None:
    return next((p for n in names if (p := shutil.which(n))), None)


PROMETHEUS = _binary("prometheus")
ALERTMANAGER = _binary("alertmanager", "prometheus-alertmanager")


class AlertmanagerProcess(WorkdirServer):
    name = "alertmanager"

    def args(self) -> list[str]:
        cfg = self.workdir / "alertmanager.yml"
        cfg.write_text(yaml.safe_dump({
            "route": {"receiver": "blackhole", "group_wait": "1s", "group_interval": "1s", "repeat_interval": "1h"},
            "receivers": [{"name": "blackhole"}],
        }))
        return [ALERTMANAGER, f"--config.file={cfg}", f"--storage.path={self.workdir / 'am-data'}",
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


class PrometheusProcess(WorkdirServer):
    """Prometheus scraping the exporter (job wan-exporter, as the rules expect) and the Alertmanager."""

    name = "prometheus"

    def __init__(self, workdir: Path, exporter: str, alertmanager: str | None, rule_files: list[Path],
                 interval: str = "1s", serve: str | None = None) -> None:
        super().__init__(workdir)
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
        path = self.workdir / "prometheus.yml"
        path.write_text(yaml.safe_dump(cfg))
        return [PROMETHEUS, f"--config.file={path}", f"--storage.tsdb.path={self.workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}"]

    def api(self, path: str, **params) -> dict:
        query = urllib.parse.urlencode(params, doseq=True)
        status, body = http_get(f"{self.url}/api/v1/{path}?{query}", timeout=30)
        doc = json.loads(body)
        if status != 200 or doc.get("status") != "success":
            raise PromQLError(doc.get("errorType", str(status)), doc.get("error", body[:300]))
        return doc["data"]

    def query(self, expr: str) -> dict:
        return self.api("query", query=expr)

    def query_range(self, expr: str, seconds: float, step: str = "5s") -> dict:
        import time

        end = time.time()
        return self.api("query_range", query=expr, start=f"{end - seconds:.3f}", end=f"{end:.3f}", step=step)

    def series(self, match: str) -> list[dict]:
        return self.api("series", **{"match[]": match})


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
