"""The whole /metrics exposition for a fixed snapshot, against a committed golden file.

Update after an intended change with:  UPDATE_GOLDEN=1 python3 -m pytest tests/test_metrics_golden.py
then review the diff: metric names, labels and units are the public API.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.openmetrics import exposition as openmetrics

from wan_exporter.app import App
from wan_exporter.config import parse_config
from wan_exporter.web.server import make_app
from wan_exporter.state import (BenchmarkAggregate, BenchmarkResult, CheckResult, CollectorStatus, GpuReading,
                                HealthIssue, HostReading, JobStatus, Snapshot, frozen_map)

GOLDEN = Path(__file__).parent / "fixtures" / "metrics.golden.prom"
GOLDEN_OPENMETRICS = Path(__file__).parent / "fixtures" / "metrics.golden.openmetrics"
OPENMETRICS_ACCEPT = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"

CONFIG = """
models:
  - {name: t2v-a14b, kind: wan2.2-t2v-a14b, hub_id: Wan-AI/Wan2.2-T2V-A14B-Diffusers, profiles: [probe]}
  - {name: ti2v-5b, kind: wan2.2-ti2v-5b, hub_id: Wan-AI/Wan2.2-TI2V-5B-Diffusers, device: cuda:1, offload: model}
profiles:
  probe: {width: 832, height: 480, frames: 17, steps: 4}
benchmark:
  buckets: [1, 10, 60, 600]
exporter:
  hf_cache_dir: /nonexistent/hf-cache
"""

T0 = 1_790_000_000.0


def fixed_snapshot() -> Snapshot:
    gpu = GpuReading(index=0, uuid="GPU-aaaa", name="NVIDIA H200", driver_version="580.159.04", cuda_version="13.0",
                     compute_capability="9.0", memory_total_bytes=150754820096, memory_used_bytes=42 << 30,
                     utilization_ratio=0.0, memory_utilization_ratio=0.0, temperature_celsius=41, power_watts=118.5,
                     power_limit_watts=700, energy_joules=123456.789, sm_clock_hertz=1.98e9,
                     throttle_reasons=frozen_map({"gpu_idle": True}),
                     ecc_errors=frozen_map({("corrected", "volatile"): 0, ("uncorrected", "volatile"): 0}),
                     processes=0, process_memory_bytes=0, pci_bus_id="00000000:19:00.0")
    gpu1 = GpuReading(index=1, uuid="GPU-bbbb", name="NVIDIA H200")  # a GPU whose optional fields were unreadable
    gpu2 = GpuReading(index=2, uuid="GPU-cccc", name="", lost=True)  # NVML reports it lost: wan_gpu_lost only
    ok = BenchmarkResult(model="t2v-a14b", profile="probe", success=True, started_at=T0, finished_at=T0 + 30,
                         duration_seconds=12.5, process_start_seconds=3.25,
                         phases=frozen_map({"load": 9.0, "text_encode": 0.5, "denoise": 10.0, "vae_decode": 2.0}),
                         steps=4, seconds_per_step=2.5, frames=17, width=832, height=480,
                         peak_memory_bytes=40 << 30, peak_memory_kind="cuda", energy_joules=5000.0,
                         sanity=frozen_map({"finite": True, "not_black": True, "not_frozen": True, "shape": True}),
                         output_digest="ab", device="cuda:0", gpu_uuid="GPU-aaaa", gpu_name="NVIDIA H200")
    failed = BenchmarkResult(model="t2v-a14b", profile="probe", success=False, started_at=T0 + 60, finished_at=T0 + 70,
                             reason="oom", device="cuda:0")
    agg = BenchmarkAggregate(runs=3, failures=frozen_map({"oom": 1}), skipped=frozen_map({"gpu_busy": 2}),
                             bucket_counts=(0, 0, 2, 0, 0), duration_sum=25.0, duration_count=2,
                             sanity_checks=2, sanity_passed=2, recent_durations=(12.5, 12.5, 12.0),
                             last=failed, last_success=ok, reproducible=True, consecutive_failures=1)
    return Snapshot(
        ready=True,
        gpus=(gpu, gpu1, gpu2),
        gpu_xid_totals=frozen_map({("GPU-aaaa", "79"): 2}),
        host=HostReading(memory_total_bytes=64 << 30, memory_available_bytes=32 << 30, cpu_count=16,
                         cpu_utilization_ratio=0.25, load1=1.5, model_fs=frozen_map({"t2v-a14b": (100 << 30, 1 << 40)})),
        collectors=frozen_map({"gpu": CollectorStatus("gpu", True, 0.01), "host": CollectorStatus("host", True, 0.001),
                               "checkpoint": CollectorStatus("checkpoint", False, 0.002, "error")}),
        checks=frozen_map({
            ("t2v-a14b", "layout"): CheckResult("t2v-a14b", "layout", False, 0.003, T0,
                                                (HealthIssue("missing_model", "not found"),),
                                                frozen_map({"files_expected": 0, "files_present": 0})),
        }),
        checkpoint_facts=frozen_map({"t2v-a14b": {"present": False}, "ti2v-5b": {"present": False}}),
        benchmarks=frozen_map({("t2v-a14b", "probe"): agg}),
        baselines=frozen_map({("t2v-a14b", "probe", "recorded"): 12.0}),
        jobs=frozen_map({"health.layout": JobStatus("health.layout", T0, T0, 0.004, 5, 0, 30.0)}),
        config_last_reload_success=True,
        config_last_reload_at=T0,
    )


def _pinned(text: str) -> str:
    # Library versions differ between machines: pin them in the golden text.
    return re.sub(r"^wan_exporter_build_info\{.*\} 1\.0$", "wan_exporter_build_info{...} 1.0", text, flags=re.M)


def served(accept: str | None, gzipped: bool = False) -> tuple[str, str]:
    """(Content-Type, body) as a scrape gets them: GET /metrics on the exporter's own endpoints,
    wired as App.start wires them, so the body is the pre-rendered bytes of wan_exporter.web.exposition."""
    cfg = parse_config(CONFIG)
    app = App(cfg)
    app.store.update(lambda s: fixed_snapshot())
    endpoints = make_app(app.registry, lambda: True, lambda: [m.name for m in cfg.models],
                         version=lambda: (app.store.snapshot, cfg))
    assert endpoints.metrics_cache is not None, "/metrics is not served pre-rendered"
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/metrics", "QUERY_STRING": ""}
    if accept:
        environ["HTTP_ACCEPT"] = accept
    if gzipped:
        environ["HTTP_ACCEPT_ENCODING"] = "gzip"
    got: list = []
    try:
        body = b"".join(endpoints(environ, lambda status, headers, *_: got.append((status, headers))))
    finally:
        endpoints.metrics_cache.close()
    [(status, headers)] = got
    assert status.startswith("200"), status
    h = dict(headers)
    assert int(h["Content-Length"]) == len(body)
    assert (h.get("Content-Encoding") == "gzip") == gzipped, h
    return h["Content-Type"], _pinned((gzip.decompress(body) if gzipped else body).decode())


def render() -> str:
    return served(None)[1]


@pytest.mark.parametrize("golden, accept", [(GOLDEN, None), (GOLDEN_OPENMETRICS, OPENMETRICS_ACCEPT)],
                         ids=["text", "openmetrics"])
def test_metrics_match_golden(golden, accept):
    _, text = served(accept)
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(text)
    assert golden.exists(), "no golden file: run with UPDATE_GOLDEN=1"
    assert text == golden.read_text(), "exposition changed; if intended, re-run with UPDATE_GOLDEN=1 and review the diff"


def test_served_bytes_are_what_the_client_library_renders_in_each_format():
    cfg = parse_config(CONFIG)
    app = App(cfg)
    app.store.update(lambda s: fixed_snapshot())
    for accept, render_direct, kind in ((None, generate_latest, "text/plain; version=0.0.4"),
                                        (OPENMETRICS_ACCEPT, openmetrics.generate_latest, "application/openmetrics-text")):
        for gz in (False, True):
            content_type, text = served(accept, gz)
            assert content_type.startswith(kind), content_type
            assert text == _pinned(render_direct(app.registry).decode())
    assert served(OPENMETRICS_ACCEPT)[1].endswith("# EOF\n")


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (Debian package prometheus)")
def test_promtool_check_metrics_is_clean():
    cfg = parse_config(CONFIG)
    app = App(cfg)
    app.store.update(lambda s: fixed_snapshot())
    text = generate_latest(app.registry).decode()
    r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.strip() == "" and r.stderr.strip() == "", r.stdout + r.stderr
