"""Which healthy model fits this GPU and ranks best, per use case and priority.

Rule (also in the README):

* Fit: ``wan_model_fits_gpu{model,gpu,offload}`` is 1 when the model's published minimum
  VRAM for that offload mode is at most the GPU's memory, and, for the model's
  configured offload mode on the GPU it runs on, its measured peak too. No published
  figure and no measurement: no series.
* Candidates for a use case: models whose task serves it (text-to-video: t2v and ti2v;
  image-to-video: i2v and ti2v; text+image-to-video: ti2v), whose health verdict is
  healthy or degraded, and which have at least one successful benchmark.
* Score, 0-1, 1 for the best candidate:
  speed — measured pixels per second over the best candidate's;
  memory — the lowest candidate peak memory over this model's measured peak;
  quality — the published denoiser scale (active parameters) times native pixels,
  over the best candidate's, times the model's output sanity ratio: a proxy named for
  what it is, never a measurement of visual quality.
"""

from __future__ import annotations

from typing import Iterable

from prometheus_client.core import Metric

from .. import catalog, gpuid
from .families import bool_value, new
from ..contract import benchmark
from ..contract.labels import PRIORITIES, USE_CASES as USE_CASE_NAMES
from ..config import Config
from ..state import Snapshot

# The catalog tasks that serve each use case (label values from the contract).
USE_CASES = dict(zip(USE_CASE_NAMES, (("t2v", "ti2v"), ("i2v", "ti2v"), ("ti2v",))))


def _status(snap: Snapshot, cfg: Config, model: str) -> str | None:
    from ..health.verdict import verdict

    return verdict(snap, model, cfg.thresholds).status


def _best_run(snap: Snapshot, cfg: Config, model: str):
    best = None
    m = cfg.model(model)
    for p in m.profiles:
        agg = snap.benchmarks.get((model, p))
        s = agg.last_success if agg else None
        if s is not None and s.duration_seconds:
            pps = (s.frames or 0) * (s.width or 0) * (s.height or 0) / s.duration_seconds
            sanity = agg.sanity_passed / agg.sanity_checks if agg.sanity_checks else None
            cand = (pps, s.peak_memory_bytes, sanity)
            if best is None or cand[0] > best[0]:
                best = cand
    return best


def recommendation_families(snap: Snapshot, cfg: Config) -> Iterable[Metric]:
    fits = new(benchmark.MODEL_FITS_GPU)
    score = new(benchmark.MODEL_RECOMMENDATION_SCORE)
    runs = {}
    for m in cfg.models:
        e = catalog.CATALOG.get(m.kind)
        if e is None:
            continue
        run = _best_run(snap, cfg, m.name)
        runs_on = gpuid.find(snap.gpus, m.device, gpuid.reported_uuid(snap, m.name))
        for g in snap.gpus:
            if not g.memory_total_bytes:
                continue
            for mode, need in sorted(e.vram_min_bytes.items()):
                ok = need <= g.memory_total_bytes
                on_this = runs_on is not None and runs_on.index == g.index
                if ok and on_this and mode == m.offload and run and run[1]:
                    ok = run[1] <= g.memory_total_bytes
                fits.add_metric([m.name, str(g.index), mode], bool_value(ok))
        status = _status(snap, cfg, m.name)
        if run is not None and status in ("healthy", "degraded"):
            runs[m.name] = (e, run)
    for use_case, tasks in USE_CASES.items():
        cands = {n: v for n, v in runs.items() if v[0].task in tasks}
        if not cands:
            continue
        best_pps = max(v[1][0] for v in cands.values()) or None
        peaks = [v[1][1] for v in cands.values() if v[1][1]]
        min_peak = min(peaks) if peaks else None

        def capacity(e) -> float:
            px = max((w * h for w, h in e.resolutions), default=0)
            return float(e.active_parameters or 0) * px

        best_cap = max(capacity(v[0]) for v in cands.values()) or None
        for name, (e, (pps, peak, sanity)) in sorted(cands.items()):
            if best_pps:
                score.add_metric([use_case, "speed", name], pps / best_pps)
            if min_peak and peak:
                score.add_metric([use_case, "memory", name], min_peak / peak)
            if best_cap and sanity is not None and e.active_parameters:
                score.add_metric([use_case, "quality", name], capacity(e) / best_cap * sanity)
    return [fits, score]
