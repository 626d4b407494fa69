"""Every PromQL expression the dashboards run, apart from the layout.

Functions take the *names* of the dashboard variables they filter on (``model="model_a"``
gives ``model=~"${model_a}"``), so the comparison dashboard reuses the same figures for
model A and model B.

Where a recording rule of ``alerting/rules/wan-recording.rules.yml`` covers a figure, the
dashboards read the rule (the same number the alerts use; the ``R_*`` names below). The rest
is raw PromQL over the exporter's series: plain selections of gauges, and the few computed
figures no rule records yet (health state as a number, rates over $__rate_interval for
heatmaps and event bars, capability matrices, fleet energy); grafana/README.md lists them.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import yaml

_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT / "exporter") not in sys.path:  # the contract, without installing the package
    sys.path.insert(0, str(_ROOT / "exporter"))

from wan_exporter.contract import benchmark  # noqa: E402
from wan_exporter.contract import efficiency as E  # noqa: E402
from wan_exporter.contract import labels  # noqa: E402
from wan_exporter.contract import rules as R  # noqa: E402

# The alerts' one config place: their selector here, their thresholds for the panels' colours (common).
ALERTING_THRESHOLDS = _ROOT / "alerting" / "thresholds.yml"


@functools.cache
def alerting_settings() -> dict:
    """alerting/thresholds.yml, read once when a dashboard is built (not when this module is imported)."""
    return yaml.safe_load(ALERTING_THRESHOLDS.read_text(encoding="utf-8")) or {}


def exporter_selector() -> str:
    """The exporter's scrape job as the rules select it; only Prometheus' own per-target series
    (up, scrape_duration_seconds) need it: every wan_* series comes from the exporter anyway."""
    return alerting_settings().get("selector", 'job="wan-exporter"')


# -- selectors -----------------------------------------------------------------------------------


def _v(var: str) -> str:
    return "${" + var + "}"


def _sel(metric: str, *matchers: str) -> str:
    parts = [m for m in matchers if m]
    return f"{metric}{{{', '.join(parts)}}}" if parts else metric


def _inst(var: str = "instance") -> str:
    return f'instance=~"{_v(var)}"'


def _model(var: str = "model") -> str:
    return f'model=~"{_v(var)}"'


def _gpu(var: str = "gpu") -> str:
    return f'gpu=~"{_v(var)}"'


def _pair(var_a: str, var_b: str, label: str) -> str:
    """Either of two single-valued variables (Prometheus regexes are anchored)."""
    return f'{label}=~"{_v(var_a)}|{_v(var_b)}"'


RATE = "$__rate_interval"


# -- recording rules (names from wan_exporter.contract.rules; alerting/generate.py writes them) ----------
# instance_model_profile:* keep job, instance, model, profile; instance:* keep job, instance.

R_P95_1H = R.GENERATION_QUANTILE[("p95", "1h")]
R_MEAN_1H = R.GENERATION_MEAN["1h"]
R_P50_24H = R.GENERATION_QUANTILE[("p50", "24h")]
R_P95_24H = R.GENERATION_QUANTILE[("p95", "24h")]
R_MEAN_24H = R.GENERATION_MEAN["24h"]
R_VIDEOS_PER_HOUR_1H = R.VIDEOS_PER_HOUR["1h"]
R_BASELINE = R.BASELINE
R_MEAN_1H_OVER_BASELINE = R.MEAN_1H_OVER_BASELINE
R_P95_24H_OVER_BASELINE = R.P95_24H_OVER_BASELINE
R_LAST_OVER_BASELINE = R.LAST_OVER_BASELINE
R_STEP_CV_24H = R.STEP_CV_24H
R_RUNS_1H = R.RUNS["1h"]
R_SUCCESS_1H = R.SUCCESS_RATIO["1h"]
R_RUNS_24H = R.RUNS["24h"]
R_FAILURES_24H = R.FAILURES["24h"]
R_SUCCESS_24H = R.SUCCESS_RATIO["24h"]
R_FAILURES_BY_REASON_1H = R.FAILURES_BY_REASON_1H
R_SANITY_FAILURES_1H = R.SANITY_FAILURES_1H
R_LAST_SUCCESS_AGE = R.LAST_SUCCESS_AGE
R_GPU_MEMORY_USED = R.GPU_MEMORY_USED
R_GPU_MEMORY_TOTAL = R.GPU_MEMORY_TOTAL
R_GPU_POWER = R.GPU_POWER
R_GPU_UTILIZATION = R.GPU_UTILIZATION
R_GPU_TEMPERATURE_MAX = R.GPU_TEMPERATURE_MAX
R_GPU_MEMORY_USED_RATIO = R.GPU_MEMORY_USED_RATIO
R_INTEGRITY_ISSUES = R.INTEGRITY_ISSUES
R_HEALTH_STATUS_COUNT = R.HEALTH_STATUS_BY_INSTANCE
R_STEP_TIME_OVER_REFERENCE = R.STEP_TIME_OVER_REFERENCE
R_PEAK_MEMORY_OVER_REFERENCE = R.PEAK_MEMORY_OVER_REFERENCE

def rule(name: str, model: str | None = "model", instance: str = "instance") -> str:
    """A recording rule filtered by the instance (and model) variables."""
    return _sel(name, _inst(instance), _model(model) if model else "")


# -- variables -----------------------------------------------------------------------------------

def var_instance() -> str:
    return "label_values(wan_exporter_build_info, instance)"


def var_instance_of(parent: str = "instance") -> str:
    return f"label_values({_sel('wan_exporter_build_info', _inst(parent))}, instance)"


def var_gpu() -> str:
    return f"label_values({_sel('wan_gpu_info', _inst())}, gpu)"


def var_model(instance: str = "instance") -> str:
    return f"label_values({_sel('wan_model_info', _inst(instance))}, model)"


# -- health state ----------------------------------------------------------------------------------

HEALTH_CODES = tuple((status, code) for code, status in enumerate(labels.STATUSES))


def health_state_code(model: str = "model", instance: str = "instance", by: str = "model") -> str:
    """wan_model_health_status (a state set) as one number per model: 0 healthy .. 3 missing (worst wins)."""
    def arm(status: str, code: int) -> str:
        series = _sel("wan_model_health_status", _inst(instance), _model(model), f'status="{status}"')
        return f"({series} == 1) * {code}"

    arms = "\n  or ".join(arm(s, c) for s, c in HEALTH_CODES)
    return f"max by ({by}) (\n  {arms}\n)"


def models_by_health_state(instance: str = "instance") -> str:
    return f"sum by (status) ({rule(R_HEALTH_STATUS_COUNT, None, instance)})"


def integrity_issues(model: str = "model", instance: str = "instance") -> str:
    return f"max by (model) ({rule(R_INTEGRITY_ISSUES, model, instance)})"


def health_check_success(model: str = "model", instance: str = "instance") -> str:
    return f"min by (check) ({_sel('wan_health_check_success', _inst(instance), _model(model))})"


def health_check_duration(model: str = "model", instance: str = "instance") -> str:
    return f"max by (check) ({_sel('wan_health_check_duration_seconds', _inst(instance), _model(model))})"


def health_check_last_success_age(model: str = "model", instance: str = "instance") -> str:
    ts = _sel("wan_health_check_last_success_timestamp_seconds", _inst(instance), _model(model))
    return f"time() - max by (check) ({ts})"


def model_issues(model: str = "model", instance: str = "instance") -> str:
    return f"sort_desc(max by (issue) ({_sel('wan_model_health_issues', _inst(instance), _model(model))}))"


def integrity_ratio(model: str = "model", instance: str = "instance") -> str:
    return f"min by (model) ({_sel('wan_model_integrity_ratio', _inst(instance), _model(model))})"


def files_present(model: str = "model", instance: str = "instance") -> str:
    return f"min by (model) ({_sel('wan_model_files_present', _inst(instance), _model(model))})"


def files_expected(model: str = "model", instance: str = "instance") -> str:
    return f"max by (model) ({_sel('wan_model_files_expected', _inst(instance), _model(model))})"


def model_size(model: str = "model", instance: str = "instance") -> str:
    return f"max by (model) ({_sel('wan_model_size_bytes', _inst(instance), _model(model))})"


def catalog_mismatches(model: str = "model", instance: str = "instance") -> str:
    return f"max by (model) ({_sel('wan_model_catalog_mismatches', _inst(instance), _model(model))})"


def filesystem_free(model: str = "model", instance: str = "instance") -> str:
    return f"min by (model) ({_sel('wan_model_filesystem_free_bytes', _inst(instance), _model(model))})"


def filesystem_free_ratio(model: str = "model", instance: str = "instance") -> str:
    free = _sel("wan_model_filesystem_free_bytes", _inst(instance), _model(model))
    size = _sel("wan_model_filesystem_size_bytes", _inst(instance), _model(model))
    return f"min by (model) ({free} / {size})"


# -- benchmarks: time, success, age ------------------------------------------------------------------

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


def generation_time(name: str, model: str = "model", instance: str = "instance", by: str = "model, profile") -> str:
    """A generation-time rule (p50/p95/p99/mean over 1 h or 24 h); the slowest instance when several match."""
    return f"max by ({by}) ({rule(name, model, instance)})"


def videos_per_hour(model: str = "model", instance: str = "instance", by: str = "model, profile") -> str:
    return f"max by ({by}) ({rule(R_VIDEOS_PER_HOUR_1H, model, instance)})"


def runs_last_hour(model: str = "model", instance: str = "instance", by: str = "model") -> str:
    return f"sum by ({by}) ({rule(R_RUNS_1H, model, instance)})"


def slowdown(name: str = R_LAST_OVER_BASELINE, model: str = "model", instance: str = "instance",
             by: str = "instance, model, profile") -> str:
    """Generation time over its baseline (1 = as fast as baseline; alerts at thresholds.yml's ratio)."""
    return f"max by ({by}) ({rule(name, model, instance)})"


def effective_baseline(model: str = "model", instance: str = "instance", by: str = "model, profile") -> str:
    return f"max by ({by}) ({rule(R_BASELINE, model, instance)})"


def step_time_variation(model: str = "model", instance: str = "instance", by: str = "model, profile") -> str:
    return f"max by ({by}) ({rule(R_STEP_CV_24H, model, instance)})"


def generation_heatmap(model: str = "model", instance: str = "instance") -> str:
    buckets = _sel("wan_generation_duration_seconds_bucket", _inst(instance), _model(model))
    return f"sum by (le) (increase({buckets}[{RATE}]))"


# -- benchmarks: the last run ---------------------------------------------------------------------

def _last(metric: str, model: str, instance: str, by: str, agg: str = "max") -> str:
    return f"{agg} by ({by}) ({_sel(metric, _inst(instance), _model(model))})"


# -- formats side by side: models compared with a reference (models[].compare_to) ------------------

def _compared(metric: str, reference: str, instance: str, by: str = "model, profile") -> str:
    return f'max by ({by}) ({_sel(metric, _inst(instance), f"reference={chr(34)}{_v(reference)}{chr(34)}")})'


def step_time_over_reference(reference: str = "model", instance: str = "instance") -> str:
    return _compared(R_STEP_TIME_OVER_REFERENCE, reference, instance)


def peak_memory_over_reference(reference: str = "model", instance: str = "instance") -> str:
    return _compared(R_PEAK_MEMORY_OVER_REFERENCE, reference, instance)


def output_max_abs_difference(reference: str = "model", instance: str = "instance") -> str:
    return _compared(benchmark.BENCHMARK_OUTPUT_MAX_ABS_DIFFERENCE_RATIO.name, reference, instance)


def output_psnr(reference: str = "model", instance: str = "instance") -> str:
    return _compared(benchmark.BENCHMARK_OUTPUT_PSNR_DECIBELS.name, reference, instance)


def run_formats(instance: str = "instance") -> str:
    """Every model's last run on the instance: form, stored weights, compute dtype."""
    return (f"max by (model, profile, form, weight_format, compute_dtype) "
            f"({_sel(benchmark.BENCHMARK_RUN_INFO.exposed_name, _inst(instance))})")


def phase_durations(model: str = "model", instance: str = "instance") -> str:
    return _last("wan_generation_phase_duration_seconds", model, instance, "profile, phase")


def seconds_per_step(model: str = "model", instance: str = "instance", by: str = "model, profile") -> str:
    return _last("wan_generation_seconds_per_step", model, instance, by)


# -- benchmarks: how far from the hardware's limit -------------------------------------------------


def flops_per_step(model: str = "model", instance: str = "instance", by: str = "model, profile") -> str:
    return _last(E.GENERATION_FLOPS_PER_STEP.exposed_name, model, instance, by)


def latent_tokens(model: str = "model", instance: str = "instance", by: str = "model, profile") -> str:
    return _last(E.GENERATION_LATENT_TOKENS.exposed_name, model, instance, by)


def achieved_flops(model: str = "model", instance: str = "instance", by: str = "model, profile") -> str:
    return _last(E.GENERATION_FLOPS_PER_SECOND.exposed_name, model, instance, by)


def peak_flops(model: str = "model", instance: str = "instance", by: str = "model, profile, gpu_model") -> str:
    return _last(E.GENERATION_PEAK_FLOPS_PER_SECOND.exposed_name, model, instance, by)


def flops_utilization(model: str = "model", instance: str = "instance", by: str = "model, profile") -> str:
    return _last(E.GENERATION_MODEL_FLOPS_UTILIZATION_RATIO.exposed_name, model, instance, by)


def realtime_factor(model: str = "model", instance: str = "instance", by: str = "model, profile") -> str:
    return _last(E.GENERATION_REALTIME_FACTOR.exposed_name, model, instance, by)


def joules_per_video_second(model: str = "model", instance: str = "instance", by: str = "model, profile") -> str:
    return _last(E.GENERATION_ENERGY_JOULES_PER_VIDEO_SECOND.exposed_name, model, instance, by)


def peak_memory(model: str = "model", instance: str = "instance", by: str = "model, profile") -> str:
    return _last("wan_generation_peak_memory_bytes", model, instance, by)


def peak_memory_ratio(model: str = "model", instance: str = "instance", by: str = "model, profile") -> str:
    return _last("wan_generation_peak_memory_ratio", model, instance, by)


def frames_per_second(model: str = "model", instance: str = "instance", by: str = "model, profile") -> str:
    return _last("wan_generation_frames_per_second", model, instance, by)


def pixels_per_second(model: str = "model", instance: str = "instance", by: str = "model, profile") -> str:
    return _last("wan_generation_pixels_per_second", model, instance, by)


def generation_energy(model: str = "model", instance: str = "instance", by: str = "model, profile") -> str:
    return _last("wan_generation_energy_joules", model, instance, by)


def process_start(model: str = "model", instance: str = "instance", by: str = "model, profile") -> str:
    return _last("wan_benchmark_process_start_seconds", model, instance, by)


def last_run_success(model: str = "model", instance: str = "instance", by: str = "model, profile") -> str:
    return _last("wan_benchmark_last_run_success", model, instance, by, "min")


def consecutive_failures(model: str = "model", instance: str = "instance", by: str = "model, profile") -> str:
    return _last("wan_benchmark_consecutive_failures", model, instance, by)


def sanity_ratio(model: str = "model", instance: str = "instance", by: str = "model, profile") -> str:
    return _last("wan_benchmark_output_sanity_ratio", model, instance, by, "min")


def reproducible(model: str = "model", instance: str = "instance", by: str = "model, profile") -> str:
    return _last("wan_benchmark_output_reproducible", model, instance, by, "min")


def spread_ratio(model: str = "model", instance: str = "instance", by: str = "model, profile") -> str:
    return _last("wan_benchmark_duration_spread_ratio", model, instance, by)


def performance_ratio(model: str = "model", instance: str = "instance", by: str = "model, profile") -> str:
    return _last("wan_benchmark_performance_ratio", model, instance, by, "min")


def baseline_seconds(model: str = "model", instance: str = "instance", by: str = "model, profile, source") -> str:
    return _last("wan_benchmark_baseline_seconds", model, instance, by)


# -- benchmarks: events ---------------------------------------------------------------------------

def failures_by_reason(model: str = "model", instance: str = "instance") -> str:
    """Failed runs in the last hour by reason (the rule WanBenchmarkOOM/WanOutputInvalid read)."""
    return f"sum by (reason) ({rule(R_FAILURES_BY_REASON_1H, model, instance)})"


def skips_by_reason(model: str = "model", instance: str = "instance", window: str = RATE) -> str:
    c = _sel("wan_benchmark_skipped_total", _inst(instance), _model(model))
    return f"sum by (reason) (increase({c}[{window}]))"


def sanity_failures_by_check(model: str = "model", instance: str = "instance", window: str = RATE) -> str:
    c = _sel("wan_benchmark_output_sanity_failures_total", _inst(instance), _model(model))
    return f"sum by (check) (increase({c}[{window}]))"


def sanity_failures_last_hour(model: str = "model", instance: str = "instance") -> str:
    return f"sum by (profile) ({rule(R_SANITY_FAILURES_1H, model, instance)})"


# -- capabilities (published catalog, checkpoint facts) --------------------------------------------

def _m(model: str, instance: str) -> tuple[str, str]:
    return _inst(instance), _model(model)


def figure(metric: str, model: str = "model", instance: str = "instance", by: str = "model") -> str:
    """A published (or checkpoint) figure of the model: one number."""
    return f"max by ({by}) ({_sel(metric, *_m(model, instance))})"


def vram_min(model: str = "model", instance: str = "instance") -> str:
    return f"max by (offload) ({_sel('wan_model_vram_min_bytes', *_m(model, instance))})"


def fits_gpu(model: str = "model", instance: str = "instance", gpu: str = "gpu") -> str:
    return f"max by (gpu, offload) ({_sel('wan_model_fits_gpu', *_m(model, instance), _gpu(gpu))})"


# A capability as a row label ``capability``: sets (value 1 = supported) and yes/no flags.
_CAPABILITY_SETS = (
    ("wan_model_input_supported", "input: $1", "input"),
    ("wan_model_precision_supported", "precision: $1", "precision"),
    ("wan_model_output_format_supported", "output: $1", "format"),
    ("wan_model_checkpoint_dtype", "checkpoint dtype: $1", "dtype"),
)


def capability_matrix(models: str) -> str:
    """Every supported capability of the matched models, one series per (model, capability)."""
    arms = [
        f'label_replace({_sel(metric, models)} == 1, "capability", "{text}", "{src}", "(.*)")'
        for metric, text, src in _CAPABILITY_SETS
    ]
    arms.append('label_replace(label_join(' + _sel("wan_model_resolution_supported", models)
                + ' == 1, "capability", "x", "width", "height"), "capability", "resolution: $1", "capability", "(.*)")')
    arms.append('label_replace(' + _sel("wan_model_lora_supported", models)
                + ' == 1, "capability", "LoRA adapters", "", "")')
    arms.append('label_replace(label_join(' + _sel("wan_model_fits_gpu", models)
                + ' == 1, "capability", ", offload ", "gpu", "offload"), '
                '"capability", "fits GPU $1", "capability", "(.*)")')
    return "max by (model, capability) (\n    " + "\n  or ".join(arms) + "\n)"


_COUNT_FIGURES = (
    ("wan_model_frames_default", "default frames"),
    ("wan_model_fps_default", "default fps"),
    ("wan_model_steps_default", "default steps"),
    ("wan_model_experts", "denoising experts"),
    ("wan_model_checkpoint_experts", "experts in checkpoint"),
    ("wan_model_size_multiple", "size multiple (px)"),
)
_PARAMETER_FIGURES = (
    ("wan_model_parameters", "parameters (published)"),
    ("wan_model_active_parameters", "active parameters per step"),
    ("wan_model_checkpoint_parameters", "parameters (checkpoint)"),
)


def _figure_matrix(figures: tuple[tuple[str, str], ...], models: str, label: str = "figure") -> str:
    arms = [f'label_replace({_sel(metric, models)}, "{label}", "{text}", "", "")' for metric, text in figures]
    return f"max by (model, {label}) (\n    " + "\n  or ".join(arms) + "\n)"


def count_figures(models: str) -> str:
    return _figure_matrix(_COUNT_FIGURES, models)


def parameter_figures(models: str) -> str:
    return _figure_matrix(_PARAMETER_FIGURES, models)


def vram_figures(models: str) -> str:
    """Published minimum VRAM per offload mode."""
    vram = _sel("wan_model_vram_min_bytes", models)
    return f'max by (model, figure) (label_replace({vram}, "figure", "min VRAM, offload $1", "offload", "(.*)"))'


def models_single(model: str = "model", instance: str = "instance") -> str:
    return ", ".join(_m(model, instance))


def models_pair(a: str = "model_a", b: str = "model_b", ia: str = "instance_a", ib: str = "instance_b") -> str:
    return f"{_pair(ia, ib, 'instance')}, {_pair(a, b, 'model')}"


def capability_differences(models: str) -> str:
    """How many capabilities only one of the two models has."""
    return f"count(count by (capability) ({capability_matrix(models)}) == 1) or vector(0)"


def recommendation_scores(instance: str = "instance") -> str:
    s = _sel("wan_model_recommendation_score", _inst(instance))
    return f'max by (use, model) (label_join({s}, "use", " / ", "use_case", "priority"))'


# -- comparison: A over B -------------------------------------------------------------------------

def ratio_a_over_b(expr_a: str, expr_b: str) -> str:
    """One number: A's figure over B's (``on()`` because they differ in model/instance)."""
    return f"(\n  {expr_a}\n)\n/ on ()\n(\n  {expr_b}\n)"


def time_ratio_by_profile(a: dict, b: dict) -> str:
    """B's mean generation time over A's, for each profile both run (above 1: A is faster)."""
    return (f"{generation_time(R_MEAN_24H, b['model'], b['instance'], by='profile')}\n/ on (profile)\n"
            f"{generation_time(R_MEAN_24H, a['model'], a['instance'], by='profile')}")


def best_pixels_per_second(model: str, instance: str) -> str:
    return f"max({_sel('wan_generation_pixels_per_second', _inst(instance), _model(model))})"


def lowest_peak_memory(model: str, instance: str) -> str:
    return f"min({_sel('wan_generation_peak_memory_bytes', _inst(instance), _model(model))})"


# -- GPUs --------------------------------------------------------------------------------------------

def _g(metric: str, instance: str = "instance", gpu: str = "gpu") -> str:
    return _sel(metric, _inst(instance), _gpu(gpu))


def gpu_utilization() -> str:
    return _g("wan_gpu_utilization_ratio")


def gpu_memory_used() -> str:
    return _g("wan_gpu_memory_used_bytes")


def gpu_memory_total(instance: str = "instance", gpu: str = "gpu") -> str:
    return _g("wan_gpu_memory_total_bytes", instance, gpu)


def gpu_memory_used_ratio() -> str:
    return f"{_g('wan_gpu_memory_used_bytes')}\n/\n{_g('wan_gpu_memory_total_bytes')}"


def gpu_temperature() -> str:
    return _g("wan_gpu_temperature_celsius")


def gpu_power() -> str:
    return _g("wan_gpu_power_watts")


def gpu_power_limit() -> str:
    return _g("wan_gpu_power_limit_watts")


def gpu_sm_clock() -> str:
    return _g("wan_gpu_sm_clock_hertz")


def gpu_throttling() -> str:
    return f"max by (instance, gpu, reason) ({_g('wan_gpu_throttle_reason_active')})"


def gpu_errors(window: str = RATE) -> str:
    ecc = _g("wan_gpu_ecc_errors_total")
    xid = _g("wan_gpu_xid_errors_total")
    return (f'sum by (instance, gpu, kind) (\n'
            f'    label_replace(increase({ecc}[{window}]), "kind", "ECC $1", "error_type", "(.*)")\n'
            f'  or label_replace(increase({xid}[{window}]), "kind", "XID $1", "xid", "(.*)")\n)')


def gpu_processes() -> str:
    return _g("wan_gpu_processes")


def gpu_lost() -> str:
    return f"max by (instance, gpu) ({_g('wan_gpu_lost')})"


def gpu_info() -> str:
    labels = "instance, gpu, name, uuid, pci_bus_id, driver_version, cuda_version, compute_capability"
    return f"max by ({labels}) ({_g('wan_gpu_info')})"


def gpu_count(instance: str = "instance") -> str:
    return f"count by (instance) ({_sel('wan_gpu_info', _inst(instance))})"


# -- the exporter itself -----------------------------------------------------------------------------

def up(instance: str = "instance") -> str:
    return f"max by (instance) ({_sel('up', exporter_selector(), _inst(instance))})"


def scrape_duration(instance: str = "instance") -> str:
    return f"max by (instance) ({_sel('scrape_duration_seconds', exporter_selector(), _inst(instance))})"


def collector_success(instance: str = "instance") -> str:
    return f"min by (collector) ({_sel('wan_exporter_collector_success', _inst(instance))})"


def collector_errors(instance: str = "instance") -> str:
    return f"max by (instance, collector, reason) ({_sel('wan_exporter_collector_error_info', _inst(instance))})"


def config_reload_success(instance: str = "instance") -> str:
    return f"min by (instance) ({_sel('wan_exporter_config_last_reload_successful', _inst(instance))})"


def config_reload_age(instance: str = "instance") -> str:
    ts = _sel("wan_exporter_config_last_reload_success_timestamp_seconds", _inst(instance))
    return f"time() - max by (instance) ({ts})"


def job_failures(instance: str = "instance", window: str = RATE) -> str:
    return f"sum by (task) (increase({_sel('wan_exporter_job_failures_total', _inst(instance))}[{window}]))"


def job_last_success_age(instance: str = "instance") -> str:
    return f"time() - min by (task) ({_sel('wan_exporter_job_last_success_timestamp_seconds', _inst(instance))})"


def job_duration(instance: str = "instance") -> str:
    return f"max by (task) ({_sel('wan_exporter_job_last_duration_seconds', _inst(instance))})"


def models_configured(instance: str = "instance") -> str:
    return f"max by (instance) ({_sel('wan_exporter_models_configured', _inst(instance))})"


def build_info(instance: str = "instance") -> str:
    return (f"max by (instance, version, python_version, torch_version, diffusers_version, transformers_version) "
            f"({_sel('wan_exporter_build_info', _inst(instance))})")


def host_cpu(instance: str = "instance") -> str:
    return f"max by (instance) ({_sel('wan_host_cpu_utilization_ratio', _inst(instance))})"


def host_memory_available_ratio(instance: str = "instance") -> str:
    a = _sel("wan_host_memory_available_bytes", _inst(instance))
    t = _sel("wan_host_memory_total_bytes", _inst(instance))
    return f"max by (instance) ({a} / {t})"


# -- alerts ------------------------------------------------------------------------------------------

def alerts_firing() -> str:
    """Alerts Prometheus is firing now (ALERTS is Prometheus' own series); empty while nothing fires."""
    return 'max by (alertname, severity, instance, model, gpu) (ALERTS{alertstate="firing"})'


def alertmanager_alerts(state: str) -> str:
    """Alerts the Alertmanager holds, by state: ``active`` or ``suppressed`` (silenced or inhibited).

    Needs Prometheus to scrape the Alertmanager (docker-compose does).
    """
    return f'sum(alertmanager_alerts{{state="{state}"}})'


# -- fleet rollups and history -----------------------------------------------------------------------

def fleet_instances(instance: str = "instance") -> str:
    return f"count({_sel('wan_exporter_build_info', _inst(instance))})"


def fleet_instances_up(instance: str = "instance") -> str:
    return f"count({_sel('up', exporter_selector(), _inst(instance))} == 1) or vector(0)"


def fleet_gpus(instance: str = "instance") -> str:
    return f"sum({_sel('wan_gpu_devices', _inst(instance))}) or vector(0)"


def fleet_models(instance: str = "instance") -> str:
    return f"count({_sel('wan_model_info', _inst(instance))})"


def fleet_gpu_memory_used_ratio(instance: str = "instance") -> str:
    return f"sum({rule(R_GPU_MEMORY_USED, None, instance)})\n/\nsum({rule(R_GPU_MEMORY_TOTAL, None, instance)})"


def fleet_success_ratio_24h(instance: str = "instance") -> str:
    runs = f"sum({rule(R_RUNS_24H, None, instance)})"
    fails = f"sum({rule(R_FAILURES_24H, None, instance)})"
    return f"clamp(({runs} - {fails}) / ({runs} > 0), 0, 1)"


def fleet_runs_24h(instance: str = "instance") -> str:
    return f"sum({rule(R_RUNS_24H, None, instance)})"


def fleet_energy(window: str = "24h", instance: str = "instance") -> str:
    return f"sum(increase({_sel('wan_gpu_energy_joules_total', _inst(instance))}[{window}]))"


def instance_figure(name: str, instance: str = "instance") -> str:
    """An instance-level GPU rule (instance:*), one number per instance."""
    return f"max by (instance) ({rule(name, None, instance)})"


def trend(name: str, model: str = "model", instance: str = "instance", by: str = "model") -> str:
    return f"max by ({by}) ({rule(name, model, instance)})"


def avg_over(name: str, window: str, model: str = "model", instance: str = "instance",
             by: str = "instance, model, profile") -> str:
    """A rule averaged over a long window (7d, 30d) for the history tables."""
    return f"max by ({by}) (avg_over_time({rule(name, model, instance)}[{window}]))"
