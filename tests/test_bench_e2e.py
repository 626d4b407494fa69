"""Benchmarks end to end: real diffusers pipelines in spawned children, measured and published.

Every tiny pipeline kind runs through the runner's child process; faults are injected
through the test-only fault hook ($WAN_EXPORTER_TEST_FAULTS), which the child honours in its
real code path. The config has no fault switch.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from prometheus_client import generate_latest

from support.faults_procs import FAULTS_ENV, set_faults
from support.procs import (ExporterProcess, exporter_env, http_get, parse_metrics, sample, samples_named, wait_for,
                           write_nvml_state)
from wan_exporter.app import App
from wan_exporter.config import parse_config

pytestmark = pytest.mark.e2e

KINDS = {
    "t2v-a14b": ("tiny-wan2.2-t2v-a14b", "tiny"),
    "i2v-a14b": ("tiny-wan2.2-i2v-a14b", "tiny-image"),
    "ti2v-5b": ("tiny-wan2.2-ti2v-5b", "tiny"),
    "ti2v-5b-image": ("tiny-wan2.2-ti2v-5b", "tiny-image"),
    "wan21-t2v": ("tiny-wan2.1-t2v", "tiny"),
    "wan21-i2v": ("tiny-wan2.1-i2v", "tiny-image"),
}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny")
    subprocess.run([sys.executable, "-m", "wan_exporter", "tiny-models", str(d)], check=True, env=exporter_env(),
                   timeout=300, capture_output=True)
    return d


def config_text(tiny_dir, models: dict, state_dir, extra: str = "", timeout: str = "2m") -> str:
    """A config for ``{name: (kind, profile[, fault[, device]])}``; faults go to :func:`fault_hook`, not here."""
    lines = ["models:"]
    for name, (kind, profile, *rest) in models.items():
        device = rest[1] if len(rest) > 1 else "cpu"
        lines.append(f"  - {{name: {name}, kind: {kind}, path: '{tiny_dir}/{kind}', device: '{device}', "
                     f"dtype: float32, profiles: [{profile}]}}")
    lines += [
        "profiles:",
        f"  tiny: {{width: 32, height: 32, frames: 9, steps: 2, timeout: {timeout}}}",
        f"  tiny-image: {{width: 32, height: 32, frames: 9, steps: 2, image: true, timeout: {timeout}}}",
        "benchmark: {kill_grace: 2s, baseline_runs: 1}",
        f"exporter: {{state_dir: '{state_dir}'}}",
        extra,
    ]
    return "\n".join(lines) + "\n"


def fault_hook(tmp_path, models: dict) -> dict[str, str]:
    """Write the test-only fault file for ``models`` (as for config_text); returns the environment naming it."""
    path = tmp_path / "faults.json"
    set_faults(path, {name: rest[0] for name, (_k, _p, *rest) in models.items() if rest and rest[0] != "none"})
    return {FAULTS_ENV: str(path)}


def bench_app(text: str) -> tuple[App, object]:
    cfg = parse_config(text)
    app = App(cfg)
    bench = next(s for s in app.subsystems if type(s).__name__ == "BenchmarkSubsystem")
    return app, bench


def run_all(app, bench) -> dict:
    cfg = app.config()
    out = {}
    for m in cfg.models:
        for p in m.profiles:
            out[m.name] = bench.run_one(cfg, m, p)
    return out


def test_every_pipeline_kind_is_measured_and_published(tiny_dir, tmp_path):
    app, bench = bench_app(config_text(tiny_dir, KINDS, tmp_path / "state"))
    results = run_all(app, bench)
    for name, r in results.items():
        assert r is not None and r.success, (name, r and r.reason, r and r.detail)
    # The same seed again on the same device: the output digest must repeat.
    cfg = app.config()
    assert bench.run_one(cfg, cfg.model("t2v-a14b"), "tiny").success
    app.checkpoint_poller.poll()  # the transformer configs the FLOPs are computed from
    s = parse_metrics(generate_latest(app.registry).decode())
    assert sample(s, "wan_benchmark_output_reproducible", model="t2v-a14b", profile="tiny") == 1
    assert sample(s, "wan_generation_duration_seconds_count", model="t2v-a14b", profile="tiny") == 2
    assert sample(s, "wan_benchmark_duration_spread_ratio", model="t2v-a14b", profile="tiny") is None  # needs 3
    for name, (kind, profile) in KINDS.items():
        lv = {"model": name, "profile": profile}
        runs = 2 if name == "t2v-a14b" else 1
        assert sample(s, "wan_benchmark_runs_total", **lv) == runs
        assert sample(s, "wan_generation_duration_seconds_count", **lv) == runs
        assert sample(s, "wan_generation_duration_seconds_sum", **lv) > 0
        assert sample(s, "wan_generation_duration_seconds_bucket", le="+Inf", **lv) == runs
        for phase in ("load", "text_encode", "denoise", "vae_decode"):
            assert sample(s, "wan_generation_phase_duration_seconds", phase=phase, **lv) > 0, (name, phase)
        if profile == "tiny-image":
            assert sample(s, "wan_generation_phase_duration_seconds", phase="image_encode", **lv) > 0, name
        assert sample(s, "wan_generation_seconds_per_step", **lv) > 0
        assert sample(s, "wan_generation_frames", **lv) == 9
        assert sample(s, "wan_generation_pixels_per_second", **lv) > 0
        # On CPU the child's peak RSS is the figure; torch alone is hundreds of MB.
        assert sample(s, "wan_generation_peak_memory_bytes", **lv) > 100 << 20
        assert sample(s, "wan_benchmark_output_sanity_ratio", **lv) == 1
        assert sample(s, "wan_benchmark_last_run_success", **lv) == 1
        assert sample(s, "wan_benchmark_last_success_timestamp_seconds", **lv) > time.time() - 600
        assert sample(s, "wan_benchmark_process_start_seconds", **lv) > 0
        assert sample(s, "wan_benchmark_baseline_seconds", source="recorded", **lv) > 0
        assert sample(s, "wan_benchmark_performance_ratio", **lv) > 0
        # How far from the limit: FLOPs and real-time factor for every kind; on a CPU no peak to hold them to.
        tokens = 3 * (1 if kind == "tiny-wan2.2-ti2v-5b" else 2) ** 2  # 9 frames -> 3 latent; 32 px / 32 or 16
        assert sample(s, "wan_generation_latent_tokens", **lv) == tokens, name
        assert sample(s, "wan_generation_flops_per_step", **lv) > 0, name
        assert sample(s, "wan_generation_flops_per_second", **lv) > 0, name
        assert sample(s, "wan_generation_realtime_factor", **lv) > 0, name
        assert sample(s, "wan_generation_model_flops_utilization_ratio", **lv) is None
        # Nothing measured it: no energy on CPU, no reproducibility after one run.
        assert sample(s, "wan_generation_energy_joules", **lv) is None
        assert sample(s, "wan_generation_energy_joules_per_video_second", **lv) is None
        if runs == 1:
            assert sample(s, "wan_benchmark_output_reproducible", **lv) is None
        assert sample(s, "wan_benchmark_failures_total", reason="oom", **lv) == 0
    build = samples_named(s, "wan_exporter_build_info")
    assert len(build) == 1 and dict(next(iter(build)))["diffusers_version"] != "unknown"


# cuda_error and load_failed are classified in-process in test_bench_child.py; here the faults
# that need a real child: an exception crossing the pipe, NaN weights, and a SIGKILL.
@pytest.mark.parametrize("fault, reason", [("oom", "oom"), ("nan", "nan_output"), ("crash", "crash")])
def test_fault_costs_one_failed_run(tiny_dir, tmp_path, monkeypatch, fault, reason):
    kind, profile = KINDS["t2v-a14b"]
    models = {"m": (kind, profile, fault)}
    monkeypatch.setenv(FAULTS_ENV, fault_hook(tmp_path, models)[FAULTS_ENV])
    app, bench = bench_app(config_text(tiny_dir, models, tmp_path / "state"))
    cfg = app.config()
    r = bench.run_one(cfg, cfg.model("m"), profile)
    assert not r.success and r.reason == reason, (r.reason, r.detail)
    s = parse_metrics(generate_latest(app.registry).decode())
    lv = {"model": "m", "profile": profile}
    assert sample(s, "wan_benchmark_failures_total", reason=reason, **lv) == 1
    assert sample(s, "wan_benchmark_runs_total", **lv) == 1
    assert sample(s, "wan_benchmark_last_run_success", **lv) == 0
    assert sample(s, "wan_generation_duration_seconds_count", **lv) == 0
    assert sample(s, "wan_benchmark_last_success_timestamp_seconds", **lv) is None
    if fault == "nan":
        assert sample(s, "wan_benchmark_output_sanity_failures_total", check="finite", **lv) == 1
        assert sample(s, "wan_benchmark_output_sanity_ratio", **lv) == 0


def test_busy_gpu_is_skipped_and_counted(tiny_dir, tmp_path, monkeypatch):
    state = write_nvml_state(tmp_path / "nvml.json", gpus=[{"util_gpu": 95}])
    monkeypatch.setenv("WAN_EXPORTER_NVML_MODULE", "support.fake_pynvml")
    monkeypatch.setenv("FAKE_NVML_STATE", str(state))
    kind, profile = KINDS["t2v-a14b"]
    app, bench = bench_app(config_text(tiny_dir, {"m": (kind, profile, "none", "cuda:0")}, tmp_path / "state"))
    app.gpu_poller.poll()
    cfg = app.config()
    assert bench.run_one(cfg, cfg.model("m"), profile) is None
    write_nvml_state(state, gpus=[{"util_gpu": 0, "processes": [{"pid": 7, "memory": 8 << 30}]}])
    app.gpu_poller.poll()
    assert bench.run_one(cfg, cfg.model("m"), profile) is None
    s = parse_metrics(generate_latest(app.registry).decode())
    assert sample(s, "wan_benchmark_skipped_total", model="m", reason="gpu_busy") == 1
    assert sample(s, "wan_benchmark_skipped_total", model="m", reason="gpu_memory_in_use") == 1
    assert sample(s, "wan_benchmark_runs_total", model="m", profile=profile) == 0


def test_wedged_benchmark_never_blocks_scrape(tiny_dir, tmp_path):
    kind, profile = KINDS["t2v-a14b"]
    cfg = tmp_path / "wan.yaml"
    models = {"m": (kind, profile, "hang")}
    cfg.write_text(config_text(tiny_dir, models, tmp_path / "state", timeout="20s",
                               extra="schedules: {benchmark: {interval: 1h}}"))
    t_start = time.monotonic()
    with ExporterProcess([f"--config.file={cfg}"], env=fault_hook(tmp_path, models),
                         log_path=tmp_path / "exporter.log") as exp:
        worst = 0.0
        deadline = time.monotonic() + 45
        seen_timeout = False
        while time.monotonic() < deadline and not seen_timeout:
            t0 = time.monotonic()
            s = exp.metrics()
            worst = max(worst, time.monotonic() - t0)
            seen_timeout = sample(s, "wan_benchmark_failures_total", model="m", profile=profile, reason="timeout") == 1
            time.sleep(0.25)
        assert seen_timeout, exp.log_tail()
        # The hung child was killed in bounded time: profile timeout + kill grace + start-up slack.
        assert time.monotonic() - t_start < 20 + 2 + 15
        assert worst < 1.0, f"a scrape took {worst:.2f}s while a benchmark was wedged"
        exp.alive()


def test_bench_cli_prints_measured_figures_as_json(tiny_dir, tmp_path):
    import json

    kind, profile = KINDS["ti2v-5b-image"]
    cfg = tmp_path / "wan.yaml"
    cfg.write_text(config_text(tiny_dir, {"m": (kind, profile)}, tmp_path / "state"))
    r = subprocess.run([sys.executable, "-m", "wan_exporter", "bench", "--config.file", str(cfg), "--model", "m",
                        "--json"], capture_output=True, text=True, env=exporter_env(), timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    d = json.loads(r.stdout)
    assert d["success"] and d["model"] == "m" and d["profile"] == profile
    assert d["frames"] == 9 and d["width"] == 32 and d["duration_seconds"] > 0
    assert set(d["sanity"]) >= {"finite", "not_black", "not_frozen", "shape"}
    assert d["phases"]["image_encode"] > 0
    # The figures the exporter publishes, from the checkpoint it read: 9 frames -> 3 latent, 32 px / 32.
    assert d["efficiency"]["tokens"] == 3 and d["efficiency"]["flops_per_step"] > 0
    assert d["efficiency"]["realtime_factor"] > 0 and d["efficiency"]["utilization_ratio"] is None


def test_keep_warm_reuses_the_loaded_pipeline(tiny_dir, tmp_path):
    kind, profile = KINDS["t2v-a14b"]
    app, bench = bench_app(config_text(tiny_dir, {"m": (kind, profile)}, tmp_path / "state",
                                       extra="").replace("benchmark: {kill_grace: 2s, baseline_runs: 1}",
                                                         "benchmark: {kill_grace: 2s, baseline_runs: 1, keep_warm: true}"))
    cfg = app.config()
    first = bench.run_one(cfg, cfg.model("m"), profile)
    second = bench.run_one(cfg, cfg.model("m"), profile)
    try:
        assert first.success and second.success, (first.detail, second.detail)
        assert "load" in first.phases and first.process_start_seconds is not None
        # The second run found the pipeline loaded in the same worker: no load, no process start.
        assert "load" not in second.phases and second.process_start_seconds is None
        assert second.output_digest == first.output_digest
        assert bench._warm["m"].alive
    finally:
        bench.shutdown()
    assert not bench._warm


def test_figures_stay_bound_to_their_run_and_the_memory_guard_refuses_what_cannot_fit(tiny_dir, tmp_path):
    """FLOPs, tokens and the real-time factors are the run's: changing or moving the model's files after
    a successful run never rewrites them (they were recomputed from the files of now, or the catalog).
    Beside it, a profile of 8192x8192x1001 frames cannot fit this host's RAM: check-config and start-up
    name it, and its runs are skipped with reason would_not_fit before any child starts."""
    import json
    import shutil

    kind, profile = KINDS["t2v-a14b"]
    model = tmp_path / "model"
    shutil.copytree(tiny_dir / kind, model)
    cfg = tmp_path / "wan.yaml"
    text = config_text(tiny_dir, {"m": (kind, profile)}, tmp_path / "state",
                       extra="schedules: {benchmark: {interval: 1h}, layout: {interval: 1s}}")
    text = text.replace(f"'{tiny_dir}/{kind}'", f"'{model}'").replace(f"profiles: [{profile}]", f"profiles: [{profile}, huge]")
    cfg.write_text(text.replace("profiles:\n", "profiles:\n  huge: {width: 8192, height: 8192, frames: 1001, steps: 2}\n"))
    checked = subprocess.run([sys.executable, "-m", "wan_exporter", "check-config", str(cfg)], capture_output=True,
                             text=True, env=exporter_env(), timeout=120)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert "models[0].profiles[1]: model m profile huge: would not fit" in checked.stderr, checked.stderr
    assert "host RAM" in checked.stderr and profile + ":" not in checked.stderr
    lv = {"model": "m", "profile": profile}
    names = ("wan_generation_latent_tokens", "wan_generation_flops_per_step", "wan_generation_flops_per_second",
             "wan_generation_realtime_factor", "wan_generation_projected_steps",
             "wan_generation_projected_duration_seconds", "wan_generation_projected_realtime_factor",
             "wan_generation_estimated_peak_memory_bytes", "wan_generation_peak_memory_bytes")
    with ExporterProcess([f"--config.file={cfg}"], log_path=tmp_path / "exporter.log") as exp:
        s = wait_for(lambda: (m := exp.metrics()) and sample(m, "wan_benchmark_last_run_success", **lv) == 1
                     and sample(m, "wan_benchmark_skipped_total", model="m", reason="would_not_fit") == 1 and m,
                     timeout=180, what="a successful tiny run and a refused huge one")
        assert "benchmark refused by the memory guard: model m profile huge: would not fit" in exp.log_tail()
        huge = {"model": "m", "profile": "huge"}
        assert sample(s, "wan_benchmark_runs_total", **huge) == 0  # no child was started for it
        assert sample(s, "wan_generation_estimated_peak_memory_bytes", **huge) > 8 * 8192 * 8192 * 1001
        status = json.loads(http_get(exp.url + "/api/v1/status")[1])
        [card] = [c for c in status["models"] if c["name"] == "m"]
        benches = {b["profile"]: b for b in card["benchmarks"]}
        assert benches["huge"]["skipped"] == {"would_not_fit": 1} and benches["huge"]["last_run"] is None
        assert benches["huge"]["estimated_peak_memory_bytes"] > 8 * 8192 * 8192 * 1001
        assert benches[profile]["estimated_peak_memory_bytes"] > 0
        before = {n: sample(s, n, **lv) for n in names}
        assert all(v is not None and v > 0 for v in before.values()), before
        assert before["wan_generation_projected_steps"] == 4  # the tiny kind's default step count
        # The estimate beside the measured peak (BENCHMARKS.md holds the error of each measured run).
        assert 0.5 < before["wan_generation_estimated_peak_memory_bytes"] / before["wan_generation_peak_memory_bytes"] < 2
        # Deeper transformer on disk, then the directory gone: the finished run's figures stay.
        tcfg = model / "transformer" / "config.json"
        tcfg.write_text(json.dumps({**json.loads(tcfg.read_text()), "num_layers": 40}))
        time.sleep(2.5)  # two layout/checkpoint polls read the changed config
        mid = exp.metrics()
        model.rename(tmp_path / "moved")
        wait_for(lambda: sample(exp.metrics(), "wan_model_present", model="m") == 0, timeout=30,
                 what="the exporter sees the model gone")
        after = exp.metrics()
        for n in names:
            assert sample(mid, n, **lv) == before[n], n
            assert sample(after, n, **lv) == before[n], n
