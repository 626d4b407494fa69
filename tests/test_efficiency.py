"""Efficiency figures from a measured run: present where their inputs are, absent where not."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from support.procs import parse_metrics, sample
from wan_exporter import catalog
from wan_exporter.measure import flops
from wan_exporter.measure.efficiency import EfficiencyFigures, compute
from wan_exporter.config import parse_config
from wan_exporter.state import BenchmarkAggregate, BenchmarkResult, Snapshot, frozen_map

A14B = catalog.get("wan2.2-t2v-a14b")


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


def test_checkpoint_config_wins_over_the_catalog():
    # A checkpoint whose transformer is half as deep as the catalog's: its own config counts.
    facts = SimpleNamespace(transformer_config={**A14B.architecture, "num_layers": 20}, vae_compression=(4, 16, 16),
                            image_tokens=None, expand_timesteps=False)
    mine = compute(run(), A14B, facts, 4.0, "bfloat16").flops_per_step
    published = compute(run(), A14B, None, 4.0, "bfloat16").flops_per_step
    assert mine < 0.55 * published


def test_tiny_kind_without_facts_gets_no_flops_but_a_realtime_factor():
    # Tiny kinds publish no geometry: without the checkpoint's config there is nothing to count.
    tiny = catalog.get("tiny-wan2.2-t2v-a14b")
    e = compute(run(width=32, height=32, frames=9, device="cpu", gpu_name=""), tiny, None, 4.0, "float32")
    assert e.flops_per_step is None and e.flops_per_second is None
    assert e.realtime_factor == pytest.approx((9 / tiny.fps_default) / 400.0)


def test_collector_publishes_the_figures_with_the_peak_it_compared_against():
    cfg = parse_config("models:\n  - {name: m, kind: wan2.2-t2v-a14b, path: /nonexistent, device: 'cuda:0', dtype: bfloat16, "
                       "profiles: ['480p']}\nprofiles:\n  '480p': {width: 832, height: 480, frames: 81, steps: 40}\n")
    snap = Snapshot(benchmarks=frozen_map({("m", "480p"): BenchmarkAggregate(last_success=run())}))
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


def test_no_flops_for_a_transformer_the_count_does_not_follow():
    animate = catalog.get("wan2.2-animate-14b")
    facts = SimpleNamespace(transformer_config={"_class_name": "WanAnimateTransformer3DModel", **animate.architecture},
                            vae_compression=(4, 16, 16), image_tokens=257, expand_timesteps=None)
    assert compute(run(), animate, facts, 1.0, "bfloat16").flops_per_step is None
    # Nor from the catalog's geometry alone: it does not list Animate's encoders.
    assert compute(run(), animate, None, 1.0, "bfloat16").flops_per_step is None
