"""Benchmarks of single-file and GGUF transformers through diffusers' own loaders.

The pattern the diffusers docs and SGLang use: each denoiser comes from
``WanTransformer3DModel.from_single_file(file, config=<base>, subfolder="transformer"|"transformer_2")``
(GGUF with ``GGUFQuantizationConfig``), and the text encoder, tokenizer, VAE and scheduler
from a diffusers-format base directory (``models[].base``), which also supplies the
transformer configs (diffusers 0.42 detects only Wan2.1 configs by itself).

ComfyUI's and Kijai's fp8-scaled files are not benchmarked: diffusers 0.42's single-file
converter drops their ``scale_weight`` tensors, so the model would run on unscaled fp8
weights, which is not the checkpoint. They are skipped as ``unsupported_format``.
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
    from .. import scan as scanning
    from ..scan.tables import TableError, read_table
    from ..checkpoint.forms import SCALE_TENSOR

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
    sc = scanned or scanning.scan(target, m.format)
    for w in sc.weights:
        if w.format != "safetensors" or w.size is None:
            continue
        try:
            table = read_table(sc.root / w.rel, w.format)
        except (TableError, OSError):
            return None  # the run fails to load and says why; the health checks name the file
        if any(SCALE_TENSOR.search(n) for n in table.tensors):
            return f"{w.rel} is fp8-scaled: diffusers' single-file loader drops its scale tensors"
    return None


def request_fields(m: ModelConfig, target: Any, form: str | None) -> dict[str, Any]:
    """What the child needs to load the denoisers from single files; {} for a diffusers directory."""
    if form not in ("single_file", "gguf"):
        return {}
    from ..scan.single import component_names

    files = _files(target)
    return {
        "model_dir": str(Path(m.base or "").expanduser()),
        "transformer_files": dict(zip(component_names([f.name for f in files]), map(str, files))),
        "transformer_format": form,
    }


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
        if req.get("transformer_format") == "gguf":
            from diffusers import GGUFQuantizationConfig

            kw["quantization_config"] = GGUFQuantizationConfig(compute_dtype=dtype or torch.bfloat16)
        out[name] = WanTransformer3DModel.from_single_file(path, **kw)
    return out
