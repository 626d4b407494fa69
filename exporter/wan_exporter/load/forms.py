"""Which checkpoint forms a benchmark can load, and the bounded reason for those it cannot.

A benchmark runs the real diffusers pipeline: ``from_pretrained`` on a diffusers directory;
the official Wan layout through diffusers' single-file loader with a local config and the
project's VAE and umt5 mappings (:mod:`.official`); single-file, fp8-scaled (dequantised at
load) and GGUF transformers through ``WanTransformer3DModel.from_single_file`` around a
diffusers base (:mod:`.single_file`). What remains ``unsupported_format``: single files
without a usable base, two files that look like the same expert, and Wan2.1 I2V's official
layout (its open-clip image encoder has no mapping).
"""

from __future__ import annotations

import logging
from typing import Any

from .. import scan as scanning
from ..config import ModelConfig

log = logging.getLogger(__name__)

LOADABLE: frozenset[str] = frozenset({"diffusers", "official", "single_file", "gguf"})


def form_of(target: Any, fmt: str = "auto", scanned: scanning.Scan | None = None) -> str | None:
    """The checkpoint form of ``target``, from ``scanned`` (the model's shared scan) when given."""
    if target is None:
        return None
    return (scanned or scanning.scan(target, fmt)).form


def skip_reason(target: Any, m: ModelConfig | str = "auto", scanned: scanning.Scan | None = None) -> str | None:
    """None when the benchmark can load ``target``; else ``model_missing`` or ``unsupported_format``."""
    if target is None:
        return "model_missing"
    fmt = m if isinstance(m, str) else m.format
    form = form_of(target, fmt, scanned)
    if form is None or form == "diffusers":
        return None  # an unrecognised directory fails to load and says why, as before
    if form not in LOADABLE:
        return "unsupported_format"
    why = why_not(m, target, form, scanned)
    if why is None:
        return None
    log.info("benchmark of %s skipped: %s", getattr(m, "name", target), why)
    return "unsupported_format"


def why_not(m: ModelConfig | str, target: Any, form: str, scanned: scanning.Scan | None = None) -> str | None:
    """Why this form of ``target`` cannot be benchmarked, or None when it can."""
    from pathlib import Path

    if form == "official":
        from .official import why_not as official_why

        return official_why(Path(target)) if not isinstance(target, (list, tuple)) else "a list of files is no folder"
    if isinstance(m, str):
        return "single-file and GGUF models need a configured models[].base"
    from .single_file import why_not as single_why

    return single_why(m, target, form, scanned)
