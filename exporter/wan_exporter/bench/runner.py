"""Run one benchmark generation in a spawned child and classify what happened.

The exporter process never imports torch: the child (:mod:`wan_exporter.bench.child`)
does the generation and sends back plain figures; this module turns the child's fate
(result, timeout, signal, silence) into one :class:`BenchmarkResult` with a bounded reason.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from .. import catalog
from . import faults
from ..load import single_file
from ..load.forms import form_of
from ..childproc import ChildOutcome, WarmWorker, run_in_child
from ..config import Config, ModelConfig, Profile
from ..contract.labels import FAILURE_REASONS
from ..state import BenchmarkResult, frozen_map

CHILD_TARGET = "wan_exporter.bench.child:run_benchmark"

def build_request(m: ModelConfig, profile: Profile, model_dir: Path, output_path: str | None = None,
                  scanned: Any = None) -> dict:
    entry = catalog.CATALOG[m.kind]
    image = profile.image or entry.task == "i2v"
    return {
        "model_dir": str(model_dir),
        "kind": m.kind,
        "pipeline": entry.pipeline,
        "device": m.device,
        "dtype": m.dtype,
        "offload": m.offload,
        "vae_tiling": m.vae_tiling,
        "width": profile.width,
        "height": profile.height,
        "frames": profile.frames,
        "steps": profile.steps,
        "guidance_scale": profile.guidance_scale,
        # guidance_scale_2 only means something with two experts (diffusers raises otherwise)
        "guidance_scale_2": profile.guidance_scale_2 if entry.experts > 1 else None,
        "seed": profile.seed,
        "prompt": profile.prompt,
        "negative_prompt": profile.negative_prompt,
        "image": image,
        # Set only by the fault tests, through the environment; never by the config.
        "fault": faults.from_environment(m.name),
        "output_path": output_path,
        "fps": entry.fps_default,
        "repeat_for_reproducibility": False,
        # single-file and GGUF denoisers around a diffusers base (replaces model_dir)
        **single_file.request_fields(m, model_dir, form_of(model_dir, m.format, scanned)
                                   if m.format != "diffusers" else None),
    }


def classify(outcome: ChildOutcome) -> tuple[str, str]:
    """(reason, detail) for a run that did not return a successful result."""
    if outcome.timed_out:
        return "timeout", f"no result within the profile timeout ({outcome.duration_seconds:.1f}s)"
    r = outcome.result
    if r is not None:
        reason = r.get("reason") or "unknown"
        return (reason if reason in FAILURE_REASONS else "unknown"), str(r.get("detail", ""))
    if outcome.exitcode is not None and outcome.exitcode < 0:
        return "crash", f"child killed by {outcome.signal_name}"
    return "crash", f"child exited with code {outcome.exitcode} without a result"


def to_result(m: ModelConfig, profile_name: str, outcome: ChildOutcome, started_at: float) -> BenchmarkResult:
    r = outcome.result or {}
    ok = bool(r.get("success")) and not outcome.timed_out
    reason, detail = ("", "") if ok else classify(outcome)

    def f(key: str) -> float | None:
        v = r.get(key)
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    def i(key: str) -> int | None:
        v = r.get(key)
        return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    return BenchmarkResult(
        model=m.name,
        profile=profile_name,
        success=ok,
        started_at=started_at,
        finished_at=time.time(),
        reason=reason,
        detail=detail,
        duration_seconds=f("duration_seconds") if ok else None,
        process_start_seconds=outcome.start_seconds,
        phases=frozen_map({k: float(v) for k, v in (r.get("phases") or {}).items() if isinstance(v, (int, float))})
        if ok else frozen_map(),
        steps=i("steps"),
        seconds_per_step=f("seconds_per_step") if ok else None,
        frames=i("frames"),
        width=i("width"),
        height=i("height"),
        peak_memory_bytes=i("peak_memory_bytes"),
        peak_memory_kind=str(r.get("peak_memory_kind") or ""),
        energy_joules=f("energy_joules") if ok else None,
        sanity=frozen_map({k: bool(v) for k, v in (r.get("sanity") or {}).items()}),
        output_digest=str(r.get("output_digest") or ""),
        device=str(r.get("device") or m.device),
        gpu_uuid=str(r.get("gpu_uuid") or ""),
        gpu_name=str(r.get("gpu_name") or ""),
    )


def run_once(cfg: Config, m: ModelConfig, profile_name: str, model_dir: Path, output_path: str | None = None,
             on_progress: Callable[[dict], None] | None = None,
             warm: WarmWorker | None = None, scanned: Any = None) -> tuple[BenchmarkResult, dict]:
    """Run one generation now; returns the result and the child's versions (for build_info).

    With ``warm`` the generation runs in that long-lived worker, which keeps the pipeline
    loaded between runs; otherwise in a fresh spawned child.
    """
    profile = cfg.profiles[profile_name]
    request = build_request(m, profile, model_dir, output_path, scanned)
    started = time.time()
    if warm is not None:
        request["keep_loaded"] = True
        outcome = warm.call(request, timeout=profile.timeout, on_progress=on_progress)
    else:
        outcome = run_in_child(CHILD_TARGET, request, timeout=profile.timeout, kill_grace=cfg.benchmark.kill_grace,
                               on_progress=on_progress)
    versions = dict((outcome.result or {}).get("versions") or {})
    return to_result(m, profile_name, outcome, started), versions
