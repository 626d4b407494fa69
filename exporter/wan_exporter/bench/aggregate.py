"""Fold one benchmark result into the lifetime aggregate of its model and profile (pure)."""

from __future__ import annotations

import bisect
from dataclasses import replace

from ..state import BenchmarkAggregate, BenchmarkResult, frozen_map


def _inc(d, key: str, n: int = 1):
    out = dict(d)
    out[key] = out.get(key, 0) + n
    return frozen_map(out)


HISTORY = 20  # results kept per model and profile for the status page; bounded so memory is too


def fold(agg: BenchmarkAggregate, r: BenchmarkResult, buckets: tuple[float, ...], window: int,
         history: int = HISTORY) -> BenchmarkAggregate:
    counts = list(agg.bucket_counts) or [0] * (len(buckets) + 1)
    if len(counts) != len(buckets) + 1:  # buckets changed by a reload: start the histogram afresh
        counts = [0] * (len(buckets) + 1)
    new = replace(agg, runs=agg.runs + 1, last=r, history=(agg.history + (r,))[-max(1, history):])
    if r.sanity:
        passed = all(r.sanity.values())
        new = replace(new, sanity_checks=new.sanity_checks + 1, sanity_passed=new.sanity_passed + (1 if passed else 0))
        for check, ok in r.sanity.items():
            if not ok:
                new = replace(new, sanity_failures=_inc(new.sanity_failures, check))
    if not r.success:
        return replace(new, failures=_inc(agg.failures, r.reason or "unknown"),
                       consecutive_failures=agg.consecutive_failures + 1, bucket_counts=tuple(counts))
    reproducible = agg.reproducible
    prev = agg.last_success
    if prev is not None and prev.output_digest and r.output_digest and prev.device == r.device:
        reproducible = prev.output_digest == r.output_digest
    d = r.duration_seconds
    if d is not None:  # a success whose duration was not measured never enters the histogram as 0
        counts[bisect.bisect_left(buckets, d)] += 1
        new = replace(new, duration_sum=agg.duration_sum + d, duration_count=agg.duration_count + 1,
                      recent_durations=(agg.recent_durations + (d,))[-window:])
    return replace(
        new,
        bucket_counts=tuple(counts),
        last_success=r,
        reproducible=reproducible,
        consecutive_failures=0,
        energy_joules_sum=agg.energy_joules_sum + (r.energy_joules or 0.0),
    )


def skip(agg: BenchmarkAggregate, reason: str) -> BenchmarkAggregate:
    return replace(agg, skipped=_inc(agg.skipped, reason))
