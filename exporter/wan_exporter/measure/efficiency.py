"""Efficiency of a benchmark run: FLOPs per step, achieved FLOP/s, utilisation, real-time factor.

Computed once, when the run ends (:func:`wan_exporter.bench.runner.to_result`), from what the
run measured (steps, the denoise phase, frames, size, energy, GPU name) and the geometry the
benchmark child read off the pipeline it loaded (transformer config, VAE compression, image
encoder: :func:`wan_exporter.bench.child.geometry`). The result is stored with the run, so a
model directory that moves or changes afterwards cannot rewrite a finished run's figures.
Each figure is absent when one of its inputs is: no transformer geometry, no FLOPs; no
datasheet peak for the GPU (or a CPU run, or float32), no utilisation; no energy counter,
no joules per video second.
"""

from __future__ import annotations

from typing import Any, Mapping

from .. import gpu_peaks
from ..state import BenchmarkResult, Efficiency
from . import flops


def step_count(result: BenchmarkResult, geometry: Mapping[str, Any] | None,
               guidance_scale: float | None) -> flops.StepCount | None:
    """FLOPs of one step of ``result``'s run, from the geometry that run loaded."""
    if not (result.width and result.height and result.frames) or not geometry:
        return None
    tcfg = geometry.get("transformer_config") or {}
    compression = geometry.get("vae_compression")
    if not isinstance(tcfg, Mapping) or not (isinstance(compression, (list, tuple)) and len(compression) == 3):
        return None
    shape = flops.shape_from_config(tcfg)
    if shape is None:
        return None
    image_tokens = geometry.get("image_tokens") or 0
    if shape.image_dim and not image_tokens and not tcfg.get("pos_embed_seq_len"):
        return None  # the model attends to image tokens we cannot count
    return flops.count_step(tcfg, result.width, result.height, result.frames, tuple(compression), guidance_scale,
                            image_tokens=image_tokens, per_token_timestep=bool(geometry.get("expand_timesteps")))


def compute(result: BenchmarkResult, geometry: Mapping[str, Any] | None, guidance_scale: float | None,
            dtype: str, fps: int | None, default_steps: int | None = None) -> Efficiency:
    """Every figure ``result`` supports; the rest stay None. ``fps``: the model's output rate;
    ``default_steps``: its default step count, for the projected duration and real-time factor."""
    out: dict[str, Any] = {}
    step = step_count(result, geometry, guidance_scale)
    denoise = result.phases.get("denoise")
    if step is not None:
        out.update(tokens=step.tokens, flops_per_step=step.step_flops)
        if result.steps and denoise and denoise > 0:
            out["flops_per_second"] = step.step_flops * result.steps / denoise
    on_gpu = result.device.startswith("cuda") and bool(result.gpu_name)
    row = gpu_peaks.lookup(result.gpu_name) if on_gpu else None
    peak = gpu_peaks.peak_flops(result.gpu_name, dtype) if row is not None else None
    if row is not None and peak is not None:
        out.update(gpu_model=row.key, peak_flops_per_second=peak)
        if "flops_per_second" in out:
            out["utilization_ratio"] = out["flops_per_second"] / peak
    video = result.frames / fps if result.frames and fps else None
    if video:
        out["video_seconds"] = video
        if result.duration_seconds and result.duration_seconds > 0:
            out["realtime_factor"] = video / result.duration_seconds
        if result.energy_joules is not None and result.energy_joules > 0:
            out["joules_per_video_second"] = result.energy_joules / video
    projected = project(result, default_steps)
    if projected is not None:
        out.update(projected_steps=default_steps, projected_duration_seconds=projected)
        if video:
            out["projected_realtime_factor"] = video / projected
    return Efficiency(**out)


def project(result: BenchmarkResult, steps: int | None) -> float | None:
    """Seconds a generation at ``steps`` would take: the run's fixed phases (everything of the
    generation call but the denoise loop) plus ``steps`` x its measured seconds per step."""
    denoise, sps = result.phases.get("denoise"), result.seconds_per_step
    if not steps or steps <= 0 or result.duration_seconds is None or denoise is None or sps is None:
        return None
    fixed = max(result.duration_seconds - denoise, 0.0)
    total = fixed + steps * sps
    return total if total > 0 else None
