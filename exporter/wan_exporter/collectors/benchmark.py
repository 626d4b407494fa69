"""Benchmark figures: histogram, phases, memory, sanity, scores, from the snapshot only.

What has not been measured yet has no series; counters of configured model/profile
pairs start at zero so ``increase()`` sees their first event.
"""

from __future__ import annotations

import statistics
from typing import Iterable

from prometheus_client.core import Metric

from .. import gpuid
from ..config import Config
from ..state import BenchmarkResult, Snapshot
from .families import bool_value, new
from ..contract import benchmark
from ..contract.labels import FAILURE_REASONS, PHASES, SANITY_CHECKS
from .recommendation import recommendation_families



def _buckets(counts: tuple[int, ...], bounds: tuple[float, ...]) -> list[tuple[str, float]]:
    out, acc = [], 0
    counts = counts or (0,) * (len(bounds) + 1)
    for bound, n in zip(bounds, counts):
        acc += n
        out.append((f"{bound:g}", acc))
    acc += counts[-1] if len(counts) > len(bounds) else 0
    out.append(("+Inf", acc))
    return out


def effective_baseline(snap: Snapshot, model: str, profile: str) -> float | None:
    return snap.baselines.get((model, profile, "config")) or snap.baselines.get((model, profile, "recorded"))


def memory_total_for(snap: Snapshot, r: BenchmarkResult) -> float | None:
    """The memory the run's peak is measured against: its GPU's (by the UUID it reported), or the host's."""
    if r.peak_memory_kind == "cuda":
        g = gpuid.find(snap.gpus, r.device, r.gpu_uuid)
        return g.memory_total_bytes if g else None
    if r.peak_memory_kind == "rss" and snap.host is not None:
        return snap.host.memory_total_bytes
    return None


def _gpu_memory_totals(gpus: tuple) -> tuple:
    """What of the GPUs the benchmark figures use: which GPU a run was on, and its memory."""
    return tuple((g.index, g.uuid, g.lost, g.memory_total_bytes) for g in gpus)


def _host_memory_total(host: object) -> int | None:
    return getattr(host, "memory_total_bytes", None)


class BenchmarkFigures:
    name = "benchmark"
    # Of the GPUs and the host only identities and memory totals matter (memory_total_for): a GPU or host
    # poll alone does not re-render the benchmark figures.
    reads = ("benchmarks", "baselines", ("gpus", _gpu_memory_totals), ("host", _host_memory_total))

    def families(self, snap: Snapshot, cfg: Config) -> Iterable[Metric]:
        L = ["model", "profile"]
        hist = new(benchmark.GENERATION_DURATION_SECONDS)
        last_dur = new(benchmark.GENERATION_LAST_DURATION_SECONDS)
        prof_info = new(benchmark.BENCHMARK_PROFILE_INFO)
        for pname, prof in sorted(cfg.profiles.items()):
            prof_info.add_metric([pname, str(prof.width), str(prof.height), str(prof.frames), str(prof.steps),
                                  str(prof.image).lower()], {})
        phase = new(benchmark.GENERATION_PHASE_DURATION_SECONDS)
        per_step = new(benchmark.GENERATION_SECONDS_PER_STEP)
        peak = new(benchmark.GENERATION_PEAK_MEMORY_BYTES)
        peak_ratio = new(benchmark.GENERATION_PEAK_MEMORY_RATIO)
        frames = new(benchmark.GENERATION_FRAMES)
        fps = new(benchmark.GENERATION_FRAMES_PER_SECOND)
        pps = new(benchmark.GENERATION_PIXELS_PER_SECOND)
        energy = new(benchmark.GENERATION_ENERGY_JOULES)
        start = new(benchmark.BENCHMARK_PROCESS_START_SECONDS)
        runs = new(benchmark.BENCHMARK_RUNS)
        fails = new(benchmark.BENCHMARK_FAILURES)
        skipped = new(benchmark.BENCHMARK_SKIPPED)
        last_ok = new(benchmark.BENCHMARK_LAST_SUCCESS_TIMESTAMP_SECONDS)
        last_run = new(benchmark.BENCHMARK_LAST_RUN_TIMESTAMP_SECONDS)
        last_result = new(benchmark.BENCHMARK_LAST_RUN_SUCCESS)
        consecutive = new(benchmark.BENCHMARK_CONSECUTIVE_FAILURES)
        sanity_ratio = new(benchmark.BENCHMARK_OUTPUT_SANITY_RATIO)
        sanity_fail = new(benchmark.BENCHMARK_OUTPUT_SANITY_FAILURES)
        repro = new(benchmark.BENCHMARK_OUTPUT_REPRODUCIBLE)
        baseline = new(benchmark.BENCHMARK_BASELINE_SECONDS)
        perf = new(benchmark.BENCHMARK_PERFORMANCE_RATIO)
        spread = new(benchmark.BENCHMARK_DURATION_SPREAD_RATIO)

        buckets = cfg.benchmark.buckets
        pairs = [(m.name, p) for m in cfg.models for p in m.profiles]
        seen_models = set()
        for model, profile in pairs:
            agg = snap.benchmarks.get((model, profile))
            lv = [model, profile]
            if agg is None:
                hist.add_metric(lv, _buckets((), buckets), 0.0)
                runs.add_metric(lv, 0)
                for r in FAILURE_REASONS:
                    fails.add_metric(lv + [r], 0)
                for c in SANITY_CHECKS:
                    sanity_fail.add_metric(lv + [c], 0)
            else:
                counts = agg.bucket_counts if len(agg.bucket_counts) == len(buckets) + 1 else ()
                hist.add_metric(lv, _buckets(counts, buckets), agg.duration_sum)
                runs.add_metric(lv, agg.runs)
                for r in sorted(set(FAILURE_REASONS) | set(agg.failures)):
                    fails.add_metric(lv + [r], agg.failures.get(r, 0))
                for c in sorted(set(SANITY_CHECKS) | set(agg.sanity_failures)):
                    sanity_fail.add_metric(lv + [c], agg.sanity_failures.get(c, 0))
                consecutive.add_metric(lv, agg.consecutive_failures)
                if agg.sanity_checks:
                    sanity_ratio.add_metric(lv, agg.sanity_passed / agg.sanity_checks)
                if agg.reproducible is not None:
                    repro.add_metric(lv, bool_value(agg.reproducible))
                if agg.last is not None:
                    last_run.add_metric(lv, agg.last.finished_at)
                    last_result.add_metric(lv, bool_value(agg.last.success))
                    if agg.last.peak_memory_bytes is not None:
                        peak.add_metric(lv, agg.last.peak_memory_bytes)
                        total = memory_total_for(snap, agg.last)
                        if total:
                            peak_ratio.add_metric(lv, agg.last.peak_memory_bytes / total)
                    if agg.last.process_start_seconds is not None:
                        start.add_metric(lv, agg.last.process_start_seconds)
                s = agg.last_success
                if s is not None:
                    last_ok.add_metric(lv, s.finished_at)
                    if s.duration_seconds is not None:
                        last_dur.add_metric(lv, s.duration_seconds)
                    for ph in PHASES:
                        if ph in s.phases:
                            phase.add_metric(lv + [ph], s.phases[ph])
                    if s.seconds_per_step is not None:
                        per_step.add_metric(lv, s.seconds_per_step)
                    if s.frames and s.duration_seconds:
                        frames.add_metric(lv, s.frames)
                        fps.add_metric(lv, s.frames / s.duration_seconds)
                        if s.width and s.height:
                            pps.add_metric(lv, s.frames * s.width * s.height / s.duration_seconds)
                    if s.energy_joules is not None:
                        energy.add_metric(lv, s.energy_joules)
                    base = effective_baseline(snap, model, profile)
                    if base and s.duration_seconds:
                        perf.add_metric(lv, base / s.duration_seconds)
                if len(agg.recent_durations) >= 3:
                    mean = statistics.fmean(agg.recent_durations)
                    if mean > 0:
                        spread.add_metric(lv, statistics.pstdev(agg.recent_durations) / mean)
            for source in ("config", "recorded"):
                v = snap.baselines.get((model, profile, source))
                if v is not None:
                    baseline.add_metric(lv + [source], v)
            seen_models.add(model)
        skips: dict[tuple[str, str], int] = {}
        for (model, _p), agg in snap.benchmarks.items():
            for reason, n in agg.skipped.items():
                skips[(model, reason)] = skips.get((model, reason), 0) + n
        for (model, reason), n in sorted(skips.items()):
            if model in seen_models:
                skipped.add_metric([model, reason], n)
        return [hist, last_dur, prof_info, phase, per_step, peak, peak_ratio, frames, fps, pps, energy, start, runs, fails,
                skipped, last_ok, last_run, last_result, consecutive, sanity_ratio, sanity_fail, repro, baseline, perf,
                spread]


class Recommendation:
    """Which model fits which GPU and how models rank per use case: apart from the benchmark
    figures because it also reads the health checks (a model must be healthy to be ranked)."""

    name = "benchmark"
    reads = ("checks", "benchmarks", "baselines", ("gpus", _gpu_memory_totals))

    def families(self, snap: Snapshot, cfg: Config) -> Iterable[Metric]:
        return recommendation_families(snap, cfg)
