"""Comparison: model A against model B (each on an instance of its own), side by side."""

from __future__ import annotations

import functools
from typing import Callable

from grafana_foundation_sdk.builders import dashboard
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import units
from wan_exporter.contract import benchmark as bench
from wan_exporter.contract import efficiency as eff
from wan_exporter.contract import exporter as X
from wan_exporter.contract import models as M
from wan_exporter.contract.family import Family
from grafana_foundation_sdk.models.dashboard import VariableSort

from . import common as c
from . import queries as q

A = {"model": "model_a", "instance": "instance_a"}
B = {"model": "model_b", "instance": "instance_b"}
BOTH = q.models_pair()
INSTANCES = q.label_values(X.BUILD_INFO, "instance", "instance")  # within the dashboard's instance filter
TIMES = "suffix:×"


def variables() -> list:
    return [
        *c.standard_variables(),
        c.query_variable("instance_a", "Instance A", INSTANCES, multi=False, include_all=False),
        c.query_variable("model_a", "Model A", q.label_values(M.INFO, "model", "instance_a"),
                         multi=False, include_all=False),
        c.query_variable("instance_b", "Instance B", INSTANCES, multi=False, include_all=False),
        # Sorted the other way, so B starts as a different model than A.
        c.query_variable("model_b", "Model B", q.label_values(M.INFO, "model", "instance_b"),
                         multi=False, include_all=False)
        .sort(VariableSort.ALPHABETICAL_DESC),
    ]


def _ab(fn: Callable[..., str] | Family, legend: str, ref: str = "A", **kw):
    """The same figure for A and for B: two targets (a family is read through ``q.figure``)."""
    if isinstance(fn, Family):
        fn = functools.partial(q.figure, fn)
    return [
        c.prom_query(fn(**A, **kw), f"A ${{model_a}} {legend}", ref),
        c.prom_query(fn(**B, **kw), f"B ${{model_b}} {legend}", chr(ord(ref) + 1)),
    ]


def side_by_side(title: str, description: str, unit: str, fn, legend: str = "{{profile}}", **kw) -> object:
    p = c.default_timeseries().title(title).description(description).unit(unit)
    for t in _ab(fn, legend, **kw):
        p = p.with_target(t)
    return p.override_by_query("B", [c.prop("custom.lineStyle", {"fill": "dash", "dash": [10, 10]})])


def generation_time() -> object:
    p = (
        c.default_timeseries()
        .title("Generation time: A and B")
        .description("p50 and p95 over 24 h per profile (recording rules). Profiles differ in resolution and frames: "
                     "compare pixels per second across different profiles.")
        .unit(units.Seconds)
        .min(0)
    )
    for t in _ab(lambda **kw: q.generation_time(q.R_P95_24H, by="profile", **kw), "p95 {{profile}}", "A"):
        p = p.with_target(t)
    for t in _ab(lambda **kw: q.generation_time(q.R_P50_24H, by="profile", **kw), "p50 {{profile}}", "C"):
        p = p.with_target(t)
    return p.override_by_query("B", [c.prop("custom.lineStyle", {"fill": "dash", "dash": [10, 10]})]) \
            .override_by_query("D", [c.prop("custom.lineStyle", {"fill": "dash", "dash": [10, 10]})])


def speed_ratio() -> object:
    return (
        c.default_stat()
        .title("Speed ratio A / B")
        .description("How many times as fast A is as B: best pixels per second (resolution-neutral), and mean "
                     "generation time over 24 h of the profiles both run (B's time over A's).")
        .unit(TIMES)
        .decimals(2)
        .height(8)
        .span(6)
        .text_mode(cm.BigValueTextMode.VALUE_AND_NAME)
        .thresholds(c.thresholds((None, "orange"), (1, "green")))
        .with_target(c.prom_query(q.ratio_a_over_b(q.best_pixels_per_second(**A), q.best_pixels_per_second(**B)),
                                  "pixels per second", "A", instant=True))
        .with_target(c.prom_query(q.time_ratio_by_profile(A, B), "time, {{profile}}", "B", instant=True))
    )


def pixels_per_second() -> object:
    return side_by_side("Pixels per second: A and B",
                        "Pixels (width x height x frames) per second of generation, last successful run per profile.",
                        c.PIXELS_PER_SECOND, bench.GENERATION_PIXELS_PER_SECOND, by="profile").span(18)


def flops_utilization() -> object:
    return side_by_side("Model FLOPs utilisation: A and B",
                        "Achieved FLOP/s in the denoise phase over the GPU's datasheet peak dense tensor rate, last "
                        "successful run per profile; absent on a CPU and for GPUs without a datasheet row.",
                        units.PercentUnit, eff.GENERATION_MODEL_FLOPS_UTILIZATION_RATIO, by="profile")


def realtime_factor() -> object:
    return side_by_side("Real-time factor: A and B",
                        "Seconds of video per second of generation, last successful run per profile; 1 is real time.",
                        TIMES, eff.GENERATION_REALTIME_FACTOR, by="profile")


def peak_memory() -> object:
    return side_by_side("Peak memory: A and B", "Peak memory of the last run per profile.", units.BytesIEC,
                        bench.GENERATION_PEAK_MEMORY_BYTES, by="profile").span(18)


def memory_ratio() -> object:
    return (
        c.default_stat()
        .title("Memory ratio A / B")
        .description("Lowest peak memory of A over B's (below 1: A needs less).")
        .unit(TIMES)
        .decimals(2)
        .height(8)
        .span(6)
        .thresholds(c.thresholds((None, "green"), (1, "orange")))
        .with_target(c.prom_query(q.ratio_a_over_b(q.lowest_peak_memory(**A), q.lowest_peak_memory(**B)),
                                  "peak memory", instant=True))
    )


def memory_share() -> object:
    p = (
        c.default_stat()
        .title("Peak memory share")
        .description("Peak memory of the last run over its device's memory, per profile.")
        .unit(units.PercentUnit)
        .height(8)
        .span(6)
        .text_mode(cm.BigValueTextMode.VALUE_AND_NAME)
        .thresholds(c.thresholds((None, "green"), (c.MEMORY_HEADROOM_RATIO, "red")))
    )
    for t in _ab(bench.GENERATION_PEAK_MEMORY_RATIO, "{{profile}}", by="profile"):
        p = p.with_target(t.instant())
    return p


def success() -> object:
    p = (
        c.default_stat()
        .title("Success over 24 h")
        .description("Share of benchmark runs that succeeded over 24 h (runs and failures summed, then divided).")
        .unit(units.PercentUnit)
        .decimals(1)
        .height(6)
        .span(8)
        .text_mode(cm.BigValueTextMode.VALUE_AND_NAME)
        .thresholds(c.thresholds((None, "red"), (c.SUCCESS_CRITICAL, "orange"), (c.SUCCESS_WARNING, "green")))
    )
    for t in _ab(q.success_ratio_24h, "", "A"):
        p = p.with_target(t.instant())
    return p


def stability() -> object:
    p = (
        c.default_stat()
        .title("Stability")
        .description("Spread of recent successful durations (standard deviation over mean) and the 24 h variation "
                     "of seconds per step (recording rule); lower is steadier.")
        .unit(units.PercentUnit)
        .decimals(1)
        .height(6)
        .span(16)
        .text_mode(cm.BigValueTextMode.VALUE_AND_NAME)
        .thresholds(c.thresholds((None, "green"), (0.1, "orange"), (0.25, "red")))
    )
    for t in _ab(bench.BENCHMARK_DURATION_SPREAD_RATIO, "duration spread {{profile}}", "A", by="profile"):
        p = p.with_target(t.instant())
    for t in _ab(q.step_time_variation, "step time variation {{profile}}", "C", by="profile"):
        p = p.with_target(t.instant())
    return p


def capability_table(title: str, description: str, expr: str, row: str, unit: str, ref: str = "A") -> object:
    return (
        c.default_table()
        .title(title)
        .description(description)
        .unit(unit)
        .height(10)
        .span(12)
        .with_target(c.table_query(expr, ref))
        .with_transformation(c.grouping_to_matrix(row, "model"))
    )


def capabilities() -> object:
    return (
        capability_table("Capabilities: A and B",
                         "Every capability either model has; an empty cell is a difference.",
                         q.capability_matrix(BOTH), "capability", units.NoUnit)
        .mappings(c.value_map({1: ("✓", "green")}))
        .no_value("—")
    )


def differences() -> object:
    return (
        c.default_stat()
        .title("Capabilities only one model has")
        .description("Count of the rows of the capability table that only A or only B has.")
        .unit(units.NoUnit)
        .height(4)
        .span(12)
        .thresholds(c.thresholds((None, "green"), (1, "orange")))
        .with_target(c.prom_query(q.capability_differences(BOTH), "differences", instant=True))
    )


def figures() -> object:
    return capability_table("Published figures: A and B", "Defaults and structure from the catalog and checkpoint.",
                            q.count_figures(BOTH), "figure", units.NoUnit).height(8)


def parameters() -> object:
    return capability_table("Parameters: A and B", "Published and checkpoint parameter counts.",
                            q.parameter_figures(BOTH), "figure", units.SiShort).height(6)


def vram() -> object:
    return capability_table("VRAM needs: A and B", "Published minimum GPU memory per offload mode.",
                            q.vram_figures(BOTH), "figure", units.BytesIEC).height(6)


def recommendations() -> object:
    return (
        c.default_table()
        .title("Recommendation per use case and priority")
        .description("Score 0-1 of every healthy, benchmarked candidate (1 = best) for each use case and priority: "
                     "speed = pixels per second, memory = lowest peak, quality = a scale proxy (published active "
                     "parameters x native pixels x output sanity), never a measurement of visual quality.")
        .unit(units.PercentUnit)
        .decimals(0)
        .height(10)
        .span(24)
        .thresholds(c.thresholds((None, "red"), (0.5, "orange"), (0.9, "green")))
        .cell_options(cm.TableBarGaugeCellOptions(mode=cm.BarGaugeDisplayMode.GRADIENT))
        .with_target(c.table_query(q.recommendation_scores()))
        .with_transformation(c.grouping_to_matrix("use", "model"))
        .override_by_name("use\\model", [c.prop("custom.cellOptions", {"type": "auto"}),
                                         c.prop("displayName", "use case / priority")])
    )


# -- formats side by side: the forms of model A (models compared with it through models[].compare_to) --

FORMS_DOC = ("Models configured with compare_to: ${model_a} on instance A (the same weights in another form, say "
             "fp8-scaled or GGUF Q8_0 files of the bf16 model).")


def forms_table() -> object:
    return (
        c.default_table()
        .title("Forms on instance A: what each last run loaded")
        .unit(units.NoUnit)
        .description("Every model's last run on instance A: checkpoint form, how its denoiser weights are stored "
                     "(most parameter bytes) and the dtype it computed in; fp8-scaled weights are dequantised to it "
                     "at load.")
        .height(8)
        .span(24)
        .with_target(c.table_query(q.run_formats("instance_a")))
        .with_transformation(c.organize(exclude=("Time", "Value"),
                                        order=("model", "profile", "form", "weight_format", "compute_dtype")))
    )


def form_stat(title: str, description: str, unit: str, expr: str, thresholds: object, decimals: int = 2) -> object:
    return (
        c.default_stat()
        .title(title)
        .description(description)
        .unit(unit)
        .decimals(decimals)
        .height(8)
        .span(6)
        .text_mode(cm.BigValueTextMode.VALUE_AND_NAME)
        .thresholds(thresholds)
        .with_target(c.prom_query(expr, "{{model}} {{profile}}", instant=True))
    )


def forms_step_time() -> object:
    return form_stat("Step time over ${model_a}", FORMS_DOC + " Seconds per denoising step of the last successful "
                     "run over ${model_a}'s, same profile (recording rule); above 1 is slower.", TIMES,
                     q.step_time_over_reference("model_a", "instance_a"), c.thresholds((None, "green"), (1.05, "orange")))


def forms_memory() -> object:
    return form_stat("Peak memory over ${model_a}", FORMS_DOC + " Peak memory of the last run over ${model_a}'s, "
                     "same profile (recording rule); below 1 needs less.", TIMES,
                     q.peak_memory_over_reference("model_a", "instance_a"), c.thresholds((None, "green"), (1, "orange")))


def forms_max_difference() -> object:
    return form_stat("Max pixel difference from ${model_a}", FORMS_DOC + " Largest absolute difference of any pixel "
                     "channel of the decoded 8-bit frames (0-1 scale) against ${model_a}'s last output of the same "
                     "seed and inputs, computed by the benchmark at run time.", units.PercentUnit,
                     q.output_max_abs_difference("model_a", "instance_a"),
                     c.thresholds((None, "green"), (0.1, "orange"), (0.5, "red")), decimals=1)


def forms_psnr() -> object:
    return form_stat("PSNR against ${model_a}", FORMS_DOC + " PSNR of the decoded 8-bit frames against ${model_a}'s "
                     "last output of the same seed and inputs, computed by the benchmark at run time; higher is "
                     "closer, +Inf identical.", "dB", q.output_psnr("model_a", "instance_a"),
                     c.thresholds((None, "red"), (20, "orange"), (30, "green")), decimals=1)


def build() -> dashboard.Dashboard:
    return (
        dashboard.Dashboard(c.TITLES[c.UID_COMPARISON])
        .uid(c.UID_COMPARISON)
        .description("Model A against model B: time, speed, memory, success, stability, the forms of model A "
                     "side by side, capabilities and the recommendation per use case.")
        .tags([c.TAG, "comparison"])
        .editable()
        .refresh(c.REFRESH)
        .time("now-24h", "now")
        .timezone("browser")
        .timepicker(dashboard.TimePicker().refresh_intervals(c.REFRESH_INTERVALS))
        .variables(variables())
        .links(c.dashboard_links(c.UID_COMPARISON))
        .with_row(dashboard.Row("Speed"))
        .with_panel(generation_time().span(18))
        .with_panel(speed_ratio())
        .with_panel(pixels_per_second())
        .with_panel(memory_ratio())
        .with_panel(flops_utilization())
        .with_panel(realtime_factor())
        .with_row(dashboard.Row("Memory and reliability"))
        .with_panel(peak_memory())
        .with_panel(memory_share())
        .with_panel(success())
        .with_panel(stability())
        .with_row(dashboard.Row("Formats side by side"))
        .with_panel(forms_step_time())
        .with_panel(forms_memory())
        .with_panel(forms_max_difference())
        .with_panel(forms_psnr())
        .with_panel(forms_table())
        .with_row(dashboard.Row("Capabilities"))
        .with_panel(capabilities())
        .with_panel(differences())
        .with_panel(figures())
        .with_panel(parameters())
        .with_panel(vram())
        .with_row(dashboard.Row("Recommendation"))
        .with_panel(recommendations())
    )
