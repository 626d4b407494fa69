"""The exporter's health thresholds: default, meaning and where each number comes from.

``config.Thresholds`` takes its defaults from here. Where an alert threshold is the same figure
as one of these, ``alert_key`` names it and the figure has one source: ``alerting/thresholds.yml``
(the operators' one config place), read through :mod:`.alert_thresholds`, which
``alerting/generate.py`` renders from it (``--check`` fails while the two differ).
"""

from __future__ import annotations

from dataclasses import dataclass

from .alert_thresholds import THRESHOLDS as ALERTING


@dataclass(frozen=True)
class Threshold:
    name: str
    default: float
    meaning: str
    source: str
    alert_key: str = ""  # the key in alerting/thresholds.yml this figure is read from


EXPORTER: tuple[Threshold, ...] = (
    Threshold("degraded_slowdown_ratio", ALERTING["generation_slowdown_ratio"],
              "last successful duration over its baseline above this: the model is degraded",
              "project default: well above the run-to-run spread measured in BENCHMARKS.md (< 10 %)",
              alert_key="generation_slowdown_ratio"),
    Threshold("critical_consecutive_failures", 3,
              "this many benchmark failures of a profile in a row: the model is critical",
              "project default: one failure can be a transient OOM next to foreign work; three in a row cannot"),
    Threshold("degraded_sanity_ratio", 1.0,
              "output sanity pass ratio of the last run below this: the model is degraded",
              "project default: any NaN, black or frozen output is a finding (WAN_FACTS: fp16/fp8 NaN reports)"),
)

DEFAULTS: dict[str, float] = {t.name: t.default for t in EXPORTER}
