"""Every PromQL expression the dashboards run, apart from the layout, split by concern.

``base`` holds the selectors, settings and recording-rule names; ``figures`` the table from a
contract family to its aggregation (``figure``, ``events``, ``age`` read it); ``health``,
``benchmark``, ``capabilities``, ``gpu``, ``exporter`` and ``comparison`` the figures that
need more than one row of that table. Layout modules import this package as ``q``.

Where a recording rule covers a figure, the dashboards read the rule (the same number the alerts
use; the ``R_*`` names). The rest is raw PromQL over the exporter's series: plain selections
of gauges, and the few computed figures no rule records yet (health state as a number, rates
over $__rate_interval for heatmaps and event bars, capability matrices, fleet energy);
grafana/README.md lists them.
"""

from __future__ import annotations

from .base import *  # noqa: F401,F403
from .base import RATE, alerting_settings, exporter_selector, rule, select  # noqa: F401
from .benchmark import *  # noqa: F401,F403
from .capabilities import *  # noqa: F401,F403
from .comparison import *  # noqa: F401,F403
from .exporter import *  # noqa: F401,F403
from .figures import AGGREGATION, age, events, figure  # noqa: F401
from .gpu import *  # noqa: F401,F403
from .health import HEALTH_CODES  # noqa: F401
from .health import *  # noqa: F401,F403
