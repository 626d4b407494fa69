"""Measuring one pipeline call: phases, per-step timing, peak memory, NVML energy, failure kinds.

Shared by the benchmark child and by :mod:`wan_exporter.instrument`, so a phase means the
same thing in a scheduled probe and in real traffic. Phases are timed by wrapping the
pipeline's own methods on the instance (``encode_prompt``, ``encode_image``,
``prepare_latents``, ``vae.decode``, optionally ``video_processor.postprocess_video``) plus
the per-step callback: the figures come from the code path a user runs, not from a
re-implementation of the pipeline.

The wrappers are installed once per pipeline and record into whichever :class:`Run` is
active in the calling context (a :class:`contextvars.ContextVar`), so installing twice
never double counts, and a call outside any run costs one context-variable read.

Nothing here imports torch at module level: torch is taken from ``sys.modules`` or passed in.
"""

from __future__ import annotations

import contextlib
import contextvars
import resource
import sys
import time
from typing import Any, Callable, Iterator

from ..contract.labels import PHASES  # the phases the benchmark reports
from ..contract.traffic import EXPERTS  # a two-expert (Wan2.2 A14B) pipeline's experts, in the order they run

Progress = Callable[[dict[str, Any]], None]

_ACTIVE: contextvars.ContextVar["Run | None"] = contextvars.ContextVar("wan_exporter_run", default=None)
_MARK = "__wan_exporter_phase__"


# --------------------------------------------------------------------------- device helpers


def emit(progress: Progress | None, event: dict[str, Any]) -> None:
    """Progress is best effort: a broken pipe to the parent must not fail the measurement."""
    if progress is None:
        return
    with contextlib.suppress(Exception):
        progress(event)


def is_cuda(device: str) -> bool:
    return str(device).startswith("cuda")


def cuda_index(torch: Any, device: str) -> int:
    return int(device.split(":", 1)[1]) if ":" in device else torch.cuda.current_device()


def sync(torch: Any, device: str) -> None:
    """Wait for queued kernels so wall clocks measure work, not launches. No-op on CPU."""
    if torch is not None and is_cuda(device) and torch.cuda.is_available():
        torch.cuda.synchronize(device)


def peak_rss_bytes() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)  # Linux reports KiB, macOS bytes


def versions() -> dict[str, str]:
    out: dict[str, str] = {}
    for name in ("torch", "diffusers", "transformers"):
        mod = sys.modules.get(name)
        if mod is None:
            with contextlib.suppress(Exception):
                mod = __import__(name)
        out[name] = str(getattr(mod, "__version__", "")) if mod is not None else ""
    return out


# --------------------------------------------------------------------------- failure kinds

# What torch's CPU allocator says when malloc fails (it raises a plain RuntimeError on some
# releases, torch.OutOfMemoryError on others).
_OOM_TEXT = ("out of memory", "can't allocate memory", "cannot allocate memory")
_CUDA_TEXT = ("CUDA error", "CUBLAS_STATUS", "cuDNN error", "CUDA driver")


def is_oom(exc: BaseException) -> bool:
    """An allocation failure: torch.OutOfMemoryError (CUDA or CPU), MemoryError, or the allocator's text."""
    torch = sys.modules.get("torch")
    oom = getattr(torch, "OutOfMemoryError", None) if torch is not None else None
    if (oom is not None and isinstance(exc, oom)) or isinstance(exc, MemoryError):
        return True
    msg = str(exc).lower()
    return any(s in msg for s in _OOM_TEXT)


def is_cuda_error(exc: BaseException) -> bool:
    torch = sys.modules.get("torch")
    accel = getattr(torch, "AcceleratorError", None) if torch is not None else None
    if accel is not None and isinstance(exc, accel):
        return True
    return isinstance(exc, RuntimeError) and any(s in str(exc) for s in _CUDA_TEXT)


def detail(exc: BaseException, limit: int = 2000) -> str:
    """``Type: message``, cut to ``limit`` characters (it crosses a pipe and lands in a label-free field)."""
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------- one run


class Run:
    """The measurements of one pipeline call, filled by the wrappers while it is active.

    Without ``step_times`` (the benchmark) every phase boundary and the end of the last step are
    taken after a device synchronisation. With ``step_times`` (traffic) every step's duration is
    recorded too, and on a GPU all boundaries are CUDA events resolved once in :meth:`finish`, so
    a served request never waits for the device on the instrumentation's account.
    """

    def __init__(self, torch: Any = None, device: str = "cpu", progress: Progress | None = None,
                 generation: int = 1, steps: int = 0, step_times: bool = False) -> None:
        self.torch, self.device, self.progress = torch, str(device), progress
        self.generation, self.steps, self.step_times = generation, int(steps), step_times
        self.phases: dict[str, float] = {}
        self.denoise_start: float | None = None
        self.last_step_end: float | None = None
        self.failed_phase: str = ""
        self.step_experts: list[str] = []
        self._open: list[str] = []
        self._marks: list[Any] = []
        self._spans: list[tuple[str, Any, Any]] = []
        self._boundary: list[str] | None = None
        self._events = False
        self.set_device(self.device)

    def set_device(self, device: str) -> None:
        """The device the call runs on (before it starts): CUDA events serve step-timed runs there."""
        torch = self.torch
        self.device = str(device)
        self._events = bool(self.step_times and torch is not None and is_cuda(self.device)
                            and torch.cuda.is_available())

    # ---- context

    @contextlib.contextmanager
    def active(self) -> Iterator["Run"]:
        token = _ACTIVE.set(self)
        try:
            yield self
        finally:
            _ACTIVE.reset(token)

    def now(self) -> float:
        sync(self.torch, self.device)
        return time.perf_counter()

    def phase_start(self, name: str) -> None:
        emit(self.progress, {"event": "phase", "phase": name, "generation": self.generation})

    def add(self, name: str, seconds: float) -> None:
        self.phases[name] = self.phases.get(name, 0.0) + seconds

    def clock(self) -> Any:
        """A phase boundary: a recorded CUDA event in event mode, else a synchronised perf_counter."""
        return self._mark() if self._events else self.now()

    def span(self, name: str, t0: Any, t1: Any) -> None:
        if self._events:
            self.phases.setdefault(name, 0.0)  # the phase ran; its seconds are resolved in finish()
            self._spans.append((name, t0, t1))
        else:
            self.add(name, t1 - t0)

    def denoise_begins(self, t: Any) -> None:
        self.denoise_start = t
        if self.step_times:
            self._marks = [t]
        self.phase_start("denoise")

    def _mark(self) -> Any:
        if self._events:
            torch = self.torch
            ev = torch.cuda.Event(enable_timing=True)
            ev.record(torch.cuda.current_stream(self.device))
            return ev
        return time.perf_counter()

    def where(self) -> str:
        """The phase in progress: an open wrapper's, else denoise between its start and last step."""
        if self._open:
            return self._open[-1]
        if self.denoise_start is not None and self.last_step_end is None:
            return "denoise"
        return "other"

    # ---- steps

    def step_end(self, pipe: Any, i: int, t: Any) -> None:
        """Called from the pipeline's step callback after step ``i``."""
        steps = self.steps or int(getattr(pipe, "_num_timesteps", 0) or 0)
        if self.step_times:
            self._marks.append(self._mark())
            expert = self._expert(pipe, i)
            if expert:
                self.step_experts.append(expert)
        if steps and i + 1 >= steps:
            # The end of "denoise" is the last step's end alone (a synchronised clock, or an event):
            # synchronising after every step would stop the CPU queueing the next step while the GPU works.
            self.last_step_end = self._marks[-1] if self._events and self._marks else self.clock()
        emit(self.progress, {"event": "step", "step": i + 1, "steps": steps, "generation": self.generation})

    def _expert(self, pipe: Any, i: int) -> str:
        """Which expert ran step ``i``: Wan2.2 A14B switches at boundary_ratio x train timesteps."""
        if self._boundary is None:
            self._boundary = []
            ratio = getattr(getattr(pipe, "config", None), "boundary_ratio", None)
            if ratio is not None and getattr(pipe, "transformer_2", None) is not None:
                with contextlib.suppress(Exception):
                    boundary = float(ratio) * float(pipe.scheduler.config.num_train_timesteps)
                    ts = [float(x) for x in pipe.scheduler.timesteps.detach().cpu().tolist()]
                    self._boundary = [EXPERTS[0] if x >= boundary else EXPERTS[1] for x in ts]
        return self._boundary[i] if i < len(self._boundary) else ""

    def step_durations(self) -> list[float]:
        """Seconds per step, from the start of denoising (call after the run ended)."""
        m = self._marks
        if len(m) < 2:
            return []
        if self._events:
            try:
                sync(self.torch, self.device)
                return [a.elapsed_time(b) / 1000.0 for a, b in zip(m, m[1:])]
            except Exception:  # noqa: BLE001 - a broken CUDA context after a fault: steps unknown
                return []
        return [b - a for a, b in zip(m, m[1:])]

    def _seconds(self, t0: Any, t1: Any) -> float:
        return t0.elapsed_time(t1) / 1000.0 if self._events else t1 - t0

    def finish(self) -> dict[str, float]:
        """Seconds per phase (call after the run ended; in event mode this waits for the device once)."""
        try:
            if self._events:
                sync(self.torch, self.device)
                spans, self._spans = self._spans, []
                for name, t0, t1 in spans:
                    self.phases[name] = self.phases.get(name, 0.0) + self._seconds(t0, t1)
            if self.denoise_start is not None and self.last_step_end is not None:
                self.phases["denoise"] = self._seconds(self.denoise_start, self.last_step_end)
        except Exception:  # noqa: BLE001 - a broken CUDA context after a fault: report what is known
            pass
        return dict(self.phases)


def active() -> Run | None:
    """The run recording in this context, if any."""
    return _ACTIVE.get()


# --------------------------------------------------------------------------- wrappers


def _timed(name: str, fn: Callable[..., Any], begins_denoise: bool = False) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        run = _ACTIVE.get()
        if run is None:
            return fn(*args, **kwargs)
        if name not in run.phases:
            run.phase_start(name)
        run._open.append(name)
        try:
            t0 = run.clock()
            out = fn(*args, **kwargs)
            t1 = run.clock()
        except BaseException:
            run.failed_phase = run.failed_phase or name
            raise
        finally:
            run._open.pop()
        run.span(name, t0, t1)
        if begins_denoise:
            run.denoise_begins(t1)
        return out

    setattr(wrapper, _MARK, name)
    wrapper.__wrapped__ = fn  # type: ignore[attr-defined]
    return wrapper


def _denoise_start(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Text-to-video ``prepare_latents`` only draws noise: not a phase, but denoising starts after it."""
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        out = fn(*args, **kwargs)
        run = _ACTIVE.get()
        if run is not None:
            run.denoise_begins(run.clock())
        return out

    setattr(wrapper, _MARK, "denoise_start")
    wrapper.__wrapped__ = fn  # type: ignore[attr-defined]
    return wrapper


def _wrap(owner: Any, attr: str, make: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    if owner is None or not hasattr(owner, attr):
        return
    current = getattr(owner, attr)
    if getattr(current, _MARK, None) is not None:
        return  # already measured (a second install, or a component shared by two pipelines)
    setattr(owner, attr, make(current))


def install(pipe: Any, image_mode: bool, postprocess: bool = False) -> None:
    """Wrap the phase methods of ``pipe`` (idempotent). ``image_mode``: ``prepare_latents``
    VAE-encodes the conditioning image, so it is the image_encode phase."""
    _wrap(pipe, "encode_prompt", lambda f: _timed("text_encode", f))
    # CLIP (Wan2.1 I2V); diffusers skips it when image_dim is None.
    _wrap(pipe, "encode_image", lambda f: _timed("image_encode", f))
    if image_mode:
        _wrap(pipe, "prepare_latents", lambda f: _timed("image_encode", f, begins_denoise=True))
    else:
        _wrap(pipe, "prepare_latents", _denoise_start)
    _wrap(getattr(pipe, "vae", None), "decode", lambda f: _timed("vae_decode", f))
    if postprocess:
        _wrap(getattr(pipe, "video_processor", None), "postprocess_video", lambda f: _timed("postprocess", f))


def uninstall(pipe: Any) -> None:
    """Drop the phase wrappers (instance attributes shadowing the real methods)."""
    for name in ("encode_prompt", "encode_image", "prepare_latents"):
        pipe.__dict__.pop(name, None)
    for owner, name in ((getattr(pipe, "vae", None), "decode"),
                        (getattr(pipe, "video_processor", None), "postprocess_video")):
        if owner is not None:
            owner.__dict__.pop(name, None)


# --------------------------------------------------------------------------- memory, energy, identity


def reset_peak(torch: Any, device: str) -> None:
    if torch is not None and is_cuda(device) and torch.cuda.is_available():
        with contextlib.suppress(Exception):
            torch.cuda.reset_peak_memory_stats(device)


def peak_memory(torch: Any, device: str) -> tuple[int | None, str]:
    """CUDA peak since the last reset; on CPU the process's peak RSS."""
    if is_cuda(device):
        if torch is None or not torch.cuda.is_available():
            return None, ""
        try:
            return int(torch.cuda.max_memory_allocated(device)), "cuda"
        except Exception:  # noqa: BLE001 - a broken CUDA context after a fault
            return None, ""
    return peak_rss_bytes(), "rss"


@contextlib.contextmanager
def energy(torch: Any, device: str, out: dict[str, Any]) -> Iterator[None]:
    """Joules used by the GPU during the block, from NVML's energy counter when it has one."""
    handle, start, nvml = None, None, None
    if is_cuda(device) and torch.cuda.is_available():
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
                sync(torch, device)
                used = nvml.nvmlDeviceGetTotalEnergyConsumption(handle) - start
                # The counter advances in steps (~100 ms of power on an H200): a zero delta
                # means "too short to measure", not "free", so report nothing.
                out["energy_joules"] = used / 1000.0 if used > 0 else None
        if nvml is not None:
            with contextlib.suppress(Exception):
                nvml.nvmlShutdown()


def gpu_identity(torch: Any, device: str) -> tuple[str, str]:
    if not (is_cuda(device) and torch.cuda.is_available()):
        return "", ""
    try:
        props = torch.cuda.get_device_properties(cuda_index(torch, device))
        uuid = str(getattr(props, "uuid", "") or "")
        if uuid and not uuid.startswith(("GPU-", "MIG-")):
            uuid = "GPU-" + uuid  # NVML's spelling, so it joins with the GPU collector's series
        return str(props.name), uuid
    except Exception:  # noqa: BLE001
        return "", ""


__all__ = [
    "EXPERTS", "PHASES", "Progress", "Run", "active", "cuda_index", "detail", "emit", "energy", "gpu_identity", "install",
    "is_cuda", "is_cuda_error", "is_oom", "peak_memory", "peak_rss_bytes", "reset_peak", "sync", "uninstall",
    "versions",
]
