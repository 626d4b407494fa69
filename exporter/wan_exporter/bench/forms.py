"""Which checkpoint forms a benchmark can load, and the bounded reason for those it cannot.

A benchmark runs the real diffusers pipeline built with ``from_pretrained`` on a diffusers
directory. The official Wan layout has no diffusers loader that works offline (diffusers'
``scripts/convert_wan_to_diffusers.py`` fetches configs from the Hub), so its runs are
skipped with ``unsupported_format`` rather than faked; so are single-file and GGUF models
until their loaders (``WanTransformer3DModel.from_single_file`` with a diffusers base) run here.
"""

from __future__ import annotations

from typing import Any

from .. import scan as scanning

LOADABLE: frozenset[str] = frozenset({"diffusers"})


def skip_reason(target: Any, fmt: str = "auto") -> str | None:
    """None when the benchmark can load ``target``; else ``unsupported_format``."""
    if target is None:
        return "model_missing"
    form = scanning.scan(target, fmt).form
    if form is None or form in LOADABLE:
        return None  # an unrecognised directory fails to load and says why, as before
    return "unsupported_format"
