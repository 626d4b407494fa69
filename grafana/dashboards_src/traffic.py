"""Traffic: the requests a Wan service serves, next to the scheduled probe's view of the same model.

Latency by model and resolution class, queue wait, throughput, success ratio against the
availability objective, failures by outcome and phase, seconds per step of traffic against the
probe's on the same GPU model, real-time factor, achieved FLOP/s and model FLOPs utilisation.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard
from grafana_foundation_sdk.models import units
from wan_exporter.contract import exporter as X
from wan_exporter.contract import gpu as G
from wan_exporter.contract import traffic as TR

from . import common as c
from . import queries as q
from . import traffic_queries as tq
from .model_detail import FLOPS
from .rank_panels import ranks

UID = c.UID_TRAFFIC


def variables() -> list:
    return [
        c.datasource_variable(),
        c.query_variable("instance", "Exporter", q.label_values(X.BUILD_INFO, "instance")),
        c.query_variable("gpu", "GPU", q.label_values(G.INFO, "gpu")),
        c.query_variable("model", "Model", tq.var_model()),
        c.query_variable("job", "Service", q.label_values(TR.REQUESTS, "job")),
        c.query_variable("gpu_model", "GPU model (probes)", q.label_values(G.INFO, "name")),
    ]


def _availability_steps() -> tuple:
    objective = float(tq.slo().get("availability_objective", 0.99))
    return (None, "red"), (objective, "green")


def success_ratio() -> object:
    objective = float(tq.slo().get("availability_objective", 0.99))
    return (
        c.default_timeseries()
        .title("Success ratio")
        .description(f"Requests that succeeded over those that count, 5 m windows; bad input and cancellations "
                     f"do not count (they are not the service's failures). Objective {objective:.1%}: "
                     "WanTrafficErrorBudgetBurn fires when failures spend its budget too fast.")
        .unit(units.PercentUnit)
        .min(0)
        .max(1)
        .span(12)
        .thresholds(c.thresholds(*_availability_steps()))
        .with_target(c.prom_query(tq.success_ratio(), "{{job}} {{model}}"))
    )


def latency_within_objective() -> object:
    s = tq.slo()
    return (
        c.default_timeseries()
        .title("Requests within the latency objective")
        .description(f"Successful requests that finished within {s.get('latency_threshold_seconds', 600):g} s, "
                     f"5 m windows. Objective {float(s.get('latency_objective', 0.95)):.1%}: "
                     "WanTrafficLatencyBudgetBurn fires when slow requests spend its budget too fast.")
        .unit(units.PercentUnit)
        .min(0)
        .max(1)
        .span(12)
        .with_target(c.prom_query(tq.latency_sli(), "{{job}} {{model}}"))
    )


def _quantiles(title: str, description: str, query, legend: str) -> object:
    """p50, p95 and p99 of one traffic histogram (``query(q)`` gives the rule of quantile ``q``)."""
    return c.series(title, description, units.Seconds, 12,
                    *(c.prom_query(query(qn), f"{qn} {legend}", ref) for ref, qn in zip("ABC", ("p50", "p95", "p99"))))


def latency() -> object:
    return _quantiles("Generation time p50, p95, p99",
                      "Successful requests, pipeline call to return (queue excluded), by model and resolution "
                      "class, 5 m windows.", tq.latency, "{{model}} {{resolution}}")


def queue_wait() -> object:
    return _quantiles("Queue wait p50, p95, p99",
                      "From enqueue to generation start, as the service reports it (track.request(enqueued_at=...)).",
                      tq.queue_wait, "{{model}}")


def throughput() -> list:
    return [
        c.default_timeseries().title("Videos per hour")
        .description("Successful requests per hour at the last 5 minutes' rate.")
        .unit(units.Short).min(0).span(6)
        .with_target(c.prom_query(tq.videos_per_hour(), "{{job}} {{model}}")),
        c.default_timeseries().title("Real-time factor")
        .description("Seconds of video produced per second of generation (frames / output fps over generation "
                     "time), successful requests, 5 m windows. 1 would be real time.")
        .unit("suffix:×").min(0).span(6)
        .with_target(c.prom_query(tq.real_time_factor(), "{{job}} {{model}}")),
        c.series("Model FLOPs utilisation",
                 "Achieved FLOP/s of successful requests' denoising (model FLOPs of their steps, computed from "
                 "the transformer config and each request's tokens, over their denoise seconds) over each "
                 "replica's GPU datasheet peak dense tensor rate; absent on CPU, for float32 and for GPUs "
                 "without a datasheet row. Achieved FLOP/s on the right axis. 5 m windows.", units.PercentUnit, 6,
                 c.prom_query(tq.model_flops_utilization(), "MFU {{job}} {{model}}", "A"),
                 c.prom_query(tq.flops_per_second(), "achieved {{job}} {{model}}", "B"))
        .override_by_query("B", [c.prop("unit", FLOPS), c.prop("custom.axisPlacement", "right")]),
        c.default_timeseries().title("Pixels per second")
        .description("Width x height x frames generated per second of generation: comparable across resolutions.")
        .unit(c.PIXELS_PER_SECOND).min(0).span(6)
        .with_target(c.prom_query(tq.pixels_per_second(), "{{job}} {{model}}")),
    ]


def failures() -> list:
    return [
        c.default_bars().title("Requests by outcome")
        .description("Finished requests per second by outcome (ok, invalid_input, oom, cuda_error, nan_output, "
                     "cancelled, error).")
        .unit(units.RequestsPerSecond).span(12)
        .with_target(c.prom_query(tq.requests_by_outcome(), "{{model}} {{outcome}}")),
        c.default_bars().title("Failures by outcome and phase")
        .description("Failed requests per second by outcome and the phase the failure surfaced in (an OOM in "
                     "vae_decode, at the expert switch in denoise ...; other: before the first phase).")
        .unit(units.RequestsPerSecond).span(12)
        .with_target(c.prom_query(tq.failures_by_outcome_phase(), "{{model}} {{outcome}} in {{phase}}")),
    ]


def steps() -> list:
    return [
        c.series("Seconds per step: traffic and probes",
                 "Mean denoising step time of traffic (by resolution class, 5 m windows) and of the "
                 "scheduled probe (last run, by profile) for the same model, on exporters whose GPUs are "
                 "of the GPU model chosen above. Traffic slower than the probe at a like resolution: "
                 "overlapping requests, or a hotter, busier GPU.", units.Seconds, 16,
                 c.prom_query(tq.traffic_seconds_per_step(), "traffic {{model}} {{resolution}}", "A"),
                 c.prom_query(tq.probe_seconds_per_step(), "probe {{model}} {{profile}}", "B"))
        .override_by_query("B", [c.prop("custom.lineStyle", {"fill": "dash", "dash": [10, 10]})]),
        c.default_stat().title("In flight")
        .description("Requests being generated now.")
        .unit(units.Short).span(8).height(8)
        .with_target(c.prom_query(tq.in_flight(), "{{job}} {{model}}", instant=True)),
    ]


def build() -> dashboard.Dashboard:
    d = (
        dashboard.Dashboard(c.TITLES[UID])
        .uid(UID)
        .description("Real traffic of the services that serve Wan through wan_exporter.instrument: latency, "
                     "queue wait, throughput, failures and the SLOs, beside the scheduled probe.")
        .tags([c.TAG, "traffic"])
        .editable()
        .refresh(c.REFRESH)
        .time("now-3h", "now")
        .timezone("browser")
        .timepicker(dashboard.TimePicker().refresh_intervals(c.REFRESH_INTERVALS))
        .variables(variables())
        .links(c.dashboard_links(UID))
        .with_row(dashboard.Row("Service level objectives"))
        .with_panel(success_ratio())
        .with_panel(latency_within_objective())
        .with_row(dashboard.Row("Latency"))
        .with_panel(latency())
        .with_panel(queue_wait())
        .with_row(dashboard.Row("Throughput"))
    )
    for p in throughput():
        d = d.with_panel(p)
    d = d.with_row(dashboard.Row("Failures"))
    for p in failures():
        d = d.with_panel(p)
    d = d.with_row(dashboard.Row("Steps"))
    for p in steps():
        d = d.with_panel(p)
    d = d.with_row(dashboard.Row("Ranks of one generation"))
    for p in ranks():
        d = d.with_panel(p)
    return d
