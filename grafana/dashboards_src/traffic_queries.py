"""PromQL of the Traffic dashboard: the requests a Wan service serves (``wan_exporter.instrument``).

Figures read the traffic recording rules (names from ``wan_exporter.contract.traffic_rules``,
written by alerting/generate.py), filtered by the ``job`` (the service) and ``model``
variables. The probes' own step time comes from the exporter's raw gauge.
"""

from __future__ import annotations

from wan_exporter.contract import Family
from wan_exporter.contract import benchmark as B
from wan_exporter.contract import gpu as G
from wan_exporter.contract import models as M
from wan_exporter.contract import traffic as TR
from wan_exporter.contract import traffic_rules as T

from .queries.base import _is, _sel, _v, alerting_settings


def traffic_rule(name: str) -> str:
    return _sel(name, _is("job"), _is("model"))


def slo() -> dict:
    return alerting_settings().get("slo", {})


# -- variables (the exporter's and the GPU-model variables are queries.label_values) ---------------

def var_model() -> str:
    """Models of the probes and of the traffic alike: the same name on both sides joins them."""
    return f'label_values({{__name__=~"{M.INFO.exposed_name}|{TR.REQUESTS.exposed_name}"}}, model)'


# -- figures ---------------------------------------------------------------------------------------

def latency(qn: str) -> str:
    return traffic_rule(T.LATENCY_QUANTILE[qn])


def queue_wait(qn: str) -> str:
    return traffic_rule(T.QUEUE_WAIT_QUANTILE[qn])


def success_ratio(window: str = T.PANEL_WINDOW) -> str:
    return traffic_rule(T.availability(window))


def latency_sli(window: str = T.PANEL_WINDOW) -> str:
    return traffic_rule(T.latency(window))


def videos_per_hour() -> str:
    return traffic_rule(T.VIDEOS_PER_HOUR)


def real_time_factor() -> str:
    return traffic_rule(T.REAL_TIME_FACTOR)


def flops_per_second() -> str:
    return traffic_rule(T.FLOPS_PER_SECOND)


def model_flops_utilization() -> str:
    return traffic_rule(T.MODEL_FLOPS_UTILIZATION)


def pixels_per_second() -> str:
    return traffic_rule(T.PIXELS_PER_SECOND)


def requests_by_outcome() -> str:
    return traffic_rule(T.REQUESTS_BY_OUTCOME)


def failures_by_outcome_phase() -> str:
    return traffic_rule(T.FAILURES_BY_OUTCOME_PHASE)


def traffic_seconds_per_step() -> str:
    return traffic_rule(T.SECONDS_PER_STEP)


def probe_seconds_per_step() -> str:
    """The scheduled probe's seconds per step of the same models, on exporters whose GPUs are of the chosen model."""
    probe = _sel(B.GENERATION_SECONDS_PER_STEP.exposed_name, _is("model"))
    gpus = _sel(G.INFO.exposed_name, f'name=~"{_v("gpu_model")}"')
    return f"max by (model, profile) ({probe} and on (instance) {gpus})"


def in_flight() -> str:
    return f"sum by (job, model) ({_sel(TR.REQUESTS_IN_FLIGHT.exposed_name, _is('job'), _is('model'))})"


# -- ranks of one generation (torchrun) ---------------------------------------------------------------
# ``job=False``: on dashboards without a service variable (Model detail), every service of the model.

def _rule_sel(name: str, job: bool) -> str:
    return _sel(name, _is("job"), _is("model")) if job else _sel(name, _is("model"))


def _rank_sel(family: Family, job: bool) -> str:
    return _rule_sel(family.exposed_name, job)


def rank_seconds_per_step(job: bool = True) -> str:
    return _rule_sel(T.RANK_SECONDS_PER_STEP, job)


def rank_step_skew(job: bool = True) -> str:
    return _rule_sel(T.RANK_STEP_SKEW, job)


def rank_step_end_skew(job: bool = True) -> str:
    return _rule_sel(T.RANK_STEP_END_SKEW, job)


def rank_heartbeat_age(job: bool = True) -> str:
    """Seconds since each rank in flight last ended a step."""
    ts = _rank_sel(TR.RANK_LAST_STEP_TIMESTAMP_SECONDS, job)
    busy = _rank_sel(TR.RANK_REQUESTS_IN_FLIGHT, job)
    return f"time() - max by (job, model, rank) ({ts}) and on (job, model, rank) max by (job, model, rank) ({busy}) > 0"


def rank_stalled(job: bool = True) -> str:
    return f"max by (job, model, rank, collective) ({_rank_sel(TR.RANK_STALLED, job)}) == 1"


def rank_peak_memory(job: bool = True) -> str:
    return f"max by (job, model, rank) ({_rank_sel(TR.RANK_PEAK_MEMORY_BYTES, job)})"
