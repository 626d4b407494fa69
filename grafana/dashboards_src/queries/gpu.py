"""GPUs: derived figures over the per-GPU series (plain selections go through ``figures``)."""

from __future__ import annotations

from wan_exporter.contract import gpu as G

from .base import RATE, _is, _sel, rule, select


def gpu_memory_used_ratio() -> str:
    return f"{select(G.MEMORY_USED_BYTES)}\n/\n{select(G.MEMORY_TOTAL_BYTES)}"


def gpu_errors(window: str = RATE) -> str:
    ecc, xid = select(G.ECC_ERRORS), select(G.XID_ERRORS)
    return (f'sum by (instance, gpu, kind) (\n'
            f'    label_replace(increase({ecc}[{window}]), "kind", "ECC $1", "error_type", "(.*)")\n'
            f'  or label_replace(increase({xid}[{window}]), "kind", "XID $1", "xid", "(.*)")\n)')


def gpu_count(instance: str = "instance") -> str:
    return f"count by (instance) ({_sel(G.INFO.exposed_name, _is('instance', instance))})"


def instance_figure(name: str, instance: str = "instance") -> str:
    """An instance-level GPU rule (instance:*), one number per instance."""
    return f"max by (instance) ({rule(name, None, instance)})"
