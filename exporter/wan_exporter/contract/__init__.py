"""The metric API as data, imported by every tree: collectors, README, rules and dashboards.

Standard library only, so ``alerting/generate.py`` and the dashboards import it without the
exporter's dependencies. A family is a :class:`Family` row in the module of its concern;
bounded label values live in :mod:`.labels`, recording-rule names in :mod:`.rules`, alert
names, severities and runbook anchors in :mod:`.alerts`, health thresholds in
:mod:`.thresholds`. Duplicate names fail at import.
"""

from __future__ import annotations

from . import (alerts, benchmark, checkpoint, efficiency, exporter, gpu, health, host, labels, models, rules,
               thresholds, traffic)
from .family import Family

# One module per concern, in the order the README reference lists them.
MODULES = (exporter, models, checkpoint, gpu, host, health, benchmark, efficiency, traffic)


def families() -> tuple[Family, ...]:
    return tuple(f for m in MODULES for f in m.FAMILIES)


def _index() -> dict[str, Family]:
    out: dict[str, Family] = {}
    for f in families():
        if f.name in out:
            raise ValueError(f"metric family {f.name!r} is declared twice")
        out[f.name] = f
    return out


BY_NAME: dict[str, Family] = _index()

__all__ = ["BY_NAME", "alerts", "Family", "MODULES", "families", "labels", "rules", "thresholds"]
