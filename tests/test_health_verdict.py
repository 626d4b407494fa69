"""The verdict rule, case by case, on hand-built snapshots (it is a pure function)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from wan_exporter.config import Thresholds
from wan_exporter.findings import ISSUE_KINDS
from wan_exporter.contract.labels import STATUSES
from wan_exporter.health.verdict import CRITICAL_KINDS, DEGRADED_KINDS, verdict
from wan_exporter.state import (BenchmarkAggregate, BenchmarkResult, CheckResult, HealthIssue, Snapshot,
                                frozen_map)

T = Thresholds()


def result(check: str, *kinds: str, at: float = 100.0, facts: dict | None = None, model: str = "m") -> CheckResult:
    issues = tuple(HealthIssue(k, "d", f"{check}/{k}") for k in kinds)
    return CheckResult(model, check, not kinds, 0.1, at, issues, frozen_map(facts or {}))


def snap(*results: CheckResult, benchmarks: dict | None = None, baselines: dict | None = None) -> Snapshot:
    return Snapshot(checks=frozen_map({(r.model, r.check): r for r in results}),
                    benchmarks=frozen_map(benchmarks or {}), baselines=frozen_map(baselines or {}))


def run(ok: bool = True, reason: str = "", duration: float = 10.0, sanity: dict | None = None) -> BenchmarkResult:
    return BenchmarkResult("m", "p", ok, 0.0, 1.0, reason=reason, duration_seconds=duration if ok else None,
                           sanity=frozen_map(sanity or {}))


def agg(last: BenchmarkResult, consecutive: int = 0, last_success: BenchmarkResult | None = None) -> BenchmarkAggregate:
    a = BenchmarkAggregate(runs=5, last=last, last_success=last_success or (last if last.success else None))
    return replace(a, consecutive_failures=consecutive) if hasattr(a, "consecutive_failures") else a


def test_every_kind_is_classified() -> None:
    assert set(ISSUE_KINDS) - {"missing_model"} == CRITICAL_KINDS | DEGRADED_KINDS
    assert not CRITICAL_KINDS & DEGRADED_KINDS


def test_nothing_measured_has_no_status() -> None:
    v = verdict(Snapshot(), "m", T)
    assert v.status is None
    assert set(v.issues) == set(ISSUE_KINDS) and not any(v.issues.values())


def test_clean_checks_are_healthy() -> None:
    assert verdict(snap(result("layout"), result("headers"), result("hash")), "m", T).status == "healthy"


def test_missing_dir_and_missing_index_are_missing() -> None:
    assert verdict(snap(result("layout", "missing_model")), "m", T).status == "missing"
    no_index = result("layout", "not_a_model", facts={"model_index": False})
    assert verdict(snap(no_index), "m", T).status == "missing"


def test_missing_is_decided_by_the_newest_check() -> None:
    old_hash = result("hash", "missing_model", at=50.0)
    v = verdict(snap(old_hash, result("layout", at=100.0)), "m", T)
    assert v.status == "healthy" and v.issues["missing_model"] == 0
    v = verdict(snap(result("hash", at=50.0), result("layout", "missing_model", at=100.0)), "m", T)
    assert v.status == "missing" and v.issues["missing_model"] == 1


@pytest.mark.parametrize("kind", sorted(CRITICAL_KINDS))
def test_integrity_findings_are_critical(kind: str) -> None:
    v = verdict(snap(result("headers", kind)), "m", T)
    assert v.status == "critical" and v.issues[kind] == 1


@pytest.mark.parametrize("kind", sorted(DEGRADED_KINDS - {"output_invalid", "benchmark_failing"}))
def test_soft_findings_are_degraded(kind: str) -> None:
    assert verdict(snap(result("load", kind)), "m", T).status == "degraded"


def test_critical_wins_over_degraded() -> None:
    v = verdict(snap(result("headers", "catalog_mismatch"), result("hash", "hash_mismatch")), "m", T)
    assert v.status == "critical"


def test_same_finding_from_two_checks_counts_once() -> None:
    a = CheckResult("m", "layout", False, 0.1, 1.0, (HealthIssue("missing_file", "missing", "x/y.safetensors"),))
    b = CheckResult("m", "hash", False, 0.1, 2.0, (HealthIssue("missing_file", "gone", "x/y.safetensors"),))
    assert verdict(snap(a, b), "m", T).issues["missing_file"] == 1


def test_benchmark_failures_degrade_then_turn_critical() -> None:
    ok = run()
    failing = run(False, "oom")
    v = verdict(snap(result("layout"), benchmarks={("m", "p"): agg(failing, consecutive=1, last_success=ok)}), "m", T)
    assert v.status == "degraded" and v.issues["benchmark_failing"] == 1
    n = T.critical_consecutive_failures
    v = verdict(snap(result("layout"), benchmarks={("m", "p"): agg(failing, consecutive=n)}), "m", T)
    assert v.status == "critical"


def test_benchmarks_alone_give_a_status() -> None:
    assert verdict(snap(benchmarks={("m", "p"): agg(run())}), "m", T).status == "healthy"


def test_failed_sanity_degrades_and_counts_output_invalid() -> None:
    bad = run(sanity={"finite": True, "black": False, "frozen": False})
    v = verdict(snap(result("layout"), benchmarks={("m", "p"): agg(bad)}), "m", T)
    assert v.status == "degraded" and v.issues["output_invalid"] == 2
    lenient = replace(T, degraded_sanity_ratio=0.3)
    assert verdict(snap(result("layout"), benchmarks={("m", "p"): agg(bad)}), "m", lenient).status == "healthy"


def test_slowdown_against_baseline_degrades() -> None:
    slow = run(duration=20.0)
    s = snap(result("layout"), benchmarks={("m", "p"): agg(slow)}, baselines={("m", "p", "recorded"): 10.0})
    assert verdict(s, "m", T).status == "degraded"
    s = snap(result("layout"), benchmarks={("m", "p"): agg(slow)},
             baselines={("m", "p", "config"): 18.0, ("m", "p", "recorded"): 10.0})
    assert verdict(s, "m", T).status == "healthy"  # the config baseline wins: 20/18 < 1.5


def test_other_models_do_not_leak() -> None:
    s = snap(result("layout", "hash_mismatch", model="other"), result("layout"))
    assert verdict(s, "m", T).status == "healthy"
    assert verdict(s, "other", T).status == "critical"
    assert STATUSES == ("healthy", "degraded", "critical", "missing")
