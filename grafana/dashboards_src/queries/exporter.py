"""The exporter itself and the fleet: dashboard variables, scrape health, alerts, rollups."""

from __future__ import annotations

from wan_exporter.contract import exporter as X
from wan_exporter.contract import gpu as G
from wan_exporter.contract import host
from wan_exporter.contract import models as M

from .base import (R_FAILURES_24H, R_GPU_MEMORY_TOTAL, R_GPU_MEMORY_USED, R_RUNS_24H, _inst, _sel, exporter_selector,
                   rule)

# -- variables -----------------------------------------------------------------------------------


def var_instance() -> str:
    return f"label_values({X.BUILD_INFO.exposed_name}, instance)"


def var_instance_of(parent: str = "instance") -> str:
    return f"label_values({_sel(X.BUILD_INFO.exposed_name, _inst(parent))}, instance)"


def var_gpu() -> str:
    return f"label_values({_sel(G.INFO.exposed_name, _inst())}, gpu)"


def var_model(instance: str = "instance") -> str:
    return f"label_values({_sel(M.INFO.exposed_name, _inst(instance))}, model)"


# -- scrape health (Prometheus' own per-target series) and the host ----------------------------------

def up(instance: str = "instance") -> str:
    return f"max by (instance) ({_sel('up', exporter_selector(), _inst(instance))})"


def scrape_duration(instance: str = "instance") -> str:
    return f"max by (instance) ({_sel('scrape_duration_seconds', exporter_selector(), _inst(instance))})"


def host_memory_available_ratio(instance: str = "instance") -> str:
    a = _sel(host.MEMORY_AVAILABLE_BYTES.exposed_name, _inst(instance))
    t = _sel(host.MEMORY_TOTAL_BYTES.exposed_name, _inst(instance))
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

def fleet_instances(instance: str = "instance") -> str:
    return f"count({_sel(X.BUILD_INFO.exposed_name, _inst(instance))})"


def fleet_instances_up(instance: str = "instance") -> str:
    return f"count({_sel('up', exporter_selector(), _inst(instance))} == 1) or vector(0)"


def fleet_gpus(instance: str = "instance") -> str:
    return f"sum({_sel(G.DEVICES.exposed_name, _inst(instance))}) or vector(0)"


def fleet_models(instance: str = "instance") -> str:
    return f"count({_sel(M.INFO.exposed_name, _inst(instance))})"


def fleet_gpu_memory_used_ratio(instance: str = "instance") -> str:
    return f"sum({rule(R_GPU_MEMORY_USED, None, instance)})\n/\nsum({rule(R_GPU_MEMORY_TOTAL, None, instance)})"


def fleet_runs_24h(instance: str = "instance") -> str:
    return f"sum({rule(R_RUNS_24H, None, instance)})"


def fleet_success_ratio_24h(instance: str = "instance") -> str:
    runs = fleet_runs_24h(instance)
    fails = f"sum({rule(R_FAILURES_24H, None, instance)})"
    return f"clamp(({runs} - {fails}) / ({runs} > 0), 0, 1)"


def fleet_energy(window: str = "24h", instance: str = "instance") -> str:
    return f"sum(increase({_sel(G.ENERGY_JOULES.exposed_name, _inst(instance))}[{window}]))"
