"""Comparison: one figure of model A over the same figure of model B."""

from __future__ import annotations

from wan_exporter.contract import benchmark as B
from wan_exporter.contract import rules as R

from .base import R_MEAN_24H, _is, _sel, _v, select
from .benchmark import generation_time


def ratio_a_over_b(expr_a: str, expr_b: str) -> str:
    """One number: A's figure over B's (``on()`` because they differ in model/instance)."""
    return f"(\n  {expr_a}\n)\n/ on ()\n(\n  {expr_b}\n)"


def time_ratio_by_profile(a: dict, b: dict) -> str:
    """B's mean generation time over A's, for each profile both run (above 1: A is faster)."""
    return (f"{generation_time(R_MEAN_24H, b['model'], b['instance'], by='profile')}\n/ on (profile)\n"
            f"{generation_time(R_MEAN_24H, a['model'], a['instance'], by='profile')}")


def best_pixels_per_second(model: str, instance: str) -> str:
    return f"max({select(B.GENERATION_PIXELS_PER_SECOND, model, instance)})"


def lowest_peak_memory(model: str, instance: str) -> str:
    return f"min({select(B.GENERATION_PEAK_MEMORY_BYTES, model, instance)})"


# -- formats side by side: models compared with a reference (models[].compare_to) ------------------

def _compared(metric: str, reference: str, instance: str, by: str = "model, profile") -> str:
    return f'max by ({by}) ({_sel(metric, _is("instance", instance), f"reference={chr(34)}{_v(reference)}{chr(34)}")})'


def step_time_over_reference(reference: str = "model", instance: str = "instance") -> str:
    return _compared(R.STEP_TIME_OVER_REFERENCE, reference, instance)


def peak_memory_over_reference(reference: str = "model", instance: str = "instance") -> str:
    return _compared(R.PEAK_MEMORY_OVER_REFERENCE, reference, instance)


def output_max_abs_difference(reference: str = "model", instance: str = "instance") -> str:
    return _compared(B.BENCHMARK_OUTPUT_MAX_ABS_DIFFERENCE_RATIO.exposed_name, reference, instance)


def output_psnr(reference: str = "model", instance: str = "instance") -> str:
    return _compared(B.BENCHMARK_OUTPUT_PSNR_DECIBELS.exposed_name, reference, instance)


def run_formats(instance: str = "instance") -> str:
    """Every model's last run on the instance: form, stored weights, compute dtype."""
    return (f"max by (model, profile, form, weight_format, compute_dtype) "
            f"({_sel(B.BENCHMARK_RUN_INFO.exposed_name, _is('instance', instance))})")
