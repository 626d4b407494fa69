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

from . import faults, parallel, warm
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
    others: parallel.Ranks | None = None
    try:
        if int(req["ulysses"]) > 1:  # this child is rank 0; the other ranks start now and load alongside
            req["_timeout"] = float(req.get("_timeout") or 600)
            others = parallel.Ranks(req)
        t0 = time.perf_counter()
        import torch  # heavy import deliberately inside the child

        result["import_seconds"] = time.perf_counter() - t0
        result["versions"] = measure.versions()
        if others is not None:
            parallel.init_group(req, 0)
        pipe, image_mode = _load_phase(torch, req, result, progress)
        result["geometry"] = geometry(pipe)
        stage = "generate"
        measure.install(pipe, image_mode)
        image = conditioning_image(int(req["width"]), int(req["height"]), int(req["seed"])) if image_mode else None
        run = Run(torch, device, progress, generation=1, steps=int(req["steps"]))
        clock = parallel.StepClock(run) if others is not None else None
        frames = _measured_generation(torch, pipe, req, image, run, result, clock)
        if others is not None and clock is not None:
            ranks = [clock.figures(0, torch, device), *others.join(float(req["_timeout"]))]
            result["ranks"] = ranks
            result.update(parallel.summarise(ranks))
            failed = [f"rank {r['rank']}: {r['error']}" for r in ranks if r.get("error")]
            if failed and result["success"]:
                result.update(success=False, reason="unknown", detail="; ".join(failed))
        _compare_phase(frames, req, result)
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
        if others is not None:
            with contextlib.suppress(Exception):
                sys.modules["torch"].distributed.destroy_process_group()
            others.stop()
    return result


def _load_phase(torch: Any, req: dict[str, Any], result: dict[str, Any], progress: Progress | None) -> tuple[Any, bool]:
    """Load, apply the load-time faults, place on the device; returns (pipe, image_mode)."""
    device = str(req["device"])
    if is_cuda(device) and not torch.cuda.is_available():  # fail before spending time on a load
        raise CudaUnavailable(f"device {device} requested, but torch.cuda.is_available() is False")
    result["gpu_name"], result["gpu_uuid"] = measure.gpu_identity(torch, device)
    ranks = int(req.get("ulysses") or 1)
    key = warm.key(req) if req.get("keep_loaded") and req["fault"] == "none" and ranks == 1 else None
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
    if ranks > 1:
        parallel.enable_context_parallel(pipe, ulysses=ranks)
    measure.sync(torch, device)
    result["phases"]["load"] = time.perf_counter() - t0
    warm.keep(key, pipe, image_mode)
    return pipe, image_mode


# The transformer config keys wan_exporter.measure.flops reads.
_GEOMETRY_KEYS = ("_class_name", "num_attention_heads", "attention_head_dim", "dim", "num_heads", "ffn_dim",
                  "num_layers", "patch_size", "in_channels", "out_channels", "in_dim", "out_dim", "text_dim",
                  "freq_dim", "image_dim", "vace_layers", "vace_in_channels", "pos_embed_seq_len")


def geometry(pipe: Any) -> dict[str, Any]:
    """What this run loaded that its FLOPs depend on: the transformer's config, the VAE's compression,
    the image encoder's tokens, per-token timesteps. Read off the live pipeline, so the figures of a
    run are bound to it and never recomputed from files that may have changed since."""
    from ..checkpoint.facts import image_tokens_of

    out: dict[str, Any] = {}
    transformer = getattr(pipe, "transformer", None) or getattr(pipe, "transformer_2", None)
    tcfg = dict(getattr(transformer, "config", None) or {})
    if transformer is not None:
        tcfg.setdefault("_class_name", type(transformer).__name__)
    out["transformer_config"] = {k: tcfg[k] for k in _GEOMETRY_KEYS if k in tcfg}
    st, ss = getattr(pipe, "vae_scale_factor_temporal", None), getattr(pipe, "vae_scale_factor_spatial", None)
    patch = tcfg.get("patch_size")
    if isinstance(st, int) and isinstance(ss, int) and isinstance(patch, (list, tuple)) and len(patch) == 3:
        out["vae_compression"] = [st * int(patch[0]), ss * int(patch[1]), ss * int(patch[2])]
    encoder = getattr(pipe, "image_encoder", None)
    ecfg = getattr(encoder, "config", None)
    if ecfg is not None:
        ecfg = getattr(ecfg, "vision_config", ecfg)
        out["image_tokens"] = image_tokens_of({"image_size": getattr(ecfg, "image_size", None),
                                               "patch_size": getattr(ecfg, "patch_size", None)})
    pcfg = getattr(pipe, "config", None)
    expand = pcfg.get("expand_timesteps") if hasattr(pcfg, "get") else None
    if isinstance(expand, bool):
        out["expand_timesteps"] = expand
    return out


def _generate(pipe: Any, req: dict[str, Any], image: Any, run: Run, fault: str,
              clock: "parallel.StepClock | None" = None) -> tuple[Any, float]:
    """One pipeline call inside ``run``; returns float frames (frames, H, W, 3) and its wall time.

    ``clock``: a parallel profile's per-rank step clock (a device synchronisation at each step end)."""

    injector = faults.Injector(fault, run.device)

    def on_step_end(p: Any, i: int, t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        if i == 0:
            injector.at_first_step()
        run.step_end(p, i, t)
        if clock is not None:
            clock.tick()
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
                         result: dict[str, Any], clock: "parallel.StepClock | None" = None) -> Any:
    """The generation the benchmark reports: timed, memory-peaked, energy-metered, sanity-checked."""
    from ..measure import sanity

    device = str(req["device"])
    measure.reset_peak(torch, device)
    if clock is not None:
        parallel.ready()
    with measure.energy(torch, device, result):
        frames, duration = _generate(pipe, req, image, run, req["fault"], clock)
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


def _compare_phase(frames: Any, req: dict[str, Any], result: dict[str, Any]) -> None:
    """Keep this run's frames for the models compared with it; compare with the reference's.

    After the timed generation, so neither costs the figures anything; a failure here is a
    detail, never the run's failure."""
    if not result["success"]:
        return
    from . import compare

    if req.get("save_frames"):
        try:
            compare.save(str(req["save_frames"]), frames, req)
        except OSError as exc:
            result["comparison_detail"] = f"could not keep the output for comparison: {exc}"
    if req.get("compare_frames"):
        mad, psnr, why = compare.compare(str(req["compare_frames"]), frames, req)
        result["output_max_abs_difference"], result["output_psnr_decibels"] = mad, psnr
        result["compared_with"] = str(req.get("compare_reference") or "") if mad is not None else ""
        if why:
            result["comparison_detail"] = why


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

    Whatever happens in here, the parent gets a result message unless the process itself dies (crash
    fault, SIGKILL, OOM killer), which the parent sees as a missing result.
    """
    offline_env()

    def send(kind: str, payload: dict[str, Any]) -> None:
        with contextlib.suppress(Exception):  # parent gone: nothing left to tell
            conn.send((kind, payload))

    try:
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
