"""Immutable results and the snapshot store that collectors read.

Workers (health checks, benchmark runners, the GPU and host pollers) produce frozen
result dataclasses and hand them to :class:`Store`. The store swaps in a new
:class:`Snapshot` under a lock; collectors read ``store.snapshot`` (one attribute
read, no lock) and translate it into metric families. A scrape therefore never waits
on work and never sees a half-written update.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Callable, Mapping

EMPTY: Mapping[str, Any] = MappingProxyType({})


def frozen_map(d: Mapping | None = None) -> Mapping:
    return MappingProxyType(dict(d or {}))


@dataclass(frozen=True)
class CollectorStatus:
    """Outcome of the last cycle of one background collector (gpu, host, ...)."""

    collector: str
    success: bool
    duration_seconds: float
    reason: str = ""  # bounded: "" | contract.labels.COLLECTOR_ERROR_REASONS


@dataclass(frozen=True)
class HealthIssue:
    """One finding of a health check. ``kind`` is from a bounded set; ``detail`` is for logs and CLI only."""

    kind: str
    detail: str = ""
    path: str = ""  # relative path inside the model directory; never used as a label


@dataclass(frozen=True)
class CheckResult:
    """Result of one health check (layout, headers, hash, load) of one model."""

    model: str
    check: str
    success: bool
    duration_seconds: float
    finished_at: float  # wall-clock seconds
    issues: tuple[HealthIssue, ...] = ()
    # check-specific figures, e.g. files_expected, files_present, size_bytes,
    # verified_bytes, expected_bytes, parameters, experts
    facts: Mapping[str, Any] = field(default_factory=frozen_map)


@dataclass(frozen=True)
class Efficiency:
    """A run's efficiency figures, computed when the run ends from the geometry that run loaded
    (:func:`wan_exporter.measure.efficiency.compute`); never recomputed from files afterwards."""

    tokens: int | None = None
    flops_per_step: int | None = None
    flops_per_second: float | None = None
    gpu_model: str | None = None  # gpu_peaks key of the GPU the run used
    peak_flops_per_second: float | None = None
    utilization_ratio: float | None = None
    video_seconds: float | None = None
    realtime_factor: float | None = None
    joules_per_video_second: float | None = None
    # At the model's default step count: the fixed phases as measured plus default steps x the
    # measured seconds per step. A probe runs a few steps; this is what a real generation would take.
    projected_steps: int | None = None
    projected_duration_seconds: float | None = None
    projected_realtime_factor: float | None = None


@dataclass(frozen=True)
class MemoryEstimate:
    """Peak memory a benchmark run is expected to need, estimated before its child starts
    (:mod:`wan_exporter.bench.memory`), and what the device it runs on has."""

    bytes: int
    weights_bytes: int
    activations_bytes: int
    vae_decode_bytes: int
    runtime_bytes: int
    device_bytes: int | None  # GPU memory, or host RAM on CPU; None when unknown
    kind: str  # "cuda" | "rss": what the measured peak it is compared with counts
    weights_known: bool = True  # False: no parameter count, the estimate is a lower bound

    @property
    def fits(self) -> bool:
        return self.device_bytes is None or self.bytes <= self.device_bytes


@dataclass(frozen=True)
class BenchmarkResult:
    """Measured outcome of one benchmark generation (one child-process run)."""

    model: str
    profile: str
    success: bool
    started_at: float  # wall-clock seconds
    finished_at: float
    reason: str = ""  # failure reason from a bounded set; "" on success
    detail: str = ""  # human-readable error, logs only
    duration_seconds: float | None = None  # generation call, excluding process start and load
    process_start_seconds: float | None = None
    phases: Mapping[str, float] = field(default_factory=frozen_map)  # load, text_encode, image_encode, denoise, vae_decode, export
    steps: int | None = None
    seconds_per_step: float | None = None
    frames: int | None = None
    width: int | None = None
    height: int | None = None
    peak_memory_bytes: int | None = None
    peak_memory_kind: str = ""  # "cuda" | "rss"
    energy_joules: float | None = None
    sanity: Mapping[str, bool] = field(default_factory=frozen_map)  # check -> passed (nan, black, frozen, shape, ...)
    output_digest: str = ""
    device: str = ""
    gpu_uuid: str = ""
    gpu_name: str = ""
    form: str = ""  # the checkpoint form loaded (FORMS); "" when not known
    weight_format: str = ""  # the denoiser's stored weights (WEIGHT_FORMATS); "" when not known
    compute_dtype: str = ""  # the dtype the run computed in (COMPUTE_DTYPES)
    # Output difference against the reference model's last output of the same inputs (compare_to);
    # None when not compared. On the 8-bit frames scaled 0..1.
    compared_with: str = ""
    output_max_abs_difference: float | None = None
    output_psnr_decibels: float | None = None
    efficiency: Efficiency | None = None  # computed at the end of the run, from what it loaded
    memory_estimate: MemoryEstimate | None = None  # estimated before the run
    # A parallel profile (several ranks per generation): rank -> mean step seconds, rank -> peak memory
    # (kind as peak_memory_kind), and how far the last rank ended a step after the first.
    rank_seconds_per_step: Mapping[str, float] = field(default_factory=frozen_map)
    rank_peak_memory_bytes: Mapping[str, int] = field(default_factory=frozen_map)
    rank_step_end_skew_seconds: float | None = None


@dataclass(frozen=True)
class GpuReading:
    """One GPU as read from NVML in one poll. ``None`` means not supported / not read.

    A GPU NVML reports lost (``NVML_ERROR_GPU_IS_LOST``: fallen off the bus) keeps its
    place with ``lost=True``, nothing read but the UUID it had earlier in the NVML session
    (if any), so the other GPUs keep their figures and its XIDs still join.
    """

    index: int
    uuid: str
    name: str
    lost: bool = False
    pci_bus_id: str = ""  # NVML's busId, e.g. 00000000:19:00.0 (dcgm-exporter's pci_bus_id)
    driver_version: str = ""
    cuda_version: str = ""
    compute_capability: str = ""
    memory_total_bytes: int | None = None
    memory_used_bytes: int | None = None
    utilization_ratio: float | None = None
    memory_utilization_ratio: float | None = None
    temperature_celsius: float | None = None
    power_watts: float | None = None
    power_limit_watts: float | None = None
    energy_joules: float | None = None
    sm_clock_hertz: float | None = None
    throttle_reasons: Mapping[str, bool] = field(default_factory=frozen_map)
    ecc_errors: Mapping[tuple[str, str], int] = field(default_factory=frozen_map)  # (error_type, counter_type) -> count
    processes: int | None = None
    process_memory_bytes: int | None = None


@dataclass(frozen=True)
class HostReading:
    memory_total_bytes: int
    memory_available_bytes: int
    cpu_count: int | None  # None when the platform does not say
    cpu_utilization_ratio: float | None
    load1: float | None
    # model name -> (filesystem free bytes, total bytes) where its files live
    model_fs: Mapping[str, tuple[int, int]] = field(default_factory=frozen_map)


@dataclass(frozen=True)
class JobStatus:
    job: str
    last_run_at: float | None = None
    last_success_at: float | None = None
    last_duration_seconds: float | None = None
    runs: int = 0
    failures: int = 0
    interval_seconds: float | None = None
    deadline_seconds: float | None = None  # a run in progress longer than this is stuck
    running_since: float | None = None  # wall-clock start of the run in progress; None when idle
    stuck: bool = False  # the run in progress has outlived its deadline
    skipped: int = 0  # runs not started because the previous one was still in progress


@dataclass(frozen=True)
class BenchmarkAggregate:
    """Counters and histogram buckets accumulated over the process lifetime for one model+profile."""

    runs: int = 0
    failures: Mapping[str, int] = field(default_factory=frozen_map)  # reason -> count
    skipped: Mapping[str, int] = field(default_factory=frozen_map)  # reason -> count
    bucket_counts: tuple[int, ...] = ()  # non-cumulative, one per bucket bound + the +Inf bucket
    duration_sum: float = 0.0
    duration_count: int = 0
    sanity_checks: int = 0
    sanity_passed: int = 0
    sanity_failures: Mapping[str, int] = field(default_factory=frozen_map)  # check -> count
    recent_durations: tuple[float, ...] = ()  # last N successful durations, for stability
    last: BenchmarkResult | None = None
    last_success: BenchmarkResult | None = None
    reproducible: bool | None = None  # None: not yet measured (needs two runs with the same seed)
    consecutive_failures: int = 0
    energy_joules_sum: float = 0.0
    # The last few results (successes and failures), oldest first: the status page's sparklines.
    history: tuple[BenchmarkResult, ...] = ()
    memory_estimate: MemoryEstimate | None = None  # the latest estimate, also of a run refused for it


@dataclass(frozen=True)
class Snapshot:
    """Everything a scrape needs, immutable. Replace, never mutate."""

    created_at: float = 0.0
    config_generation: int = 0
    config_last_reload_success: bool = True
    config_last_reload_at: float | None = None
    ready: bool = False
    gpus: tuple[GpuReading, ...] = ()
    gpu_xid_totals: Mapping[tuple[str, str], int] = field(default_factory=frozen_map)  # (gpu uuid, xid) -> count
    host: HostReading | None = None
    collectors: Mapping[str, CollectorStatus] = field(default_factory=frozen_map)
    checks: Mapping[tuple[str, str], CheckResult] = field(default_factory=frozen_map)  # (model, check) -> latest
    check_last_success: Mapping[tuple[str, str], float] = field(default_factory=frozen_map)
    checkpoint_facts: Mapping[str, Mapping[str, Any]] = field(default_factory=frozen_map)  # model -> derived facts
    benchmarks: Mapping[tuple[str, str], BenchmarkAggregate] = field(default_factory=frozen_map)  # (model, profile)
    baselines: Mapping[tuple[str, str, str], float] = field(default_factory=frozen_map)  # (model, profile, gpu_name) -> seconds
    jobs: Mapping[str, JobStatus] = field(default_factory=frozen_map)
    versions: Mapping[str, str] = field(default_factory=frozen_map)  # diffusers, torch, transformers when known (from a child)
    clock_jumps: Mapping[str, int] = field(default_factory=frozen_map)  # direction (forward, backward) -> count
    # GPU UUID -> the containers the kubelet allocated it to (kube.podresources); None: not known
    # (the pod-resources collector is off or failing), {} : known to be none.
    gpu_allocations: "Mapping[str, tuple] | None" = None


class Store:
    """Holds the current :class:`Snapshot`; writers swap in a new one atomically."""

    def __init__(self, snapshot: Snapshot | None = None) -> None:
        self._lock = threading.Lock()
        self._snapshot = snapshot or Snapshot(created_at=time.time())

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    def update(self, fn: Callable[[Snapshot], Snapshot]) -> Snapshot:
        """Apply ``fn`` to the current snapshot and publish its result."""
        with self._lock:
            new = fn(self._snapshot)
            new = replace(new, created_at=time.time())
            self._snapshot = new
        return new

    def set(self, **changes: Any) -> Snapshot:
        return self.update(lambda s: replace(s, **changes))

    def put(self, attr: str, key: Any, value: Any) -> Snapshot:
        """Replace one entry of a mapping attribute, e.g. ``put("checks", (m, c), result)``."""

        def fn(s: Snapshot) -> Snapshot:
            d = dict(getattr(s, attr))
            d[key] = value
            return replace(s, **{attr: frozen_map(d)})

        return self.update(fn)


__all__ = [
    "BenchmarkAggregate",
    "BenchmarkResult",
    "CheckResult",
    "CollectorStatus",
    "GpuReading",
    "HealthIssue",
    "HostReading",
    "JobStatus",
    "Snapshot",
    "Store",
    "field",
    "frozen_map",
]
