"""Benchmark figures: generation time, success, age, trends (recording rules) and raw histograms.

Where a recording rule of ``alerting/rules/wan-recording.rules.yml`` covers a figure, the
panels read the rule (the same number the alerts use); the last run's gauges go through
:func:`.figures.figure`.
"""

from __future__ import annotations

from wan_exporter.contract import benchmark as B

from .base import (R_BASELINE, R_FAILURES_24H, R_FAILURES_BY_REASON_1H, R_LAST_OVER_BASELINE, R_LAST_SUCCESS_AGE,
                   R_RUNS_1H, R_RUNS_24H, R_SANITY_FAILURES_1H, R_STEP_CV_24H, R_SUCCESS_1H, R_SUCCESS_24H,
                   R_VIDEOS_PER_HOUR_1H, RATE, rule, select)


def last_success_age(model: str = "model", instance: str = "instance", by: str = "model") -> str:
    """Oldest last-success age over the profiles (rule: age_seconds)."""
    return f"max by ({by}) ({rule(R_LAST_SUCCESS_AGE, model, instance)})"


def success_ratio_24h(model: str = "model", instance: str = "instance", by: str = "model") -> str:
    """Share of runs that succeeded over 24 h: numerator and denominator summed apart, then divided."""
    runs = f"sum by ({by}) ({rule(R_RUNS_24H, model, instance)})"
    fails = f"sum by ({by}) ({rule(R_FAILURES_24H, model, instance)})"
    return f"clamp(\n  ({runs} - {fails})\n  /\n  ({runs} > 0),\n  0, 1\n)"


def success_ratio(window: str, model: str = "model", instance: str = "instance", by: str = "model, profile") -> str:
    name = {"1h": R_SUCCESS_1H, "24h": R_SUCCESS_24H}[window]
    return f"min by ({by}) ({rule(name, model, instance)})"


def trend(name: str, model: str = "model", instance: str = "instance", by: str = "model") -> str:
    """A recording rule, the slowest (largest) where several instances or profiles match."""
    return f"max by ({by}) ({rule(name, model, instance)})"


def generation_time(name: str, model: str = "model", instance: str = "instance", by: str = "model, profile") -> str:
    """A generation-time rule (p50/p95/p99/mean over 1 h or 24 h); the slowest instance when several match."""
    return trend(name, model, instance, by)


def videos_per_hour(model: str = "model", instance: str = "instance", by: str = "model, profile") -> str:
    return trend(R_VIDEOS_PER_HOUR_1H, model, instance, by)


def runs_last_hour(model: str = "model", instance: str = "instance", by: str = "model") -> str:
    return f"sum by ({by}) ({rule(R_RUNS_1H, model, instance)})"


def slowdown(name: str = R_LAST_OVER_BASELINE, model: str = "model", instance: str = "instance",
             by: str = "instance, model, profile") -> str:
    """Generation time over its baseline (1 = as fast as baseline; alerts at thresholds.yml's ratio)."""
    return trend(name, model, instance, by)


def effective_baseline(model: str = "model", instance: str = "instance", by: str = "model, profile") -> str:
    return trend(R_BASELINE, model, instance, by)


def step_time_variation(model: str = "model", instance: str = "instance", by: str = "model, profile") -> str:
    return trend(R_STEP_CV_24H, model, instance, by)


def avg_over(name: str, window: str, model: str = "model", instance: str = "instance",
             by: str = "instance, model, profile") -> str:
    """A rule averaged over a long window (7d, 30d) for the history tables."""
    return f"max by ({by}) (avg_over_time({rule(name, model, instance)}[{window}]))"


def generation_heatmap(model: str = "model", instance: str = "instance") -> str:
    buckets = select(B.GENERATION_DURATION_SECONDS, model, instance, suffix="_bucket")
    return f"sum by (le) (increase({buckets}[{RATE}]))"


def failures_by_reason(model: str = "model", instance: str = "instance") -> str:
    """Failed runs in the last hour by reason (the rule WanBenchmarkOOM/WanOutputInvalid read)."""
    return f"sum by (reason) ({rule(R_FAILURES_BY_REASON_1H, model, instance)})"


def sanity_failures_last_hour(model: str = "model", instance: str = "instance") -> str:
    return f"sum by (profile) ({rule(R_SANITY_FAILURES_1H, model, instance)})"
