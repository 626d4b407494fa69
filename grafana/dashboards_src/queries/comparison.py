"""Comparison: one figure of model A over the same figure of model B."""

from __future__ import annotations

from wan_exporter.contract import benchmark as B

from .base import R_MEAN_24H, select
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
