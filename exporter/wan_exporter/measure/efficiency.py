"""Efficiency of a benchmark run: FLOPs per step, achieved FLOP/s, utilisation, real-time factor.

Computed in the exporter from what the run measured (:class:`BenchmarkResult`: steps, the
denoise phase, frames, size, energy, GPU name) and what the checkpoint says about itself
(its transformer config, VAE compression, image encoder), never in the benchmark child.
Each figure is absent when one of its inputs is: no transformer geometry, no FLOPs; no
datasheet peak for the GPU (or a CPU run, or float32), no utilisation; no energy counter,
no joules per video second.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from prometheus_client.core import Metric

from .. import catalog, gpu_peaks
from . import flops
from ..collectors.families import new
from ..config import Config
from ..contract import efficiency as fams
from ..state import BenchmarkResult, Snapshot


# Pipelines whose transformer the catalog's published geometry describes completely (VACE and
# Animate add blocks and encoders it does not list).
_PLAIN_PIPELINES = ("WanPipeline", "WanImageToVideoPipeline")


@dataclass(frozen=True)
class Efficiency:
    tokens: int | None = None
    flops_per_step: int | None = None
    flops_per_second: float | None = None
    gpu_model: str | None = None  # gpu_peaks key of the GPU the run used
    peak_flops_per_second: float | None = None
    utilization_ratio: float | None = None
    video_seconds: float | None = None
    realtime_factor: float | None = None
    joules_per_video_second: float | None = None


def step_count(result: BenchmarkResult, entry: catalog.CatalogEntry | None, facts: Any,
               guidance_scale: float | None) -> flops.StepCount | None:
    """FLOPs of one step of ``result``'s run, from the checkpoint's facts, else the catalog's geometry."""
    if not (result.width and result.height and result.frames):
        return None
    tcfg: Mapping[str, Any] = getattr(facts, "transformer_config", None) or {}
    if not tcfg and entry is not None and entry.pipeline in _PLAIN_PIPELINES:
        tcfg = entry.architecture  # the published geometry, when the checkpoint's config cannot be read
    compression = getattr(facts, "vae_compression", None) or (entry.vae_compression if entry else None)
    shape = flops.shape_from_config(tcfg)
    if shape is None or compression is None:
        return None
    image_tokens = getattr(facts, "image_tokens", None) or 0
    if shape.image_dim and not image_tokens and not tcfg.get("pos_embed_seq_len"):
        return None  # the model attends to image tokens we cannot count
    expand = getattr(facts, "expand_timesteps", None)
    per_token = bool(expand) if expand is not None else bool(entry and entry.task == "ti2v")
    return flops.count_step(tcfg, result.width, result.height, result.frames, tuple(compression), guidance_scale,
                            image_tokens=image_tokens, per_token_timestep=per_token)


def compute(result: BenchmarkResult, entry: catalog.CatalogEntry | None, facts: Any, guidance_scale: float | None,
            dtype: str) -> Efficiency:
    """Every figure ``result`` supports; the rest stay None."""
    out: dict[str, Any] = {}
    step = step_count(result, entry, facts, guidance_scale)
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
    fps = entry.fps_default if entry is not None else None
    if result.frames and fps:
        video = result.frames / fps
        out["video_seconds"] = video
        if result.duration_seconds and result.duration_seconds > 0:
            out["realtime_factor"] = video / result.duration_seconds
        if result.energy_joules is not None and result.energy_joules > 0:
            out["joules_per_video_second"] = result.energy_joules / video
    return Efficiency(**out)


def _facts(snap: Snapshot, model: str) -> Any:
    entry = snap.checkpoint_facts.get(model) or {}
    return entry.get("facts") if isinstance(entry, Mapping) else None


class EfficiencyFigures:
    """The efficiency families of every configured model/profile's last successful run."""

    name = "efficiency"
    reads = ("benchmarks", "checkpoint_facts")

    def families(self, snap: Snapshot, cfg: Config) -> Iterable[Metric]:
        tokens = new(fams.GENERATION_LATENT_TOKENS)
        per_step = new(fams.GENERATION_FLOPS_PER_STEP)
        achieved = new(fams.GENERATION_FLOPS_PER_SECOND)
        peak = new(fams.GENERATION_PEAK_FLOPS_PER_SECOND)
        mfu = new(fams.GENERATION_MODEL_FLOPS_UTILIZATION_RATIO)
        rtf = new(fams.GENERATION_REALTIME_FACTOR)
        jps = new(fams.GENERATION_ENERGY_JOULES_PER_VIDEO_SECOND)
        for m in cfg.models:
            for profile in m.profiles:
                agg = snap.benchmarks.get((m.name, profile))
                s = agg.last_success if agg is not None else None
                if s is None:
                    continue
                prof = cfg.profiles.get(profile)
                e = compute(s, catalog.CATALOG.get(m.kind), _facts(snap, m.name),
                            prof.guidance_scale if prof is not None else None, m.dtype)
                lv = [m.name, profile]
                for fam, v in ((tokens, e.tokens), (per_step, e.flops_per_step), (achieved, e.flops_per_second),
                               (mfu, e.utilization_ratio), (rtf, e.realtime_factor), (jps, e.joules_per_video_second)):
                    if v is not None:
                        fam.add_metric(lv, v)
                if e.peak_flops_per_second is not None and e.gpu_model:
                    peak.add_metric(lv + [e.gpu_model], e.peak_flops_per_second)
        return [tokens, per_step, achieved, peak, mfu, rtf, jps]
