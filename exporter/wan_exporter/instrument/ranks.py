"""One generation across several processes: which rank this is, its heartbeat, and the stall watch.

Under ``torchrun`` every rank runs the same pipeline call. A generation is counted once, on its
output rank (rank 0 for diffusers and Wan's ``generate.py``, the last rank for xDiT); every rank
publishes its own step times and a heartbeat under a ``rank`` label. Nothing here adds a
collective to a step: ranks never talk to each other for the figures; skew across ranks is
computed by recording rules from the per-rank series.

The stall watch is one daemon thread per process, started by the first request with a
``stall_after``. It reads the in-flight requests' last progress (a monotonic clock written by
the step callback) and, when a request has made none for ``stall_after`` seconds while it still
has steps to run, sets ``wan_rank_stalled`` and asks torch's flight recorder which collective is
still in flight on this rank. The wait after the last step (the output rank decoding, the others
in a barrier) is not watched: it is not a step, and its length has nothing to do with a step's.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from ..contract import traffic

log = logging.getLogger(__name__)

DEFAULT_STALL_AFTER = 60.0


@dataclass(frozen=True)
class Ranks:
    """This process's place in a generation: its rank, how many ranks, and which one returns the video."""

    rank: int = 0
    world_size: int = 1
    output_rank: int = 0

    @property
    def is_output(self) -> bool:
        return self.rank == self.output_rank

    @property
    def label(self) -> str:
        return str(self.rank)


def _distributed() -> tuple[int, int] | None:
    """(rank, world size) from torch.distributed when this process initialised it; torch is never imported here."""
    torch = sys.modules.get("torch")
    dist = getattr(torch, "distributed", None) if torch is not None else None
    try:
        if dist is not None and dist.is_available() and dist.is_initialized():
            return int(dist.get_rank()), int(dist.get_world_size())
    except Exception:  # noqa: BLE001 - a torch without c10d, or a torn-down group: one process
        return None
    return None


def check(rank: int | None, world_size: int | None, output_rank: int | None) -> None:
    """Reject explicit values that cannot describe a generation, with what was given."""
    for name, v in (("rank", rank), ("world_size", world_size), ("output_rank", output_rank)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
            raise TypeError(f"{name} must be an int, got {v!r}")
    if world_size is not None and not 1 <= world_size <= traffic.MAX_RANKS:
        raise ValueError(f"world_size must be 1..{traffic.MAX_RANKS}, got {world_size}")
    if rank is not None and rank < 0:
        raise ValueError(f"rank must be >= 0, got {rank}")
    if rank is not None and world_size is not None and rank >= world_size:
        raise ValueError(f"rank {rank} is not below world_size {world_size}")
    if output_rank is not None and world_size is not None and not -world_size <= output_rank < world_size:
        raise ValueError(f"output_rank {output_rank} is not a rank of world_size {world_size}")


def resolve(rank: int | None = None, world_size: int | None = None, output_rank: int | None = None) -> Ranks:
    """Explicit values first, then torch.distributed when initialised, else one process (rank 0 of 1).

    ``output_rank`` may count from the end: -1 is the last rank (xDiT returns the video there).
    """
    found = _distributed()
    r = rank if rank is not None else (found[0] if found else 0)
    w = world_size if world_size is not None else (found[1] if found else max(1, r + 1))
    out = 0 if output_rank is None else output_rank
    if out < 0:
        out += w
    check(r, w, out)
    return Ranks(r, w, out)


# --------------------------------------------------------------------------- flight recorder


def _fold(profiling_name: str) -> str:
    """c10d's op name ("nccl:all_gather_into_tensor_coalesced", "gloo:all_to_all") -> a bounded label value."""
    name = profiling_name.split(":", 1)[-1].lower().replace("_", "")
    for needle, value in (("alltoall", "all_to_all"), ("allgather", "all_gather"), ("reducescatter", "reduce_scatter"),
                          ("allreduce", "all_reduce"), ("broadcast", "broadcast"), ("barrier", "barrier"),
                          ("send", "send_recv"), ("recv", "send_recv")):
        if needle in name:
            return value
    return "other"


def in_flight_collective() -> tuple[str, int | None]:
    """(collective, sequence number): the oldest collective still in flight on this rank, from the flight recorder.

    ("none", last issued sequence) when nothing is in flight; ("unknown", None) without a flight
    recorder (torch without c10d, or ``TORCH_FR_BUFFER_SIZE`` unset, which leaves it empty).
    """
    torch = sys.modules.get("torch")
    if torch is None:
        return "unknown", None
    try:
        from torch._C._distributed_c10d import _dump_fr_trace_json

        entries = json.loads(_dump_fr_trace_json(True, False)).get("entries") or []
    except Exception:  # noqa: BLE001 - no c10d, or a dump that failed: say so rather than guess
        return "unknown", None
    if not entries:
        return "unknown", None
    # gloo marks an entry retired once it completed; NCCL also moves its state to "completed".
    active = [e for e in entries if not e.get("retired") and e.get("state") != "completed" and not e.get("is_p2p")]
    if active:
        oldest = min(active, key=lambda e: (e.get("time_created_ns", 0), e.get("collective_seq_id", 0)))
        return _fold(str(oldest.get("profiling_name", ""))), int(oldest.get("collective_seq_id", 0))
    last = max(entries, key=lambda e: (e.get("time_created_ns", 0), e.get("collective_seq_id", 0)))
    return "none", int(last.get("collective_seq_id", 0))


# --------------------------------------------------------------------------- heartbeat and stall watch


class Beat:
    """One request's progress on this rank: written by the step callback, read by the watch thread."""

    __slots__ = ("model", "rank", "metrics", "stall_after", "last", "stepping", "stalled_as")

    def __init__(self, model: str, rank: str, metrics: Any, stall_after: float) -> None:
        self.model, self.rank, self.metrics, self.stall_after = model, rank, metrics, float(stall_after)
        self.last = time.monotonic()
        self.stepping = True  # False once the last step ended: the wait that follows is not watched
        self.stalled_as: str | None = None  # the collective label of the stalled series, while stalled

    def progress(self) -> None:
        self.last = time.monotonic()


class Watch:
    """The process's stall watch: one daemon thread, started with the first watched request."""

    def __init__(self) -> None:
        self._beats: set[Beat] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._tick = 5.0
        self._sooner = threading.Event()  # the tick got shorter: end the current wait now

    def add(self, beat: Beat) -> None:
        with self._lock:
            self._beats.add(beat)
            # Often enough that a stall shows within stall_after plus a twelfth of it (5 s at the default).
            tick = min(self._tick, max(0.05, beat.stall_after / 12))
            if tick < self._tick:
                self._tick = tick
                self._sooner.set()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="wan-exporter-stall-watch", daemon=True)
                self._thread.start()

    def remove(self, beat: Beat) -> None:
        with self._lock:
            self._beats.discard(beat)
        self._clear(beat)

    def _run(self) -> None:
        while True:
            if self._sooner.wait(self._tick):
                self._sooner.clear()
            try:
                self.check(time.monotonic())
            except Exception:  # noqa: BLE001 - the watch never dies of one bad read
                log.exception("the stall watch failed a check")

    def check(self, now: float) -> None:
        with self._lock:
            beats = list(self._beats)
        for beat in beats:
            if beat.stepping and now - beat.last >= beat.stall_after:
                self._stalled(beat)
            elif beat.stalled_as is not None:
                self._clear(beat)

    @staticmethod
    def _stalled(beat: Beat) -> None:
        collective, seq = in_flight_collective()
        m = beat.metrics
        if beat.stalled_as is not None and beat.stalled_as != collective:
            m.rank_stalled.labels(beat.model, beat.rank, beat.stalled_as).set(0)
        if beat.stalled_as != collective:
            log.warning("model %s rank %s made no step progress for %.0fs; in flight: %s (sequence %s)", beat.model,
                        beat.rank, beat.stall_after, collective, seq)
        beat.stalled_as = collective
        m.rank_stalled.labels(beat.model, beat.rank, collective).set(1)
        if seq is not None:
            m.rank_collective_sequence.labels(beat.model, beat.rank).set(seq)

    @staticmethod
    def _clear(beat: Beat) -> None:
        if beat.stalled_as is not None:
            beat.metrics.rank_stalled.labels(beat.model, beat.rank, beat.stalled_as).set(0)
            beat.stalled_as = None


WATCH = Watch()

__all__ = ["DEFAULT_STALL_AFTER", "WATCH", "Beat", "Ranks", "Watch", "check", "in_flight_collective", "resolve"]
