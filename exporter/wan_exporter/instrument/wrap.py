"""Wrapping a diffusers Wan pipeline: its call, its phase methods, its step callback.

``pipe(...)`` looks ``__call__`` up on the class, so the instance's class is swapped for a
subclass of the same name whose ``__call__`` measures and then calls the original: the
pipeline stays the same object, ``isinstance`` checks still hold, and the phase wrappers are
the benchmark child's (:func:`wan_exporter.measure.phases.install`).
"""

from __future__ import annotations

import inspect
import logging
import re
import sys
import threading
from typing import Any, Callable, Mapping

from ..measure import phases as measure
from ..contract import traffic
from .efficiency import StepFlops, peak, videos
from .metrics import TrafficMetrics, for_registry
from .request import Request, current

log = logging.getLogger(__name__)
_ATTR = "_wan_exporter_instrument"
_MODEL = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_CLASSES: dict[type, type] = {}
_CLASSES_LOCK = threading.Lock()


class Instrumentation:
    """What ``instrument()`` attached to one pipeline: its model label, metrics and call signature."""

    def __init__(self, pipe: Any, model: str, metrics: TrafficMetrics, fps: float | None, sample_outputs: float) -> None:
        self.model, self.metrics = model, metrics
        self.fps = float(fps) if fps else _default_fps(pipe)
        self.sample_outputs = float(sample_outputs)
        base = getattr(type(pipe), "_wan_exporter_base", type(pipe))
        self.signature = inspect.signature(base.__call__)
        self.defaults = {k: p.default for k, p in self.signature.parameters.items()
                         if p.default is not inspect.Parameter.empty}
        self._sampled = 0.0
        self._lock = threading.Lock()
        self.step_flops = StepFlops()
        self._peaks: dict[str, tuple[str, float] | None] = {}

    def peak(self, pipe: Any, device: str) -> tuple[str, float] | None:
        """The datasheet peak of ``device`` (looked up once per device), None on CPU and unknown GPUs."""
        if device not in self._peaks:
            self._peaks[device] = peak(sys.modules.get("torch"), device, pipe)
        return self._peaks[device]

    def _sample(self) -> bool:
        """Deterministic sampling: a ratio of 0.1 checks every tenth request."""
        if self.sample_outputs <= 0:
            return False
        with self._lock:
            self._sampled += self.sample_outputs
            if self._sampled >= 1.0:
                self._sampled -= 1.0
                return True
        return False

    def _efficiency(self, req: Request, pipe: Any, device: str, a: Mapping[str, Any]) -> None:
        """The call's FLOPs per step (all its videos) and the device's peak; unknown stays None."""
        def arg(name: str) -> Any:
            return a.get(name, self.defaults.get(name))

        try:
            per_step = self.step_flops.per_step(pipe, req.width, req.height, req.frames, arg("guidance_scale"),
                                                arg("max_sequence_length"))
            if per_step is not None:
                req.step_flops = per_step * videos(arg("prompt"), arg("prompt_embeds"), arg("num_videos_per_prompt"))
            req.peak = self.peak(pipe, device)
        except Exception:  # noqa: BLE001 - a figure we cannot compute is absent; the request is not harmed
            req.step_flops = req.peak = None

    def call(self, pipe: Any, base_call: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        outer = current()
        own = outer is None or outer.model != self.model or outer.run is not None
        req = Request(self.model, self.metrics, fps=self.fps) if own else outer
        if req.fps is None:
            req.fps = self.fps
        if own:
            req.open()
        run = measure.Run(torch=sys.modules.get("torch"), step_times=True)
        req.run = run
        error: BaseException | None = None
        try:
            try:
                bound = self.signature.bind(pipe, *args, **kwargs)
            except TypeError:  # let the pipeline raise its own error, word for word
                with run.active():
                    return base_call(pipe, *args, **kwargs)
            a = bound.arguments
            req.width = int(a.get("width", self.defaults.get("width")) or 0) or None
            req.height = int(a.get("height", self.defaults.get("height")) or 0) or None
            run.set_device(_device(pipe))
            req.on_device(run.device)
            user_cb = a.get("callback_on_step_end")
            a["callback_on_step_end"] = _chained(run, user_cb)
            if user_cb is not None and hasattr(user_cb, "tensor_inputs") and "callback_on_step_end_tensor_inputs" not in a:
                # diffusers reads tensor_inputs from a PipelineCallback itself, but not through our wrapper.
                a["callback_on_step_end_tensor_inputs"] = list(user_cb.tensor_inputs)
            with run.active():
                out = base_call(*bound.args, **bound.kwargs)
            try:  # measuring never fails a call that succeeded
                req.interrupted = bool(getattr(pipe, "_interrupt", False))
                req.frames = _frame_count(out, a.get("num_frames", self.defaults.get("num_frames")),
                                          a.get("output_type"))
                self._efficiency(req, pipe, run.device, a)
                if self._sample():
                    req.sanity = _output_checks(out)
            except Exception:  # noqa: BLE001
                log.exception("measuring the output of %s failed", self.model)
            return out
        except BaseException as exc:
            error = exc
            raise
        finally:
            if own:
                req.close(error)
            else:
                req.error = error  # the caller's ``with track.request`` records it on exit


def _chained(run: measure.Run, user_cb: Any) -> Callable[..., Any]:
    def on_step_end(p: Any, i: int, t: Any, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
        run.step_end(p, i, t)
        if user_cb is None:
            return callback_kwargs
        return user_cb(p, i, t, callback_kwargs)

    return on_step_end


def _device(pipe: Any) -> str:
    try:
        return str(pipe._execution_device)
    except Exception:  # noqa: BLE001 - a pipeline without components: measure on the CPU clock
        return "cpu"


def _default_fps(pipe: Any) -> float:
    """Wan's output rates: 24 fps for TI2V-5B (one expert, expand_timesteps), 16 for the others."""
    config = getattr(pipe, "config", None)
    ti2v = bool(getattr(config, "expand_timesteps", False)) and getattr(pipe, "transformer_2", None) is None
    return 24.0 if ti2v else 16.0


def _video(out: Any) -> Any:
    frames = getattr(out, "frames", None)
    if frames is None and isinstance(out, tuple) and out:
        frames = out[0]
    return frames


def _frame_count(out: Any, requested: Any, output_type: Any) -> int | None:
    """Frames of the first video returned (diffusers rounds num_frames to 4k+1); latents: as requested."""
    frames = _video(out)
    try:
        if output_type != "latent" and frames is not None:
            if isinstance(frames, list):
                return len(frames[0])
            if getattr(frames, "ndim", 0) == 5:
                return int(frames.shape[1])
    except Exception:  # noqa: BLE001 - an output shape we do not know: fall back to the request
        pass
    return int(requested) if requested else None


def _output_checks(out: Any) -> dict[str, bool] | None:
    """Sanity of the first video the pipeline returned (finite, not black, not frozen), or None."""
    import numpy as np

    from ..measure import sanity

    frames = _video(out)
    try:
        first = frames[0]
        if isinstance(first, list):  # PIL images
            arr = np.stack([np.asarray(im) for im in first])
        elif hasattr(first, "detach"):  # "pt": (frames, channels, height, width)
            arr = first.detach().float().cpu().permute(0, 2, 3, 1).numpy()
        else:
            arr = np.asarray(first)
        if arr.ndim != 4:
            return None
    except Exception:  # noqa: BLE001 - latents or an unknown output: nothing to check
        return None
    checks = sanity.check_frames(arr)
    return {k: bool(checks[k]) for k in traffic.OUTPUT_CHECKS}


def _instrumented_class(cls: type) -> type:
    with _CLASSES_LOCK:
        sub = _CLASSES.get(cls)
        if sub is None:
            base_call = cls.__call__

            def __call__(self: Any, *args: Any, **kwargs: Any) -> Any:
                state = self.__dict__.get(_ATTR)
                if state is None or measure.active() is not None:  # not ours, or nested in a measured call
                    return base_call(self, *args, **kwargs)
                return state.call(self, base_call, args, kwargs)

            __call__.__wrapped__ = base_call  # type: ignore[attr-defined]
            __call__.__doc__ = base_call.__doc__
            sub = type(cls.__name__, (cls,), {"__call__": __call__, "__module__": cls.__module__,
                                              "__qualname__": cls.__qualname__, "_wan_exporter_base": cls})
            _CLASSES[cls] = sub
    return sub


def instrument(pipe: Any, model: str, registry: Any = None, *, fps: float | None = None,
               sample_outputs: float = 0.0, buckets: Mapping[str, tuple[float, ...]] | None = None) -> Any:
    """Measure every call of ``pipe`` into the traffic metrics; returns the same pipeline.

    ``model``: the ``model`` label (1-64 of ``[A-Za-z0-9_.-]``). ``registry``: a
    prometheus_client registry (the default one when None). ``fps``: output frame rate for
    seconds of video (default 24 for TI2V-5B, else 16). ``sample_outputs``: the share of
    successful requests whose returned frames are checked (finite, not black, not frozen);
    0 checks none. ``buckets``: histogram buckets by family name, replacing the contract's.
    Instrumenting the same pipeline again changes nothing.
    """
    if not isinstance(model, str) or not _MODEL.match(model):
        raise ValueError(f"model must be 1-64 characters of [A-Za-z0-9_.-], got {model!r}")
    if not 0.0 <= float(sample_outputs) <= 1.0:
        raise ValueError(f"sample_outputs is a share of requests between 0 and 1, got {sample_outputs!r}")
    if not callable(pipe) or not hasattr(pipe, "__dict__"):
        raise TypeError(f"instrument() takes a diffusers pipeline, got {type(pipe).__name__}")
    existing = pipe.__dict__.get(_ATTR)
    if existing is not None:
        if existing.model != model:
            raise ValueError(f"this pipeline is already instrumented as model {existing.model!r}")
        return pipe
    metrics = for_registry(registry, buckets)
    metrics.known(model)
    measure.install(pipe, image_mode=hasattr(pipe, "encode_image"), postprocess=True)
    state = Instrumentation(pipe, model, metrics, fps, sample_outputs)
    pipe.__class__ = _instrumented_class(type(pipe))
    pipe.__dict__[_ATTR] = state
    return pipe


__all__ = ["Instrumentation", "instrument"]
