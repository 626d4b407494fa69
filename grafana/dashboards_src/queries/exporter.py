"""The exporter itself and the fleet: dashboard variables, scrape health, alerts, rollups."""

from __future__ import annotations

from wan_exporter.contract import gpu as G
from wan_exporter.contract import host
from wan_exporter.contract.family import Family

from .base import (R_FAILURES_24H, R_GPU_MEMORY_TOTAL, R_GPU_MEMORY_USED, R_RUNS_24H, _is, _sel, exporter_selector,
                   rule)

# -- variables -----------------------------------------------------------------------------------


def label_values(family: Family, label: str, instance: str | None = None) -> str:
    """A variable's query: the values of ``label`` on the family's series (on the chosen instances)."""
    return f"label_values({_sel(family.exposed_name, _is('instance', instance) if instance else '')}, {label})"


# -- scrape health (Prometheus' own per-target series) and the host ----------------------------------

def target(series: str = "up", instance: str = "instance") -> str:
    """A series Prometheus records of each exporter target (``up``, ``scrape_duration_seconds``)."""
    return f"max by (instance) ({_sel(series, exporter_selector(), _is('instance', instance))})"


def host_memory_available_ratio(instance: str = "instance") -> str:
    a = _sel(host.MEMORY_AVAILABLE_BYTES.exposed_name, _is("instance", instance))
    t = _sel(host.MEMORY_TOTAL_BYTES.exposed_name, _is("instance", instance))
    return f"max by (instance) ({a} / {t})"


# -- alerts ------------------------------------------------------------------------------------------

def alerts_firing() -> str:
    """Alerts Prometheus is firing now (ALERTS is Prometheus' own series); empty while nothing fires."""
    return 'max by (alertname, severity, instance, model, gpu) (ALERTS{alertstate="firing"})'


def alertmanager_alerts(state: str) -> str:
    """Alerts the Alertmanager holds, by state: ``active`` or ``suppressed`` (silenced or inhibited).

    Needs Prometheus to scrape the Alertmanager (docker-compose does).
    """
    return f'sum(alertmanager_alerts{{state="{state}"}})'


# -- fleet rollups -----------------------------------------------------------------------------------

def rollup(agg: str, family: Family, instance: str = "instance", or_zero: bool = False) -> str:
    """One number over the selected instances: ``count`` of series, ``sum`` of values (0 where none)."""
    return f"{agg}({_sel(family.exposed_name, _is('instance', instance))})" + (" or vector(0)" if or_zero else "")


def fleet_instances_up(instance: str = "instance") -> str:
    return f"count({_sel('up', exporter_selector(), _is('instance', instance))} == 1) or vector(0)"


def fleet_gpu_memory_used_ratio(instance: str = "instance") -> str:
    return f"sum({rule(R_GPU_MEMORY_USED, None, instance)})\n/\nsum({rule(R_GPU_MEMORY_TOTAL, None, instance)})"


def fleet_runs_24h(instance: str = "instance") -> str:
    return f"sum({rule(R_RUNS_24H, None, instance)})"


def fleet_success_ratio_24h(instance: str = "instance") -> str:
    runs = fleet_runs_24h(instance)
    fails = f"sum({rule(R_FAILURES_24H, None, instance)})"
    return f"clamp(({runs} - {fails}) / ({runs} > 0), 0, 1)"


def fleet_energy(window: str = "24h", instance: str = "instance") -> str:
    return f"sum(increase({_sel(G.ENERGY_JOULES.exposed_name, _is('instance', instance))}[{window}]))"
