"""Which checkpoint forms a benchmark can load, and the bounded reason for those it cannot.

A benchmark runs the real diffusers pipeline built with ``from_pretrained`` on a diffusers
directory. The official Wan layout has no diffusers loader that works offline (diffusers'
``scripts/convert_wan_to_diffusers.py`` fetches configs from the Hub), so its runs are
skipped with ``unsupported_format`` rather than faked; so are single-file and GGUF models
Single-file and GGUF transformers load through ``WanTransformer3DModel.from_single_file``
around a diffusers base (:mod:`.single_file`); those without a usable base, and fp8-scaled
files (whose scale tensors diffusers drops), are skipped.
"""

from __future__ import annotations

import logging
from typing import Any

from .. import scan as scanning
from ..config import ModelConfig

log = logging.getLogger(__name__)

LOADABLE: frozenset[str] = frozenset({"diffusers", "single_file", "gguf"})


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
    if form not in LOADABLE or isinstance(m, str):
        return "unsupported_format"
    from .single_file import why_not

    why = why_not(m, target, form, scanned)
    if why is None:
        return None
    log.info("benchmark of %s skipped: %s", m.name, why)
    return "unsupported_format"
