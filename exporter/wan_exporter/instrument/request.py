"""One request: its outcome, its figures, and writing them to the traffic metrics once.

A :class:`Request` is opened either by the wrapped pipeline call or by the caller's
``with track.request(...)`` (which then owns it: a pipeline call inside joins it instead of
counting a second request). Everything is recorded when it closes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import logging
import sys
import threading
import time
from typing import Any

from ..measure import phases as measure
from ..contract import traffic
from .metrics import TrafficMetrics

log = logging.getLogger(__name__)
_CURRENT: contextvars.ContextVar["Request | None"] = contextvars.ContextVar("wan_exporter_request", default=None)
_CANCELLED = (KeyboardInterrupt, asyncio.CancelledError, concurrent.futures.CancelledError)
_INPUT_ERRORS = (ValueError, TypeError)

# Requests in flight per CUDA device in this process: CUDA's peak-memory counter is per device,
# so a request's peak is its own only while it runs alone there.
_DEVICE_LOCK = threading.Lock()
_ON_DEVICE: dict[str, set["Request"]] = {}


def classify(exc: BaseException | None, run: measure.Run | None) -> str:
    """The bounded outcome of a request that raised ``exc`` (None: it returned)."""
    if exc is None:
        return "ok"
    if isinstance(exc, _CANCELLED):
        return "cancelled"
    if measure.is_oom(exc):
        return "oom"
    if measure.is_cuda_error(exc):
        return "cuda_error"
    started = run is not None and (run.phases or run.denoise_start is not None or run.failed_phase)
    if isinstance(exc, _INPUT_ERRORS) and not started:
        return "invalid_input"  # the pipeline's own argument checks run before the first phase
    return "error"


class Request:
    """What one request did; recorded into ``metrics`` once, when it closes."""

    def __init__(self, model: str, metrics: TrafficMetrics, enqueued_at: float | None = None,
                 width: int | None = None, height: int | None = None, fps: float | None = None) -> None:
        self.model, self.metrics = str(model), metrics
        self.enqueued_at = enqueued_at
        self.width, self.height, self.fps = width, height, fps
        self.frames: int | None = None
        self.run: measure.Run | None = None
        self.error: BaseException | None = None
        self.interrupted = False
        self.sanity: dict[str, bool] | None = None
        self.peak_memory: int | None = None
        self.step_flops: int | None = None  # model FLOPs of one denoising step of every video of the call
        self.peak: tuple[str, float] | None = None  # (gpu_model, datasheet FLOP/s) of the CUDA device
        self._device: str | None = None
        self._alone = True
        self._t0 = 0.0
        self._token: contextvars.Token | None = None
        self._closed = False

    # ---- the caller's API (``with track.request(...) as req``)

    def output(self, frames: int | None = None, width: int | None = None, height: int | None = None,
               fps: float | None = None) -> None:
        """Describe what work outside a pipeline call produced (a pipeline call fills these itself)."""
        self.frames = frames if frames is not None else self.frames
        self.width = width if width is not None else self.width
        self.height = height if height is not None else self.height
        self.fps = fps if fps is not None else self.fps

    def __enter__(self) -> "Request":
        self.open()
        self._token = _CURRENT.set(self)
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        if self._token is not None:
            _CURRENT.reset(self._token)
            self._token = None
        self.close(exc)
        return False  # never swallow: the exception reaches the caller unchanged

    # ---- lifecycle

    def open(self) -> None:
        self._t0 = time.perf_counter()
        m = self.metrics
        m.known(self.model)
        if self.enqueued_at is not None:
            m.queue_wait.labels(self.model).observe(max(0.0, time.time() - float(self.enqueued_at)))
        m.in_flight.labels(self.model).inc()

    def on_device(self, device: str) -> None:
        """Note the CUDA device this request runs on and reset its peak if it runs there alone."""
        if not measure.is_cuda(device) or self._device is not None:
            return
        self._device = device
        with _DEVICE_LOCK:
            others = _ON_DEVICE.setdefault(device, set())
            for other in others:
                other._alone = False
            self._alone = not others
            others.add(self)
        if self._alone:
            measure.reset_peak(sys.modules.get("torch"), device)

    def _leave_device(self) -> None:
        if self._device is None:
            return
        with _DEVICE_LOCK:  # no request may join the device between reading alone and the peak
            try:
                if self._alone:
                    peak, kind = measure.peak_memory(sys.modules.get("torch"), self._device)
                    self.peak_memory = peak if kind == "cuda" else None
            finally:
                _ON_DEVICE.get(self._device, set()).discard(self)

    def close(self, exc: BaseException | None = None) -> None:
        if self._closed:
            return
        self._closed = True
        if self._device is not None and exc is None and self.error is None:
            # The call may return with kernels still queued ("pt"/"latent" outputs): its duration ends
            # when the device is done. One wait per request, where the caller would wait anyway.
            try:
                measure.sync(sys.modules.get("torch"), self._device)
            except Exception:  # noqa: BLE001 - a broken context is the failure already being reported
                pass
        duration = time.perf_counter() - self._t0
        try:  # measuring never fails the request nor replaces the exception it raised
            self._leave_device()
            error = exc if exc is not None else self.error
            outcome = classify(error, self.run)
            if outcome == "ok" and self.interrupted:
                outcome = "cancelled"  # the caller set the pipeline's interrupt flag
            if outcome == "ok" and self.sanity is not None and not self.sanity.get("finite", True):
                outcome = "nan_output"
            self._record(outcome, duration, error)
        except Exception:  # noqa: BLE001
            log.exception("recording a request of %s failed", self.model)
        finally:
            self.metrics.in_flight.labels(self.model).dec()

    # ---- recording

    def _failure_phase(self, outcome: str, error: BaseException | None) -> str:
        if outcome == "nan_output":
            return "postprocess"  # found in the frames the pipeline returned
        run = self.run
        if run is None or error is None:
            return "other"
        phase = run.failed_phase or run.where()
        return phase if phase in traffic.FAILURE_PHASES else "other"

    def _record(self, outcome: str, duration: float, error: BaseException | None) -> None:
        m, model = self.metrics, self.model
        m.requests.labels(model, outcome).inc()
        resolution = traffic.resolution_class(self.width, self.height) if self.width and self.height else "other"
        steps = self.run.step_durations() if self.run is not None else []
        if steps:  # every step that ran is a step, whatever the request's outcome
            step_hist = m.step.labels(model, resolution)
            for d in steps:
                step_hist.observe(d)
        if outcome != "ok":
            m.failures.labels(model, outcome, self._failure_phase(outcome, error)).inc()
        if self.sanity is not None:
            m.output_checks.labels(model).inc()
            for check in traffic.OUTPUT_CHECKS:
                if not self.sanity.get(check, True):
                    m.sanity_failures.labels(model, check).inc()
        if outcome != "ok":
            return
        m.duration.labels(model, resolution).observe(duration)
        if self.run is not None:
            phases = self.run.finish()
            for name in traffic.TRAFFIC_PHASES:
                if name in phases:
                    m.phase.labels(model, name).observe(phases[name])
            if self.step_flops is not None and steps and "denoise" in phases:
                # Over the same requests' denoise seconds (the phase histogram's sum): achieved FLOP/s.
                m.flops.labels(model).inc(self.step_flops * len(steps))
            self._record_experts(steps)
        if self.frames:
            m.frames.labels(model).inc(self.frames)
            if self.fps:
                m.video_seconds.labels(model).inc(self.frames / float(self.fps))
            if self.width and self.height:
                m.pixels.labels(model).inc(int(self.width) * int(self.height) * int(self.frames))
        if self.peak is not None:
            m.peak_flops.labels(model, self.peak[0]).set(self.peak[1])
        if self._device is not None:
            if self.peak_memory is not None:
                m.peak_memory.labels(model).set(self.peak_memory)
            else:  # overlapped on its device: unknown, so absent rather than wrong
                try:
                    m.peak_memory.remove(model)
                except KeyError:
                    pass

    def _record_experts(self, steps: list[float]) -> None:
        experts = self.run.step_experts if self.run is not None else []
        if not experts or len(experts) != len(steps):
            return
        m, model = self.metrics, self.model
        for name in traffic.EXPERTS:
            spent = [d for d, e in zip(steps, experts) if e == name]
            if spent:
                m.expert.labels(model, name).observe(sum(spent))
        if traffic.EXPERTS[1] in experts:
            m.expert_switch.labels(model).set(experts.index(traffic.EXPERTS[1]))


def current() -> Request | None:
    """The request the caller opened with ``track.request`` in this context, if any."""
    return _CURRENT.get()


__all__ = ["Request", "classify", "current"]
