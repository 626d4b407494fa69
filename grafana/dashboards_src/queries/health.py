"""Health of a model: its state as one number, its checks, files and disk."""

from __future__ import annotations

from wan_exporter.contract import health as H
from wan_exporter.contract import host, labels

from .base import R_HEALTH_STATUS_COUNT, R_INTEGRITY_ISSUES, _is, _sel, rule, select
from .figures import figure

HEALTH_CODES = tuple((status, code) for code, status in enumerate(labels.STATUSES))


def health_state_code(model: str = "model", instance: str = "instance", by: str = "model") -> str:
    """wan_model_health_status (a state set) as one number per model: 0 healthy .. 3 missing (worst wins)."""
    def arm(status: str, code: int) -> str:
        series = _sel(H.MODEL_HEALTH_STATUS.exposed_name, _is("instance", instance), _is("model", model),
                      f'status="{status}"')
        return f"({series} == 1) * {code}"

    arms = "\n  or ".join(arm(s, c) for s, c in HEALTH_CODES)
    return f"max by ({by}) (\n  {arms}\n)"


def models_by_health_state(instance: str = "instance") -> str:
    return f"sum by (status) ({rule(R_HEALTH_STATUS_COUNT, None, instance)})"


def integrity_issues(model: str = "model", instance: str = "instance") -> str:
    return f"max by (model) ({rule(R_INTEGRITY_ISSUES, model, instance)})"


def model_issues(model: str = "model", instance: str = "instance") -> str:
    return f"sort_desc({figure(H.MODEL_HEALTH_ISSUES, model, instance)})"


def filesystem_free_ratio(model: str = "model", instance: str = "instance") -> str:
    free = select(host.MODEL_FILESYSTEM_FREE_BYTES, model, instance)
    size = select(host.MODEL_FILESYSTEM_SIZE_BYTES, model, instance)
    return f"min by (model) ({free} / {size})"
