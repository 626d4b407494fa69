"""Small constructors for metric families, so collectors read as a list of metrics."""

from __future__ import annotations

from typing import Sequence

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily


def gauge(name: str, doc: str, labels: Sequence[str] = (), unit: str = "") -> GaugeMetricFamily:
    return labelled(GaugeMetricFamily(name, doc, labels=list(labels), unit=unit), labels)


def counter(name: str, doc: str, labels: Sequence[str] = ()) -> CounterMetricFamily:
    return labelled(CounterMetricFamily(name, doc, labels=list(labels)), labels)


def info(name: str, doc: str, labels: Sequence[str] = ()) -> InfoMetricFamily:
    return labelled(InfoMetricFamily(name, doc, labels=list(labels)), labels)


def labelled(fam, labels: Sequence[str]):
    """Remember a family's label names, for the generated metrics reference."""
    fam.wan_labelnames = tuple(labels)
    return fam


def bool_value(v: bool) -> float:
    return 1.0 if v else 0.0
