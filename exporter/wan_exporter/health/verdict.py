"""One health status per model, from everything the snapshot knows about it.

The rule, in order (the first that applies wins):

- **missing**: the newest health check found no model directory or file (``missing_model``), or
  the directory holds no checkpoint form the scan recognises (no ``model_index.json``, no
  official Wan layout; single files are named by path).
- **critical**: any integrity finding — ``missing_file``, ``truncated``, ``header_invalid``,
  ``hash_mismatch``, ``permission_denied``, ``not_a_model``, ``symlink_loop`` — or the last
  ``thresholds.critical_consecutive_failures`` benchmark runs of a profile all failed.
- **degraded**: ``catalog_mismatch``, ``version_skew``, ``load_failed``, ``changed_during_check``,
  ``manifest_write_failed``, ``too_many_files``; or a profile's last benchmark run failed
  (``benchmark_failing``); or its output passed fewer than ``thresholds.degraded_sanity_ratio``
  of the sanity checks (``output_invalid``); or its last successful run was slower than
  ``thresholds.degraded_slowdown_ratio`` times its baseline (config baseline first, else recorded).
- **healthy**: none of the above.

Findings are each check's latest result: a hash mismatch stays until the next hash run says
otherwise. A model with no check result and no benchmark run yet has no status (unknown,
not healthy). This is a pure function of the snapshot and the thresholds.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

from ..config import Thresholds
from ..state import Snapshot
from ..contract import labels
from ..contract.labels import CHECKS, ISSUE_KINDS

CRITICAL_KINDS: frozenset[str] = frozenset(labels.CRITICAL_KINDS)
DEGRADED_KINDS: frozenset[str] = frozenset(labels.DEGRADED_KINDS)


@dataclass(frozen=True)
class Verdict:
    status: str | None  # one of STATUSES; None while nothing has been measured
    reasons: tuple[str, ...]  # short lines for logs and the CLI, the status-deciding ones first
    issues: Mapping[str, int]  # every kind of ISSUE_KINDS -> current findings


def verdict(snap: Snapshot, model: str, thresholds: Thresholds) -> Verdict:
    """Fold the latest check results and benchmark aggregates of ``model`` into a :class:`Verdict`."""
    results = [r for c in CHECKS if (r := snap.checks.get((model, c))) is not None]
    newest = max(results, key=lambda r: r.finished_at, default=None)
    gone = newest is not None and any(i.kind == "missing_model" for i in newest.issues)
    counts = dict.fromkeys(ISSUE_KINDS, 0)
    counts["missing_model"] = int(gone)  # an older check that saw the directory gone is stale once it is back
    seen: set[tuple[str, str]] = set()
    for r in results:
        for i in r.issues:
            key = (i.kind, i.path or i.detail)  # the same missing shard seen by two checks is one finding
            if key in seen or i.kind not in counts or i.kind == "missing_model":
                continue
            seen.add(key)
            counts[i.kind] += 1
    critical: list[str] = []
    degraded: list[str] = []
    bench_known = False
    for (m, profile), agg in sorted(snap.benchmarks.items()):
        if m != model or agg.last is None:
            continue
        bench_known = True
        streak = getattr(agg, "consecutive_failures", None)
        if streak is None:  # older aggregate without the streak: only the last run is known
            streak = 0 if agg.last.success else 1
        if not agg.last.success:
            counts["benchmark_failing"] += 1
            if streak >= max(1, thresholds.critical_consecutive_failures):
                critical.append(f"{profile}: the last {streak} benchmark runs failed ({agg.last.reason or 'failed'})")
            else:
                degraded.append(f"{profile}: the last benchmark run failed ({agg.last.reason or 'failed'})")
        sanity = agg.last.sanity
        if sanity:
            failed = sorted(k for k, ok in sanity.items() if not ok)
            counts["output_invalid"] += len(failed)
            ratio = (len(sanity) - len(failed)) / len(sanity)
            if ratio < thresholds.degraded_sanity_ratio:
                degraded.append(f"{profile}: output passed {ratio:.0%} of sanity checks (failed: {', '.join(failed)})")
        slow = _slowdown(snap, agg, model, profile)
        if slow is not None and slow > thresholds.degraded_slowdown_ratio:
            degraded.append(f"{profile}: {slow:.2f}x slower than baseline")
    frozen_counts = MappingProxyType(counts)
    if not results and not bench_known:
        return Verdict(None, (), frozen_counts)
    if gone:
        return Verdict("missing", ("model directory not found",), frozen_counts)
    layout = snap.checks.get((model, "layout"))
    if layout is not None and layout.facts.get("model_index") is False:
        return Verdict("missing", ("no checkpoint form recognised (no model_index.json, no official Wan layout)",),
                       frozen_counts)
    from_checks = [k for k in ISSUE_KINDS if counts[k] and k not in ("output_invalid", "benchmark_failing")]
    critical[:0] = [f"{k} x{counts[k]}" for k in from_checks if k in CRITICAL_KINDS]
    degraded[:0] = [f"{k} x{counts[k]}" for k in from_checks if k in DEGRADED_KINDS]
    if critical:
        return Verdict("critical", tuple(critical + degraded), frozen_counts)
    if degraded:
        return Verdict("degraded", tuple(degraded), frozen_counts)
    return Verdict("healthy", (), frozen_counts)


def _slowdown(snap: Snapshot, agg: object, model: str, profile: str) -> float | None:
    """Last successful duration over the baseline (the config's first, else the recorded one)."""
    ratio = getattr(agg, "slowdown_ratio", None)
    if isinstance(ratio, (int, float)):
        return float(ratio)
    last = getattr(agg, "last_success", None)
    if last is None or not last.duration_seconds:
        return None
    base = snap.baselines.get((model, profile, "config")) or snap.baselines.get((model, profile, "recorded"))
    return last.duration_seconds / base if base else None
