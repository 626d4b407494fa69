"""Single-file checkpoints: one file per denoiser, named by the config.

- ComfyUI repackaged: ``wan2.2_{t2v,i2v}_{high,low}_noise_14B_{fp16,fp8_scaled}.safetensors``,
  ``wan2.2_ti2v_5B_fp16.safetensors``; the fp8 files hold ``F8_E4M3`` weights and ``scale_weight``
  tensors. Kijai's ``*_fp8_e4m3fn_scaled_KJ.safetensors`` alike.
- GGUF quantisations (``Wan2.2-T2V-A14B-HighNoise-Q4_K_S.gguf``).

An A14B model needs two files, high and low noise; which is which comes from the name
(``high``/``low``), else from the order the config lists them.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Sequence

from ..findings import oserror_detail, oserror_kind
from .walk import Walk, file_format

_HIGH = re.compile(r"high[_-]?noise|(?<![a-z])high(?![a-z])", re.I)
_LOW = re.compile(r"low[_-]?noise|(?<![a-z])low(?![a-z])", re.I)
_TYPE = re.compile(r"(?<![a-z0-9])(ti2v|i2v|t2v|flf2v|s2v|vace|animate)(?![a-z0-9])", re.I)


def root_of(paths: Sequence[Path]) -> Path:
    parents = [str(p.parent) for p in paths]
    try:
        return Path(os.path.commonpath(parents)) if parents else Path(".")
    except ValueError:  # mixed absolute and relative paths
        return paths[0].parent


def component_names(names: Sequence[str]) -> list[str]:
    """Denoiser component per file: high noise is ``transformer``, low noise ``transformer_2``."""
    out: list[str] = []
    for n in names:
        if _HIGH.search(n) and not _LOW.search(n):
            out.append("transformer")
        elif _LOW.search(n):
            out.append("transformer_2")
        else:
            out.append("")
    free = [c for c in ("transformer", "transformer_2") if c not in out]
    out = [c or (free.pop(0) if free else f"transformer_{i + 1}") for i, c in enumerate(out)]
    return out


def model_type_from_names(names: Sequence[str]) -> str | None:
    types = {m.group(1).lower() for n in names if (m := _TYPE.search(n))}
    return types.pop() if len(types) == 1 else None


def read(w: Walk, paths: Sequence[Path]) -> tuple[dict[str, str], tuple[str, ...], str | None]:
    """Stat each named file; returns (components, experts, model type from the names)."""
    rels = [os.path.relpath(p, w.root) if p.is_absolute() == w.root.is_absolute() else str(p) for p in paths]
    comps = component_names([p.name for p in paths])
    components: dict[str, str] = {}
    for rel, comp in zip(rels, comps):
        fmt = file_format(rel)
        if fmt is None or fmt == "pth":
            w.expected.append(rel)
            w.findings.add("not_a_model", "not a transformer checkpoint (.safetensors or .gguf expected)", rel)
            continue
        components[comp] = fmt
        try:
            st = os.stat(w.root / rel)
        except OSError as e:
            kind = oserror_kind(e)
            w.missing_weight(rel, comp, "missing" if kind == "missing_file" else oserror_detail(e), fmt, kind)
            continue
        if not stat.S_ISREG(st.st_mode):
            w.missing_weight(rel, comp, "not a regular file", fmt)
            continue
        w.expect(rel, weight_of=comp, fmt=fmt)
    experts = tuple(c for c in ("transformer", "transformer_2") if c in components)
    experts += tuple(sorted(c for c in components if c not in experts))
    return components, experts, model_type_from_names([p.name for p in paths])
