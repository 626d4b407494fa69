"""What was not measured is absent, checked family by family over the whole metric contract.

A fresh exporter (nothing polled, checked or benchmarked yet) publishes only what it knows
without measuring anything: published catalog facts, its configuration and its own state,
and counters declared at zero so that ``increase()`` sees their first event. Every other
family of the contract has no sample until something measured it; a family that starts
publishing before that fails here until it is placed in one of the sets below, on purpose.
"""

from __future__ import annotations

import pytest

from wan_exporter import contract
from wan_exporter.app import App
from wan_exporter.config import parse_config
from wan_exporter.state import CollectorStatus, HostReading, frozen_map

CONFIG = """
models:
  - {name: t2v-a14b, kind: wan2.2-t2v-a14b, hub_id: Wan-AI/Wan2.2-T2V-A14B-Diffusers, profiles: [probe]}
  - {name: ti2v-5b, kind: wan2.2-ti2v-5b, hub_id: Wan-AI/Wan2.2-TI2V-5B-Diffusers, device: cuda:1, offload: model}
  - {name: tiny, kind: tiny-wan2.1-t2v, path: /nonexistent/tiny, device: cpu, profiles: [probe]}
profiles:
  probe: {width: 32, height: 32, frames: 9, steps: 2}
exporter:
  hf_cache_dir: /nonexistent/hf-cache
"""

# Facts the model's authors published (the catalog), never measured here.
PUBLISHED = {
    "wan_model", "wan_model_parameters", "wan_model_active_parameters", "wan_model_resolution_supported",
    "wan_model_frames_default", "wan_model_fps_default", "wan_model_steps_default", "wan_model_input_supported",
    "wan_model_output_format_supported", "wan_model_precision_supported", "wan_model_lora_supported",
    "wan_model_experts", "wan_model_boundary_ratio", "wan_model_vram_min_bytes",
    "wan_model_size_multiple",
}
# What the operator configured and the exporter's own state, known the moment it starts.
CONFIGURED = {
    "wan_exporter_build", "wan_exporter_models_configured", "wan_exporter_config_last_reload_successful",
    "wan_exporter_config_last_reload_success_timestamp_seconds", "wan_model_config", "wan_benchmark_profile",
}
# Counts of events that have not happened yet (and the histogram of durations not yet observed).
ZERO_COUNTERS = {
    "wan_exporter_clock_jumps", "wan_benchmark_runs", "wan_benchmark_failures", "wan_benchmark_skipped",
    "wan_benchmark_output_sanity_failures", "wan_generation_duration_seconds",
}


@pytest.fixture(scope="module")
def fresh() -> dict:
    return {m.name: m for m in App(parse_config(CONFIG)).registry.collect()}


def test_the_sets_name_contract_families_only():
    assert (PUBLISHED | CONFIGURED | ZERO_COUNTERS) <= set(contract.BY_NAME)
    assert all(contract.BY_NAME[n].type in ("counter", "histogram") for n in ZERO_COUNTERS)


@pytest.mark.parametrize("family", contract.families(), ids=lambda f: f.name)
def test_what_was_not_measured_is_absent(fresh, family):
    metric = fresh.get(family.name)
    samples = list(metric.samples) if metric is not None else []
    if family.name in PUBLISHED | CONFIGURED:
        return
    if family.name in ZERO_COUNTERS:
        wrong = [s for s in samples if s.value != 0 and not s.name.endswith("_created")]
        assert not wrong, f"{family.name}: a counter of events that did not happen must be 0: {wrong[:3]}"
        return
    assert not samples, f"{family.name} publishes before anything was measured: {samples[:3]}"


def test_published_facts_are_there_from_the_start(fresh):
    for name in ("wan_model", "wan_model_fps_default", "wan_model_precision_supported", "wan_model_config"):
        assert fresh[name].samples, name


def test_an_unknown_cpu_count_is_absent_not_zero():
    app = App(parse_config(CONFIG))
    app.store.set(host=HostReading(memory_total_bytes=1 << 30, memory_available_bytes=1 << 29, cpu_count=None,
                                   cpu_utilization_ratio=None, load1=None),
                  collectors=frozen_map({"host": CollectorStatus("host", True, 0.001)}))
    assert app.registry.get_sample_value("wan_host_cpus") is None
    assert app.registry.get_sample_value("wan_host_memory_total_bytes") == 1 << 30
