"""Selectors, settings and recording-rule names every query module shares.

Functions take the *names* of the dashboard variables they filter on (``model="model_a"``
gives ``model=~"${model_a}"``), so the comparison dashboard reuses the same figures for
model A and model B. Metric names are never typed here: a selection starts from a contract
:class:`~wan_exporter.contract.Family`, and the family's own labels say which variables
filter it (every series has ``instance``; ``model`` and ``gpu`` where the family has them).
"""

from __future__ import annotations

import functools
from pathlib import Path

import yaml
from wan_exporter.contract import Family
from wan_exporter.contract import rules as R

# The alerts' one config place: their selector here, their thresholds for the panels' colours (common).
ALERTING_THRESHOLDS = Path(__file__).resolve().parents[3] / "alerting" / "thresholds.yml"


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


def _is(label: str, var: str | None = None) -> str:
    """``label`` matches the dashboard variable ``var`` (by default the variable of the label's name)."""
    return f'{label}=~"{_v(var or label)}"'


def _pair(var_a: str, var_b: str, label: str) -> str:
    """Either of two single-valued variables (Prometheus regexes are anchored)."""
    return f'{label}=~"{_v(var_a)}|{_v(var_b)}"'


def select(family: Family, model: str = "model", instance: str = "instance", gpu: str = "gpu",
           suffix: str = "") -> str:
    """The family's series on the chosen instances, and models and GPUs where it has those labels."""
    return _sel(family.exposed_name + suffix, _is("instance", instance),
                _is("model", model) if "model" in family.labels else "",
                _is("gpu", gpu) if "gpu" in family.labels else "")


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


def rule(name: str, model: str | None = "model", instance: str = "instance") -> str:
    """A recording rule filtered by the instance (and model) variables."""
    return _sel(name, _is("instance", instance), _is("model", model) if model else "")
