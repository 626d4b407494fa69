"""PromQL of the Traffic dashboard: the requests a Wan service serves (``wan_exporter.instrument``).

Figures read the traffic recording rules (names from ``wan_exporter.contract.traffic_rules``,
written by alerting/generate.py), filtered by the ``job`` (the service) and ``model``
variables. The probes' own step time comes from the exporter's raw gauge.
"""

from __future__ import annotations

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
