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

Under torchrun (one generation over several ranks) the request is counted once, on its output
rank, and every rank publishes its own ``wan_rank_*`` series (steps, heartbeat, stall): see
:mod:`.ranks`. Loops that are not pipelines call ``req.step(total=N)`` inside ``track.request``.

Importing this module imports neither torch nor diffusers and starts nothing (the stall watch's
thread starts with the first request that has a ``stall_after``).
"""

from __future__ import annotations

from typing import Any, Mapping

from .metrics import GAUGE_MULTIPROCESS_MODES, for_registry
from .ranks import DEFAULT_STALL_AFTER, Ranks, check, resolve
from .request import Request, classify
from .wrap import instrument


class Track:
    """``track.request(...)``: a request the caller opens, for queue wait and non-pipeline work."""

    def request(self, model: str, enqueued_at: float | None = None, registry: Any = None, *,
                width: int | None = None, height: int | None = None, fps: float | None = None,
                buckets: Mapping[str, tuple[float, ...]] | None = None, rank: int | None = None,
                world_size: int | None = None, output_rank: int | None = None,
                stall_after: float | None = DEFAULT_STALL_AFTER, device: str = "cpu") -> Request:
        """A context manager counting one request of ``model``.

        ``enqueued_at``: when the request was queued, as a ``time.time()`` wall-clock value
        (it may come from another process); queue wait is the time from then to entering
        the block. An instrumented pipeline of the same model called inside joins this
        request instead of counting another. Without one, the block is the request: its
        duration is the block's, and ``req.output(frames=, width=, height=, fps=)`` says what
        it produced. An exception leaving the block sets the outcome and is not swallowed.

        A loop that is not a diffusers pipeline (Wan's ``generate.py``, xDiT) calls
        ``req.step(total=N)`` after each denoising step: that times the steps and beats the
        rank's heartbeat. ``rank``, ``world_size``, ``output_rank`` and ``stall_after`` as for
        :func:`instrument`; ``device``: "cuda:N" times steps with CUDA events instead of the CPU clock.
        """
        if not isinstance(model, str) or not model:
            raise ValueError(f"model must be a non-empty string, got {model!r}")
        check(rank, world_size, output_rank)
        return Request(model, for_registry(registry, buckets), enqueued_at=enqueued_at, width=width, height=height,
                       fps=fps, ranks=resolve(rank, world_size, output_rank), stall_after=stall_after,
                       device=str(device))


track = Track()

__all__ = ["DEFAULT_STALL_AFTER", "GAUGE_MULTIPROCESS_MODES", "Ranks", "Request", "Track", "classify", "for_registry",
           "instrument", "resolve", "track"]
