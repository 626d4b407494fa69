"""Layout check: the files the model's form promises are all there.

The form and its promises come from :func:`wan_exporter.scan.scan` (a diffusers directory,
the official Wan layout, single safetensors files or GGUF files); only ``stat``, listings
and small JSON files are read, so the check is cheap enough to run every few seconds.
The scan is returned with the result so the header and hash checks of the same cycle can
read it instead of walking the directory again.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..scan import MAX_ENTRIES, MAX_JSON_BYTES, Scan, scan
from ..scan.diffusers_dir import role
from ..scan.walk import TOKENIZER_FILES
from ..state import CheckResult
from ..findings import Findings, make_result

Layout = Scan  # the name the checks used before every form had a reader


def root_of(target: Any, sc: Scan | None = None) -> Path | None:
    """The directory whose disappearance means the model is gone."""
    if target is None:
        return None
    if sc is not None:
        return sc.root if sc.files else Path(target) if not isinstance(target, (list, tuple)) else sc.root
    if isinstance(target, (list, tuple)):
        return Path(target[0]).parent if target else None
    p = Path(target)
    return p.parent if p.is_file() else p


def facts_of(lay: Scan) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    if lay.found:  # a path that is not there promises nothing we could count
        facts.update(files_expected=len(lay.expected), files_present=len(lay.present), size_bytes=lay.size_bytes)
    if lay.model_index is not None:
        facts["model_index"] = lay.model_index
    if lay.form:
        facts["form"] = lay.form
    if lay.pipeline:
        facts["pipeline"] = lay.pipeline
    if lay.model_type:
        facts["model_type"] = lay.model_type
    if lay.experts:
        facts["experts"] = len(lay.experts)
    if not lay.complete:
        facts["complete"] = False
    return facts


def check(model: str, model_dir: Any, max_entries: int = MAX_ENTRIES, fmt: str = "auto",
          scanned: Scan | None = None) -> CheckResult:
    """Run the layout check. facts: files_expected, files_present, size_bytes (weights, by stat), form."""
    t0 = time.perf_counter()
    findings = Findings()
    if model_dir is None:
        return make_result(model, "layout", t0, findings, {}, None)
    lay = scanned or scan(model_dir, fmt, max_entries)
    findings.extend(lay.issues)
    return make_result(model, "layout", t0, findings, facts_of(lay), root_of(model_dir, lay))


__all__ = ["Layout", "MAX_ENTRIES", "MAX_JSON_BYTES", "TOKENIZER_FILES", "check", "facts_of", "role", "root_of",
           "scan"]
