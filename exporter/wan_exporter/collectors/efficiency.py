"""The efficiency families of each model/profile's last successful benchmark run.

The figures were computed when the run ended (:mod:`wan_exporter.measure.efficiency`) and are
stored with it; this part only publishes them, so a model directory that moves or changes
afterwards cannot rewrite a finished run's figures.
"""

from __future__ import annotations

from typing import Iterable

from prometheus_client.core import Metric

from ..config import Config
from ..contract import efficiency as fams
from ..state import Snapshot
from .families import new


class EfficiencyFigures:
    """The efficiency families of every configured model/profile's last successful run."""

    name = "efficiency"
    reads = ("benchmarks",)

    def families(self, snap: Snapshot, cfg: Config) -> Iterable[Metric]:
        tokens = new(fams.GENERATION_LATENT_TOKENS)
        per_step = new(fams.GENERATION_FLOPS_PER_STEP)
        achieved = new(fams.GENERATION_FLOPS_PER_SECOND)
        peak = new(fams.GENERATION_PEAK_FLOPS_PER_SECOND)
        mfu = new(fams.GENERATION_MODEL_FLOPS_UTILIZATION_RATIO)
        rtf = new(fams.GENERATION_REALTIME_FACTOR)
        jps = new(fams.GENERATION_ENERGY_JOULES_PER_VIDEO_SECOND)
        p_steps = new(fams.GENERATION_PROJECTED_STEPS)
        p_dur = new(fams.GENERATION_PROJECTED_DURATION_SECONDS)
        p_rtf = new(fams.GENERATION_PROJECTED_REALTIME_FACTOR)
        for m in cfg.models:
            for profile in m.profiles:
                agg = snap.benchmarks.get((m.name, profile))
                s = agg.last_success if agg is not None else None
                e = s.efficiency if s is not None else None
                if e is None:
                    continue
                lv = [m.name, profile]
                for fam, v in ((tokens, e.tokens), (per_step, e.flops_per_step), (achieved, e.flops_per_second),
                               (mfu, e.utilization_ratio), (rtf, e.realtime_factor), (jps, e.joules_per_video_second),
                               (p_steps, e.projected_steps), (p_dur, e.projected_duration_seconds),
                               (p_rtf, e.projected_realtime_factor)):
                    if v is not None:
                        fam.add_metric(lv, v)
                if e.peak_flops_per_second is not None and e.gpu_model:
                    peak.add_metric(lv + [e.gpu_model], e.peak_flops_per_second)
        return [tokens, per_step, achieved, peak, mfu, rtf, jps, p_steps, p_dur, p_rtf]
