"""The table from a family to how a panel aggregates it, and the one function that reads it.

A row is ``family: (aggregation, default by)``; an empty aggregation is the plain selection
(one series per GPU). ``min`` where lower is worse (success, sanity, free space) so a panel over
several instances shows the worst; ``max`` elsewhere. Counters are read as ``increase`` over a
window (``events``); the rest as the gauge's last value (``figure``).
"""

from __future__ import annotations

from wan_exporter.contract import benchmark as B
from wan_exporter.contract import checkpoint as C
from wan_exporter.contract import efficiency as E
from wan_exporter.contract import exporter as X
from wan_exporter.contract import gpu as G
from wan_exporter.contract import health as H
from wan_exporter.contract import host
from wan_exporter.contract import models as M
from wan_exporter.contract.family import Family

from .base import RATE, select

_MP = "model, profile"
_BUILD = "instance, version, python_version, torch_version, diffusers_version, transformers_version"
_GPU_INFO = "instance, gpu, name, uuid, pci_bus_id, driver_version, cuda_version, compute_capability"

_ROWS: tuple[tuple[Family, str, str], ...] = (
    # -- health and files of a model ---------------------------------------------------------------
    (H.HEALTH_CHECK_SUCCESS, "min", "check"),
    (H.HEALTH_CHECK_DURATION_SECONDS, "max", "check"),
    (H.HEALTH_CHECK_LAST_SUCCESS_TIMESTAMP_SECONDS, "max", "check"),
    (H.MODEL_HEALTH_ISSUES, "max", "issue"),
    (C.MODEL_INTEGRITY_RATIO, "min", "model"),
    (H.MODEL_FILES_PRESENT, "min", "model"),
    (H.MODEL_FILES_EXPECTED, "max", "model"),
    (H.MODEL_SIZE_BYTES, "max", "model"),
    (H.MODEL_CATALOG_MISMATCHES, "max", "model"),
    (host.MODEL_FILESYSTEM_FREE_BYTES, "min", "model"),
    # -- the last benchmark run of each profile ----------------------------------------------------
    (B.GENERATION_PHASE_DURATION_SECONDS, "max", "profile, phase"),
    (B.GENERATION_SECONDS_PER_STEP, "max", _MP),
    (B.GENERATION_PEAK_MEMORY_BYTES, "max", _MP),
    (B.GENERATION_PEAK_MEMORY_RATIO, "max", _MP),
    (B.GENERATION_FRAMES_PER_SECOND, "max", _MP),
    (B.GENERATION_PIXELS_PER_SECOND, "max", _MP),
    (B.GENERATION_ENERGY_JOULES, "max", _MP),
    (B.BENCHMARK_PROCESS_START_SECONDS, "max", _MP),
    (B.BENCHMARK_LAST_RUN_SUCCESS, "min", _MP),
    (B.BENCHMARK_CONSECUTIVE_FAILURES, "max", _MP),
    (B.BENCHMARK_OUTPUT_SANITY_RATIO, "min", _MP),
    (B.BENCHMARK_OUTPUT_REPRODUCIBLE, "min", _MP),
    (B.BENCHMARK_DURATION_SPREAD_RATIO, "max", _MP),
    (B.BENCHMARK_PERFORMANCE_RATIO, "min", _MP),
    (B.BENCHMARK_BASELINE_SECONDS, "max", "model, profile, source"),
    (B.BENCHMARK_SKIPPED, "sum", "reason"),
    (B.BENCHMARK_OUTPUT_SANITY_FAILURES, "sum", "check"),
    # -- how far from the hardware's limit ---------------------------------------------------------
    (E.GENERATION_FLOPS_PER_STEP, "max", _MP),
    (E.GENERATION_LATENT_TOKENS, "max", _MP),
    (E.GENERATION_FLOPS_PER_SECOND, "max", _MP),
    (E.GENERATION_PEAK_FLOPS_PER_SECOND, "max", "model, profile, gpu_model"),
    (E.GENERATION_MODEL_FLOPS_UTILIZATION_RATIO, "max", _MP),
    (E.GENERATION_REALTIME_FACTOR, "max", _MP),
    (E.GENERATION_ENERGY_JOULES_PER_VIDEO_SECOND, "max", _MP),
    # -- capabilities: published catalog and checkpoint facts, one number per model ------------------
    (M.FRAMES_DEFAULT, "max", "model"),
    (M.FPS_DEFAULT, "max", "model"),
    (M.STEPS_DEFAULT, "max", "model"),
    (M.EXPERTS, "max", "model"),
    (M.PARAMETERS, "max", "model"),
    (M.ACTIVE_PARAMETERS, "max", "model"),
    (M.SIZE_MULTIPLE, "max", "model"),
    (M.BOUNDARY_RATIO, "max", "model"),
    (M.LORA_SUPPORTED, "max", "model"),
    (M.CHECKPOINT_BOUNDARY_RATIO, "max", "model"),
    (C.CHECKPOINT_PARAMETERS, "max", "model"),
    (C.CHECKPOINT_EXPERTS, "max", "model"),
    (M.VRAM_MIN_BYTES, "max", "offload"),
    (B.MODEL_FITS_GPU, "max", "gpu, offload"),
    # -- GPUs: one series per GPU --------------------------------------------------------------------
    (G.UTILIZATION_RATIO, "", ""),
    (G.MEMORY_USED_BYTES, "", ""),
    (G.MEMORY_TOTAL_BYTES, "", ""),
    (G.TEMPERATURE_CELSIUS, "", ""),
    (G.POWER_WATTS, "", ""),
    (G.POWER_LIMIT_WATTS, "", ""),
    (G.SM_CLOCK_HERTZ, "", ""),
    (G.PROCESSES, "", ""),
    (G.THROTTLE_REASON_ACTIVE, "max", "instance, gpu, reason"),
    (G.LOST, "max", "instance, gpu"),
    (G.INFO, "max", _GPU_INFO),
    # -- the exporter and its host -------------------------------------------------------------------
    (X.BUILD_INFO, "max", _BUILD),
    (X.MODELS_CONFIGURED, "max", "instance"),
    (X.COLLECTOR_SUCCESS, "min", "collector"),
    (X.COLLECTOR_ERROR_INFO, "max", "instance, collector, reason"),
    (X.CONFIG_LAST_RELOAD_SUCCESSFUL, "min", "instance"),
    (X.CONFIG_LAST_RELOAD_SUCCESS_TIMESTAMP_SECONDS, "max", "instance"),
    (X.JOB_LAST_SUCCESS_TIMESTAMP_SECONDS, "min", "task"),
    (X.JOB_LAST_DURATION_SECONDS, "max", "task"),
    (X.JOB_FAILURES, "sum", "task"),
    (host.CPU_UTILIZATION_RATIO, "max", "instance"),
)


def _table() -> dict[str, tuple[str, str]]:
    out: dict[str, tuple[str, str]] = {}
    for family, agg, by in _ROWS:
        if family.name in out:
            raise ValueError(f"{family.name} has two rows in the aggregation table")
        if agg not in ("", "min", "max", "sum") or bool(agg) != bool(by):
            raise ValueError(f"{family.name}: aggregation {agg!r} by {by!r} is not one the panels use")
        out[family.name] = (agg, by)
    return out


# Family name -> (aggregation, default by). Keyed by name: a Family's bounded-label map is not hashable.
AGGREGATION: dict[str, tuple[str, str]] = _table()


def _aggregate(family: Family, inner: str, by: str | None) -> str:
    agg, default_by = AGGREGATION[family.name]
    return f"{agg} by ({by or default_by}) ({inner})" if agg else inner


def figure(family: Family, model: str = "model", instance: str = "instance", by: str | None = None,
           gpu: str = "gpu") -> str:
    """A gauge as its table row aggregates it (``by`` overrides the row's default grouping)."""
    return _aggregate(family, select(family, model, instance, gpu), by)


def events(family: Family, model: str = "model", instance: str = "instance", window: str = RATE,
           by: str | None = None) -> str:
    """A counter's increase over ``window``, as its table row aggregates it."""
    return _aggregate(family, f"increase({select(family, model, instance)}[{window}])", by)


def age(family: Family, model: str = "model", instance: str = "instance") -> str:
    """Seconds since a ``*_timestamp_seconds`` gauge, as its table row aggregates it."""
    return f"time() - {figure(family, model, instance)}"
