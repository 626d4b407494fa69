"""Load check: can the installed diffusers build this pipeline? Run in a spawned child.

:func:`load_check` imports torch and diffusers and builds the pipeline on the meta device;
that must never happen in the exporter process, and a hang or crash there must cost one
failed check, so :func:`check` runs it in a child bounded by
:func:`wan_exporter.childproc.run_in_child`. The child's findings are folded into the
bounded kinds: ``version_skew`` stays, anything else is ``load_failed``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from ..measure.phases import detail, versions
from ..load.pipeline import offline_env, pipeline_class
from ..childproc import run_in_child
from ..state import CheckResult
from ..findings import Findings, make_result

TARGET = "wan_exporter.health.loadcheck:entry"
DEFAULT_TIMEOUT = 300.0


def entry(request: dict, progress: Any) -> dict:
    """Child side: run_in_child calls ``fn(request, progress)``; the check reports no progress."""
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


# --------------------------------------------------------------------------- child side


def _issue(kind: str, detail: str) -> dict[str, str]:
    return {"kind": kind, "detail": detail}


def _init_params(cls: Any) -> set[str] | None:
    import inspect

    try:
        params = inspect.signature(cls.__init__).parameters
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return set(params) - {"self"}


def _component_class(library: str, name: str) -> Any:
    import importlib

    mod = importlib.import_module(library)
    cls = getattr(mod, name, None)
    if cls is None:
        raise AttributeError(f"{library} {getattr(mod, '__version__', '')} has no class {name}")
    return cls


def _meta_component(cls: Any, library: str, sub: Path) -> Any:
    """Instantiate a component from its files without reading weights: configs only, meta tensors."""
    import torch

    names = {c.__name__ for c in cls.__mro__}
    if "ModelMixin" in names:  # diffusers model
        config = cls.load_config(str(sub))
        with torch.device("meta"):
            return cls.from_config(config)
    if "PreTrainedModel" in names:  # transformers model
        config = cls.config_class.from_pretrained(str(sub), local_files_only=True)
        with torch.device("meta"):
            return cls._from_config(config)
    if "SchedulerMixin" in names or "ConfigMixin" in names:
        return cls.from_config(cls.load_config(str(sub)))
    return cls.from_pretrained(str(sub), local_files_only=True)  # tokenizer, image processor: small files


def _unknown_config_keys(cls: Any, config: dict[str, Any]) -> list[str]:
    params = _init_params(cls)
    if params is None:
        return []
    return sorted(k for k in config if not k.startswith("_") and k not in params)


def load_check(request: dict[str, Any]) -> dict[str, Any]:
    """Build the pipeline on the meta device to find version skew without loading weights.

    Catches what a real load would trip over first: an unknown pipeline or component
    class, a missing component folder, config keys this diffusers does not know
    (``boundary_ratio``/``transformer_2`` on an old release), a failed import (ftfy).
    """
    offline_env()
    t0 = time.perf_counter()
    issues: list[dict[str, str]] = []
    facts: dict[str, Any] = {}
    model_dir = Path(str(request.get("model_dir", "")))
    try:
        _load_check(model_dir, request.get("pipeline"), issues, facts)
    except Exception as exc:  # noqa: BLE001 - the check reports, never raises
        issues.append(_issue("load_failed", detail(exc)))
    return {
        "success": not issues, "issues": issues, "versions": versions(), "facts": facts,
        "duration_seconds": time.perf_counter() - t0,
    }


def _load_check(model_dir: Path, wanted: str | None, issues: list[dict[str, str]], facts: dict[str, Any]) -> None:
    index_path = model_dir / "model_index.json"
    if not index_path.is_file():
        kind = "not_diffusers_layout" if model_dir.is_dir() else "load_failed"
        issues.append(_issue(kind, f"no model_index.json in {model_dir}"))
        return
    index = json.loads(index_path.read_text(encoding="utf-8"))
    import diffusers  # noqa: F401 - fails loudly on a broken install
    import torch

    name = str(index.get("_class_name") or wanted or "")
    try:
        pipe_cls = pipeline_class(name)
    except ImportError as exc:
        issues.append(_issue("version_skew", str(exc)))
        return
    except Exception as exc:  # noqa: BLE001 - e.g. ftfy missing on diffusers <= 0.36
        issues.append(_issue("version_skew", f"importing {name}: {detail(exc)}"))
        return
    facts["pipeline"] = name
    ftfy_issue = _prompt_cleaning_issue(pipe_cls)
    if ftfy_issue:
        issues.append(_issue("version_skew", ftfy_issue))
    params = _init_params(pipe_cls) or set()
    components: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, spec in index.items():
        if key.startswith("_"):
            continue
        if params and key not in params:
            issues.append(_issue("version_skew", f"model_index.json names '{key}', which {name} in this diffusers does not accept"))
            continue
        if not isinstance(spec, list):
            extra[key] = spec  # pipeline config such as boundary_ratio, expand_timesteps
            continue
        if len(spec) != 2 or spec[0] is None or spec[1] is None:
            components[key] = None
            continue
        _check_component(model_dir, key, spec, components, issues)
    if issues:
        return
    with torch.device("meta"):
        pipe = pipe_cls(**components, **extra)
    experts = [n for n in ("transformer", "transformer_2") if getattr(pipe, n, None) is not None]
    facts["experts"] = len(experts)
    facts["parameters"] = int(sum(p.numel() for n in experts for p in getattr(pipe, n).parameters()))
    facts["components"] = sorted(k for k, v in components.items() if v is not None)


def _prompt_cleaning_issue(pipe_cls: Any) -> str:
    """Run the pipeline module's own prompt cleaner once.

    diffusers 0.42.1 guards ftfy in WanPipeline but WanImageToVideoPipeline (and the
    animate/VACE/video2video modules) call ``ftfy.fix_text`` unguarded: without ftfy they
    load fine and die with NameError at the first prompt. Older releases fail at import.
    """
    module = sys.modules.get(pipe_cls.__module__)
    clean = getattr(module, "prompt_clean", None)
    if clean is None:
        return ""
    try:
        clean("a  cat &amp; a dog")
    except (NameError, ImportError) as exc:
        return f"{pipe_cls.__name__} cleans prompts with ftfy, which is not installed ({type(exc).__name__}: {exc})"
    return ""


def _check_component(model_dir: Path, key: str, spec: list[Any], components: dict[str, Any], issues: list[dict[str, str]]) -> None:
    library, cls_name = spec
    try:
        cls = _component_class(library, cls_name)
    except Exception as exc:  # noqa: BLE001
        issues.append(_issue("version_skew", f"{key}: {detail(exc)}"))
        return
    sub = model_dir / key
    if not sub.is_dir():
        issues.append(_issue("load_failed", f"{key}: component folder missing"))
        return
    cfg_file = sub / "config.json"
    if library == "diffusers" and cfg_file.is_file():
        unknown = _unknown_config_keys(cls, json.loads(cfg_file.read_text(encoding="utf-8")))
        if unknown:
            issues.append(_issue("version_skew", f"{key}: config keys unknown to {cls_name}: {', '.join(unknown)}"))
    try:
        components[key] = _meta_component(cls, library, sub)
    except Exception as exc:  # noqa: BLE001
        issues.append(_issue("load_failed", f"{key}: {detail(exc)}"))
