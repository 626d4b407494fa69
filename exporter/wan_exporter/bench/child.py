"""What runs inside a benchmark child process: load a Wan pipeline, generate, measure.

The exporter never imports torch; the runner spawns a fresh process (multiprocessing
"spawn" context) whose target is :func:`child_main`. A crash, hang or CUDA fault then
costs one child, never the exporter, and the process's peak RSS is this run's alone.

Measurements are taken around the real diffusers calls by wrapping pipeline methods on
the instance (``encode_prompt``, ``encode_image``, ``prepare_latents``, ``vae.decode``)
plus the per-step callback, so phases come from the code path a user runs, not from a
re-implementation of the pipeline. Faults for tests are injected into that same path.

Everything returned is a plain dict of builtins (it crosses a pipe), with keys named
after :class:`wan_exporter.state.BenchmarkResult` fields plus ``reproducible`` and
``versions``.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import resource
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Iterator

Progress = Callable[[dict[str, Any]], None]

PHASES: tuple[str, ...] = ("load", "text_encode", "image_encode", "denoise", "vae_decode", "export")
REASONS: tuple[str, ...] = ("oom", "cuda_error", "load_failed", "nan_output", "invalid_output", "crash", "unknown")
FAULTS: tuple[str, ...] = ("none", "oom", "hang", "crash", "nan", "cuda_error", "load_failed")
# Components run in float32 whatever the requested dtype, as the diffusers Wan examples do:
# the VAE and the CLIP image encoder are small and lose quality (or overflow) in half precision.
FP32_COMPONENTS: tuple[str, ...] = ("vae", "image_encoder")
_MISSING_SUBFOLDER = "__wan_exporter_injected_missing__"
_DETAIL_MAX = 2000


class CudaUnavailable(RuntimeError):
    """A CUDA device was requested but this process cannot use one."""


# --------------------------------------------------------------------------- helpers


def _offline_env() -> None:
    """Never reach a hub: huggingface_hub reads these once, at its first import."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _device_order_env() -> None:
    """Number CUDA devices as NVML does (by PCI bus id), before CUDA starts: ``cuda:N`` is then
    the GPU the exporter's courtesy check looked at (:mod:`wan_exporter.gpuid`)."""
    from ..gpuid import CHILD_ENV

    os.environ.update(CHILD_ENV)


def _emit(progress: Progress | None, event: dict[str, Any]) -> None:
    """Progress is best effort: a broken pipe to the parent must not fail the benchmark."""
    if progress is None:
        return
    with contextlib.suppress(Exception):
        progress(event)


def _is_cuda(device: str) -> bool:
    return device.startswith("cuda")


def _cuda_index(torch: Any, device: str) -> int:
    return int(device.split(":", 1)[1]) if ":" in device else torch.cuda.current_device()


def _sync(torch: Any, device: str) -> None:
    """Wait for queued kernels so wall clocks measure work, not launches. No-op on CPU."""
    if _is_cuda(device) and torch.cuda.is_available():
        torch.cuda.synchronize(device)


def _peak_rss_bytes() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)  # Linux reports KiB, macOS bytes


def _versions() -> dict[str, str]:
    out: dict[str, str] = {}
    for name in ("torch", "diffusers", "transformers"):
        mod = sys.modules.get(name)
        if mod is None:
            with contextlib.suppress(Exception):
                mod = __import__(name)
        out[name] = str(getattr(mod, "__version__", "")) if mod is not None else ""
    return out


def classify(exc: BaseException, stage: str) -> str:
    """Map an exception to a bounded failure reason; ``stage`` is "load" or "generate"."""
    torch = sys.modules.get("torch")
    msg = str(exc)
    oom_types = tuple(t for t in (getattr(torch, "OutOfMemoryError", None),) if t is not None)
    if (oom_types and isinstance(exc, oom_types)) or isinstance(exc, MemoryError) or "out of memory" in msg.lower():
        return "oom"
    accel = getattr(torch, "AcceleratorError", None) if torch is not None else None
    if isinstance(exc, CudaUnavailable) or (accel is not None and isinstance(exc, accel)):
        return "cuda_error"
    if isinstance(exc, RuntimeError) and any(s in msg for s in ("CUDA error", "CUBLAS_STATUS", "cuDNN error", "CUDA driver")):
        return "cuda_error"
    return "load_failed" if stage == "load" else "unknown"  # the process lives: not a crash


def _detail(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= _DETAIL_MAX else text[: _DETAIL_MAX - 3] + "..."


def conditioning_image(width: int, height: int, seed: int) -> Any:
    """A deterministic RGB test image: a two-axis gradient with a few shapes placed by ``seed``.

    Structure matters for image-to-video: a flat image would let a broken encoder pass unnoticed.
    """
    import numpy as np
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    r = x / max(width - 1, 1)
    g = y / max(height - 1, 1)
    b = 1.0 - (r + g) / 2.0
    arr = (np.stack([r, g, b], axis=-1) * 255).astype(np.uint8)
    img = Image.fromarray(arr, "RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(3):
        x0, y0 = rng.randrange(0, max(width // 2, 1)), rng.randrange(0, max(height // 2, 1))
        x1, y1 = x0 + rng.randrange(width // 4 + 1, width // 2 + 2), y0 + rng.randrange(height // 4 + 1, height // 2 + 2)
        colour = tuple(rng.randrange(256) for _ in range(3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x0, y0, x1, y1], fill=colour)
    return img


# --------------------------------------------------------------------------- request


def normalise_request(request: dict[str, Any]) -> dict[str, Any]:
    """Fill defaults so a partial request (tests, CLI) behaves like a full one."""
    req = {
        "model_dir": "", "kind": "", "pipeline": "WanPipeline", "device": "cpu", "dtype": "bfloat16",
        "offload": "none", "vae_tiling": False, "width": 832, "height": 480, "frames": 17, "steps": 4,
        "guidance_scale": 4.0, "guidance_scale_2": None, "seed": 42,
        "prompt": "A cat walks on the grass, realistic style.", "negative_prompt": "", "image": False,
        "fault": "none", "output_path": None, "fps": 16, "repeat_for_reproducibility": False,
        "max_sequence_length": 512,
    }
    req.update({k: v for k, v in dict(request).items() if v is not None or k in ("guidance_scale_2", "output_path")})
    if req["fault"] not in FAULTS:
        raise ValueError(f"unknown fault {req['fault']!r}; expected one of {', '.join(FAULTS)}")
    return req


def _empty_result(req: dict[str, Any]) -> dict[str, Any]:
    return {
        "success": False, "reason": "", "detail": "", "duration_seconds": None, "phases": {},
        "steps": int(req["steps"]), "seconds_per_step": None, "frames": int(req["frames"]),
        "width": int(req["width"]), "height": int(req["height"]), "peak_memory_bytes": None,
        "peak_memory_kind": "", "energy_joules": None, "sanity": {}, "output_digest": "",
        "reproducible": None, "versions": {}, "device": str(req["device"]), "gpu_name": "", "gpu_uuid": "",
        "output_path": None, "import_seconds": None, "repeat_duration_seconds": None,
    }


# --------------------------------------------------------------------------- loading


def _torch_dtype(torch: Any, name: str) -> Any:
    try:
        return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[name]
    except KeyError:
        raise ValueError(f"unsupported dtype {name!r}") from None


def _dtype_map(torch: Any, dtype: Any) -> dict[str, Any]:
    return {"default": dtype, **{name: torch.float32 for name in FP32_COMPONENTS}}


def _preload_fp32_pinned(model_dir: Path, dtype: Any, skip: Any = ()) -> dict[str, Any]:
    """Load diffusers models that pin modules to fp32 without ``accelerate``.

    diffusers 0.42 refuses ``from_pretrained`` for such models (WanTransformer3DModel keeps
    rope/time_embedder/norms in fp32) unless accelerate is installed. This mirrors its
    casting rule and hands the models to the pipeline loader, which loads the rest.
    """
    import diffusers
    import torch
    from safetensors.torch import load_file

    index = json.loads((model_dir / "model_index.json").read_text(encoding="utf-8"))
    out: dict[str, Any] = {}
    for name, spec in index.items():
        if name.startswith("_") or not isinstance(spec, list) or spec[0] != "diffusers" or name in skip:
            continue
        cls = getattr(diffusers, spec[1], None)
        keep = getattr(cls, "_keep_in_fp32_modules", None)
        if cls is None or not keep:
            continue
        sub = model_dir / name
        model = cls.from_config(cls.load_config(str(sub)))
        files = sorted(sub.glob("*.safetensors"))
        if not files:
            raise FileNotFoundError(f"no safetensors weights in {sub}")
        state: dict[str, Any] = {}
        for f in files:
            state.update(load_file(str(f)))
        model.load_state_dict(state, strict=True)
        with torch.no_grad():
            for pname, p in list(model.named_parameters()) + list(model.named_buffers()):
                if torch.is_floating_point(p) and not any(k in pname.split(".") for k in keep):
                    p.data = p.data.to(dtype)
        out[name] = model.eval()
    return out


def _pipeline_class(name: str) -> Any:
    import diffusers

    cls = getattr(diffusers, name, None)
    if cls is None:
        raise ImportError(f"this diffusers ({diffusers.__version__}) has no pipeline class {name}")
    return cls


def load_pipeline(req: dict[str, Any]) -> Any:
    """Load with the real ``from_pretrained``; the load_failed fault loads a missing folder."""
    import torch
    from diffusers.utils import is_accelerate_available
    from diffusers.utils.logging import disable_progress_bar

    from transformers.utils import logging as tf_logging

    disable_progress_bar()  # the parent shows progress from our events, not tqdm on stderr
    tf_logging.disable_progress_bar()
    cls = _pipeline_class(req["pipeline"])
    model_dir = Path(req["model_dir"])
    if req["fault"] == "load_failed":
        model_dir = model_dir / _MISSING_SUBFOLDER
    dtype = _torch_dtype(torch, req["dtype"])
    kwargs: dict[str, Any] = {"dtype": _dtype_map(torch, dtype), "local_files_only": True}
    from .single_file import load_transformers

    given = load_transformers(req, dtype)  # single-file/GGUF denoisers, if any
    if not is_accelerate_available() and (model_dir / "model_index.json").is_file():
        kwargs.update(_preload_fp32_pinned(model_dir, dtype, skip=given))
    kwargs.update(given)
    pipe = cls.from_pretrained(str(model_dir), **kwargs)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _as_image_pipeline(pipe: Any) -> Any:
    """TI2V text+image mode: diffusers 0.42 runs it with WanImageToVideoPipeline and
    ``expand_timesteps=True`` (the image is VAE-encoded into the first latent frame;
    no CLIP encoder). WanPipeline has no ``image`` argument, so rebuild from its parts."""
    from diffusers import WanImageToVideoPipeline, WanPipeline

    if isinstance(pipe, WanImageToVideoPipeline) or not isinstance(pipe, WanPipeline):
        return pipe
    if not pipe.config.expand_timesteps:
        raise ValueError("an image was requested, but this text-to-video pipeline takes none")
    new = WanImageToVideoPipeline(
        **pipe.components, boundary_ratio=pipe.config.boundary_ratio, expand_timesteps=True
    )
    new.set_progress_bar_config(disable=True)
    return new


def _inject_nan(pipe: Any) -> None:
    """The "nan" fault: poison the denoisers so the real sanity check has to catch it."""
    import torch

    with torch.no_grad():
        for name in ("transformer", "transformer_2"):
            model = getattr(pipe, name, None)
            if model is not None:
                for p in model.parameters():
                    if torch.is_floating_point(p):
                        p.fill_(float("nan"))


def place(pipe: Any, req: dict[str, Any]) -> None:
    """Move to the device or set up the requested offloading, then VAE tiling."""
    import torch

    device, offload = str(req["device"]), str(req["offload"])
    if _is_cuda(device) and not torch.cuda.is_available():
        raise CudaUnavailable(f"device {device} requested, but torch.cuda.is_available() is False")
    if offload != "none" and not _is_cuda(device):
        raise ValueError(f"offload {offload!r} needs a CUDA device, got {device}")
    if offload == "none":
        pipe.to(device)
    elif offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    elif offload == "group":
        pipe.enable_group_offload(
            onload_device=torch.device(device), offload_device=torch.device("cpu"),
            offload_type="block_level", num_blocks_per_group=1, use_stream=True,
        )
    else:
        raise ValueError(f"unknown offload mode {offload!r}")
    if req["vae_tiling"]:
        pipe.vae.enable_tiling()


# --------------------------------------------------------------------------- instrumentation


class _Recorder:
    """Times the phases of one generation by wrapping the pipeline's own methods."""

    def __init__(self, torch: Any, device: str, progress: Progress | None) -> None:
        self.torch, self.device, self.progress = torch, device, progress
        self.phases: dict[str, float] = {}
        self.denoise_start: float | None = None
        self.last_step_end: float | None = None
        self.generation = 1
        self.fault = "none"
        self.steps = 0

    def reset(self, generation: int, fault: str, steps: int) -> None:
        self.phases, self.denoise_start, self.last_step_end = {}, None, None
        self.generation, self.fault, self.steps = generation, fault, steps

    def now(self) -> float:
        _sync(self.torch, self.device)
        return time.perf_counter()

    def phase_start(self, name: str) -> None:
        _emit(self.progress, {"event": "phase", "phase": name, "generation": self.generation})

    def add(self, name: str, seconds: float) -> None:
        self.phases[name] = self.phases.get(name, 0.0) + seconds

    def timed(self, name: str, fn: Callable[..., Any], after: Callable[[float], None] | None = None) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if name not in self.phases:
                self.phase_start(name)
            t0 = self.now()
            out = fn(*args, **kwargs)
            t1 = self.now()
            self.add(name, t1 - t0)
            if after is not None:
                after(t1)
            return out

        wrapper.__wrapped__ = fn  # type: ignore[attr-defined]
        return wrapper

    def install(self, pipe: Any, image_mode: bool) -> None:
        pipe.encode_prompt = self.timed("text_encode", pipe.encode_prompt)
        if hasattr(pipe, "encode_image"):  # CLIP (Wan2.1 I2V); skipped by diffusers when image_dim is None
            pipe.encode_image = self.timed("image_encode", pipe.encode_image)
        if image_mode:  # I2V prepare_latents VAE-encodes the conditioning image
            pipe.prepare_latents = self.timed("image_encode", pipe.prepare_latents, after=self._denoise_begins)
        else:
            original = pipe.prepare_latents

            def prepare_latents(*args: Any, **kwargs: Any) -> Any:
                out = original(*args, **kwargs)
                self._denoise_begins(self.now())
                return out

            pipe.prepare_latents = prepare_latents
        pipe.vae.decode = self.timed("vae_decode", pipe.vae.decode)

    def _denoise_begins(self, t: float) -> None:
        self.denoise_start = t
        self.phase_start("denoise")

    def on_step_end(self, pipe: Any, i: int, t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        if i == 0 and self.generation == 1:
            _step_fault(self.fault)
        if i + 1 >= self.steps:
            # Only the last step's end is a measurement (the end of "denoise"): synchronising the
            # device after every step would stop the CPU queueing the next step while the GPU works.
            self.last_step_end = self.now()
        _emit(self.progress, {"event": "step", "step": i + 1, "steps": self.steps, "generation": self.generation})
        return kwargs

    def finish(self) -> dict[str, float]:
        if self.denoise_start is not None and self.last_step_end is not None:
            self.phases["denoise"] = self.last_step_end - self.denoise_start
        return dict(self.phases)


def _step_fault(fault: str) -> None:
    """Faults raised from inside the first denoising step, i.e. through the real call stack."""
    if fault == "oom":
        import torch

        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB (injected)")
    if fault == "cuda_error":
        raise RuntimeError("CUDA error: an illegal memory access was encountered (injected)")
    if fault == "crash":
        os.kill(os.getpid(), signal.SIGKILL)
    if fault == "hang":
        while True:  # only the parent's timeout ends this
            time.sleep(3600)


# --------------------------------------------------------------------------- energy and identity


@contextlib.contextmanager
def _energy(torch: Any, device: str, out: dict[str, Any]) -> Iterator[None]:
    """Joules used by the GPU during the block, from NVML's energy counter when it has one."""
    handle, start, nvml = None, None, None
    if _is_cuda(device) and torch.cuda.is_available():
        try:
            import pynvml as nvml

            nvml.nvmlInit()
            handle = nvml.nvmlDeviceGetHandleByUUID(out.get("gpu_uuid") or "")
            start = nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        except Exception:  # noqa: BLE001 - no NVML, no counter (pre-Volta), MIG: report None
            handle = None
    try:
        yield
    finally:
        if handle is not None and start is not None:
            with contextlib.suppress(Exception):
                _sync(torch, device)
                used = nvml.nvmlDeviceGetTotalEnergyConsumption(handle) - start
                # The counter advances in steps (~100 ms of power on an H200): a zero delta
                # means "too short to measure", not "free", so report nothing.
                out["energy_joules"] = used / 1000.0 if used > 0 else None
        if nvml is not None:
            with contextlib.suppress(Exception):
                nvml.nvmlShutdown()


def _gpu_identity(torch: Any, device: str) -> tuple[str, str]:
    if not (_is_cuda(device) and torch.cuda.is_available()):
        return "", ""
    try:
        props = torch.cuda.get_device_properties(_cuda_index(torch, device))
        uuid = str(getattr(props, "uuid", "") or "")
        if uuid and not uuid.startswith(("GPU-", "MIG-")):
            uuid = "GPU-" + uuid  # NVML's spelling, so it joins with the GPU collector's series
        return str(props.name), uuid
    except Exception:  # noqa: BLE001
        return "", ""


def _reset_peak(torch: Any, device: str) -> None:
    if _is_cuda(device) and torch.cuda.is_available():
        with contextlib.suppress(Exception):
            torch.cuda.reset_peak_memory_stats(device)


def _peak_memory(torch: Any, device: str) -> tuple[int | None, str]:
    """CUDA peak since the reset before generation; on CPU the process's peak RSS."""
    if _is_cuda(device):
        if torch is None or not torch.cuda.is_available():
            return None, ""
        try:
            return int(torch.cuda.max_memory_allocated(device)), "cuda"
        except Exception:  # noqa: BLE001 - a broken CUDA context after a fault
            return None, ""
    return _peak_rss_bytes(), "rss"


# --------------------------------------------------------------------------- generation


def _call_kwargs(req: dict[str, Any], image: Any, recorder: _Recorder) -> dict[str, Any]:
    import torch

    kw: dict[str, Any] = dict(
        prompt=req["prompt"], negative_prompt=req["negative_prompt"], height=int(req["height"]),
        width=int(req["width"]), num_frames=int(req["frames"]), num_inference_steps=int(req["steps"]),
        guidance_scale=float(req["guidance_scale"]),
        # A CPU generator gives the same initial noise on every device type.
        generator=torch.Generator("cpu").manual_seed(int(req["seed"])),
        output_type="np", max_sequence_length=int(req["max_sequence_length"]),
        callback_on_step_end=recorder.on_step_end,
    )
    if req["guidance_scale_2"] is not None:
        kw["guidance_scale_2"] = float(req["guidance_scale_2"])
    if image is not None:
        kw["image"] = image
    return kw


def _generate(pipe: Any, kwargs: dict[str, Any], recorder: _Recorder) -> tuple[Any, float]:
    """One pipeline call; returns float frames (frames, H, W, 3) and its wall time."""
    t0 = recorder.now()
    out = pipe(**kwargs)
    t1 = recorder.now()
    frames = out.frames[0]
    if hasattr(frames, "detach"):  # output_type="pt" safety: never expected with "np"
        frames = frames.detach().float().cpu().numpy()
    return frames, t1 - t0


def _export(frames: Any, path: str, fps: int) -> None:
    import numpy as np
    from diffusers.utils import export_to_video

    clean = np.clip(np.nan_to_num(np.asarray(frames, dtype=np.float32), nan=0.0), 0.0, 1.0)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    export_to_video(list(clean), path, fps=int(fps))


def run_benchmark(request: dict[str, Any], progress: Progress | None = None) -> dict[str, Any]:
    """Load, generate once (twice with ``repeat_for_reproducibility``), check and time it.

    Never raises for a benchmark failure: the result says ``success`` False with a
    ``reason`` from :data:`REASONS`. Faults "crash" and "hang" do what they say.
    """
    _offline_env()
    _device_order_env()
    req = normalise_request(request)
    result = _empty_result(req)
    device = str(req["device"])
    stage = "load"
    recorder: _Recorder | None = None
    try:
        t0 = time.perf_counter()
        import torch  # heavy import deliberately inside the child

        result["import_seconds"] = time.perf_counter() - t0
        result["versions"] = _versions()
        pipe, image_mode = _load_phase(torch, req, result, progress)
        stage = "generate"
        recorder = _Recorder(torch, device, progress)
        recorder.install(pipe, image_mode)
        image = conditioning_image(int(req["width"]), int(req["height"]), int(req["seed"])) if image_mode else None
        frames = _measured_generation(torch, pipe, req, image, recorder, result)
        if req["output_path"]:
            _export_phase(frames, req, result, progress)
        if req["repeat_for_reproducibility"] and result["success"]:
            _repeat(pipe, req, image, recorder, result)
    except BaseException as exc:  # noqa: BLE001 - every failure becomes a result
        if isinstance(exc, KeyboardInterrupt):
            raise
        result.update(success=False, reason=classify(exc, stage), detail=_detail(exc))
        if recorder is not None:
            result["phases"].update(recorder.finish())
    finally:
        result["peak_memory_bytes"], result["peak_memory_kind"] = _peak_memory(sys.modules.get("torch"), device)
        if not result["versions"]:
            result["versions"] = _versions()
    return result


def _load_phase(torch: Any, req: dict[str, Any], result: dict[str, Any], progress: Progress | None) -> tuple[Any, bool]:
    """Load, apply the load-time faults, place on the device; returns (pipe, image_mode)."""
    device = str(req["device"])
    if _is_cuda(device) and not torch.cuda.is_available():  # fail before spending time on a load
        raise CudaUnavailable(f"device {device} requested, but torch.cuda.is_available() is False")
    result["gpu_name"], result["gpu_uuid"] = _gpu_identity(torch, device)
    key = _warm_key(req) if req.get("keep_loaded") and req["fault"] == "none" else None
    if key is not None and key in _WARM:
        pipe, image_mode = _WARM[key]
        _uninstall(pipe)
        result["warm"] = True  # nothing loaded this run: no "load" phase is reported
        return pipe, image_mode
    _WARM.clear()  # one pipeline per warm worker: release the previous one's memory first
    _emit(progress, {"event": "phase", "phase": "load", "generation": 1})
    t0 = time.perf_counter()
    pipe = load_pipeline(req)
    image_mode = req["pipeline"] == "WanImageToVideoPipeline" or bool(req["image"])
    if image_mode:
        pipe = _as_image_pipeline(pipe)
    if req["fault"] == "nan":
        _inject_nan(pipe)
    place(pipe, req)
    _sync(torch, device)
    result["phases"]["load"] = time.perf_counter() - t0
    if key is not None:
        _WARM[key] = (pipe, image_mode)
    return pipe, image_mode


# Keep-warm: pipelines a long-lived worker keeps loaded between runs (holds memory by design).
_WARM: dict[tuple, tuple[Any, bool]] = {}


def _warm_key(req: dict[str, Any]) -> tuple:
    return (req["model_dir"], tuple(sorted((req.get("transformer_files") or {}).items())), req["pipeline"], req["device"], req["dtype"], req["offload"], bool(req["vae_tiling"]),
            bool(req["image"]))


def _uninstall(pipe: Any) -> None:
    """Drop the previous run's phase timers (instance attributes shadowing the real methods)."""
    for name in ("encode_prompt", "encode_image", "prepare_latents"):
        pipe.__dict__.pop(name, None)
    pipe.vae.__dict__.pop("decode", None)


def _measured_generation(torch: Any, pipe: Any, req: dict[str, Any], image: Any, recorder: _Recorder,
                         result: dict[str, Any]) -> Any:
    """The generation the benchmark reports: timed, memory-peaked, energy-metered, sanity-checked."""
    from . import sanity

    device = str(req["device"])
    recorder.reset(1, req["fault"], int(req["steps"]))
    _reset_peak(torch, device)
    with _energy(torch, device, result):
        frames, duration = _generate(pipe, _call_kwargs(req, image, recorder), recorder)
    result["phases"].update(recorder.finish())
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


def _export_phase(frames: Any, req: dict[str, Any], result: dict[str, Any], progress: Progress | None) -> None:
    """Save the video; a failed save is noted in ``detail`` but does not fail the benchmark."""
    _emit(progress, {"event": "phase", "phase": "export", "generation": 1})
    t0 = time.perf_counter()
    try:
        _export(frames, str(req["output_path"]), int(req["fps"]))
        result["output_path"] = str(req["output_path"])
    except Exception as exc:  # noqa: BLE001 - saving is a courtesy, not the benchmark
        result["detail"] = (result["detail"] + "; " if result["detail"] else "") + "export failed: " + _detail(exc)
    result["phases"]["export"] = time.perf_counter() - t0


def _repeat(pipe: Any, req: dict[str, Any], image: Any, recorder: _Recorder, result: dict[str, Any]) -> None:
    """Same seed again: identical uint8 frames means the setup is deterministic."""
    from . import sanity

    recorder.reset(2, "none", int(req["steps"]))
    frames, duration = _generate(pipe, _call_kwargs(req, image, recorder), recorder)
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


# --------------------------------------------------------------------------- load check


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
    _offline_env()
    t0 = time.perf_counter()
    issues: list[dict[str, str]] = []
    facts: dict[str, Any] = {}
    model_dir = Path(str(request.get("model_dir", "")))
    try:
        _load_check(model_dir, request.get("pipeline"), issues, facts)
    except Exception as exc:  # noqa: BLE001 - the check reports, never raises
        issues.append(_issue("load_failed", _detail(exc)))
    return {
        "success": not issues, "issues": issues, "versions": _versions(), "facts": facts,
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
        pipe_cls = _pipeline_class(name)
    except ImportError as exc:
        issues.append(_issue("version_skew", str(exc)))
        return
    except Exception as exc:  # noqa: BLE001 - e.g. ftfy missing on diffusers <= 0.36
        issues.append(_issue("version_skew", f"importing {name}: {_detail(exc)}"))
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
        issues.append(_issue("version_skew", f"{key}: {_detail(exc)}"))
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
        issues.append(_issue("load_failed", f"{key}: {_detail(exc)}"))


# --------------------------------------------------------------------------- spawn target


def child_main(request: dict[str, Any], conn: Any) -> None:
    """Spawn target: run the task, stream ("progress", dict) then one ("result", dict).

    ``request["task"]`` is "benchmark" (default) or "load_check". Whatever happens in
    here, the parent gets a result message unless the process itself dies (crash
    fault, SIGKILL, OOM killer), which the parent sees as a missing result.
    """
    _offline_env()

    def send(kind: str, payload: dict[str, Any]) -> None:
        with contextlib.suppress(Exception):  # parent gone: nothing left to tell
            conn.send((kind, payload))

    try:
        if request.get("task", "benchmark") == "load_check":
            result = load_check(request)
        else:
            result = run_benchmark(request, progress=lambda ev: send("progress", ev))
    except BaseException as exc:  # noqa: BLE001 - normalise_request errors, KeyboardInterrupt
        result = {"success": False, "reason": "crash", "detail": _detail(exc),
                  "traceback": traceback.format_exc()[-_DETAIL_MAX:]}
    send("result", _plain(result))
    with contextlib.suppress(Exception):
        conn.close()


def _plain(value: Any) -> Any:
    """Builtins only, so unpickling in the parent never needs torch or numpy."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "item"):  # numpy / torch scalars
        with contextlib.suppress(Exception):
            return _plain(value.item())
    return str(value)


__all__ = [
    "FAULTS", "PHASES", "REASONS", "child_main", "classify", "conditioning_image", "load_check",
    "load_pipeline", "normalise_request", "run_benchmark",
]
