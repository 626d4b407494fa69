"""Efficiency figures from a measured run: present where their inputs are, absent where not."""

from __future__ import annotations

from dataclasses import replace

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from support.procs import parse_metrics, sample
from wan_exporter import catalog
from wan_exporter.measure import flops
from wan_exporter.collectors.efficiency import EfficiencyFigures
from wan_exporter.measure.efficiency import compute as _compute
from wan_exporter.config import parse_config
from wan_exporter.state import BenchmarkAggregate, BenchmarkResult, Snapshot, frozen_map

A14B = catalog.get("wan2.2-t2v-a14b")


def geometry(entry, **tcfg) -> dict:
    """What the benchmark child would read off a pipeline built to ``entry``'s published geometry."""
    return {"transformer_config": {**entry.architecture, **tcfg}, "vae_compression": list(entry.vae_compression),
            "expand_timesteps": entry.task == "ti2v"}


def compute(result, entry, geo, guidance_scale, dtype):
    return _compute(result, geometry(entry) if geo is None and entry.architecture else geo, guidance_scale, dtype,
                    entry.fps_default, entry.steps_default)


def run(**kw) -> BenchmarkResult:
    base = dict(model="m", profile="480p", success=True, started_at=0.0, finished_at=1.0, duration_seconds=400.0,
                phases=frozen_map({"denoise": 320.0}), steps=40, frames=81, width=832, height=480,
                device="cuda:0", gpu_name="NVIDIA H200", energy_joules=200_000.0)
    base.update(kw)
    return BenchmarkResult(**base)


def test_a14b_480p_on_an_h200_has_every_figure():
    e = compute(run(), A14B, None, guidance_scale=4.0, dtype="bfloat16")
    fwd = flops.count_step(A14B.architecture, 832, 480, 81, A14B.vae_compression, 4.0).forward_flops
    assert e.tokens == 32_760
    assert e.flops_per_step == 2 * fwd  # classifier-free guidance: two forwards per step
    assert e.flops_per_second == pytest.approx(2 * fwd * 40 / 320.0)
    assert e.gpu_model == "h200-sxm" and e.peak_flops_per_second == 989.5e12
    assert e.utilization_ratio == pytest.approx(e.flops_per_second / 989.5e12)
    assert 0 < e.utilization_ratio < 1
    assert e.video_seconds == pytest.approx(81 / 16)
    assert e.realtime_factor == pytest.approx((81 / 16) / 400.0)
    assert e.joules_per_video_second == pytest.approx(200_000.0 / (81 / 16))


def test_guidance_one_runs_one_forward_per_step():
    with_cfg = compute(run(), A14B, None, guidance_scale=4.0, dtype="bfloat16")
    without = compute(run(), A14B, None, guidance_scale=1.0, dtype="bfloat16")
    assert with_cfg.flops_per_step == 2 * without.flops_per_step


@pytest.mark.parametrize("kw, dtype", [
    ({"device": "cpu", "gpu_name": "", "energy_joules": None}, "float32"),  # CPU run
    ({"device": "cpu", "gpu_name": ""}, "bfloat16"),
    ({"gpu_name": "NVIDIA H800"}, "bfloat16"),  # no datasheet row
    ({"gpu_name": "NVIDIA H100 80GB HBM3 MIG 1g.10gb"}, "bfloat16"),  # a slice, not the GPU
    ({}, "float32"),  # TF32 is not the BF16 peak
])
def test_utilisation_is_absent_without_a_known_peak(kw, dtype):
    e = compute(run(**kw), A14B, None, guidance_scale=4.0, dtype=dtype)
    assert e.flops_per_step is not None and e.flops_per_second is not None and e.realtime_factor is not None
    assert e.utilization_ratio is None and e.peak_flops_per_second is None and e.gpu_model is None


def test_no_energy_counter_no_joules_per_video_second():
    assert compute(run(energy_joules=None), A14B, None, 4.0, "bfloat16").joules_per_video_second is None


def test_the_loaded_geometry_counts():
    # A run that loaded a transformer half as deep as the catalog's: what it loaded counts.
    mine = compute(run(), A14B, geometry(A14B, num_layers=20), 4.0, "bfloat16").flops_per_step
    published = compute(run(), A14B, None, 4.0, "bfloat16").flops_per_step
    assert mine < 0.55 * published


def test_a_run_without_geometry_gets_no_flops_but_a_realtime_factor():
    tiny = catalog.get("tiny-wan2.2-t2v-a14b")
    e = _compute(run(width=32, height=32, frames=9, device="cpu", gpu_name=""), None, 4.0, "float32",
                 tiny.fps_default, None)
    assert e.flops_per_step is None and e.flops_per_second is None
    assert e.realtime_factor == pytest.approx((9 / tiny.fps_default) / 400.0)
    assert e.projected_duration_seconds is None  # no default step count, no projection


def test_projected_realtime_factor_of_this_projects_h200_run():
    """benchmarks/runs/h200-fullsize.json: A14B 480p, 2 steps, measured 0.295; projected at 40 about 0.018."""
    import json
    from pathlib import Path

    row = json.loads((Path(__file__).resolve().parents[1] / "benchmarks/runs/h200-fullsize.json").read_text())["runs"][0]
    r = run(duration_seconds=row["duration_seconds"], phases=frozen_map(row["phases"]), steps=row["steps"],
            seconds_per_step=row["seconds_per_step"], frames=row["frames"], width=row["width"], height=row["height"])
    e = compute(r, A14B, None, 4.0, "bfloat16")
    assert e.realtime_factor == pytest.approx(0.2952, abs=1e-3)
    assert e.projected_steps == 40
    fixed = row["duration_seconds"] - row["phases"]["denoise"]
    assert e.projected_duration_seconds == pytest.approx(fixed + 40 * row["seconds_per_step"])
    assert e.projected_realtime_factor == pytest.approx(0.0182, abs=5e-4)


def test_collector_publishes_the_figures_with_the_peak_it_compared_against():
    cfg = parse_config("models:\n  - {name: m, kind: wan2.2-t2v-a14b, path: /nonexistent, device: 'cuda:0', dtype: bfloat16, "
                       "profiles: ['480p']}\nprofiles:\n  '480p': {width: 832, height: 480, frames: 81, steps: 40}\n")
    r = run(seconds_per_step=8.0)
    r = replace(r, efficiency=compute(r, A14B, None, 4.0, "bfloat16"))
    snap = Snapshot(benchmarks=frozen_map({("m", "480p"): BenchmarkAggregate(last_success=r)}))
    registry = CollectorRegistry()

    class _One:
        def collect(self):
            return EfficiencyFigures().families(snap, cfg)

    registry.register(_One())
    s = parse_metrics(generate_latest(registry).decode())
    lv = {"model": "m", "profile": "480p"}
    assert sample(s, "wan_generation_latent_tokens", **lv) == 32_760
    assert sample(s, "wan_generation_flops_per_step", **lv) > 3e15
    assert sample(s, "wan_generation_peak_flops_per_second", gpu_model="h200-sxm", **lv) == 989.5e12
    assert 0 < sample(s, "wan_generation_model_flops_utilization_ratio", **lv) < 1
    assert sample(s, "wan_generation_realtime_factor", **lv) == pytest.approx(81 / 16 / 400)
    assert sample(s, "wan_generation_energy_joules_per_video_second", **lv) > 0
    assert sample(s, "wan_generation_projected_steps", **lv) == 40
    assert sample(s, "wan_generation_projected_duration_seconds", **lv) == pytest.approx(80 + 40 * 8.0)
    assert sample(s, "wan_generation_projected_realtime_factor", **lv) == pytest.approx(81 / 16 / 400)


def test_no_flops_for_a_transformer_the_count_does_not_follow():
    animate = catalog.get("wan2.2-animate-14b")
    geo = {"transformer_config": {"_class_name": "WanAnimateTransformer3DModel", **animate.architecture},
           "vae_compression": [4, 16, 16], "image_tokens": 257}
    assert compute(run(), animate, geo, 1.0, "bfloat16").flops_per_step is None
