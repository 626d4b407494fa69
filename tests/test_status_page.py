"""The status page and its JSON twin, rendered in-process from hand-built snapshots: the same
figures as /metrics, a documented schema, inert hostile text, bounded size, typed links."""

from __future__ import annotations

import json
from dataclasses import replace
import re
from html.parser import HTMLParser
from pathlib import Path

import jsonschema
import pytest
import yaml
from prometheus_client import CollectorRegistry

from wan_exporter.bench import aggregate
from wan_exporter.collectors.benchmark import BenchmarkFigures
from wan_exporter.collectors import SnapshotCollector
from wan_exporter.config import DEFAULT_BUCKETS, RUNBOOK_BASE, Config, ConfigError, ModelConfig, Profile, parse_config
from wan_exporter.collectors.health import HealthFigures
from wan_exporter.state import (BenchmarkAggregate, BenchmarkResult, CheckResult, CollectorStatus, GpuReading,
                                HealthIssue, HostReading, JobStatus, Snapshot, frozen_map)
from wan_exporter.status import StatusPages, html, model

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((ROOT / "docs" / "status.schema.json").read_text())
HOSTILE = '<script>alert("x")</script>"\' onload=alert(1) &amp; <img src=x onerror=alert(2)>'
GIB = 1 << 30


def run(t: float, ok: bool = True, duration: float = 2.0, model: str = "m", **kw) -> BenchmarkResult:
    base = dict(model=model, profile="p", success=ok, started_at=t - duration - 1, finished_at=t,
                reason="" if ok else "oom", duration_seconds=duration if ok else None,
                seconds_per_step=duration / 4 if ok else None, steps=4, frames=9, width=32, height=32,
                phases=frozen_map({"load": 1.0, "denoise": duration * 0.8, "vae_decode": duration * 0.2}),
                peak_memory_bytes=3 * GIB, peak_memory_kind="cuda", device="cuda:0",
                sanity=frozen_map({"finite": True, "not_black": True, "not_frozen": True, "shape": True}),
                output_digest="abc")
    base.update(kw)
    return BenchmarkResult(**base)


def config(*names: str, gpu_name: str = "NVIDIA H200") -> Config:
    return Config(models=tuple(ModelConfig(name=n, kind="tiny-wan2.2-ti2v-5b", path="/models/" + n, device="cuda:0",
                                           dtype="float32", profiles=("p",)) for n in names),
                  profiles={"p": Profile(width=32, height=32, frames=9, steps=4)})


def snapshot(cfg: Config, gpu_name: str = "NVIDIA H200", finding_path: str = "transformer/model.safetensors",
             runs: int = 3) -> Snapshot:
    t = 1_800_000_000.0
    checks, benches = {}, {}
    for i, m in enumerate(cfg.models):
        n = m.name
        issues = (HealthIssue("hash_mismatch", "sha256 differs from the reference", finding_path),) if i == 0 else ()
        checks[(n, "layout")] = CheckResult(n, "layout", True, 0.01, t - 5,
                                            facts=frozen_map({"files_expected": 10, "files_present": 10,
                                                              "size_bytes": 123456, "model_index": True}))
        checks[(n, "hash")] = CheckResult(n, "hash", not issues, 0.5, t - 50, issues=issues,
                                          facts=frozen_map({"verified_bytes": 100000 if issues else 123456,
                                                            "expected_bytes": 123456, "files_recorded": 10,
                                                            "manifest_files": 10, "hf_cache_files": 0}))
        agg = BenchmarkAggregate()
        for k in range(runs):
            agg = aggregate.fold(agg, run(t - 100 * (runs - k), ok=k != 1, duration=2.0 + k, model=n),
                                 DEFAULT_BUCKETS, 10)
        benches[(n, "p")] = agg
    gpus = (GpuReading(index=0, uuid="GPU-0", name=gpu_name, memory_total_bytes=140 * GIB,
                       memory_used_bytes=20 * GIB, utilization_ratio=0.4, temperature_celsius=60.0,
                       throttle_reasons=frozen_map({"hw_slowdown": True, "gpu_idle": False})),)
    return Snapshot(created_at=t, ready=True, gpus=gpus, checks=frozen_map(checks), benchmarks=frozen_map(benches),
                    collectors=frozen_map({"gpu": CollectorStatus("gpu", True, 0.01),
                                           "host": CollectorStatus("host", False, 0.02, "error")}),
                    host=HostReading(64 * GIB, 32 * GIB, 16, 0.25, 1.5),
                    jobs=frozen_map({"collector.host": JobStatus("collector.host", t - 3, t - 3, 0.01, 7, 0, 15.0)}))


class Inert(HTMLParser):
    """Collects what a browser would execute or fetch: script elements, event handlers, URLs."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts, self.handlers, self.urls, self.styles, self.tags = 0, [], [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.scripts += tag in ("script", "iframe", "object", "embed", "img")
        for k, v in attrs:
            if k.startswith("on"):
                self.handlers.append((tag, k))
            if k == "style":
                self.styles.append(tag)
            if k in ("href", "src"):
                self.urls.append(v)


def parse(page: str) -> Inert:
    p = Inert()
    p.feed(page)
    return p


def data_fields(page: str, model_name: str) -> dict[str, str]:
    card = page.split(f'id="model-{model_name}"', 1)[1].split("</details>", 1)[0]
    return dict(re.findall(r'<data data-field="([^"]+)" value="([^"]*)"', card))


def test_json_twin_matches_its_documented_schema():
    cfg = config("m", "n")
    view = model.build(snapshot(cfg), cfg)
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    jsonschema.validate(json.loads(json.dumps(view)), SCHEMA, cls=jsonschema.Draft202012Validator)
    empty = Config()
    jsonschema.validate(json.loads(json.dumps(model.build(Snapshot(), empty))), SCHEMA,
                        cls=jsonschema.Draft202012Validator)


def test_card_shows_the_figures_metrics_shows():
    cfg = config("m")
    snap = snapshot(cfg)
    reg = CollectorRegistry(auto_describe=True)
    reg.register(SnapshotCollector(type("S", (), {"snapshot": snap})(), lambda: cfg,
                                   [HealthFigures(), BenchmarkFigures()]))
    page = html.render(model.build(snap, cfg))
    f = data_fields(page, "m")
    L = {"model": "m", "profile": "p"}
    assert float(f["benchmark.p.duration_seconds"]) == reg.get_sample_value("wan_generation_last_duration_seconds", L)
    assert float(f["benchmark.p.seconds_per_step"]) == reg.get_sample_value("wan_generation_seconds_per_step", L)
    assert int(f["benchmark.p.peak_memory_bytes"]) == reg.get_sample_value("wan_generation_peak_memory_bytes", L)
    assert float(f["benchmark.p.peak_memory_ratio"]) == reg.get_sample_value("wan_generation_peak_memory_ratio", L)
    assert float(f["benchmark.p.sanity_ratio"]) == reg.get_sample_value("wan_benchmark_output_sanity_ratio", L)
    assert float(f["integrity_ratio"]) == reg.get_sample_value("wan_model_integrity_ratio",
                                                               {"model": "m", "reference": "recorded"})
    assert int(f["files_present"]) == reg.get_sample_value("wan_model_files_present", {"model": "m"})
    assert reg.get_sample_value("wan_model_health_status", {"model": "m", "status": "critical"}) == 1
    card = page.split('id="model-m"', 1)[1].split("</details>", 1)[0]
    assert 's-critical' in page.split('id="model-m"', 1)[0][-60:] and ">critical<" in card
    assert "transformer/model.safetensors" in card and "hash_mismatch" in card
    assert "manifest recorded at first sight" in card  # what the integrity figure was compared against


def test_integrity_counts_files_compared_with_the_recorded_manifest_not_only_those_recorded_now():
    cfg = config("m")
    snap = snapshot(cfg)
    later = CheckResult("m", "hash", True, 0.5, snap.created_at - 10,
                        facts=frozen_map({"verified_bytes": 123456, "expected_bytes": 123456, "files_recorded": 0,
                                          "manifest_files": 3, "hf_cache_files": 7}))
    snap = replace(snap, checks=frozen_map({**snap.checks, ("m", "hash"): later}))
    v = model.build(snap, cfg)
    i = v["models"][0]["checkpoint"]["integrity"]
    assert (i["recorded_files"], i["published_files"], i["reference"]) == (3, 7, "recorded")
    assert "3 file(s) against a manifest recorded at first sight" in html.render(v)


def test_hostile_model_gpu_and_file_names_render_inert():
    # Config validation refuses such model names; the page must not depend on that.
    cfg = config(HOSTILE)
    snap = snapshot(cfg, gpu_name=HOSTILE, finding_path=HOSTILE)
    page = html.render(model.build(snap, cfg))
    p = parse(page)
    assert p.scripts == 0 and not p.handlers and not p.styles
    assert "<script" not in page and "onerror=alert" not in page.replace("onerror=alert(2)&gt;", "")
    assert page.count("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;") >= 3  # model, GPU and file name, shown
    assert all(not (u or "").lower().startswith("javascript:") for u in p.urls)
    doc = json.loads(StatusPages(lambda: (snap, cfg)).render("json"))
    assert doc["models"][0]["name"] == HOSTILE and doc["gpus"]["devices"][0]["name"] == HOSTILE


def test_page_has_no_script_inline_style_or_external_asset():
    cfg = config("m", "n")
    page = html.render(model.build(snapshot(cfg), cfg))
    p = parse(page)
    assert "script" not in p.tags and not p.handlers and not p.styles and "style" not in p.tags
    assert [u for u in p.urls if re.match(r"^(https?:)?//", u or "") and not u.startswith(RUNBOOK_BASE)] == []
    assert '<link rel="stylesheet" href="status.css">' in page
    assert '<meta http-equiv="refresh" content="30">' in page
    assert "<svg" in page and "polyline" in page  # the history sparkline, drawn on the server


def test_refresh_and_links_come_from_the_config():
    cfg = parse_config("exporter:\n  status_refresh: 0s\n  links:\n    grafana: https://grafana.example/\n"
                       "    prometheus: http://prom:9090\n    runbooks: https://wiki.example/runbooks\n")
    page = html.render(model.build(Snapshot(config_last_reload_success=False), cfg))
    assert 'http-equiv="refresh"' not in page
    assert '<a href="https://grafana.example/">Grafana</a>' in page and '<a href="http://prom:9090">Prometheus</a>' in page
    assert "Alertmanager" not in page
    assert 'href="https://grafana.example/d/wan-model-detail/wan-model-detail?var-model=' not in page  # no models
    cfg2 = parse_config("exporter:\n  links: {grafana: 'https://grafana.example/'}\nmodels:\n"
                        "  - {name: m.1, kind: tiny-wan2.1-t2v, path: /x}\n")
    assert model.build(Snapshot(), cfg2)["models"][0]["dashboard_url"] == \
        "https://grafana.example/d/wan-model-detail/wan-model-detail?var-model=m.1"
    assert json.loads((ROOT / "grafana" / "dashboards" / "wan-model-detail.json").read_text())["uid"] == \
        model.MODEL_DASHBOARD
    assert 'href="https://wiki.example/runbooks#wanconfigreloadfailed"' in page
    assert ">config reload failed</a>" in page  # in the header, not only in the folded exporter section


def test_bad_links_are_config_errors_with_their_paths():
    with pytest.raises(ConfigError) as exc:
        parse_config("exporter:\n  links: {grafana: 'javascript:alert(1)', alertmanger: x}\n  status_refresh: -1\n")
    errs = exc.value.errors
    assert any(e.startswith("exporter.links.grafana: expected an http:// or https:// URL") for e in errs), errs
    assert any(e.startswith("exporter.links.alertmanger: unknown key (did you mean 'alertmanager'?)") for e in errs)
    assert any(e.startswith("exporter.status_refresh:") for e in errs), errs


def test_runbook_links_point_at_sections_that_exist():
    thresholds = yaml.safe_load((ROOT / "alerting" / "thresholds.yml").read_text())
    assert RUNBOOK_BASE == thresholds["runbook_base"]
    anchors = {h.strip().lower() for h in re.findall(r"^## (\w+)", (ROOT / "alerting" / "runbooks.md").read_text(), re.M)}
    cfg = config("m")
    view = model.build(snapshot(cfg), cfg)
    found = view["models"][0]["runbooks"] + view["gpus"]["devices"][0]["runbooks"] + view["collectors"][1]["runbooks"]
    assert {r["alert"] for r in found} >= {"WanModelIntegrityFailure", "WanModelHealthCritical", "WanGpuThrottling",
                                           "WanCollectorFailing"}
    for r in found:
        base, anchor = r["url"].split("#")
        assert base == RUNBOOK_BASE and anchor in anchors, r


def test_configured_gpu_missing_from_nvml_shows_as_lost():
    cfg = Config(models=(ModelConfig(name="m", kind="tiny-wan2.1-t2v", path="/x", device="cuda:3"),))
    v = model.build(snapshot(cfg), cfg)
    lost = [d for d in v["gpus"]["devices"] if d["lost"]]
    assert lost == [{"index": 3, "uuid": None, "name": None, "lost": True, "used_by": ["m"],
                     "runbooks": [model.runbook(cfg, "WanGpuLost")]}]
    assert "not reported by NVML" in html.render(v)


def test_configured_gpu_missing_from_nvml_is_named_by_its_nvml_index_not_its_cuda_number(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    cfg = Config(models=(ModelConfig(name="m", kind="tiny-wan2.1-t2v", path="/x", device="cuda:1"),))
    v = model.build(snapshot(cfg), cfg)
    assert [(d["index"], d["used_by"]) for d in v["gpus"]["devices"] if d["lost"]] == [(3, ["m"])]


def test_past_a_dozen_models_the_page_leads_with_a_table_and_folds_healthy_cards():
    names = [f"m{i:02d}" for i in range(40)]
    cfg = config(*names)
    snap = snapshot(cfg, runs=20)
    page = html.render(model.build(snap, cfg))
    assert '<section id="table">' in page and page.count('<a href="#model-') == 40
    assert re.search(r'<details class="card s-critical" id="model-m00" open>', page)  # the one with a finding
    assert page.count("<details class=\"card") == 40 and page.count('class="card s-critical"') == 1
    assert len(page) < 40 * 12_000  # bounded: about 10 kB a model
    small = html.render(model.build(snapshot(config(*names[:12])), config(*names[:12])))
    assert '<section id="table">' not in small


def test_benchmark_history_is_kept_and_bounded():
    agg = BenchmarkAggregate()
    for i in range(aggregate.HISTORY + 7):
        agg = aggregate.fold(agg, run(1000.0 + i, ok=i % 5 != 0, duration=1.0 + i), DEFAULT_BUCKETS, 10)
    assert len(agg.history) == aggregate.HISTORY
    assert agg.history[-1].finished_at == 1000.0 + aggregate.HISTORY + 6
    assert [r.success for r in agg.history] == [i % 5 != 0 for i in range(7, aggregate.HISTORY + 7)]


def test_rendering_is_cached_per_snapshot_and_config():
    cfg = config("m")
    state = {"snap": snapshot(cfg)}
    pages = StatusPages(lambda: (state["snap"], cfg))
    calls = []
    real = model.build

    def counting(snap, c):
        calls.append(snap)
        return real(snap, c)

    model.build = counting
    try:
        a, b = pages.render("html"), pages.render("html")
        assert a is b and len(calls) == 1
        state["snap"] = snapshot(cfg, gpu_name="other")
        assert pages.render("html") != a and len(calls) == 2
    finally:
        model.build = real


def test_wsgi_answers_page_json_and_stylesheet():
    cfg = config("m")
    snap = snapshot(cfg)
    app = StatusPages(lambda: (snap, cfg))
    got = {}

    def get(path):
        body = b"".join(app({"PATH_INFO": path, "REQUEST_METHOD": "GET"},
                            lambda status, headers: got.update({path: (status, dict(headers))})))
        return got[path][0], got[path][1]["Content-Type"], body

    assert get("/")[:2] == ("200 OK", "text/html; charset=utf-8")
    status, ctype, body = get("/api/v1/status")
    assert ctype == "application/json" and json.loads(body)["schema_version"] == 1
    status, ctype, body = get("/status.css")
    assert ctype.startswith("text/css") and b".card" in body


def test_a_scrape_never_waits_on_the_page():
    import threading
    import urllib.request

    from wan_exporter.web.server import HttpServer, make_app

    release = threading.Event()
    entered = threading.Event()

    def stuck_page(environ, start_response):  # a page render that cannot finish
        entered.set()
        release.wait(30)
        start_response("200 OK", [("Content-Type", "text/html")])
        return [b"late"]

    server = HttpServer(make_app(CollectorRegistry(), lambda: True, lambda: [], status=stuck_page), "127.0.0.1:0")
    server.start()
    try:
        t = threading.Thread(target=lambda: urllib.request.urlopen(f"http://127.0.0.1:{server.port}/", timeout=30).read())
        t.start()
        assert entered.wait(5)
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as r:
            assert r.status == 200
    finally:
        release.set()
        t.join(10)
        server.stop()
