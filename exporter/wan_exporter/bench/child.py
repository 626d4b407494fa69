"""The spawn entry of a benchmark: load a Wan pipeline, generate, measure, in a child process.

The exporter never imports torch; the runner spawns a fresh process (multiprocessing
"spawn" context) whose target is :func:`child_main` or :func:`run_benchmark`. A crash,
hang or CUDA fault then costs one child, never the exporter, and the process's peak RSS
is this run's alone.

The parts live beside this module: :mod:`.pipeline` builds and places the pipeline,
:mod:`.measure` times phases and steps and reads memory and energy, :mod:`.sanity` judges
the frames, :mod:`.export` saves the video, :mod:`.warm` keeps a pipeline loaded between
runs, :mod:`.faults` injects the test faults. Everything returned is a plain dict of
builtins (it crosses a pipe); see :mod:`.request`.
"""

from __future__ import annotations

import contextlib
import sys
import time
import traceback
from typing import Any

from . import faults, warm
from ..measure import phases as measure
from .export import export_phase
from .faults import FAULTS
from ..measure.phases import PHASES, Progress, Run, detail, emit, is_cuda
from ..contract.labels import CHILD_FAILURE_REASONS as REASONS
from ..load.pipeline import CudaUnavailable, as_image_pipeline, device_order_env, load_pipeline, offline_env, place
from .request import call_kwargs, conditioning_image, empty_result, normalise_request

_DETAIL_MAX = 2000


def classify(exc: BaseException, stage: str) -> str:
    """Map an exception to a bounded failure reason; ``stage`` is "load" or "generate"."""
    if measure.is_oom(exc):
        return "oom"
    if isinstance(exc, CudaUnavailable) or measure.is_cuda_error(exc):
        return "cuda_error"
    return "load_failed" if stage == "load" else "unknown"  # the process lives: not a crash


# --------------------------------------------------------------------------- one benchmark


def run_benchmark(request: dict[str, Any], progress: Progress | None = None) -> dict[str, Any]:
    """Load, generate once (twice with ``repeat_for_reproducibility``), check and time it.

    Never raises for a benchmark failure: the result says ``success`` False with a
    ``reason`` from :data:`REASONS`. Faults "crash" and "hang" do what they say.
    """
    offline_env()
    device_order_env()
    req = normalise_request(request)
    result = empty_result(req)
    device = str(req["device"])
    stage = "load"
    run: Run | None = None
    try:
        t0 = time.perf_counter()
        import torch  # heavy import deliberately inside the child

        result["import_seconds"] = time.perf_counter() - t0
        result["versions"] = measure.versions()
        pipe, image_mode = _load_phase(torch, req, result, progress)
        stage = "generate"
        measure.install(pipe, image_mode)
        image = conditioning_image(int(req["width"]), int(req["height"]), int(req["seed"])) if image_mode else None
        run = Run(torch, device, progress, generation=1, steps=int(req["steps"]))
        frames = _measured_generation(torch, pipe, req, image, run, result)
        if req["output_path"]:
            export_phase(frames, req, result, progress, detail)
        if req["repeat_for_reproducibility"] and result["success"]:
            _repeat(torch, pipe, req, image, result, progress)
    except BaseException as exc:  # noqa: BLE001 - every failure becomes a result
        if isinstance(exc, KeyboardInterrupt):
            raise
        result.update(success=False, reason=classify(exc, stage), detail=detail(exc))
        if run is not None:
            result["phases"].update(run.finish())
    finally:
        result["peak_memory_bytes"], result["peak_memory_kind"] = measure.peak_memory(sys.modules.get("torch"), device)
        if not result["versions"]:
            result["versions"] = measure.versions()
    return result


def _load_phase(torch: Any, req: dict[str, Any], result: dict[str, Any], progress: Progress | None) -> tuple[Any, bool]:
    """Load, apply the load-time faults, place on the device; returns (pipe, image_mode)."""
    device = str(req["device"])
    if is_cuda(device) and not torch.cuda.is_available():  # fail before spending time on a load
        raise CudaUnavailable(f"device {device} requested, but torch.cuda.is_available() is False")
    result["gpu_name"], result["gpu_uuid"] = measure.gpu_identity(torch, device)
    key = warm.key(req) if req.get("keep_loaded") and req["fault"] == "none" else None
    kept = warm.take(key)
    if kept is not None:
        result["warm"] = True  # nothing loaded this run: no "load" phase is reported
        return kept
    warm.release()  # one pipeline per warm worker: release the previous one's memory first
    emit(progress, {"event": "phase", "phase": "load", "generation": 1})
    t0 = time.perf_counter()
    pipe = load_pipeline(req, faults.model_dir(req))
    image_mode = req["pipeline"] == "WanImageToVideoPipeline" or bool(req["image"])
    if image_mode:
        pipe = as_image_pipeline(pipe)
    faults.poison(pipe, req["fault"])
    place(pipe, req)
    measure.sync(torch, device)
    result["phases"]["load"] = time.perf_counter() - t0
    warm.keep(key, pipe, image_mode)
    return pipe, image_mode


def _generate(pipe: Any, req: dict[str, Any], image: Any, run: Run, fault: str) -> tuple[Any, float]:
    """One pipeline call inside ``run``; returns float frames (frames, H, W, 3) and its wall time."""

    injector = faults.Injector(fault, run.device)

    def on_step_end(p: Any, i: int, t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        if i == 0:
            injector.at_first_step()
        run.step_end(p, i, t)
        return kwargs

    kwargs = call_kwargs(req, image, on_step_end)
    try:
        with run.active():
            t0 = run.now()
            out = pipe(**kwargs)
            t1 = run.now()
    finally:
        injector.restore()
    frames = out.frames[0]
    if hasattr(frames, "detach"):  # output_type="pt" safety: never expected with "np"
        frames = frames.detach().float().cpu().numpy()
    return frames, t1 - t0


def _measured_generation(torch: Any, pipe: Any, req: dict[str, Any], image: Any, run: Run,
                         result: dict[str, Any]) -> Any:
    """The generation the benchmark reports: timed, memory-peaked, energy-metered, sanity-checked."""
    from ..measure import sanity

    device = str(req["device"])
    measure.reset_peak(torch, device)
    with measure.energy(torch, device, result):
        frames, duration = _generate(pipe, req, image, run, req["fault"])
    result["phases"].update(run.finish())
    result["duration_seconds"] = duration
    if "denoise" in result["phases"] and int(req["steps"]) > 0:
        result["seconds_per_step"] = result["phases"]["denoise"] / int(req["steps"])
    expected = (int(req["frames"]), int(req["height"]), int(req["width"]), 3)
    result["sanity"] = sanity.check_frames(frames, expected)
    result["output_digest"] = sanity.digest(frames)
    if getattr(frames, "ndim", 0) == 4:
        result["frames"] = int(frames.shape[0])  # diffusers rounds to 4n+1; the shape check flags it
    _judge(result)
    return frames


def _repeat(torch: Any, pipe: Any, req: dict[str, Any], image: Any, result: dict[str, Any],
            progress: Progress | None) -> None:
    """Same seed again: identical uint8 frames means the setup is deterministic."""
    from ..measure import sanity

    run = Run(torch, str(req["device"]), progress, generation=2, steps=int(req["steps"]))
    frames, duration = _generate(pipe, req, image, run, "none")
    result["repeat_duration_seconds"] = duration
    result["reproducible"] = sanity.digest(frames) == result["output_digest"]


def _judge(result: dict[str, Any]) -> None:
    """Sanity decides success: non-finite frames are nan_output, any other failed check invalid_output."""
    failed = [k for k, ok in result["sanity"].items() if not ok]
    if not failed:
        result.update(success=True, reason="", detail="")
        return
    reason = "nan_output" if not result["sanity"].get("finite", True) else "invalid_output"
    result.update(success=False, reason=reason, detail="sanity checks failed: " + ", ".join(failed))


# --------------------------------------------------------------------------- spawn target


def child_main(request: dict[str, Any], conn: Any) -> None:
    """Spawn target: run the task, stream ("progress", dict) then one ("result", dict).

    ``request["task"]`` is "benchmark" (default) or "load_check". Whatever happens in
    here, the parent gets a result message unless the process itself dies (crash
    fault, SIGKILL, OOM killer), which the parent sees as a missing result.
    """
    offline_env()

    def send(kind: str, payload: dict[str, Any]) -> None:
        with contextlib.suppress(Exception):  # parent gone: nothing left to tell
            conn.send((kind, payload))

    try:
        if request.get("task", "benchmark") == "load_check":
            from ..health.loadcheck import load_check

            result = load_check(request)
        else:
            result = run_benchmark(request, progress=lambda ev: send("progress", ev))
    except BaseException as exc:  # noqa: BLE001 - normalise_request errors, KeyboardInterrupt
        result = {"success": False, "reason": "crash", "detail": detail(exc),
                  "traceback": traceback.format_exc()[-_DETAIL_MAX:]}
    send("result", plain(result))
    with contextlib.suppress(Exception):
        conn.close()


def plain(value: Any) -> Any:
    """Builtins only, so unpickling in the parent never needs torch or numpy."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "item"):  # numpy / torch scalars
        with contextlib.suppress(Exception):
            return plain(value.item())
    return str(value)


__all__ = ["FAULTS", "PHASES", "REASONS", "child_main", "classify", "conditioning_image", "detail", "load_pipeline",
           "normalise_request", "plain", "run_benchmark"]
