"""Scheduled benchmarks: one job per device, so one benchmark per GPU at a time.

Before each run the courtesy check looks at the last NVML reading: a GPU busy with
someone else's work is skipped and the skip counted. Results are folded into the
store; baselines are recorded from the first healthy runs.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Callable

from .. import gpuid
from ..childproc import WarmWorker
from ..config import Config, ModelConfig, state_dir
from ..pollers import resolve_model_dir
from ..load.forms import skip_reason
from ..scan.cache import ScanCache
from ..scheduler import Jobs
from ..state import BenchmarkAggregate, BenchmarkResult, Snapshot, Store, frozen_map
from . import aggregate
from .baselines import Baselines
from ..collectors.benchmark import BenchmarkFigures, Recommendation
from ..measure.efficiency import EfficiencyFigures
from .runner import CHILD_TARGET, run_once

log = logging.getLogger(__name__)


def courtesy_skip(snap: Snapshot, cfg: Config, device: str) -> str | None:
    """A bounded skip reason when the GPU should not be used now, else None.

    Before a run the child's device is known only by its number, which the child's
    ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` makes NVML's (see :mod:`wan_exporter.gpuid`).
    """
    if gpuid.cuda_ordinal(device) is None:
        return None
    gpu_status = snap.collectors.get("gpu")
    gpu = gpuid.find(snap.gpus, device)
    if gpu_status is None or not gpu_status.success or gpu is None:
        return "gpu_unavailable"  # NVML unreadable, the GPU not listed, or lost
    if gpu.utilization_ratio is not None and gpu.utilization_ratio > cfg.benchmark.busy_utilization_ratio:
        return "gpu_busy"
    if gpu.process_memory_bytes is not None and gpu.process_memory_bytes > cfg.benchmark.busy_foreign_memory_bytes:
        return "gpu_memory_in_use"
    return None


class BenchmarkSubsystem:
    """The benchmark jobs and figures; given the store, the scheduler and the live config only."""

    name = "benchmark"

    def __init__(self, store: Store, jobs: Jobs, config: Callable[[], Config], scans: ScanCache | None = None) -> None:
        self.store = store
        self.scans = scans or ScanCache()  # the app's: a run reads the scan the health checks made
        self.jobs = jobs
        self.config = config
        self._baselines: Baselines | None = None
        self._device_locks: dict[str, threading.Lock] = defaultdict(threading.Lock)
        self._warm: dict[str, WarmWorker] = {}
        self._stopping = threading.Event()

    def parts(self) -> list:
        return [BenchmarkFigures(), Recommendation(), EfficiencyFigures()]

    def shutdown(self) -> None:
        self._stopping.set()
        for name in list(self._warm):
            self._warm.pop(name).close()

    def _warm_worker(self, cfg: Config, m: ModelConfig) -> WarmWorker | None:
        if not cfg.benchmark.keep_warm:
            return None
        w = self._warm.get(m.name)
        if w is None:
            w = self._warm[m.name] = WarmWorker(CHILD_TARGET, kill_grace=cfg.benchmark.kill_grace)
        return w

    def baselines(self, cfg: Config) -> Baselines:
        path = state_dir(cfg) / "baselines.json"
        if self._baselines is None or self._baselines.path != path:
            self._baselines = Baselines(path)
        return self._baselines

    def register_jobs(self, cfg: Config) -> None:
        keep = {m.name for m in cfg.models} if cfg.benchmark.keep_warm else set()
        for name in [n for n in self._warm if n not in keep]:  # reload turned keep-warm off or removed the model
            self._warm.pop(name).close()
        by_device: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for m in cfg.models:
            for p in m.profiles:
                by_device[gpuid.device_key(m.device)].append((m.name, p))
        self._publish_config_baselines(cfg)
        for device, pairs in by_device.items():
            self.jobs.add(f"benchmark.{device}", self._job(device, pairs), cfg.schedules.benchmark,
                              first_delay=2.0)

    def _publish_config_baselines(self, cfg: Config) -> None:
        def fn(s: Snapshot) -> Snapshot:
            b = {k: v for k, v in s.baselines.items() if k[2] != "config"}
            for m in cfg.models:
                for p, secs in m.baselines.items():
                    b[(m.name, p, "config")] = secs
            return replace(s, baselines=frozen_map(b))

        self.store.update(fn)

    def _job(self, device: str, pairs: list[tuple[str, str]]) -> Callable[[], None]:
        def run() -> None:
            failed: list[str] = []
            for model_name, profile_name in pairs:
                if self._stopping.is_set():
                    break
                cfg = self.config()
                try:
                    m = cfg.model(model_name)
                except KeyError:
                    continue  # removed by a reload since the job was built
                if profile_name not in m.profiles:
                    continue
                try:
                    self.run_one(cfg, m, profile_name)
                except Exception:  # noqa: BLE001 - one model's bug never stops the others on this device
                    log.exception("benchmark %s/%s raised", model_name, profile_name)
                    failed.append(f"{model_name}/{profile_name}")
            if failed:
                raise RuntimeError(f"benchmark.{device} raised for {', '.join(failed)}")

        return run

    def run_one(self, cfg: Config, m: ModelConfig, profile_name: str) -> BenchmarkResult | None:
        """Run (or skip) one benchmark now and publish its outcome."""
        with self._device_locks[gpuid.device_key(m.device)]:
            snap = self.store.snapshot
            model_dir = resolve_model_dir(m, cfg)
            scanned = self.scans.get(m.name, model_dir, m.format, cfg.schedules.layout.interval)
            reason = skip_reason(model_dir, m, scanned) or courtesy_skip(snap, cfg, m.device)
            if reason is not None:
                log.info("benchmark %s/%s skipped: %s", m.name, profile_name, reason)
                self._update(m.name, profile_name, lambda a: aggregate.skip(a, reason))
                return None
            out_path = None
            if cfg.benchmark.keep_last_output:
                out_dir = Path(cfg.benchmark.output_dir) if cfg.benchmark.output_dir else state_dir(cfg) / "outputs"
                out_path = str(out_dir / f"{m.name}-{profile_name}.mp4")
            result, versions = run_once(cfg, m, profile_name, model_dir, output_path=out_path,
                                        warm=self._warm_worker(cfg, m), scanned=scanned)
        if result.success:
            log.info("benchmark %s/%s: %.3fs", m.name, profile_name, result.duration_seconds or 0)
        else:
            log.warning("benchmark %s/%s failed (%s): %s", m.name, profile_name, result.reason, result.detail[:300])
        self._record(cfg, result, versions)
        return result

    def _update(self, model: str, profile: str, fn: Callable[[BenchmarkAggregate], BenchmarkAggregate]) -> None:
        def upd(s: Snapshot) -> Snapshot:
            b = dict(s.benchmarks)
            b[(model, profile)] = fn(b.get((model, profile)) or BenchmarkAggregate())
            return replace(s, benchmarks=frozen_map(b))

        self.store.update(upd)

    def _record(self, cfg: Config, r: BenchmarkResult, versions: dict) -> None:
        self._update(r.model, r.profile,
                     lambda a: aggregate.fold(a, r, cfg.benchmark.buckets, cfg.benchmark.stability_window))
        healthy = r.success and r.duration_seconds is not None and all(r.sanity.values())
        if healthy:
            gpu = r.gpu_name or r.device
            rec = self.baselines(cfg).observe(r.model, r.profile, gpu, r.duration_seconds, cfg.benchmark.baseline_runs)
            if rec is not None:
                self.store.put("baselines", (r.model, r.profile, "recorded"), rec)
        if versions:
            self.store.set(versions=frozen_map({k: str(v) for k, v in versions.items()}))

