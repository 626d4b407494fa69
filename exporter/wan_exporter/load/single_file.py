"""Benchmarks of single-file and GGUF transformers through diffusers' own loaders.

The pattern the diffusers docs and SGLang use: each denoiser comes from
``WanTransformer3DModel.from_single_file(file, config=<base>, subfolder="transformer"|"transformer_2")``
(GGUF with ``GGUFQuantizationConfig``), and the text encoder, tokenizer, VAE and scheduler
from a diffusers-format base directory (``models[].base``), which also supplies the
transformer configs (diffusers 0.42 detects only Wan2.1 configs by itself).

ComfyUI's and Kijai's fp8-scaled files store ``F8_E4M3`` weights with a ``scale_weight``
each, which diffusers 0.42's single-file converter drops (it would run unscaled weights).
They are dequantised here instead, ``weight.float() * scale_weight`` cast to the compute
dtype, before the state dict reaches ``from_single_file``: the run measures the model the
file holds, at the compute dtype's speed and memory, and is labelled with both
(``weight_format="fp8_e4m3fn_scaled"``, ``compute_dtype``). fp8 matmuls (``torch._scaled_mm``)
need Hopper or newer; dequantising works on every device, CPUs included.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import ModelConfig


def _files(target: Any) -> list[Path]:
    if isinstance(target, (list, tuple)):
        return [Path(p) for p in target]
    return [Path(target)]


def why_not(m: ModelConfig, target: Any, form: str, scanned: Any = None) -> str | None:
    """A short reason this single-file/GGUF model cannot be benchmarked, or None."""
    from ..scan.single import component_names

    names = [f.name for f in _files(target)]
    comps = component_names(names)
    for comp in sorted({c for c in comps if comps.count(c) > 1}):
        same = ", ".join(n for n, c in zip(names, comps) if c == comp)
        return f"{same} all look like the denoiser {comp}: name which file is the high-noise and which the low-noise expert"
    if m.base is None:
        return "no models[].base: single-file and GGUF models need a diffusers base for the other components"
    base = Path(m.base).expanduser()
    if not (base / "model_index.json").is_file():
        return f"models[].base {m.base} is not a diffusers directory"
    return None


def request_fields(m: ModelConfig, target: Any, form: str | None) -> dict[str, Any]:
    """What the child needs to load a form other than a diffusers directory; {} for one.

    The official layout loads whole from its folder; single files and GGUF load their
    denoisers around the diffusers base (which then replaces ``model_dir``)."""
    if form == "official":
        return {"checkpoint_form": "official"}
    if form not in ("single_file", "gguf"):
        return {}
    from ..scan.single import component_names

    files = _files(target)
    return {
        "model_dir": str(Path(m.base or "").expanduser()),
        "transformer_files": dict(zip(component_names([f.name for f in files]), map(str, files))),
        "transformer_format": form,
        "checkpoint_form": form,
    }


def dequantised_state(path: str, dtype: Any) -> tuple[dict[str, Any], bool]:
    """The file's tensors with every fp8 ``X.weight`` replaced by ``X.weight * X.scale_weight`` in
    ``dtype`` and the scale tensors dropped; (state, True) when the file was fp8-scaled.

    A ``scale_weight`` without its weight, or an fp8 weight without its scale, is an error naming
    the tensor: running it unscaled would not be the checkpoint."""
    import torch
    from safetensors.torch import load_file

    from ..checkpoint.forms import SCALE_TENSOR

    sd = load_file(path)
    scales = {n for n in sd if SCALE_TENSOR.search(n)}
    if not scales:
        return sd, False
    fp8 = {getattr(torch, "float8_e4m3fn", None), getattr(torch, "float8_e5m2", None)} - {None}
    out: dict[str, Any] = {}
    for name, t in sd.items():
        if name in scales:
            if name.endswith(".scale_weight") and name[: -len("scale_weight")] + "weight" not in sd:
                raise ValueError(f"{path}: {name} scales no weight")
            continue
        if t.dtype in fp8:
            scale_name = name[: -len("weight")] + "scale_weight" if name.endswith(".weight") else ""
            if scale_name not in sd:
                raise ValueError(f"{path}: fp8 tensor {name} has no scale_weight; refusing to run it unscaled")
            out[name] = (t.to(torch.float32) * sd[scale_name].to(torch.float32)).to(dtype)
        else:
            out[name] = t.to(dtype) if torch.is_floating_point(t) else t
    return out, True


def load_transformers(req: dict[str, Any], dtype: Any) -> dict[str, Any]:
    """The pipeline's denoisers loaded from single files (runs in the benchmark child)."""
    files = req.get("transformer_files") or {}
    if not files:
        return {}
    import torch
    from diffusers import WanTransformer3DModel

    out: dict[str, Any] = {}
    for name, path in sorted(files.items()):
        kw: dict[str, Any] = {"config": req["model_dir"], "subfolder": name, "local_files_only": True,
                              "torch_dtype": dtype}
        source: Any = path
        if req.get("transformer_format") == "gguf":
            from diffusers import GGUFQuantizationConfig

            kw["quantization_config"] = GGUFQuantizationConfig(compute_dtype=dtype or torch.bfloat16)
        elif path.endswith(".safetensors"):
            state, scaled = dequantised_state(path, dtype or torch.bfloat16)
            if scaled:
                source = state
        out[name] = WanTransformer3DModel.from_single_file(source, **kw)
    return out
