"""Grafana dashboards for wan-exporter, written with grafana-foundation-sdk.

Regenerate the committed JSON from the repository root with::

    python3 -m grafana.dashboards_src

``main`` assembles the four dashboards, one module per dashboard lays out panels,
``common`` holds the panel defaults and shared pieces, ``queries`` holds every PromQL
expression (layout never spells PromQL itself). Metric names come from the contract
(``wan_exporter.contract``): layout passes ``Family`` rows, never a name typed as text.
"""

import sys
from pathlib import Path

_EXPORTER = Path(__file__).resolve().parents[2] / "exporter"
if str(_EXPORTER) not in sys.path:  # the contract, without installing the package
    sys.path.insert(0, str(_EXPORTER))
