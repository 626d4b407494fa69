"""Fleet and history: every instance and GPU, rollups, 7- and 30-day trends, regressions against baseline."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import units
from wan_exporter.contract import benchmark as B
from wan_exporter.contract import exporter as X
from wan_exporter.contract import gpu as G
from wan_exporter.contract import host
from wan_exporter.contract import models as M

from . import common as c
from . import queries as q

TIMES = "suffix:×"


# -- rollups -----------------------------------------------------------------------------------------

def rollup(title: str, description: str, unit: str, expr: str, legend: str, **kw) -> object:
    return (
        c.default_stat()
        .title(title)
        .description(description)
        .unit(unit)
        .height(4)
        .span(kw.pop("span", 4))
        .graph_mode(cm.BigValueGraphMode.AREA)
        .with_target(c.prom_query(expr, legend))
    )


def rollups() -> list:
    return [
        rollup("Instances up", "Exporter instances Prometheus scrapes successfully.", units.NoUnit,
               q.fleet_instances_up(), "up"),
        rollup("Exporter instances", "Instances publishing wan_exporter_build_info.", units.NoUnit,
               q.rollup("count", X.BUILD_INFO), "instances"),
        rollup("GPUs", "GPUs NVML reports on the selected instances.", units.NoUnit,
               q.rollup("sum", G.DEVICES, or_zero=True), "GPUs"),
        rollup("Models", "Configured models on the selected instances.", units.NoUnit,
               q.rollup("count", M.INFO), "models"),
        rollup("GPU memory in use", "All GPU memory in use over all GPU memory (recording rules).", units.PercentUnit,
               q.fleet_gpu_memory_used_ratio(), "used"),
        rollup("Benchmark success, 24 h", "Runs that succeeded over runs, all models (recording rules).",
               units.PercentUnit, q.fleet_success_ratio_24h(), "success")
        .thresholds(c.thresholds((None, "red"), (c.SUCCESS_CRITICAL, "orange"), (c.SUCCESS_WARNING, "green"))),
        rollup("Benchmark runs, 24 h", "Benchmark runs started over the last 24 h (recording rule).", units.Short,
               q.fleet_runs_24h(), "runs", span=6),
        rollup("GPU energy, 24 h", "Energy all selected GPUs consumed over the last 24 h.", units.Joule,
               q.fleet_energy(), "energy", span=6),
        c.health_state_stat("Models by health state",
                            "Models of the selected instances in each health state (recording rule).",
                            q.models_by_health_state(), span=12, height=4),
    ]


# -- inventory -----------------------------------------------------------------------------------------

def instances() -> object:
    return (
        c.default_table()
        .title("Instances")
        .description("Every exporter instance: versions, up, models, GPUs and their load (recording rules), host "
                     "load and the worst model health.")
        .unit(units.NoUnit)
        .height(8)
        .span(24)
        .with_target(c.table_query(q.figure(X.BUILD_INFO), "A"))
        .with_target(c.table_query(q.target("up"), "B"))
        .with_target(c.table_query(q.figure(X.MODELS_CONFIGURED), "C"))
        .with_target(c.table_query(q.gpu_count(), "D"))
        .with_target(c.table_query(q.instance_figure(q.R_GPU_UTILIZATION), "E"))
        .with_target(c.table_query(q.instance_figure(q.R_GPU_MEMORY_USED_RATIO), "F"))
        .with_target(c.table_query(q.instance_figure(q.R_GPU_POWER), "G"))
        .with_target(c.table_query(q.instance_figure(q.R_GPU_TEMPERATURE_MAX), "H"))
        .with_target(c.table_query(q.figure(host.CPU_UTILIZATION_RATIO), "I"))
        .with_target(c.table_query(q.host_memory_available_ratio(), "J"))
        .with_target(c.table_query(q.health_state_code(by="instance"), "K"))
        .with_transformation(c.merge())
        .with_transformation(c.organize(
            exclude=("Time", "Value #A"),
            rename={"Value #B": "up", "Value #C": "models", "Value #D": "GPUs", "Value #E": "GPU util",
                    "Value #F": "GPU memory", "Value #G": "GPU power", "Value #H": "hottest GPU",
                    "Value #I": "host CPU", "Value #J": "host memory free", "Value #K": "worst health"},
            order=("instance", "Value #B", "version", "Value #C", "Value #K", "Value #D", "Value #E", "Value #F",
                   "Value #G", "Value #H", "Value #I", "Value #J"),
        ))
        .override_by_name("up", [c.prop("mappings", c.yes_no_mappings("up", "down")),
                                 c.prop("custom.cellOptions", {"type": "color-text"})])
        .override_by_name("worst health", [c.prop("mappings", c.health_mappings()),
                                           c.prop("custom.cellOptions", {"type": "color-text"})])
        .override_by_regexp("GPU util|GPU memory|host CPU|host memory free", [c.prop("unit", units.PercentUnit)])
        .override_by_name("GPU power", [c.prop("unit", units.Watt)])
        .override_by_name("hottest GPU", [c.prop("unit", units.Celsius)])
        .override_by_name("instance", [c.field_link("Overview of ${__value.raw}",
                                                    f"{c.dashboard_url(c.UID_OVERVIEW)}?var-instance=${{__value.raw}}"
                                                    "&${datasource:queryparam}&${__url_time_range}")])
    )


def gpus() -> object:
    return (
        c.default_table()
        .title("GPUs")
        .description("Every GPU of the selected instances: identity, whether NVML reports it lost (then it has "
                     "no other figure), memory, load, temperature, power, processes, SM clock.")
        .unit(units.NoUnit)
        .height(8)
        .span(24)
        .with_target(c.table_query(q.figure(G.INFO), "A"))
        .with_target(c.table_query(q.figure(G.MEMORY_TOTAL_BYTES), "B"))
        .with_target(c.table_query(q.gpu_memory_used_ratio(), "C"))
        .with_target(c.table_query(q.figure(G.UTILIZATION_RATIO), "D"))
        .with_target(c.table_query(q.figure(G.TEMPERATURE_CELSIUS), "E"))
        .with_target(c.table_query(q.figure(G.POWER_WATTS), "F"))
        .with_target(c.table_query(q.figure(G.PROCESSES), "G"))
        .with_target(c.table_query(q.figure(G.SM_CLOCK_HERTZ), "H"))
        .with_target(c.table_query(q.figure(G.LOST), "I"))
        .with_transformation(c.merge())
        .with_transformation(c.organize(
            exclude=("Time", "Value #A", "job", "__name__"),
            rename={"Value #B": "memory", "Value #C": "memory used", "Value #D": "utilization",
                    "Value #E": "temperature", "Value #F": "power", "Value #G": "processes", "Value #H": "SM clock",
                    "Value #I": "lost"},
            order=("instance", "gpu", "name", "Value #I", "Value #B", "Value #C", "Value #D", "Value #E", "Value #F",
                   "Value #G", "Value #H"),
        ))
        .override_by_name("lost", [c.prop("mappings", c.yes_no_mappings("lost", "-", yes_color="red",
                                                                        no_color="transparent"))])
        .override_by_name("memory", [c.prop("unit", units.BytesIEC)])
        .override_by_regexp("memory used|utilization", [c.prop("unit", units.PercentUnit)])
        .override_by_name("temperature", [
            c.prop("unit", units.Celsius),
            c.prop("thresholds", c.thresholds((None, "green"), (c.GPU_HOT_CELSIUS, "red"))),
            c.prop("custom.cellOptions", {"type": "color-text"}),
        ])
        .override_by_name("power", [c.prop("unit", units.Watt)])
        .override_by_name("SM clock", [c.prop("unit", units.Hertz)])
    )


def throttling() -> object:
    return (
        c.default_state_timeline()
        .title("GPU clock throttling")
        .description("1 while a clock-throttle reason is active (gpu_idle and sw_power_cap are normal).")
        .unit(units.NoUnit)
        .height(8)
        .mappings(c.yes_no_mappings("active", "-", yes_color="orange", no_color="transparent"))
        .with_target(c.prom_query(q.figure(G.THROTTLE_REASON_ACTIVE), "{{instance}} GPU {{gpu}} {{reason}}"))
    )


def gpu_errors() -> object:
    return (
        c.default_bars()
        .title("GPU errors")
        .description("New ECC errors (by type) and XID events per $__rate_interval.")
        .unit(units.Short)
        .height(8)
        .with_target(c.prom_query(q.gpu_errors(), "{{instance}} GPU {{gpu}} {{kind}}"))
    )


# -- history --------------------------------------------------------------------------------------------------

def trend_panels(window: str) -> list:
    def panel(title: str, description: str, unit: str, expr: str) -> object:
        return (
            c.default_timeseries()
            .title(f"{title}, last {window}")
            .description(description)
            .unit(unit)
            .span(8)
            .time_from(window)
            .interval("1h")
            .with_target(c.prom_query(expr, "{{model}}"))
        )

    return [
        panel("p95 generation time", "p95 over 24 h windows, slowest profile and instance (recording rule).",
              units.Seconds, q.trend(q.R_P95_24H)),
        panel("Benchmark success", "Success ratio over 24 h windows, worst profile (recording rule).",
              units.PercentUnit, q.success_ratio("24h", by="model")).min(0).max(1),
        panel("Generation time over baseline", "Last successful run over its baseline, worst profile (recording "
              "rule); above 1 is slower than baseline.", TIMES, q.trend(q.R_LAST_OVER_BASELINE))
        .thresholds(c.thresholds((None, "green"), (c.SLOWDOWN_RATIO, "red")))
        .thresholds_style(c.common_builder.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.LINE)),
    ]


def regressions() -> object:
    return (
        c.default_table()
        .title("Regressions against baseline")
        .description(f"Per instance, model and profile: the last run, the 24 h p95 and their 7- and 30-day averages, "
                     f"each over the baseline (recording rules). Red from {c.SLOWDOWN_RATIO:g}x, where "
                     f"WanGenerationSlow fires.")
        .unit(TIMES)
        .decimals(2)
        .height(10)
        .span(24)
        .thresholds(c.thresholds((None, "green"), (1.1, "orange"), (c.SLOWDOWN_RATIO, "red")))
        .cell_options(cm.TableColoredBackgroundCellOptions(mode=cm.TableCellBackgroundDisplayMode.BASIC))
        .with_target(c.table_query(q.slowdown(q.R_LAST_OVER_BASELINE), "A"))
        .with_target(c.table_query(q.slowdown(q.R_P95_24H_OVER_BASELINE), "B"))
        .with_target(c.table_query(q.avg_over(q.R_P95_24H_OVER_BASELINE, "7d"), "C"))
        .with_target(c.table_query(q.avg_over(q.R_P95_24H_OVER_BASELINE, "30d"), "D"))
        .with_target(c.table_query(q.effective_baseline(by="instance, model, profile"), "E"))
        .with_transformation(c.merge())
        .with_transformation(c.organize(
            exclude=("Time",),
            rename={"Value #A": "last run", "Value #B": "p95 24h", "Value #C": "p95 24h, 7d avg",
                    "Value #D": "p95 24h, 30d avg", "Value #E": "baseline"},
            order=("instance", "model", "profile", "Value #A", "Value #B", "Value #C", "Value #D", "Value #E"),
        ))
        .sort_by([c.common_builder.TableSortByFieldState().display_name("last run").desc(True)])
        .override_by_name("baseline", [c.prop("unit", units.Seconds), c.prop("custom.cellOptions", {"type": "auto"})])
        .override_by_name("model", [c.model_column_link()])
    )


def performance_ratio() -> object:
    return (
        c.default_timeseries()
        .title("Performance ratio")
        .description("Baseline duration over the last successful duration (1 = as fast as baseline, below 1 slower).")
        .unit(TIMES)
        .span(24)
        .with_target(c.prom_query(q.figure(B.BENCHMARK_PERFORMANCE_RATIO, by="instance, model, profile"),
                                  "{{instance}} {{model}} {{profile}}"))
    )


def build() -> dashboard.Dashboard:
    d = (
        dashboard.Dashboard(c.TITLES[c.UID_FLEET])
        .uid(c.UID_FLEET)
        .description("Every instance and GPU, rollups, 7- and 30-day trends and regressions against baseline.")
        .tags([c.TAG, "fleet"])
        .editable()
        .refresh(c.REFRESH)
        .time("now-7d", "now")
        .timezone("browser")
        .timepicker(dashboard.TimePicker().refresh_intervals(c.REFRESH_INTERVALS))
        .variables(c.standard_variables())
        .links(c.dashboard_links(c.UID_FLEET))
        .with_row(dashboard.Row("Rollups"))
    )
    for p in rollups():
        d = d.with_panel(p)
    d = d.with_row(dashboard.Row("Instances and GPUs")).with_panel(instances()).with_panel(gpus())
    d = d.with_panel(throttling()).with_panel(gpu_errors())
    d = d.with_row(dashboard.Row("Regressions against baseline"))
    d = d.with_panel(regressions()).with_panel(performance_ratio())
    for window in ("7d", "30d"):
        d = d.with_row(dashboard.Row(f"Trends, {window}"))
        for p in trend_panels(window):
            d = d.with_panel(p)
    return d
