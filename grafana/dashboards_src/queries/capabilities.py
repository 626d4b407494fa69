"""Capabilities of a model as rows: the published catalog, the checkpoint's facts, recommendations."""

from __future__ import annotations

from wan_exporter.contract import benchmark as B
from wan_exporter.contract import checkpoint as C
from wan_exporter.contract import models as M
from wan_exporter.contract.family import Family

from .base import _is, _pair, _sel

# A capability as a row label ``capability``: sets (value 1 = supported) and yes/no flags.
_CAPABILITY_SETS = (
    (M.INPUT_SUPPORTED, "input: $1", "input"),
    (M.PRECISION_SUPPORTED, "precision: $1", "precision"),
    (M.OUTPUT_FORMAT_SUPPORTED, "output: $1", "format"),
    (C.CHECKPOINT_DTYPE, "checkpoint dtype: $1", "dtype"),
)


def capability_matrix(models: str) -> str:
    """Every supported capability of the matched models, one series per (model, capability)."""
    arms = [
        f'label_replace({_sel(f.exposed_name, models)} == 1, "capability", "{text}", "{src}", "(.*)")'
        for f, text, src in _CAPABILITY_SETS
    ]
    arms.append('label_replace(label_join(' + _sel(M.RESOLUTION_SUPPORTED.exposed_name, models)
                + ' == 1, "capability", "x", "width", "height"), "capability", "resolution: $1", "capability", "(.*)")')
    arms.append('label_replace(' + _sel(M.LORA_SUPPORTED.exposed_name, models)
                + ' == 1, "capability", "LoRA adapters", "", "")')
    arms.append('label_replace(label_join(' + _sel(B.MODEL_FITS_GPU.exposed_name, models)
                + ' == 1, "capability", ", offload ", "gpu", "offload"), '
                '"capability", "fits GPU $1", "capability", "(.*)")')
    return "max by (model, capability) (\n    " + "\n  or ".join(arms) + "\n)"


_COUNT_FIGURES = (
    (M.FRAMES_DEFAULT, "default frames"),
    (M.FPS_DEFAULT, "default fps"),
    (M.STEPS_DEFAULT, "default steps"),
    (M.EXPERTS, "denoising experts"),
    (C.CHECKPOINT_EXPERTS, "experts in checkpoint"),
    (M.SIZE_MULTIPLE, "size multiple (px)"),
)
_PARAMETER_FIGURES = (
    (M.PARAMETERS, "parameters (published)"),
    (M.ACTIVE_PARAMETERS, "active parameters per step"),
    (C.CHECKPOINT_PARAMETERS, "parameters (checkpoint)"),
)


def _figure_matrix(figures: tuple[tuple[Family, str], ...], models: str, label: str = "figure") -> str:
    arms = [f'label_replace({_sel(f.exposed_name, models)}, "{label}", "{text}", "", "")' for f, text in figures]
    return f"max by (model, {label}) (\n    " + "\n  or ".join(arms) + "\n)"


def count_figures(models: str) -> str:
    return _figure_matrix(_COUNT_FIGURES, models)


def parameter_figures(models: str) -> str:
    return _figure_matrix(_PARAMETER_FIGURES, models)


def vram_figures(models: str) -> str:
    """Published minimum VRAM per offload mode."""
    vram = _sel(M.VRAM_MIN_BYTES.exposed_name, models)
    return f'max by (model, figure) (label_replace({vram}, "figure", "min VRAM, offload $1", "offload", "(.*)"))'


def models_single(model: str = "model", instance: str = "instance") -> str:
    return f"{_is('instance', instance)}, {_is('model', model)}"


def models_pair(a: str = "model_a", b: str = "model_b", ia: str = "instance_a", ib: str = "instance_b") -> str:
    return f"{_pair(ia, ib, 'instance')}, {_pair(a, b, 'model')}"


def capability_differences(models: str) -> str:
    """How many capabilities only one of the two models has."""
    return f"count(count by (capability) ({capability_matrix(models)}) == 1) or vector(0)"


def recommendation_scores(instance: str = "instance") -> str:
    s = _sel(B.MODEL_RECOMMENDATION_SCORE.exposed_name, _is("instance", instance))
    return f'max by (use, model) (label_join({s}, "use", " / ", "use_case", "priority"))'
