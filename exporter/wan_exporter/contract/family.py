"""One metric family as data: the row every tree (collectors, README, rules, dashboards) reads.

Like dcgm-exporter's counters CSV, a family is a declaration, not an attribute stuck onto a
client object. Rows are checked when they are made, so a malformed name or a bounded set for
a label the family does not have fails at import, not after an end-to-end run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

TYPES = ("gauge", "counter", "info", "histogram")
_NAME = re.compile(r"^wan_[a-z0-9_]*[a-z0-9]$")
_LABEL = re.compile(r"^[a-z][a-z0-9_]*$")
_SUFFIX = {"counter": "_total", "info": "_info", "gauge": "", "histogram": ""}


@dataclass(frozen=True)
class Family:
    """``name`` is given without ``_total``/``_info``, as prometheus_client's families take it."""

    name: str
    type: str
    help: str
    labels: tuple[str, ...] = ()
    source: str = ""
    # label -> the closed set of values it may take (issue kinds, reasons, phases ...)
    bounded: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        problems = []
        if self.type not in TYPES:
            problems.append(f"type {self.type!r} is not one of {TYPES}")
        if not _NAME.match(self.name) or "__" in self.name:
            problems.append("name must be wan_ followed by lower-case words joined by single '_'")
        if self.type in ("counter", "info") and self.name.endswith(_SUFFIX[self.type]):
            problems.append(f"give the name without {_SUFFIX[self.type]}: the client adds it")
        if self.type != "counter" and self.name.endswith("_total"):
            problems.append("_total is for counters only")
        for label in self.labels:
            if not _LABEL.match(label) or label in ("le", "quantile") or label.startswith("__"):
                problems.append(f"label {label!r} is not a plain lower-case label name")
        if len(set(self.labels)) != len(self.labels):
            problems.append("a label appears twice")
        for label, values in self.bounded.items():
            if label not in self.labels:
                problems.append(f"bounded values given for {label!r}, which is not a label")
            if not values or len(set(values)) != len(values):
                problems.append(f"bounded values of {label!r} must be non-empty and distinct")
        if not self.help.strip():
            problems.append("help is empty")
        if problems:
            raise ValueError(f"metric family {self.name!r}: " + "; ".join(problems))
        object.__setattr__(self, "bounded", MappingProxyType(dict(self.bounded)))

    @property
    def exposed_name(self) -> str:
        """The name as it appears in PromQL (``_total`` on counters, ``_info`` on info families)."""
        return self.name + _SUFFIX[self.type]
