"""Item 5, detection latency: fault injected -> firing notification at an Alertmanager webhook.

The real chain on loopback: the exporter (test schedules: layout check and GPU poll every
1 s), Prometheus 2.42 (scrape and rule evaluation every 1 s) with the shipped rules rendered
by ``alerting/generate.py --for-all <short>`` (the same expressions, a short ``for:``),
Alertmanager (``group_wait`` short) and a webhook receiver in this process. Faults:

* integrity: a model's transformer weights file disappears (renamed) -> ``missing_file`` ->
  ``instance_model:wan_model_integrity_issues:sum`` -> **WanModelIntegrityFailure**;
* GPU lost: the fake NVML module starts answering ``NVML_ERROR_GPU_IS_LOST`` -> the GPU series
  vanish -> **WanGpuLost**.

Each stage's time is when this process first saw it, polling every 50 ms: the metric flipped in
the exporter's /metrics, the alert pending then firing in Prometheus' /api/v1/alerts, the
notification at the webhook. The reference is the budget the configuration allows: check
interval + scrape interval + two evaluations (the recording rule, then the alert) + ``for`` +
one evaluation + ``group_wait``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

from . import common, procs
from .common import Context, ItemResult, Row, Table, median

POLL = 0.05


class Webhook:
    """Records (monotonic time, payload) of every notification Alertmanager posts."""

    def __init__(self) -> None:
        self.events: list[tuple[float, dict]] = []
        lock = self.lock = threading.Lock()
        events = self.events

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                t = time.monotonic()
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    doc = json.loads(body)
                except ValueError:
                    doc = {}
                with lock:
                    events.append((t, doc))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *a: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def first(self, alertname: str, match: dict[str, str], after: float) -> float | None:
        with self.lock:
            for t, doc in self.events:
                if t < after or doc.get("status") != "firing":
                    continue
                for a in doc.get("alerts", []):
                    lab = a.get("labels", {})
                    if lab.get("alertname") == alertname and all(lab.get(k) == v for k, v in match.items()):
                        return t
        return None

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def _rules(ctx: Context, out: Path, for_: str) -> tuple[Path, str]:
    """The shipped rules with a short for:, rendered by the alerting generator (or rewritten from the files)."""
    out.mkdir(parents=True, exist_ok=True)
    gen = common.REPO / "alerting" / "generate.py"
    if gen.exists():
        r = subprocess.run([sys.executable, str(gen), "--for-all", for_, "--out-dir", str(out)], capture_output=True,
                           text=True, timeout=60)
        if r.returncode == 0 and list(out.glob("*.yml")):
            return out, f"alerting/generate.py --for-all {for_}"
    src = sorted((common.REPO / "alerting" / "rules").glob("*.yml"))
    if not src:
        raise FileNotFoundError("no alerting rules in alerting/rules/")
    for f in src:
        doc = yaml.safe_load(f.read_text())
        for g in doc.get("groups", []):
            for rule in g.get("rules", []):
                if "alert" in rule:
                    rule["for"] = for_
        (out / f.name).write_text(yaml.safe_dump(doc, sort_keys=False))
    return out, f"alerting/rules/*.yml with every for: rewritten to {for_}"


def _metric_value(text: str, name: str, labels: dict[str, str]) -> float | None:
    from prometheus_client.parser import text_string_to_metric_families

    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return None


def _alert_state(prom_port: int, alertname: str, match: dict[str, str]) -> str | None:
    doc = _get_json(f"http://127.0.0.1:{prom_port}/api/v1/alerts")
    states = set()
    for a in doc.get("data", {}).get("alerts", []):
        lab = a.get("labels", {})
        if lab.get("alertname") == alertname and all(lab.get(k) == v for k, v in match.items()):
            states.add(a.get("state"))
    return "firing" if "firing" in states else "pending" if "pending" in states else None


def _query(prom_port: int, q: str) -> list:
    url = f"http://127.0.0.1:{prom_port}/api/v1/query?query={urllib.request.quote(q)}"
    return _get_json(url).get("data", {}).get("result", [])


def run(ctx: Context) -> ItemResult:
    res = ItemResult("5", "Detection latency")
    for binary in ("prometheus", "prometheus-alertmanager"):
        if not shutil.which(binary):
            res.skipped = f"{binary} not installed (apt-get install prometheus prometheus-alertmanager)"
            return res
    work = ctx.scratch("detection")
    for_s = 2 if ctx.quick else 5
    group_wait = 1 if ctx.quick else 2
    interval = 1.0
    rules, rules_how = _rules(ctx, work / "rules", f"{for_s}s")

    # Models: copies of a tiny pipeline (a fault renames a weights file), or, without tiny models, none.
    models = []
    if ctx.tiny_dir is not None and "tiny-wan2.1-t2v" in common.built_kinds(ctx.tiny_dir):
        for i in range(3):
            d = work / "models" / f"m{i}"
            if not d.exists():
                shutil.copytree(ctx.tiny_dir / "tiny-wan2.1-t2v", d)
            models.append({"name": f"m{i}", "kind": "tiny-wan2.1-t2v", "path": str(d), "device": "cpu",
                           "dtype": "float32", "profiles": []})
    cfg = procs.write_config(work / "exporter.yaml", {
        "models": models,
        "schedules": {"gpu": {"interval": "1s"}, "host": {"interval": "5s"}, "layout": {"interval": "1s"},
                      "headers": {"interval": "1h"}, "hash": {"interval": "24h", "enabled": False},
                      "load": {"interval": "1h", "enabled": False}, "benchmark": {"interval": "1h", "enabled": False}},
        "exporter": {"state_dir": str(work / "state")},
    })
    hook = Webhook()
    exp = procs.Exporter(work, "exporter-detection", config=cfg, gpus=2)
    am_port, prom_port = procs.free_port(), procs.free_port()
    (work / "alertmanager.yml").write_text(yaml.safe_dump({
        "route": {"receiver": "hook", "group_by": ["alertname", "instance", "model"], "group_wait": f"{group_wait}s",
                  "group_interval": "5s", "repeat_interval": "1h"},
        "receivers": [{"name": "hook", "webhook_configs": [{"url": f"http://127.0.0.1:{hook.port}/hook",
                                                             "send_resolved": False}]}],
    }))
    (work / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
        "rule_files": [str(rules / "*.yml")],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]},
        "scrape_configs": [{"job_name": "wan-exporter", "static_configs": [{"targets": [f"127.0.0.1:{exp.port}"]}]}],
    }))
    am = procs.Proc("alertmanager", ["prometheus-alertmanager", f"--config.file={work / 'alertmanager.yml'}",
                                     f"--storage.path={work / 'am-data'}", f"--web.listen-address=127.0.0.1:{am_port}",
                                     "--cluster.listen-address=", "--log.level=warn"], log=work / "alertmanager.log")
    prom = procs.Proc("prometheus", ["prometheus", f"--config.file={work / 'prometheus.yml'}",
                                     f"--storage.tsdb.path={work / 'prom-data'}",
                                     f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn"],
                      log=work / "prometheus.log")
    rows_out: list[list] = []
    results: dict[str, list[dict]] = {}
    try:
        exp.start()
        am.start()
        prom.start()
        exp.wait_ready(60)
        procs.wait_http(am_port, "/-/ready", 60, 0.1, am.proc)
        procs.wait_http(prom_port, "/-/ready", 60, 0.1, prom.proc)
        # Steady state: scraped, recording rules evaluated (GpuLost compares with a 24h max), no alert yet.
        common_deadline = time.monotonic() + 60
        while time.monotonic() < common_deadline:
            try:
                if (_query(prom_port, 'up{job="wan-exporter"} == 1') and _query(prom_port, "instance:wan_gpu_devices:max_over_time24h")
                        and (not models or _query(prom_port, "instance_model:wan_model_integrity_issues:sum"))):
                    break
            except OSError:
                pass
            time.sleep(0.2)
        else:
            raise TimeoutError("Prometheus never saw the exporter and the recording rules")
        time.sleep(2 * interval)
        plan: list[tuple[str, str | None]] = []
        if models:
            plan.append(("integrity", "m0"))
        plan.append(("gpu_lost", None))
        if models and not ctx.quick:
            plan.append(("integrity", "m1"))
        for kind, model in plan:
            r = _one(ctx, kind, model, exp, prom_port, hook, work)
            results.setdefault(kind, []).append(r)
            rows_out.append([kind + (f" ({model})" if model else ""), r["check"], r["scrape_eval"], r["for"],
                             r["notify"], r["total"]])
            ctx.log(f"  {kind}: total {r['total']:.2f}s (check {r['check']:.2f}, scrape+eval {r['scrape_eval']:.2f}, "
                    f"for {r['for']:.2f}, notify {r['notify']:.2f})")
    finally:
        for p in (prom, am, exp):
            p.stop()
        hook.stop()
    budget = interval + 1.0 + 2 * interval + for_s + interval + group_wait
    for kind, rs in results.items():
        alert = "WanModelIntegrityFailure" if kind == "integrity" else "WanGpuLost"
        tot = median([r["total"] for r in rs])
        res.rows.append(Row(f"fault -> webhook, {alert} ({kind})", tot, "s",
                            "configured budget (check + scrape + 2 evals + for + eval + group_wait)", budget,
                            note=f"median of {len(rs)}"))
        for stage, conf in (("check", f"check interval {interval:g} s"),
                            ("scrape_eval", "scrape 1 s + evaluations 1 s (recording rule, then alert)"),
                            ("for", f"for: {for_s} s + evaluation 1 s"), ("notify", f"group_wait {group_wait} s")):
            ref = {"check": interval, "scrape_eval": 1.0 + 2 * interval, "for": for_s + interval, "notify": float(group_wait)}[stage]
            res.rows.append(Row(f"  {alert}: stage {stage}", median([r[stage] for r in rs]), "s", conf, ref))
    res.tables.append(Table("Every fault (seconds from injection; stages are consecutive)",
                            ["fault", "check (metric flips)", "scrape + evaluation (pending)", "for (firing)",
                             "group_wait + send (webhook)", "total"], rows_out))
    res.notes.append(f"Rules: {rules_how}. Exporter: layout check and GPU poll every {interval:g} s. Prometheus: "
                     f"scrape and evaluation every 1 s. Alertmanager: group_wait {group_wait} s, grouped by alertname, "
                     "instance, model. Production settings (30 s layout checks, 15-60 s scrapes, for: 2-15 m, "
                     "group_wait 30 s) scale each stage the same way.")
    return res


def _one(ctx: Context, kind: str, model: str | None, exp: procs.Exporter, prom_port: int, hook: Webhook,
         work: Path) -> dict:
    if kind == "integrity":
        alert, match = "WanModelIntegrityFailure", {"model": model}
        weights = work / "models" / model / "transformer" / "diffusion_pytorch_model.safetensors"

        def flipped() -> bool:
            _, _, body = procs.raw_get(exp.port)
            return (_metric_value(body.decode(), "wan_model_health_issues", {"model": model, "issue": "missing_file"})
                    or 0) > 0

        def inject() -> None:
            weights.rename(weights.with_suffix(".bak"))

        def restore() -> None:
            weights.with_suffix(".bak").rename(weights)
    else:
        alert, match = "WanGpuLost", {}

        def flipped() -> bool:
            _, _, body = procs.raw_get(exp.port)
            return _metric_value(body.decode(), "wan_gpu_devices", {}) is None

        def inject() -> None:
            procs.nvml_state(exp.nvml_path, 2, fault="gpu_lost")

        def restore() -> None:
            procs.nvml_state(exp.nvml_path, 2)

    t0 = time.monotonic()
    inject()
    stamps: dict[str, float] = {}
    try:
        deadline = t0 + 120
        while time.monotonic() < deadline and "webhook" not in stamps:
            now = time.monotonic()
            if "flip" not in stamps and flipped():
                stamps["flip"] = now
            if "flip" in stamps and "firing" not in stamps:
                st = _alert_state(prom_port, alert, match)
                if st in ("pending", "firing") and "pending" not in stamps:
                    stamps["pending"] = now
                if st == "firing":
                    stamps["firing"] = now
            w = hook.first(alert, match, t0)
            if w is not None:
                stamps["webhook"] = w
            time.sleep(POLL)
    finally:
        restore()
    if "webhook" not in stamps:
        raise TimeoutError(f"{alert} never reached the webhook; stages seen: {sorted(stamps)}")
    # A stage skipped between two polls is attributed to the next one (its time is the next one's).
    flip = stamps.get("flip", stamps["webhook"])
    pending = stamps.get("pending", stamps.get("firing", stamps["webhook"]))
    firing = stamps.get("firing", stamps["webhook"])
    r = {"check": flip - t0, "scrape_eval": pending - flip, "for": firing - pending, "notify": stamps["webhook"] - firing,
         "total": stamps["webhook"] - t0}
    # Let the alert resolve before the next fault (a fresh Alertmanager group each time: other model or alert).
    time.sleep(3.0)
    return r
