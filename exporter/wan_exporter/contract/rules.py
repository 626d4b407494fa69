"""Recording-rule names, ``level:metric:operations``: the one place they are spelled.

``alerting/generate.py`` writes the rules under these names and the dashboards' queries
read them from here, so renaming a rule is one edit; a unit test checks the generated rule
files record exactly :data:`ALL`.
"""

from __future__ import annotations

from . import benchmark, gpu, health, traffic_rules

QUANTILES: tuple[tuple[float, str], ...] = ((0.5, "p50"), (0.95, "p95"), (0.99, "p99"))
WINDOWS: tuple[str, ...] = ("1h", "24h")

# Aggregation levels: the labels each level keeps (besides the rule's own).
LEVEL_LABELS = {
    "instance_model_profile": "job, instance, model, profile",
    "instance_model": "job, instance, model",
    "instance": "job, instance",
    "model_profile": "model, profile",
    "": "",
}


def name(level: str, metric: str, operations: str) -> str:
    return f"{level}:{metric}:{operations}"


_GEN = benchmark.GENERATION_DURATION_SECONDS.name
_RUNS, _FAILS = benchmark.BENCHMARK_RUNS.name, benchmark.BENCHMARK_FAILURES.name
_IMP, _MP = "instance_model_profile", "model_profile"

# -- generation times (benchmark histogram) ----------------------------------------------------------
GENERATION_QUANTILE = {(qn, w): name(_IMP, _GEN, f"{qn}_rate{w}") for w in WINDOWS for _q, qn in QUANTILES}
GENERATION_MEAN = {w: name(_IMP, _GEN, f"mean_rate{w}") for w in WINDOWS}
VIDEOS_PER_HOUR = {w: name(_IMP, "wan_generation_videos_per_hour", f"rate{w}") for w in WINDOWS}
FLEET_GENERATION_QUANTILE_24H = {qn: name(_MP, _GEN, f"{qn}_rate24h") for _q, qn in QUANTILES}
FLEET_GENERATION_MEAN_24H = name(_MP, _GEN, "mean_rate24h")
FLEET_VIDEOS_PER_HOUR_24H = name(_MP, "wan_generation_videos_per_hour", "sum_rate24h")
BASELINE = name(_IMP, benchmark.BENCHMARK_BASELINE_SECONDS.name, "effective")
MEAN_1H_OVER_BASELINE = name(_IMP, _GEN, "mean_rate1h_over_baseline")
P95_24H_OVER_BASELINE = name(_IMP, _GEN, "p95_rate24h_over_baseline")
LAST_OVER_BASELINE = name(_IMP, _GEN, "last_over_baseline")
FLEET_PERFORMANCE_MIN = name(_MP, benchmark.BENCHMARK_PERFORMANCE_RATIO.name, "min")
FLEET_SPREAD_MAX = name(_MP, benchmark.BENCHMARK_DURATION_SPREAD_RATIO.name, "max")
STEP_CV_24H = name(_IMP, benchmark.GENERATION_SECONDS_PER_STEP.name, "coefficient_of_variation24h")
# Formats side by side (models[].compare_to): the compared model's figure over its reference's, same profile.
STEP_TIME_OVER_REFERENCE = name(_IMP, benchmark.GENERATION_SECONDS_PER_STEP.name, "ratio_to_reference")
PEAK_MEMORY_OVER_REFERENCE = name(_IMP, benchmark.GENERATION_PEAK_MEMORY_BYTES.name, "ratio_to_reference")

# -- benchmark runs -----------------------------------------------------------------------------------
RUNS = {w: name(_IMP, _RUNS, f"increase{w}") for w in WINDOWS}
FAILURES = {w: name(_IMP, _FAILS, f"increase{w}") for w in WINDOWS}
SUCCESS_RATIO = {w: name(_IMP, "wan_benchmark_success", f"ratio_rate{w}") for w in WINDOWS}
ALL_RUNS = {w: name("", _RUNS, f"increase{w}") for w in WINDOWS}
ALL_FAILURES = {w: name("", _FAILS, f"increase{w}") for w in WINDOWS}
ALL_SUCCESS_RATIO = {w: name("", "wan_benchmark_success", f"ratio_rate{w}") for w in WINDOWS}
FAILURES_BY_REASON_1H = name("instance_model_profile_reason", _FAILS, "increase1h")
SANITY_FAILURES_1H = name(_IMP, benchmark.BENCHMARK_OUTPUT_SANITY_FAILURES.name, "increase1h")
LAST_SUCCESS_AGE = name(_IMP, "wan_benchmark_last_success", "age_seconds")

# -- GPUs -----------------------------------------------------------------------------------------------
GPU_PER_INSTANCE = {
    fam.name: name("instance", fam.name, op)
    for fam, op in ((gpu.MEMORY_USED_BYTES, "sum"), (gpu.MEMORY_TOTAL_BYTES, "sum"), (gpu.POWER_WATTS, "sum"),
                    (gpu.UTILIZATION_RATIO, "avg"), (gpu.TEMPERATURE_CELSIUS, "max"))
}
GPU_MEMORY_USED = GPU_PER_INSTANCE[gpu.MEMORY_USED_BYTES.name]
GPU_MEMORY_TOTAL = GPU_PER_INSTANCE[gpu.MEMORY_TOTAL_BYTES.name]
GPU_POWER = GPU_PER_INSTANCE[gpu.POWER_WATTS.name]
GPU_UTILIZATION = GPU_PER_INSTANCE[gpu.UTILIZATION_RATIO.name]
GPU_TEMPERATURE_MAX = GPU_PER_INSTANCE[gpu.TEMPERATURE_CELSIUS.name]
GPU_MEMORY_USED_RATIO = name("instance", "wan_gpu_memory_used", "ratio")
FLEET_GPU_DEVICES = name("", gpu.DEVICES.name, "sum")
FLEET_GPU_MEMORY_USED = name("", gpu.MEMORY_USED_BYTES.name, "sum")
FLEET_GPU_MEMORY_TOTAL = name("", gpu.MEMORY_TOTAL_BYTES.name, "sum")
FLEET_GPU_MEMORY_USED_RATIO = name("", "wan_gpu_memory_used", "ratio")
FLEET_GPU_UTILIZATION = name("", gpu.UTILIZATION_RATIO.name, "avg")
GPU_DEVICES_MAX_24H = name("instance", gpu.DEVICES.name, "max_over_time24h")
XID_ERRORS_15M = name("instance_gpu_xid", gpu.XID_ERRORS.name, "increase15m")

# -- health -----------------------------------------------------------------------------------------------
INTEGRITY_ISSUES = name("instance_model", "wan_model_integrity_issues", "sum")
HEALTH_STATUS_BY_INSTANCE = name("instance_status", health.MODEL_HEALTH_STATUS.name, "sum")
HEALTH_STATUS = name("status", health.MODEL_HEALTH_STATUS.name, "sum")
HEALTH_ISSUES_BY_KIND = name("issue", health.MODEL_HEALTH_ISSUES.name, "sum")


# Every rule alerting/generate.py records: these and the traffic rules (SLO names at the committed windows).
# Listed, not found: a new rule name above is recorded only once it is added here (a test checks the files).
ALL: tuple[str, ...] = tuple(dict.fromkeys((
    *GENERATION_QUANTILE.values(), *GENERATION_MEAN.values(), *VIDEOS_PER_HOUR.values(),
    *FLEET_GENERATION_QUANTILE_24H.values(), FLEET_GENERATION_MEAN_24H, FLEET_VIDEOS_PER_HOUR_24H,
    BASELINE, MEAN_1H_OVER_BASELINE, P95_24H_OVER_BASELINE, LAST_OVER_BASELINE, FLEET_PERFORMANCE_MIN,
    FLEET_SPREAD_MAX, STEP_CV_24H, STEP_TIME_OVER_REFERENCE, PEAK_MEMORY_OVER_REFERENCE,
    *RUNS.values(), *FAILURES.values(), *SUCCESS_RATIO.values(), *ALL_RUNS.values(), *ALL_FAILURES.values(),
    *ALL_SUCCESS_RATIO.values(), FAILURES_BY_REASON_1H, SANITY_FAILURES_1H, LAST_SUCCESS_AGE,
    *GPU_PER_INSTANCE.values(), GPU_MEMORY_USED_RATIO, FLEET_GPU_DEVICES, FLEET_GPU_MEMORY_USED,
    FLEET_GPU_MEMORY_TOTAL, FLEET_GPU_MEMORY_USED_RATIO, FLEET_GPU_UTILIZATION, GPU_DEVICES_MAX_24H, XID_ERRORS_15M,
    INTEGRITY_ISSUES, HEALTH_STATUS_BY_INSTANCE, HEALTH_STATUS, HEALTH_ISSUES_BY_KIND,
    *traffic_rules.ALL,
)))
