"""wan_exporter.web.encode writes the very bytes prometheus_client writes, for every format a client
can negotiate, every metric type, and names, label values and HELP texts an attacker would pick.

(The exporter's own families, served through the pre-rendered cache, are compared with the library
in tests/test_metrics_golden.py.)"""

from __future__ import annotations

import random

import pytest
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (CounterMetricFamily, GaugeHistogramMetricFamily, GaugeMetricFamily,
                                            HistogramMetricFamily, InfoMetricFamily, Metric, StateSetMetricFamily,
                                            SummaryMetricFamily, UnknownMetricFamily)
from prometheus_client.samples import Exemplar, Timestamp

from wan_exporter.web.encode import _Families, encoder_for

ACCEPTS = [
    None,
    "text/plain;version=0.0.4",
    "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",  # Prometheus 2
    "application/openmetrics-text",
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8",
    "application/openmetrics-text;version=1.0.0;escaping=underscores",
    "application/openmetrics-text;version=1.0.0;escaping=dots",
    "application/openmetrics-text;version=1.0.0;escaping=values",
    "application/openmetrics-text;version=2.0.0;escaping=allow-utf-8",
    "text/plain;version=1.0.0;escaping=allow-utf-8",
    "text/plain;version=1.0.0;escaping=underscores",
    "text/plain;version=1.0.0;escaping=dots",
]

HOSTILE = ['', 'a', 'quote"d', 'back\\slash', 'new\nline', '\\n literal', 'tab\there', '\u00e9t\u00e9', '\U0001F3A5',
           '{x="y"}', '# HELP', ' spaced ', '\r', '\x00nul', 'a,b=c', '\u2028']


def _families(rng: random.Random) -> list:
    v = lambda: rng.choice(HOSTILE)  # noqa: E731
    num = lambda: rng.choice([0.0, 1.0, -1.5, 1e-9, 123456789.0, 1e21, float("inf"), float("-inf"),  # noqa: E731
                              float("nan"), 3, 2 ** 60, 0.1 + 0.2])
    doc = rng.choice(["plain help", 'help with "quotes"', "back\\slash and\nnewline", "", "\u00fcml\u00e4ut"])
    out = []
    c = CounterMetricFamily("wan_c", doc, labels=["model", "gpu"], created=None)
    for _ in range(3):
        c.add_metric([v(), v()], num(), created=rng.choice([None, 1.7e9]))
    out.append(c)
    g = GaugeMetricFamily("wan_g", doc, labels=["model"], unit=rng.choice(["", "seconds"]))
    for _ in range(3):
        g.add_metric([v()], num(), timestamp=rng.choice([None, 1.7e9, Timestamp(1700000000, 5)]))
    out.append(GaugeMetricFamily("wan_g_seconds" if g.unit else "wan_g2", doc, value=num()))
    out.append(g)
    h = HistogramMetricFamily("wan_h", doc, labels=["model"])
    h.add_metric([v()], [("0.1", 1), ("1.0", 2), ("+Inf", 3)], sum_value=num())
    out.append(h)
    out.append(SummaryMetricFamily("wan_s", doc, count_value=3, sum_value=num(), labels=None))
    out.append(InfoMetricFamily("wan_i", doc, value={"version": v(), "torch": v()}))
    st = StateSetMetricFamily("wan_st", doc, labels=["model"])
    st.add_metric([v()], {"ok": True, "degraded": False})
    out.append(st)
    gh = GaugeHistogramMetricFamily("wan_gh", doc, labels=["model"])
    gh.add_metric([v()], [("1.0", 4), ("+Inf", 5)], gsum_value=num())
    out.append(gh)
    out.append(UnknownMetricFamily("wan_u", doc, value=num()))
    out.append(GaugeMetricFamily("wan_empty", doc, labels=["model"]))  # a family without samples
    # Names outside the legacy set and exemplars: left to the library, in place.
    odd = Metric("wan_odd:colon", doc, "gauge")
    odd.add_sample("wan_odd:colon", {"model": v()}, num())
    out.append(odd)
    weird = Metric("wan_labels", doc, "gauge")
    weird.add_sample("wan_labels", {"__reserved": v(), "ok": v()}, 1.0)
    weird.add_sample("wan_labels", {"bad-name": v()}, 2.0)
    out.append(weird)
    utf = Metric("wan.dotted", doc, "gauge")
    utf.add_sample("wan.dotted", {"model": v()}, 1.0)
    out.append(utf)
    ex = CounterMetricFamily("wan_ex", doc, labels=["model"])
    ex.add_metric([v()], 2.0, exemplar=Exemplar({"trace_id": v()}, 1.0))
    out.append(ex)
    rng.shuffle(out)
    return out


def _library(accept, families) -> bytes | str:
    encoder, content_type = choose_encoder(accept or "")
    try:
        return encoder(_Families(families))
    except Exception as e:  # noqa: BLE001 - a family the format cannot express: both must refuse it
        return type(e).__name__


def _ours(accept, families) -> bytes | str:
    encode, content_type = encoder_for(accept or "")
    assert content_type == choose_encoder(accept or "")[1]
    try:
        return encode(families)
    except Exception as e:  # noqa: BLE001
        return type(e).__name__


@pytest.mark.parametrize("accept", ACCEPTS)
def test_the_same_bytes_as_prometheus_client(accept):
    rng = random.Random(20261208)
    for _ in range(60):
        families = _families(rng)
        # Family by family too, so that one the library refuses does not hide the others.
        for f in families:
            assert _ours(accept, [f]) == _library(accept, [f]), (accept, f)
        plain = [f for f in families if f.name != "wan_ex"]  # an exemplar only OpenMetrics 1.x can carry
        assert _ours(accept, plain) == _library(accept, plain), accept


@pytest.mark.parametrize("accept", ACCEPTS)
def test_nothing_and_empty_families(accept):
    assert _ours(accept, []) == _library(accept, [])
    assert _ours(accept, [GaugeMetricFamily("wan_x", "")]) == _library(accept, [GaugeMetricFamily("wan_x", "")])
