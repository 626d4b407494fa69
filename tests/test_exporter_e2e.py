"""The real wan-exporter process on a loopback port, scraped over HTTP."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

from support.procs import ExporterProcess, http_get, parse_metrics, sample, samples_named, wait_for, write_nvml_state
from support.tools import require_tool

pytestmark = pytest.mark.e2e

GIB = 1 << 30


@pytest.fixture
def no_gpu_env(tmp_path):
    # An empty HF cache, and NVML pointed at a module that does not exist: a GPU-less host.
    return {"HF_HUB_CACHE": str(tmp_path / "hf"), "WAN_EXPORTER_NVML_MODULE": "no_such_nvml_module",
            "XDG_STATE_HOME": str(tmp_path / "state")}


def test_default_config_serves_wan22_capabilities_without_gpu(tmp_path, no_gpu_env):
    exp = ExporterProcess([], env=no_gpu_env, log_path=tmp_path / "exporter.log")
    t0 = time.monotonic()
    with exp:
        status, body = wait_for(lambda: (lambda r: r if r[0] == 200 else None)(http_get(exp.url + "/metrics", 1)),
                                10, 0.05, "first /metrics")
        first_scrape = time.monotonic() - t0
        wait_for(lambda: http_get(exp.url + "/-/ready", 1)[0] == 200, 15, what="ready")
        s = exp.metrics()
        text = exp.metrics_text()

    # Published figures of the three Wan2.2 models (WAN_FACTS.md, Wan2.2 README).
    assert sample(s, "wan_model_parameters", model="wan2.2-t2v-a14b") == 27e9
    assert sample(s, "wan_model_active_parameters", model="wan2.2-t2v-a14b") == 14e9
    assert sample(s, "wan_model_experts", model="wan2.2-i2v-a14b") == 2
    assert sample(s, "wan_model_boundary_ratio", model="wan2.2-t2v-a14b") == 0.875
    assert sample(s, "wan_model_boundary_ratio", model="wan2.2-i2v-a14b") == 0.9
    assert sample(s, "wan_model_frames_default", model="wan2.2-ti2v-5b") == 121
    assert sample(s, "wan_model_fps_default", model="wan2.2-ti2v-5b") == 24
    assert sample(s, "wan_model_fps_default", model="wan2.2-t2v-a14b") == 16
    assert sample(s, "wan_model_resolution_supported", model="wan2.2-ti2v-5b", width="1280", height="704") == 1
    assert sample(s, "wan_model_resolution_supported", model="wan2.2-t2v-a14b", width="832", height="480") == 1
    assert sample(s, "wan_model_resolution_supported", model="wan2.2-t2v-a14b", width="1280", height="720") == 1
    assert sample(s, "wan_model_input_supported", model="wan2.2-i2v-a14b", input="image") == 1
    # Absent from the cache: reported missing, nothing downloaded.
    assert sample(s, "wan_model_present", model="wan2.2-t2v-a14b") == 0
    # No GPU: the GPU collector says so with a reason; no GPU series pretend otherwise.
    assert sample(s, "wan_exporter_collector_success", collector="gpu") == 0
    assert sample(s, "wan_exporter_collector_error_info", collector="gpu", reason="library_missing") == 1
    assert not samples_named(s, "wan_gpu_devices")
    assert not samples_named(s, "wan_gpu_memory_total_bytes")
    assert sample(s, "wan_exporter_collector_success", collector="host") == 1
    # Scheduled tasks publish their configured interval (the staleness rules read it).
    assert sample(s, "wan_exporter_job_interval_seconds", task="health.layout") == 30
    assert sample(s, "wan_exporter_job_interval_seconds", task="collector.gpu") == 10
    assert first_scrape < 10
    r = subprocess.run([require_tool("promtool"), "check", "metrics"], input=text, capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0 and not (r.stdout + r.stderr).strip(), r.stdout + r.stderr


def test_endpoints(tmp_path, no_gpu_env):
    with ExporterProcess([], env=no_gpu_env, log_path=tmp_path / "exporter.log") as exp:
        status, body = http_get(exp.url + "/")
        assert status == 200 and b"wan-exporter" in body and b"wan2.2-t2v-a14b" in body
        assert http_get(exp.url + "/-/healthy")[0] == 200
        wait_for(lambda: http_get(exp.url + "/-/ready", 1)[0] == 200, 15, what="ready")
        assert http_get(exp.url + "/nope")[0] == 404
        status, body = http_get(exp.url + "/metrics", headers={"Accept": "application/openmetrics-text"})
        assert status == 200 and body.rstrip().endswith(b"# EOF")


def test_fake_gpus_are_published(tmp_path, no_gpu_env):
    state = write_nvml_state(tmp_path / "nvml.json", gpus=[{"util_gpu": 12}, {"temperature": 77}])
    env = {**no_gpu_env, "WAN_EXPORTER_NVML_MODULE": "support.fake_pynvml", "FAKE_NVML_STATE": str(state)}
    with ExporterProcess([], env=env, log_path=tmp_path / "exporter.log") as exp:
        s = wait_for(lambda: (lambda m: m if sample(m, "wan_gpu_devices") == 2 else None)(exp.metrics()), 15,
                     what="2 GPUs")
        assert sample(s, "wan_gpu_utilization_ratio", gpu="0") == pytest.approx(0.12)
        assert sample(s, "wan_gpu_temperature_celsius", gpu="1") == 77
        assert sample(s, "wan_exporter_collector_success", collector="gpu") == 1
        write_nvml_state(state, gpus=[{}, {}], fault="gpu_lost")
        s = wait_for(lambda: (lambda m: m if sample(m, "wan_exporter_collector_success", collector="gpu") == 0
                              else None)(exp.metrics()), 30, what="gpu_lost reported")
        assert sample(s, "wan_exporter_collector_error_info", collector="gpu", reason="gpu_lost") == 1
        write_nvml_state(state, gpus=[{}, {}])
        wait_for(lambda: sample(exp.metrics(), "wan_exporter_collector_success", collector="gpu") == 1, 30,
                 what="recovery")


def test_sighup_reload_bad_config_keeps_running_config(tmp_path, no_gpu_env):
    cfg = tmp_path / "wan.yaml"
    cfg.write_text("models:\n  - {name: first, kind: wan2.2-ti2v-5b, hub_id: Wan-AI/Wan2.2-TI2V-5B-Diffusers}\n")
    with ExporterProcess([f"--config.file={cfg}"], env=no_gpu_env, log_path=tmp_path / "exporter.log") as exp:
        s = exp.metrics()
        assert sample(s, "wan_exporter_models_configured") == 1
        assert sample(s, "wan_exporter_config_last_reload_successful") == 1
        cfg.write_text("models: [\n  garbage")
        exp.signal(signal.SIGHUP)
        s = wait_for(lambda: (lambda m: m if sample(m, "wan_exporter_config_last_reload_successful") == 0 else None)(
            exp.metrics()), 10, what="failed reload reported")
        assert sample(s, "wan_model_info", model="first", model_id="Wan-AI/Wan2.2-TI2V-5B-Diffusers",
                      kind="wan2.2-ti2v-5b", family="wan2.2", task="ti2v", pipeline="WanPipeline") == 1
        cfg.write_text("models:\n  - {name: first, kind: wan2.2-ti2v-5b, hub_id: a/b}\n"
                       "  - {name: second, kind: wan2.2-t2v-a14b, hub_id: c/d}\n")
        exp.signal(signal.SIGHUP)
        s = wait_for(lambda: (lambda m: m if sample(m, "wan_exporter_config_last_reload_successful") == 1 else None)(
            exp.metrics()), 10, what="good reload")
        assert sample(s, "wan_exporter_models_configured") == 2
        exp.alive()
