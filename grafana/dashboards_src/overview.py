"""Overview: every model at a glance, alerts, GPUs and the exporter's own health."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import units
from wan_exporter.contract import exporter as X
from wan_exporter.contract import gpu as G

from . import common as c
from . import queries as q


def model_card() -> object:
    """One card per selected model (repeated over $model); a click opens the model's detail."""
    return (
        c.default_stat()
        .title("${model}")
        .description("Health state (worst over the selected instances), age of the last successful benchmark, "
                     "share of benchmark runs that succeeded over 24 h and p95 generation time over 24 h "
                     "(slowest profile). Click for the model's detail.")
        .repeat("model")
        .repeat_direction("h")
        .max_per_row(4)
        .height(5)
        .span(6)
        .text_mode(cm.BigValueTextMode.VALUE_AND_NAME)
        .color_mode(cm.BigValueColorMode.BACKGROUND)
        .orientation(cm.VizOrientation.HORIZONTAL)
        .unit(units.NoUnit)
        .with_target(c.prom_query(q.health_state_code(), "health", "A", instant=True))
        .with_target(c.prom_query(q.last_success_age(), "last success", "B", instant=True))
        .with_target(c.prom_query(q.success_ratio_24h(), "success 24h", "C", instant=True))
        .with_target(c.prom_query(q.generation_time(q.R_P95_24H, by="model"), "p95 24h", "D", instant=True))
        .override_by_query("A", [
            c.prop("unit", units.NoUnit),
            c.prop("mappings", c.health_mappings()),
            c.prop("color", {"mode": "thresholds"}),
            c.prop("thresholds", c.thresholds((None, "green"), (1, "orange"), (2, "red"), (3, "purple"))),
        ])
        .override_by_query("B", [
            c.prop("unit", units.DurationSeconds),
            c.prop("thresholds", c.thresholds((None, "green"), (c.STALE_SECONDS, "red"))),
        ])
        .override_by_query("C", [
            c.prop("unit", units.PercentUnit),
            c.prop("decimals", 1),
            c.prop("thresholds", c.thresholds((None, "red"), (c.SUCCESS_CRITICAL, "orange"),
                                              (c.SUCCESS_WARNING, "green"))),
        ])
        .override_by_query("D", [
            c.prop("unit", units.Seconds),
            c.prop("thresholds", c.thresholds((None, "blue"))),
        ])
        .no_value("not measured yet")
        .links([c.panel_link("Model detail: ${model}", c.model_detail_url())])
    )


def models_by_state() -> object:
    return c.health_state_stat("Models by health state",
                               "How many models of the selected instances are in each health state.",
                               q.models_by_health_state(), span=6, height=5)


def alert_list() -> object:
    return (
        c.alert_list()
        .title("Alert rules firing or pending (Prometheus)")
        .description("Grafana's alert list over the Prometheus datasource's rules. Silences live in the "
                     "Alertmanager: see the panel links and the silenced count.")
        .links(c.alerting_links())
    )


def alerts_firing() -> object:
    return (
        c.default_table()
        .title("Firing alerts")
        .description("ALERTS from Prometheus: every alert firing now, with its labels. Watchdog (always firing, "
                     "to prove the pipeline works) is included on purpose.")
        .span(12)
        .unit(units.NoUnit)
        .with_target(c.table_query(q.alerts_firing()))
        .with_transformation(c.organize(exclude=("Time", "Value"),
                                        order=("alertname", "severity", "instance", "model", "gpu")))
        .links(c.alerting_links())
    )


def alertmanager_counts() -> object:
    return (
        c.default_stat()
        .title("Alertmanager: active and silenced")
        .description("Alerts the Alertmanager holds: active (notified) and suppressed (silenced or inhibited). "
                     "Read from the Alertmanager's own metrics, so Prometheus must scrape it.")
        .unit(units.NoUnit)
        .span(12)
        .height(5)
        .text_mode(cm.BigValueTextMode.VALUE_AND_NAME)
        .with_target(c.prom_query(q.alertmanager_alerts("active"), "active", "A", instant=True))
        .with_target(c.prom_query(q.alertmanager_alerts("suppressed"), "silenced / inhibited", "B", instant=True))
        .override_by_query("B", [c.prop("color", {"mode": "fixed", "fixedColor": "purple"})])
        .links(c.alerting_links())
    )


GPU_LEGEND = "{{instance}} GPU {{gpu}}"


def gpu_utilization() -> object:
    return (
        c.default_timeseries()
        .title("GPU utilization")
        .description("Fraction of the sample period a kernel was running, per GPU.")
        .unit(units.PercentUnit)
        .min(0)
        .max(1)
        .with_target(c.prom_query(q.figure(G.UTILIZATION_RATIO), GPU_LEGEND))
    )


def gpu_memory() -> object:
    return (
        c.default_timeseries()
        .title("GPU memory used and total")
        .description("Memory in use by every process, against each GPU's total.")
        .unit(units.BytesIEC)
        .min(0)
        .with_target(c.prom_query(q.figure(G.MEMORY_USED_BYTES), "used " + GPU_LEGEND, "A"))
        .with_target(c.prom_query(q.figure(G.MEMORY_TOTAL_BYTES), "total " + GPU_LEGEND, "B"))
        .override_by_query("B", [c.prop("custom.lineStyle", {"fill": "dash", "dash": [10, 10]}),
                                 c.prop("custom.fillOpacity", 0)])
    )


def gpu_temperature() -> object:
    return (
        c.default_timeseries()
        .title("GPU temperature")
        .description(f"Core temperature; the WanGpuHot alert fires above {c.GPU_HOT_CELSIUS:g} °C.")
        .unit(units.Celsius)
        .with_target(c.prom_query(q.figure(G.TEMPERATURE_CELSIUS), GPU_LEGEND))
        .thresholds(c.thresholds((None, "green"), (c.GPU_HOT_CELSIUS, "red")))
        .thresholds_style(c.common_builder.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.LINE))
    )


def gpu_power() -> object:
    return (
        c.default_timeseries()
        .title("GPU power and limit")
        .description("Power draw against the enforced power limit.")
        .unit(units.Watt)
        .min(0)
        .with_target(c.prom_query(q.figure(G.POWER_WATTS), "draw " + GPU_LEGEND, "A"))
        .with_target(c.prom_query(q.figure(G.POWER_LIMIT_WATTS), "limit " + GPU_LEGEND, "B"))
        .override_by_query("B", [c.prop("custom.lineStyle", {"fill": "dash", "dash": [10, 10]}),
                                 c.prop("custom.fillOpacity", 0)])
    )


def exporter_up() -> object:
    return (
        c.default_stat()
        .title("Exporter up")
        .description("Prometheus' own up series for each selected exporter instance.")
        .unit(units.NoUnit)
        .height(5)
        .span(6)
        .text_mode(cm.BigValueTextMode.VALUE_AND_NAME)
        .color_mode(cm.BigValueColorMode.BACKGROUND)
        .mappings(c.yes_no_mappings("up", "down"))
        .with_target(c.prom_query(q.target("up"), "{{instance}}", instant=True))
    )


def config_reload() -> object:
    return (
        c.default_stat()
        .title("Config reload")
        .description("1 when the last config (re)load succeeded; time since the last good load.")
        .unit(units.NoUnit)
        .height(6)
        .span(6)
        .text_mode(cm.BigValueTextMode.VALUE_AND_NAME)
        .with_target(c.prom_query(q.figure(X.CONFIG_LAST_RELOAD_SUCCESSFUL),
                                  "reload ok {{instance}}", "A", instant=True))
        .with_target(c.prom_query(q.age(X.CONFIG_LAST_RELOAD_SUCCESS_TIMESTAMP_SECONDS),
                                  "loaded {{instance}}", "B", instant=True))
        .override_by_query("A", [c.prop("mappings", c.yes_no_mappings("ok", "failed"))])
        .override_by_query("B", [c.prop("unit", units.DurationSeconds),
                                 c.prop("color", {"mode": "fixed", "fixedColor": "text"})])
    )


def collector_success() -> object:
    return (
        c.default_state_timeline()
        .title("Collector success")
        .description("1 when a collector's last background cycle succeeded (worst over the selected instances).")
        .unit(units.NoUnit)
        .height(6)
        .span(12)
        .mappings(c.yes_no_mappings("ok", "failing"))
        .with_target(c.prom_query(q.figure(X.COLLECTOR_SUCCESS), "{{collector}}"))
    )


def collector_errors() -> object:
    return (
        c.default_table()
        .title("Collector errors")
        .description("Collectors failing now and why (library_missing on a host without an NVIDIA GPU is expected).")
        .unit(units.NoUnit)
        .height(6)
        .span(8)
        .with_target(c.table_query(q.figure(X.COLLECTOR_ERROR_INFO)))
        .with_transformation(c.organize(exclude=("Time", "Value"), order=("instance", "collector", "reason")))
    )


def scheduled_tasks() -> object:
    return (
        c.default_table()
        .title("Scheduled tasks")
        .description("Each background task (collectors, health checks, benchmarks): how long its last run took and "
                     "how long ago it last finished without error (worst over the selected instances).")
        .unit(units.Seconds)
        .height(6)
        .span(8)
        .with_target(c.table_query(q.figure(X.JOB_LAST_DURATION_SECONDS), "A"))
        .with_target(c.table_query(q.age(X.JOB_LAST_SUCCESS_TIMESTAMP_SECONDS), "B"))
        .with_transformation(c.merge())
        .with_transformation(c.organize(exclude=("Time",), rename={"Value #A": "last duration",
                                                                   "Value #B": "last success"}))
        .override_by_name("last success", [c.prop("unit", units.DurationSeconds)])
    )


def job_failures() -> object:
    return (
        c.default_bars()
        .title("Scheduled task failures")
        .description("Runs of scheduled tasks that raised an error, per $__rate_interval.")
        .unit(units.Short)
        .height(6)
        .span(8)
        .with_target(c.prom_query(q.events(X.JOB_FAILURES), "{{task}}"))
    )


def scrape_duration() -> object:
    return (
        c.default_timeseries()
        .title("Scrape duration")
        .description("How long Prometheus took to scrape each exporter: collect() never does work, so this stays "
                     "small.")
        .unit(units.Seconds)
        .height(6)
        .span(6)
        .with_target(c.prom_query(q.target("scrape_duration_seconds"), "{{instance}}"))
    )


def build() -> dashboard.Dashboard:
    return (
        dashboard.Dashboard(c.TITLES[c.UID_OVERVIEW])
        .uid(c.UID_OVERVIEW)
        .description("Wan video models at a glance: a status card per model, alerts, GPUs and the exporter's health.")
        .tags([c.TAG, "overview"])
        .editable()
        .refresh(c.REFRESH)
        .time("now-6h", "now")
        .timezone("browser")
        .timepicker(dashboard.TimePicker().refresh_intervals(c.REFRESH_INTERVALS))
        .variables(c.standard_variables())
        .links(c.dashboard_links(c.UID_OVERVIEW))
        .with_row(dashboard.Row("Models"))
        .with_panel(model_card())
        .with_row(dashboard.Row("Alerts"))
        .with_panel(alert_list())
        .with_panel(alerts_firing())
        .with_panel(alertmanager_counts())
        .with_panel(models_by_state())
        .with_panel(exporter_up())
        .with_row(dashboard.Row("GPUs"))
        .with_panel(gpu_utilization())
        .with_panel(gpu_memory())
        .with_panel(gpu_temperature())
        .with_panel(gpu_power())
        .with_row(dashboard.Row("Exporter"))
        .with_panel(collector_success())
        .with_panel(config_reload())
        .with_panel(scrape_duration())
        .with_panel(collector_errors())
        .with_panel(job_failures())
        .with_panel(scheduled_tasks())
    )
