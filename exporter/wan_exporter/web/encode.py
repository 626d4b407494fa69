"""The exposition formats, written for the families this exporter serves at a fraction of the cost.

prometheus_client's OpenMetrics encoder escapes every sample's name character by character (a
Python call per character: 90 % of a render at 50 models, about 8 µs per sample on a slow core).
Names that follow the legacy character set, which every name in our contract does, come out of
that escaping unchanged, so this module writes them as they are and escapes only what can vary:
label values and HELP texts.

It writes exactly the bytes prometheus_client writes (tests/test_encode.py compares the two over
every metric type and hostile label values, tests/test_metrics_golden.py over the exporter's own
families), and hands a family to
prometheus_client whenever it is outside that common case: a name outside the legacy character
set, exemplars, native histograms, an escaping scheme other than ``underscores`` or
``allow-utf-8``, or an OpenMetrics version other than 1.x.
"""

from __future__ import annotations

import re
from typing import Callable, Iterable, Sequence

from prometheus_client.exposition import choose_encoder
from prometheus_client.utils import floatToGoString

Encoder = Callable[[Iterable], bytes]  # families -> the exposition's bytes

_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")  # legacy metric and label names, without ':'
_FAST_ESCAPING = ("underscores", "allow-utf-8")
_OM_EOF = b"# EOF\n"


class _Families:
    """A registry stand-in: ``collect()`` yields the given families."""

    def __init__(self, families: Iterable) -> None:
        self._families = families

    def collect(self) -> Iterable:
        return self._families


def _label_value(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


_legacy_seen: set[str] = set()  # names (metric, sample and label) already matched against _NAME


def _legacy(name: str) -> bool:
    if name in _legacy_seen:
        return True
    if not _NAME.match(name) or name.startswith("__"):
        return False
    if len(_legacy_seen) > 65536:  # bounded, whatever the families hold
        _legacy_seen.clear()
    _legacy_seen.add(name)
    return True


def _plain(metric) -> bool:
    """A family whose every name is legacy (label names not reserved), without exemplars or native
    histograms."""
    if not _legacy(metric.name):
        return False
    for s in metric.samples:
        if s.exemplar or getattr(s, "native_histogram", None) or not _legacy(s.name):
            return False
        for k in s.labels:
            if k not in _legacy_seen and not _legacy(k):
                return False
    return True


def _labels(labels: dict) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_label_value(v)}"' for k, v in sorted(labels.items())) + "}"


def _openmetrics(metric, out: list[str]) -> None:
    name = metric.name
    doc = metric.documentation.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    out.append(f"# HELP {name} {doc}\n# TYPE {name} {metric.type}\n")
    if metric.unit:
        out.append(f"# UNIT {name} {metric.unit}\n")
    for s in metric.samples:
        value = "" if s.value is None else floatToGoString(s.value)
        ts = "" if s.timestamp is None else f" {s.timestamp}"
        out.append(f"{s.name}{_labels(s.labels)} {value}{ts}\n")


_TEXT_TYPES = {"info": "gauge", "stateset": "gauge", "gaugehistogram": "histogram", "unknown": "untyped"}
_TEXT_SUFFIXED = ("_created", "_gsum", "_gcount")  # OpenMetrics-only samples: gauges of their own in text


def _text_line(s) -> str:
    ts = "" if s.timestamp is None else f" {int(float(s.timestamp) * 1000):d}"
    return f"{s.name}{_labels(s.labels)} {floatToGoString(s.value)}{ts}\n"


def _text(metric, out: list[str]) -> None:
    name, mtype = metric.name, metric.type
    if mtype == "counter":
        name += "_total"
    elif mtype == "info":
        name += "_info"
    mtype = _TEXT_TYPES.get(mtype, mtype)
    doc = metric.documentation.replace("\\", "\\\\").replace("\n", "\\n")
    out.append(f"# HELP {name} {doc}\n# TYPE {name} {mtype}\n")
    extra: dict[str, list[str]] = {}
    for s in metric.samples:
        for suffix in _TEXT_SUFFIXED:
            if s.name == metric.name + suffix:
                extra.setdefault(suffix, []).append(_text_line(s))
                break
        else:
            out.append(_text_line(s))
    for suffix, lines in sorted(extra.items()):
        out.append(f"# HELP {metric.name}{suffix} {doc}\n# TYPE {metric.name}{suffix} gauge\n")
        out.extend(lines)


def _params(content_type: str) -> dict[str, str]:
    out = {}
    for tok in content_type.split(";")[1:]:
        k, _, v = tok.strip().partition("=")
        out[k] = v
    return out


def _fast_writer(content_type: str) -> Callable | None:
    """The writer of one family for ``content_type`` (as prometheus_client's negotiation names
    it), or None where this module leaves the format to prometheus_client."""
    p = _params(content_type)
    if p.get("escaping", "underscores") not in _FAST_ESCAPING:
        return None
    if content_type.startswith("application/openmetrics-text"):
        return _openmetrics if p.get("version", "1.0.0").split(".")[0] == "1" else None
    if content_type.startswith("text/plain"):
        return _text if p.get("version") in ("0.0.4", "1.0.0") else None
    return None


def encoder_for(accept: str) -> tuple[Encoder, str]:
    """(families -> bytes, content type) for a client's Accept header, negotiated as prometheus_client
    negotiates it."""
    library, content_type = choose_encoder(accept or "")
    om = content_type.startswith("application/openmetrics-text")

    def by_library(families: Sequence) -> bytes:
        body = library(_Families(families))
        return body[: -len(_OM_EOF)] if om and body.endswith(_OM_EOF) else body

    writer = _fast_writer(content_type)

    def encode(families: Iterable) -> bytes:
        families = list(families)
        if writer is None:
            return library(_Families(families))
        out: list[str] = []
        chunks: list[bytes] = []
        for metric in families:
            if _plain(metric):
                writer(metric, out)
            else:
                if out:
                    chunks.append("".join(out).encode("utf-8"))
                    out = []
                chunks.append(by_library([metric]))
        if out:
            chunks.append("".join(out).encode("utf-8"))
        if om:
            chunks.append(_OM_EOF)
        return b"".join(chunks)

    return encode, content_type


__all__ = ["Encoder", "encoder_for"]
