"""Load check: can the installed diffusers build this pipeline? Run in a spawned child.

The child (:func:`wan_exporter.bench.child.load_check`) imports torch and diffusers and
builds the pipeline on the meta device; that must never happen in the exporter process,
and a hang or crash there must cost one failed check, so the child is bounded by
:func:`wan_exporter.childproc.run_in_child`. The child's findings are folded into the
bounded kinds: ``version_skew`` stays, anything else is ``load_failed``.
"""

from __future__ import annotations

import inspect
import time
from pathlib import Path
from typing import Any

from ..childproc import run_in_child
from ..state import CheckResult
from .issues import Findings, make_result

TARGET = "wan_exporter.health.loadcheck:entry"
DEFAULT_TIMEOUT = 300.0


def entry(request: dict, progress: Any) -> dict:
    """Child side: adapt ``bench.child.load_check(request)`` to run_in_child's ``fn(request, progress)``."""
    from ..bench.child import load_check

    if len(inspect.signature(load_check).parameters) >= 2:
        return load_check(request, progress)
    return load_check(request)


def check(model: str, model_dir: Path | None, kind: str | None = None, pipeline: str | None = None,
          timeout: float | None = None, kill_grace: float = 10.0, target: str = TARGET) -> CheckResult:
    """Run the load check. facts: load_seconds (inside the child), versions (diffusers, torch, ...)."""
    t0 = time.perf_counter()
    findings = Findings()
    facts: dict[str, Any] = {}
    if model_dir is None or not model_dir.is_dir():
        return make_result(model, "load", t0, findings, facts, model_dir)
    limit = timeout or DEFAULT_TIMEOUT
    request = {"task": "load_check", "model_dir": str(model_dir), "kind": kind, "pipeline": pipeline}
    out = run_in_child(target, request, timeout=limit, kill_grace=kill_grace)
    res = out.result
    if out.timed_out:
        findings.add("load_failed", f"timed out after {limit:g} s")
    elif res is None:
        how = f"killed by {out.signal_name}" if out.signal_name else f"exit code {out.exitcode}"
        findings.add("load_failed", f"the load-check process died without a result ({how})")
    else:
        for i in res.get("issues") or ():
            if not isinstance(i, dict):
                continue
            k = "version_skew" if i.get("kind") == "version_skew" else "load_failed"
            findings.add(k, str(i.get("detail", ""))[:500])
        if not res.get("success", False) and not findings.items:
            findings.add("load_failed", str(res.get("detail") or res.get("reason") or "failed")[:500])
        if isinstance(res.get("duration_seconds"), (int, float)):
            facts["load_seconds"] = float(res["duration_seconds"])
        versions = res.get("versions")
        if isinstance(versions, dict):
            facts["versions"] = {str(k): str(v) for k, v in versions.items()}
    return make_result(model, "load", t0, findings, facts, model_dir)
