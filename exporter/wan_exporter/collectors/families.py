"""Fresh prometheus_client families built from the contract's rows (one per scrape)."""

from __future__ import annotations

from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily,
                                    InfoMetricFamily, Metric)

from ..contract import Family

_CLASSES = {"gauge": GaugeMetricFamily, "counter": CounterMetricFamily, "info": InfoMetricFamily,
            "histogram": HistogramMetricFamily}


def new(fam: Family) -> Metric:
    """An empty family of the row's type, name, help and labels, ready for ``add_metric``."""
    return _CLASSES[fam.type](fam.name, fam.help, labels=list(fam.labels))


def bool_value(v: bool) -> float:
    return 1.0 if v else 0.0
