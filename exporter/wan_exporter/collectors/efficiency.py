"""The efficiency families of each model/profile's last successful benchmark run.

The figures are :mod:`wan_exporter.measure.efficiency`'s; this part only turns them into families.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from prometheus_client.core import Metric

from .. import catalog
from ..config import Config
from ..contract import efficiency as fams
from ..measure.efficiency import compute
from ..state import Snapshot
from .families import new


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
