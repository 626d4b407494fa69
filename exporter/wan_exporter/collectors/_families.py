"""Small constructors for metric families, so collectors read as a list of metrics."""

from __future__ import annotations

from typing import Sequence

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily


def gauge(name: str, doc: str, labels: Sequence[str] = (), unit: str = "") -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=list(labels), unit=unit)


def counter(name: str, doc: str, labels: Sequence[str] = ()) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, labels=list(labels))


def info(name: str, doc: str, labels: Sequence[str] = ()) -> InfoMetricFamily:
    return InfoMetricFamily(name, doc, labels=list(labels))


def bool_value(v: bool) -> float:
    return 1.0 if v else 0.0
