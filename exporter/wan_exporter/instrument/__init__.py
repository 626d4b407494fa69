"""Traffic metrics for a serving process: one line around a diffusers Wan pipeline.

::

    from wan_exporter.instrument import instrument, track

    pipe = instrument(pipe, model="t2v-a14b")          # same pipeline, now measured

    with track.request(model="t2v-a14b", enqueued_at=job.enqueued_at):   # optional: queue wait
        video = pipe(prompt=..., height=480, width=832).frames[0]

Each call counts one request into the ``wan_request*`` families of
:mod:`wan_exporter.contract.traffic` (outcome, duration, phases, steps, experts, frames,
pixels, seconds of video, CUDA peak memory, sampled output sanity), on the registry given
(prometheus_client's default registry when None). The measuring code is the benchmark
child's (:mod:`wan_exporter.measure.phases`), so a phase means the same in a probe and in
traffic. Exceptions reach the caller unchanged.

Importing this module imports neither torch nor diffusers and starts nothing.
"""

from __future__ import annotations

from typing import Any, Mapping

from .metrics import GAUGE_MULTIPROCESS_MODES, for_registry
from .request import Request, classify
from .wrap import instrument


class Track:
    """``track.request(...)``: a request the caller opens, for queue wait and non-pipeline work."""

    def request(self, model: str, enqueued_at: float | None = None, registry: Any = None, *,
                width: int | None = None, height: int | None = None, fps: float | None = None,
                buckets: Mapping[str, tuple[float, ...]] | None = None) -> Request:
        """A context manager counting one request of ``model``.

        ``enqueued_at``: when the request was queued, as a ``time.time()`` wall-clock value
        (it may come from another process); queue wait is the time from then to entering
        the block. An instrumented pipeline of the same model called inside joins this
        request instead of counting another. Without one, the block is the request: its
        duration is the block's, and ``req.output(frames=, width=, height=, fps=)`` says what
        it produced. An exception leaving the block sets the outcome and is not swallowed.
        """
        if not isinstance(model, str) or not model:
            raise ValueError(f"model must be a non-empty string, got {model!r}")
        return Request(model, for_registry(registry, buckets), enqueued_at=enqueued_at, width=width, height=height,
                       fps=fps)


track = Track()

__all__ = ["GAUGE_MULTIPROCESS_MODES", "Request", "Track", "classify", "for_registry", "instrument", "track"]
