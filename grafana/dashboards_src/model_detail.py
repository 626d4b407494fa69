"""Model detail: one model's full story, from its published capabilities to its last benchmark.

Opened from the overview's cards and from alerts (``dashboard_url`` sets var-model and var-instance).
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import units
from wan_exporter.contract import benchmark as B
from wan_exporter.contract import checkpoint as C
from wan_exporter.contract import efficiency as E
from wan_exporter.contract import gpu as G
from wan_exporter.contract import health as H
from wan_exporter.contract import host
from wan_exporter.contract import models as M

from . import common as c
from . import queries as q
from .rank_panels import ranks  # the Traffic dashboard's per-rank row, over every service of the model

ONE = q.models_single()  # model=~"${model}", instance=~"${instance}"
RATIO_X = "suffix:×"  # a dimensionless "times" figure (slowdown against baseline)
FPS = "suffix: fps"
FLOP = "si:FLOP"  # a count of floating-point operations, SI-prefixed (TFLOP, PFLOP)
FLOPS = "flops"  # Grafana's FLOP/s unit


# -- capabilities ------------------------------------------------------------------------------------

def published_figures() -> object:
    return (
        c.default_stat()
        .title("Published figures")
        .description("From the model's catalog entry (Wan2.x model cards and diffusers): defaults and scale.")
        .unit(units.NoUnit)
        .height(5)
        .span(12)
        .text_mode(cm.BigValueTextMode.VALUE_AND_NAME)
        .color_mode(cm.BigValueColorMode.NONE)
        .with_target(c.prom_query(q.figure(M.FRAMES_DEFAULT), "frames", "A", instant=True))
        .with_target(c.prom_query(q.figure(M.FPS_DEFAULT), "fps", "B", instant=True))
        .with_target(c.prom_query(q.figure(M.STEPS_DEFAULT), "steps", "C", instant=True))
        .with_target(c.prom_query(q.figure(M.EXPERTS), "experts", "D", instant=True))
        .with_target(c.prom_query(q.figure(M.PARAMETERS), "parameters", "E", instant=True))
        .with_target(c.prom_query(q.figure(M.ACTIVE_PARAMETERS), "active parameters", "F", instant=True))
        .with_target(c.prom_query(q.figure(M.SIZE_MULTIPLE), "size multiple", "G", instant=True))
        .with_target(c.prom_query(q.figure(M.BOUNDARY_RATIO), "expert boundary", "H", instant=True))
        .override_by_query("E", [c.prop("unit", units.SiShort)])
        .override_by_query("F", [c.prop("unit", units.SiShort)])
        .override_by_query("G", [c.prop("unit", units.Pixels)])
        .override_by_query("H", [c.prop("unit", units.PercentUnit)])
    )


def checkpoint_figures() -> object:
    return (
        c.default_stat()
        .title("What the checkpoint says")
        .description("Counted from the checkpoint's own files (safetensors headers, model_index.json), and how many "
                     "of them disagree with the published catalog entry.")
        .unit(units.NoUnit)
        .height(5)
        .span(12)
        .text_mode(cm.BigValueTextMode.VALUE_AND_NAME)
        .color_mode(cm.BigValueColorMode.NONE)
        .with_target(c.prom_query(q.figure(C.CHECKPOINT_PARAMETERS), "parameters", "A", instant=True))
        .with_target(c.prom_query(q.figure(C.CHECKPOINT_EXPERTS), "experts", "B", instant=True))
        .with_target(c.prom_query(q.figure(M.CHECKPOINT_BOUNDARY_RATIO), "expert boundary", "C",
                                  instant=True))
        .with_target(c.prom_query(q.figure(H.MODEL_CATALOG_MISMATCHES), "catalog mismatches", "D", instant=True))
        .override_by_query("A", [c.prop("unit", units.SiShort)])
        .override_by_query("C", [c.prop("unit", units.PercentUnit)])
        .override_by_query("D", [c.prop("color", {"mode": "thresholds"}),
                                 c.prop("thresholds", c.thresholds((None, "green"), (1, "orange")))])
    )


def capabilities() -> object:
    return (
        c.default_table()
        .title("Capabilities")
        .description("Resolutions, inputs, precisions, output formats, LoRA, checkpoint dtypes and the GPUs the model "
                     "fits (per offload mode): every row is supported.")
        .unit(units.NoUnit)
        .height(10)
        .span(8)
        .mappings(c.value_map({1: ("✓", "green")}))
        .with_target(c.table_query(q.capability_matrix(ONE)))
        .with_transformation(c.organize(exclude=("Time", "model"), rename={"Value": "supported"},
                                        order=("capability", "Value")))
        .sort_by([c.common_builder.TableSortByFieldState().display_name("capability")])
    )


def vram_needs() -> object:
    return (
        c.default_bargauge()
        .title("VRAM needed per offload mode")
        .description("Published minimum GPU memory for each offload mode (none, model, group, sequential).")
        .unit(units.BytesIEC)
        .height(10)
        .span(8)
        .min(0)
        .with_target(c.prom_query(q.figure(M.VRAM_MIN_BYTES), "offload {{offload}}", "A", instant=True))
    )


def lora_and_fit() -> object:
    return (
        c.default_table()
        .title("LoRA and GPU fit")
        .description("Whether LoRA adapters load, and whether the model fits each GPU of this instance per offload "
                     "mode (published minimum, and the measured peak on the GPU it runs on).")
        .unit(units.NoUnit)
        .height(10)
        .span(8)
        .mappings(c.yes_no_mappings())
        .with_target(c.table_query(q.figure(M.LORA_SUPPORTED), "A"))
        .with_target(c.table_query(q.figure(B.MODEL_FITS_GPU), "B"))
        .with_transformation(c.merge())
        .with_transformation(c.organize(exclude=("Time",), rename={"Value #A": "LoRA", "Value #B": "fits"},
                                        order=("model", "Value #A", "gpu", "offload", "Value #B")))
    )


# -- health --------------------------------------------------------------------------------------------

def health_over_time() -> object:
    return (
        c.default_state_timeline()
        .title("Health state")
        .description("The exporter's verdict over time: healthy, degraded, critical or missing.")
        .unit(units.NoUnit)
        .mappings(c.health_mappings())
        .with_target(c.prom_query(q.health_state_code(by="model"), "{{model}}"))
    )


def health_checks() -> object:
    return (
        c.default_state_timeline()
        .title("Health checks")
        .description("Each background check's last result (layout, headers, hash, load).")
        .unit(units.NoUnit)
        .mappings(c.yes_no_mappings("pass", "fail"))
        .with_target(c.prom_query(q.figure(H.HEALTH_CHECK_SUCCESS), "{{check}}"))
    )


def integrity() -> object:
    return (
        c.default_stat()
        .title("Integrity and files")
        .description("Share of weight bytes whose SHA-256 matched (last hash check, which runs rarely), promised "
                     "files found, bytes on disk, integrity findings and free space where the files live.")
        .unit(units.NoUnit)
        .height(5)
        .span(24)
        .text_mode(cm.BigValueTextMode.VALUE_AND_NAME)
        .with_target(c.prom_query(q.figure(C.MODEL_INTEGRITY_RATIO), "verified bytes", "A", instant=True))
        .with_target(c.prom_query(q.figure(H.MODEL_FILES_PRESENT), "files present", "B", instant=True))
        .with_target(c.prom_query(q.figure(H.MODEL_FILES_EXPECTED), "files expected", "C", instant=True))
        .with_target(c.prom_query(q.figure(H.MODEL_SIZE_BYTES), "size", "D", instant=True))
        .with_target(c.prom_query(q.integrity_issues(), "integrity findings", "E", instant=True))
        .with_target(c.prom_query(q.figure(host.MODEL_FILESYSTEM_FREE_BYTES), "disk free", "F", instant=True))
        .with_target(c.prom_query(q.filesystem_free_ratio(), "disk free share", "G", instant=True))
        .override_by_query("A", [c.prop("unit", units.PercentUnit), c.prop("decimals", 2),
                                 c.prop("thresholds", c.thresholds((None, "red"), (1, "green")))])
        .override_by_query("D", [c.prop("unit", units.BytesIEC)])
        .override_by_query("E", [c.prop("thresholds", c.thresholds((None, "green"), (1, "red")))])
        .override_by_query("F", [c.prop("unit", units.BytesIEC)])
        .override_by_query("G", [c.prop("unit", units.PercentUnit),
                                 c.prop("thresholds", c.thresholds((None, "red"), (0.1, "green")))])
    )


def issues() -> object:
    return (
        c.default_table()
        .title("Findings by kind")
        .description("Current health findings of the model, every kind (0 = none).")
        .unit(units.Short)
        .height(8)
        .span(8)
        .thresholds(c.thresholds((None, "green"), (1, "red")))
        .cell_options(cm.TableColoredBackgroundCellOptions(mode=cm.TableCellBackgroundDisplayMode.BASIC))
        .with_target(c.table_query(q.model_issues()))
        .with_transformation(c.organize(exclude=("Time",), rename={"Value": "findings"}))
    )


def check_timing() -> object:
    return (
        c.default_table()
        .title("Checks: last duration and last pass")
        .description("How long each check's last run took and how long ago it last passed.")
        .unit(units.Seconds)
        .height(8)
        .span(8)
        .with_target(c.table_query(q.figure(H.HEALTH_CHECK_DURATION_SECONDS), "A"))
        .with_target(c.table_query(q.age(H.HEALTH_CHECK_LAST_SUCCESS_TIMESTAMP_SECONDS), "B"))
        .with_transformation(c.merge())
        .with_transformation(c.organize(exclude=("Time",), rename={"Value #A": "duration", "Value #B": "passed ago"}))
        .override_by_name("passed ago", [c.prop("unit", units.DurationSeconds)])
    )


def health_check_durations() -> object:
    return (
        c.default_timeseries()
        .title("Check durations")
        .description("Duration of each check's last run (the hash check reads every byte).")
        .unit(units.Seconds)
        .height(8)
        .span(8)
        .with_target(c.prom_query(q.figure(H.HEALTH_CHECK_DURATION_SECONDS), "{{check}}"))
    )


# -- generation ------------------------------------------------------------------------------------------

def generation_time() -> object:
    return (
        c.default_timeseries()
        .title("Generation time p50 / p95")
        .description("From the duration histogram (recording rules): p50 and p95 over 24 h windows, p95 and mean over "
                     "1 h (empty in hours without a benchmark).")
        .unit(units.Seconds)
        .min(0)
        .with_target(c.prom_query(q.generation_time(q.R_P50_24H), "p50 24h {{profile}}", "A"))
        .with_target(c.prom_query(q.generation_time(q.R_P95_24H), "p95 24h {{profile}}", "B"))
        .with_target(c.prom_query(q.generation_time(q.R_P95_1H), "p95 1h {{profile}}", "C"))
        .with_target(c.prom_query(q.generation_time(q.R_MEAN_1H), "mean 1h {{profile}}", "D"))
    )


def generation_heatmap() -> object:
    return (
        c.default_heatmap()
        .title("Generation time distribution")
        .description("Successful generations per duration bucket, per $__rate_interval (all profiles).")
        .unit(units.Short)
        .with_target(c.heatmap_query(q.generation_heatmap()))
    )


def phases() -> object:
    return (
        c.default_bars()
        .title("Phase breakdown (last successful run)")
        .description("Load, text encode, image encode, denoise, VAE decode and export of the last successful run, "
                     "stacked.")
        .unit(units.Seconds)
        .with_target(c.prom_query(q.figure(B.GENERATION_PHASE_DURATION_SECONDS), "{{profile}} {{phase}}"))
    )


def step_time() -> object:
    return (
        c.default_timeseries()
        .title("Seconds per denoising step")
        .description("Last successful run; the coefficient of variation over 24 h (recording rule) says how steady.")
        .unit(units.Seconds)
        .min(0)
        .with_target(c.prom_query(q.figure(B.GENERATION_SECONDS_PER_STEP, by="profile"), "{{profile}}", "A"))
        .with_target(c.prom_query(q.step_time_variation(by="profile"), "variation 24h {{profile}}", "B"))
        .override_by_query("B", [c.prop("unit", units.PercentUnit), c.prop("custom.axisPlacement", "right")])
    )


def flops_per_step() -> object:
    return (
        c.default_stat()
        .title("Work per step")
        .description("Model FLOPs of one denoising step (computed from the transformer config and the run's tokens, "
                     "twice with classifier-free guidance) and the video tokens the transformer attends over.")
        .unit(FLOP)
        .decimals(3)
        .height(8)
        .span(6)
        .text_mode(cm.BigValueTextMode.VALUE_AND_NAME)
        .with_target(c.prom_query(q.figure(E.GENERATION_FLOPS_PER_STEP, by="profile"),
                                  "FLOPs/step {{profile}}", "A", instant=True))
        .with_target(c.prom_query(q.figure(E.GENERATION_LATENT_TOKENS, by="profile"),
                                  "tokens {{profile}}", "B", instant=True))
        .override_by_query("B", [c.prop("unit", units.Short), c.prop("decimals", 0)])
    )


def utilisation() -> object:
    return (
        c.default_timeseries()
        .title("Model FLOPs utilisation")
        .description("Achieved FLOP/s in the denoise phase (FLOPs per step x steps / denoise seconds) over the GPU's "
                     "datasheet peak dense tensor rate in the run's dtype; absent on a CPU, for float32 and for GPUs "
                     "without a datasheet row. Achieved and peak FLOP/s on the right axis.")
        .unit(units.PercentUnit)
        .min(0)
        .span(9)
        .with_target(c.prom_query(q.figure(E.GENERATION_MODEL_FLOPS_UTILIZATION_RATIO, by="profile"),
                                  "MFU {{profile}}", "A"))
        .with_target(c.prom_query(q.figure(E.GENERATION_FLOPS_PER_SECOND, by="profile"), "achieved {{profile}}", "B"))
        .with_target(c.prom_query(q.figure(E.GENERATION_PEAK_FLOPS_PER_SECOND, by="profile, gpu_model"),
                                  "peak {{gpu_model}}", "C"))
        .override_by_query("B", [c.prop("unit", FLOPS), c.prop("custom.axisPlacement", "right")])
        .override_by_query("C", [c.prop("unit", FLOPS), c.prop("custom.axisPlacement", "right"),
                                 c.prop("custom.lineStyle", {"fill": "dash", "dash": [10, 10]})])
    )


def realtime() -> object:
    return (
        c.default_timeseries()
        .title("Real-time factor")
        .description("Seconds of video (frames over the model's output fps) per second of generation, last successful "
                     "run; 1 is real time. GPU joules per second of video on the right axis (NVML energy counter).")
        .unit(RATIO_X)
        .min(0)
        .span(9)
        .with_target(c.prom_query(q.figure(E.GENERATION_REALTIME_FACTOR, by="profile"),
                                  "real-time factor {{profile}}", "A"))
        .with_target(c.prom_query(q.figure(E.GENERATION_ENERGY_JOULES_PER_VIDEO_SECOND, by="profile"),
                                  "J per video s {{profile}}", "B"))
        .override_by_query("B", [c.prop("unit", units.Joule), c.prop("custom.axisPlacement", "right")])
    )


def throughput() -> object:
    return (
        c.default_timeseries()
        .title("Throughput")
        .description("Pixels (width x height x frames) and frames generated per second of generation, last "
                     "successful run; videos per hour at that pace (recording rule).")
        .unit(c.PIXELS_PER_SECOND)
        .min(0)
        .with_target(c.prom_query(q.figure(B.GENERATION_PIXELS_PER_SECOND, by="profile"), "pixels/s {{profile}}", "A"))
        .with_target(c.prom_query(q.figure(B.GENERATION_FRAMES_PER_SECOND, by="profile"), "frames/s {{profile}}", "B"))
        .with_target(c.prom_query(q.videos_per_hour(by="profile"), "videos/h {{profile}}", "C"))
        .override_by_query("B", [c.prop("unit", FPS), c.prop("custom.axisPlacement", "right")])
        .override_by_query("C", [c.prop("unit", "suffix: /h"), c.prop("custom.axisPlacement", "right")])
    )


def against_baseline() -> object:
    return (
        c.default_timeseries()
        .title("Generation time against baseline")
        .description(f"Last successful run, mean over 1 h and p95 over 24 h, each over the baseline (config, else "
                     f"recorded); WanGenerationSlow fires above {c.SLOWDOWN_RATIO:g}x.")
        .unit(RATIO_X)
        .with_target(c.prom_query(q.slowdown(q.R_LAST_OVER_BASELINE, by="profile"), "last {{profile}}", "A"))
        .with_target(c.prom_query(q.slowdown(q.R_MEAN_1H_OVER_BASELINE, by="profile"), "mean 1h {{profile}}", "B"))
        .with_target(c.prom_query(q.slowdown(q.R_P95_24H_OVER_BASELINE, by="profile"), "p95 24h {{profile}}", "C"))
        .thresholds(c.thresholds((None, "green"), (c.SLOWDOWN_RATIO, "red")))
        .thresholds_style(c.common_builder.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.LINE))
    )


def baselines() -> object:
    return (
        c.default_timeseries()
        .title("Baselines and process start")
        .description("Baseline durations (config or recorded from healthy runs) and the child process start and "
                     "imports before each run.")
        .unit(units.Seconds)
        .min(0)
        .with_target(c.prom_query(q.figure(B.BENCHMARK_BASELINE_SECONDS, by="profile, source"),
                                  "baseline {{source}} {{profile}}", "A"))
        .with_target(c.prom_query(q.effective_baseline(by="profile"), "baseline in effect {{profile}}", "B"))
        .with_target(c.prom_query(q.figure(B.BENCHMARK_PROCESS_START_SECONDS, by="profile"),
                                  "process start {{profile}}", "C"))
    )


def energy() -> object:
    return (
        c.default_timeseries()
        .title("Energy per generation")
        .description("GPU energy used by the last successful run (NVML counter); none on a CPU.")
        .unit(units.Joule)
        .min(0)
        .height(8)
        .span(12)
        .with_target(c.prom_query(q.figure(B.GENERATION_ENERGY_JOULES, by="profile"), "{{profile}}"))
    )


# -- memory ------------------------------------------------------------------------------------------------

def peak_memory() -> object:
    return (
        c.default_timeseries()
        .title("Peak memory against GPU memory")
        .description("Peak memory of the last run (torch CUDA peak on a GPU, peak RSS on CPU) against the memory of "
                     "the selected GPUs.")
        .unit(units.BytesIEC)
        .min(0)
        .span(16)
        .with_target(c.prom_query(q.figure(B.GENERATION_PEAK_MEMORY_BYTES, by="profile"), "peak {{profile}}", "A"))
        .with_target(c.prom_query(q.figure(G.MEMORY_TOTAL_BYTES), "GPU {{gpu}} total", "B"))
        .override_by_query("B", [c.prop("custom.lineStyle", {"fill": "dash", "dash": [10, 10]}),
                                 c.prop("custom.fillOpacity", 0)])
    )


def peak_memory_ratio() -> object:
    return (
        c.default_bargauge()
        .title("Peak memory share")
        .description(f"Peak memory of the last run over its device's memory; WanGpuMemoryHeadroomLow fires above "
                     f"{c.MEMORY_HEADROOM_RATIO:.0%}.")
        .unit(units.PercentUnit)
        .min(0)
        .max(1)
        .span(8)
        .thresholds(c.thresholds((None, "green"), (c.MEMORY_HEADROOM_RATIO, "red")))
        .with_target(c.prom_query(q.figure(B.GENERATION_PEAK_MEMORY_RATIO, by="profile"), "{{profile}}", instant=True))
    )


# -- outcomes ------------------------------------------------------------------------------------------------

def outcome_stats() -> object:
    return (
        c.default_stat()
        .title("Last runs")
        .description("Per profile: last run succeeded, failures since the last success, output sanity pass ratio, "
                     "and whether the same seed reproduced the same output.")
        .unit(units.NoUnit)
        .height(5)
        .span(24)
        .text_mode(cm.BigValueTextMode.VALUE_AND_NAME)
        .with_target(c.prom_query(q.figure(B.BENCHMARK_LAST_RUN_SUCCESS, by="profile"),
                                  "last run {{profile}}", "A", instant=True))
        .with_target(c.prom_query(q.figure(B.BENCHMARK_CONSECUTIVE_FAILURES, by="profile"),
                                  "failures in a row {{profile}}", "B", instant=True))
        .with_target(c.prom_query(q.figure(B.BENCHMARK_OUTPUT_SANITY_RATIO, by="profile"),
                                  "sane output {{profile}}", "C", instant=True))
        .with_target(c.prom_query(q.figure(B.BENCHMARK_OUTPUT_REPRODUCIBLE, by="profile"),
                                  "reproducible {{profile}}", "D", instant=True))
        .with_target(c.prom_query(q.success_ratio("24h", by="profile"), "success 24h {{profile}}", "E", instant=True))
        .override_by_query("A", [c.prop("mappings", c.yes_no_mappings("ok", "failed"))])
        .override_by_query("B", [c.prop("thresholds", c.thresholds((None, "green"), (1, "orange"), (3, "red")))])
        .override_by_query("C", [c.prop("unit", units.PercentUnit),
                                 c.prop("thresholds", c.thresholds((None, "red"), (1, "green")))])
        .override_by_query("D", [c.prop("mappings", c.yes_no_mappings("yes", "no", no_color="orange"))])
        .override_by_query("E", [c.prop("unit", units.PercentUnit),
                                 c.prop("thresholds", c.thresholds((None, "red"), (c.SUCCESS_CRITICAL, "orange"),
                                                                   (c.SUCCESS_WARNING, "green")))])
    )


def success_over_time() -> object:
    return (
        c.default_timeseries()
        .title("Benchmark success ratio")
        .description("Share of runs that succeeded over the last 1 h and 24 h (recording rules the alerts use).")
        .unit(units.PercentUnit)
        .min(0)
        .max(1)
        .with_target(c.prom_query(q.success_ratio("24h", by="profile"), "24h {{profile}}", "A"))
        .with_target(c.prom_query(q.success_ratio("1h", by="profile"), "1h {{profile}}", "B"))
    )


def failures() -> object:
    return (
        c.default_bars()
        .title("Failures by reason (last hour)")
        .description("Failed benchmark runs over the last hour by reason: oom, timeout, crash, cuda_error, nan_output, "
                     "invalid_output, load_failed, model_missing.")
        .unit(units.Short)
        .with_target(c.prom_query(q.failures_by_reason(), "{{reason}}"))
    )


def sanity_failures() -> object:
    return (
        c.default_bars()
        .title("Output sanity failures by check")
        .description("Runs whose output failed a sanity check (finite, not black, not frozen, shape), per "
                     "$__rate_interval.")
        .unit(units.Short)
        .with_target(c.prom_query(q.events(B.BENCHMARK_OUTPUT_SANITY_FAILURES), "{{check}}", "A"))
        .with_target(c.prom_query(q.sanity_failures_last_hour(), "all checks, last hour {{profile}}", "B"))
    )


def skips() -> object:
    return (
        c.default_bars()
        .title("Skipped runs by reason")
        .description("Benchmark runs skipped (GPU busy with someone else's work, model missing, ...), per "
                     "$__rate_interval.")
        .unit(units.Short)
        .with_target(c.prom_query(q.events(B.BENCHMARK_SKIPPED), "{{reason}}"))
    )


def runs() -> object:
    return (
        c.default_timeseries()
        .title("Benchmark runs (last hour)")
        .description("Runs started in the last hour (recording rule), per profile.")
        .unit(units.Short)
        .min(0)
        .with_target(c.prom_query(q.runs_last_hour(by="profile"), "{{profile}}"))
    )


def build() -> dashboard.Dashboard:
    d = (
        dashboard.Dashboard(c.TITLES[c.UID_MODEL])
        .uid(c.UID_MODEL)
        .description("One Wan model: capabilities, health, generation time, memory, output sanity, failures and skips.")
        .tags([c.TAG, "model"])
        .editable()
        .refresh(c.REFRESH)
        .time("now-24h", "now")
        .timezone("browser")
        .timepicker(dashboard.TimePicker().refresh_intervals(c.REFRESH_INTERVALS))
        .variables(c.standard_variables(single_instance=True, single_model=True))
        .links(c.dashboard_links(c.UID_MODEL))
        .with_row(dashboard.Row("Capabilities"))
        .with_panel(published_figures())
        .with_panel(checkpoint_figures())
        .with_panel(capabilities())
        .with_panel(vram_needs())
        .with_panel(lora_and_fit())
        .with_row(dashboard.Row("Health"))
        .with_panel(health_over_time())
        .with_panel(health_checks())
        .with_panel(integrity())
        .with_panel(issues())
        .with_panel(check_timing())
        .with_panel(health_check_durations())
        .with_row(dashboard.Row("Generation"))
        .with_panel(generation_time())
        .with_panel(generation_heatmap())
        .with_panel(phases())
        .with_panel(step_time())
        .with_panel(flops_per_step())
        .with_panel(utilisation())
        .with_panel(realtime())
        .with_panel(throughput())
        .with_panel(against_baseline())
        .with_panel(baselines())
        .with_panel(energy())
        .with_row(dashboard.Row("Memory"))
        .with_panel(peak_memory())
        .with_panel(peak_memory_ratio())
        .with_row(dashboard.Row("Outcomes"))
        .with_panel(outcome_stats())
        .with_panel(success_over_time())
        .with_panel(failures())
        .with_panel(sanity_failures())
        .with_panel(skips())
        .with_panel(runs())
        .with_row(dashboard.Row("Ranks of one generation (traffic)"))
    )
    for p in ranks(job=False):
        d = d.with_panel(p)
    return d
