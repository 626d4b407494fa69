"""Checkpoint facts of the forms other than a diffusers directory: official layout, single files, GGUF.

Read from the scan and the weight files' tensor tables only (no torch). Parameters are
elements of the tensor table; the scale tensors of fp8-scaled files (``scale_weight``,
``scale_input``, ``scaled_fp8``) and GGUF's elements-not-bytes are handled so a quantised
file counts the parameters of the model it quantises. Architecture figures come from
``config.json`` (official layout) or from tensor shapes (single files), under diffusers'
names, so the catalog comparison reads every form alike.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from ..scan.safetensors_header import TensorInfo, dtype_name
from ..scan import Scan
from ..scan.tables import TableError, TensorTable, read_table

# Tensors that hold quantisation scales, not model parameters.
SCALE_TENSOR = re.compile(r"(^|\.)(scale_weight|scale_input|scaled_fp8|weight_scale|input_scale)$")
_PREFIXES = ("model.diffusion_model.", "diffusion_model.", "model.")
_BLOCK = re.compile(r"^blocks\.(\d+)\.")
_IN_DIM_TYPE = {16: "t2v", 36: "i2v", 48: "ti2v"}
_GGUF_DTYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64", "I8": "int8",
                "I16": "int16", "I32": "int32", "I64": "int64"}


def is_parameter(name: str) -> bool:
    return not SCALE_TENSOR.search(name)


def stored_dtype(fmt: str, code: str) -> str:
    """Torch-style names for safetensors codes; GGUF quant types as their lower-case ggml names (q4_k)."""
    if fmt == "gguf":
        return _GGUF_DTYPES.get(code, code.lower())
    return dtype_name(code)


def _strip(name: str) -> str:
    for p in _PREFIXES:
        if name.startswith(p):
            return name[len(p):]
    return name


def architecture(tensors: Mapping[str, TensorInfo]) -> dict[str, int]:
    """Architecture figures from tensor shapes (official tensor names), under diffusers' config names
    where diffusers has one (``dim`` as the official config names it): what the catalog comparison
    and the FLOPs count read."""
    names = {_strip(n): t for n, t in tensors.items()}
    out: dict[str, int] = {}
    pe = names.get("patch_embedding.weight")
    if pe is not None and len(pe.shape) == 5:
        out.update(dim=pe.shape[0], in_channels=pe.shape[1], patch_size=list(pe.shape[2:]))
    for key, tensor in (("text_dim", "text_embedding.0.weight"), ("freq_dim", "time_embedding.0.weight")):
        t = names.get(tensor)
        if t is not None and len(t.shape) == 2:
            out[key] = t.shape[1]
    blocks = {int(m.group(1)) for n in names if (m := _BLOCK.match(n))}
    if blocks:
        out["num_layers"] = max(blocks) + 1
    ffn = names.get("blocks.0.ffn.0.weight") or names.get("blocks.0.ffn.net.0.proj.weight")
    if ffn is not None and len(ffn.shape) == 2:
        out["ffn_dim"] = ffn.shape[0]
    head = names.get("head.head.weight") or names.get("proj_out.weight")
    if head is not None and len(head.shape) == 2 and pe is not None and len(pe.shape) == 5:
        patch = pe.shape[2] * pe.shape[3] * pe.shape[4]
        if patch and head.shape[0] % patch == 0:
            out["out_channels"] = head.shape[0] // patch
    return out


def official_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """An official config.json under diffusers' names."""
    out: dict[str, Any] = {}
    for src, dst in (("num_layers", "num_layers"), ("num_heads", "num_attention_heads"), ("in_dim", "in_channels"),
                     ("out_dim", "out_channels"), ("ffn_dim", "ffn_dim"), ("text_len", "text_len"), ("dim", "dim"),
                     ("freq_dim", "freq_dim")):
        if isinstance(cfg.get(src), int):
            out[dst] = cfg[src]
    if isinstance(cfg.get("dim"), int) and isinstance(cfg.get("num_heads"), int) and cfg["num_heads"]:
        out["attention_head_dim"] = cfg["dim"] // cfg["num_heads"]
    return out


def derive(scan: Scan, tables: Mapping[str, TensorTable] | None = None) -> Any:
    """CheckpointFacts of a scanned official layout or single-file model; never raises for a bad file."""
    from .facts import CheckpointFacts, _Problems

    problems = _Problems(scan.root)
    for i in scan.issues:
        problems.add(f"{i.path}: {i.detail}" if i.path else i.detail)
    tables = dict(tables or {})
    tensors_by: dict[str, dict[str, TensorInfo]] = {}
    formats: dict[str, str] = {}
    complete: dict[str, bool] = {}
    for w in scan.weights:
        comp = w.component
        complete.setdefault(comp, True)
        if w.size is None:
            complete[comp] = False
            continue
        t = tables.get(w.rel)
        if t is None:
            try:
                t = read_table(scan.root / w.rel, w.format)
            except (TableError, OSError) as e:
                problems.add(f"{w.rel}: {e}")
                complete[comp] = False
                continue
        if t.size_problem(w.size) is not None:
            problems.add(f"{w.rel}: {t.size_problem(w.size)[1]}")  # counted from the header still
        if w.format == "pth":
            continue  # no tensor table without unpickling
        tensors_by.setdefault(comp, {}).update(t.tensors)
        formats[comp] = w.format
    params = {c: sum(t.numel for n, t in ts.items() if is_parameter(n)) for c, ts in tensors_by.items()
              if complete.get(c)}
    denoisers = list(scan.experts)
    denoiser = (sum(params[c] for c in denoisers) if denoisers and all(c in params for c in denoisers) else None)
    by_comp = {c: tuple(sorted({stored_dtype(formats[c], t.dtype) for t in ts.values()})) for c, ts in tensors_by.items()}
    tcfg: dict[str, Any] = {}
    if scan.form == "official":
        rel = f"{denoisers[0]}/config.json" if denoisers and denoisers[0] != "transformer" else "config.json"
        cfg = _json(scan.root / rel)
        if cfg is not None:
            tcfg = official_config(cfg)
    first = tensors_by.get(denoisers[0]) if denoisers else None
    if first:
        tcfg = {**architecture(first), **tcfg}
    model_type = scan.model_type or _IN_DIM_TYPE.get(tcfg.get("in_channels", 0))
    return CheckpointFacts(
        pipeline_class=None, experts=len(denoisers) if denoisers else None, boundary_ratio=None,
        expand_timesteps=None, parameters_by_component=MappingProxyType(params), denoiser_parameters=denoiser,
        dtypes=tuple(sorted({d for ds in by_comp.values() for d in ds})),
        transformer_config=MappingProxyType(tcfg), vae_z_dim=None,
        has_image_encoder="image_encoder" in scan.components, problems=problems.result(),
        components=MappingProxyType(dict(scan.components)), dtypes_by_component=MappingProxyType(by_comp),
        weight_bytes=sum(t.offsets[1] - t.offsets[0] for ts in tensors_by.values() for t in ts.values()),
        form=scan.form, model_type=model_type,
    )


def _json(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None
