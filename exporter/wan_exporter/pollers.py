"""Background pollers for the GPU, the host and the model files.

Each poll builds fresh readings and swaps them into the store, with a
:class:`CollectorStatus` telling whether it worked and, if not, why (bounded reason).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import replace
from typing import Callable

import psutil

from .checkpoint import facts as checkpoint
from .checkpoint.locate import model_folder, resolve_model_dir
from . import scan as scanning
from .scan.bounded import IoTimeout, Lanes, Stopped, log_timeout
from .scan.cache import ScanCache
from .config import Config, ModelConfig
from .contract.labels import NO_GPU_COLLECTOR_REASONS
from .nvml import NvmlReader, NvmlUnavailable
from .state import CollectorStatus, HostReading, Snapshot, Store, frozen_map

log = logging.getLogger(__name__)



def _status(s: Snapshot, status: CollectorStatus) -> dict:
    d = dict(s.collectors)
    d[status.collector] = status
    return {"collectors": frozen_map(d)}


class GpuPoller:
    def __init__(self, store: Store, reader: NvmlReader) -> None:
        self.store = store
        self.reader = reader

    def poll(self) -> None:
        t0 = time.perf_counter()
        try:
            gpus, xids = self.reader.read()
        except NvmlUnavailable as e:
            if e.reason not in NO_GPU_COLLECTOR_REASONS:
                log.warning("GPU collector: %s", e)
            else:
                log.debug("GPU collector: %s", e)
            st = CollectorStatus("gpu", False, time.perf_counter() - t0, e.reason)
            # Readings we can no longer vouch for are dropped: absent, not stale.
            self.store.update(lambda s: replace(s, gpus=(), **_status(s, st)))
            return
        st = CollectorStatus("gpu", True, time.perf_counter() - t0)

        def fn(s: Snapshot) -> Snapshot:
            totals = dict(s.gpu_xid_totals)
            for key, n in xids.items():
                totals[key] = totals.get(key, 0) + n
            # Known GPUs start at zero so increase() sees the first XID.
            return replace(s, gpus=tuple(gpus), gpu_xid_totals=frozen_map(totals), **_status(s, st))

        self.store.update(fn)


def _disk_usage(m: ModelConfig, cfg: Config) -> tuple[int, int] | None:
    d = model_folder(resolve_model_dir(m, cfg))
    if d is None:
        return None
    try:
        du = psutil.disk_usage(str(d))
    except OSError:
        return None
    return du.free, du.total


class HostPoller:
    def __init__(self, store: Store, config: Callable[[], Config], lanes: "Lanes | None" = None) -> None:
        self.store = store
        self.config = config
        self.lanes = lanes or Lanes()
        psutil.cpu_percent(interval=None)  # prime: the next call measures since now

    def poll(self) -> None:
        t0 = time.perf_counter()
        cfg = self.config()
        try:
            vm = psutil.virtual_memory()
            try:
                load1 = os.getloadavg()[0]
            except OSError:
                load1 = None
            fs: dict[str, tuple[int, int]] = {}
            for m in cfg.models:
                try:  # statvfs on a hung mount blocks: on the model's worker, under the deadline
                    got = self.lanes.run(m.name, lambda m=m: _disk_usage(m, cfg), cfg.exporter.io_timeout,
                                         "disk usage")
                except (IoTimeout, Stopped):
                    continue  # absent for this model only; its health checks report io_timeout
                if got is not None:
                    fs[m.name] = got
            reading = HostReading(
                memory_total_bytes=vm.total,
                memory_available_bytes=vm.available,
                cpu_count=psutil.cpu_count(),  # None when unknown: absent, never 0
                cpu_utilization_ratio=psutil.cpu_percent(interval=None) / 100.0,
                load1=load1,
                model_fs=frozen_map(fs),
            )
        except Exception as e:  # noqa: BLE001
            log.warning("host collector failed: %s", e)
            st = CollectorStatus("host", False, time.perf_counter() - t0, "error")
            self.store.update(lambda s: replace(s, host=None, **_status(s, st)))
            return
        st = CollectorStatus("host", True, time.perf_counter() - t0)
        self.store.update(lambda s: replace(s, host=reading, **_status(s, st)))


class CheckpointPoller:
    """Derives what each present checkpoint says about itself (header reads only)."""

    def __init__(self, store: Store, config: Callable[[], Config], scans: "ScanCache | None" = None) -> None:
        self.store = store
        self.config = config
        self.scans = scans or ScanCache()  # shared with the health jobs: one walk per cycle
        self._cache: dict[str, tuple[tuple, dict]] = {}

    def poll(self) -> None:
        t0 = time.perf_counter()
        cfg = self.config()
        facts: dict[str, dict] = {}
        ok = True
        reason = ""
        for m in cfg.models:
            try:  # on the model's worker, under the deadline: a blocked read delays this model only
                facts[m.name] = self.scans.lanes.run(m.name, lambda m=m: self._one(cfg, m), cfg.exporter.io_timeout,
                                                     "checkpoint facts")
            except (IoTimeout, Stopped) as e:
                ok, reason = False, "timeout"
                if isinstance(e, IoTimeout):
                    log_timeout(log, e, f"checkpoint facts for {m.name}")
                facts[m.name] = {"present": True, "dir": None, "facts": None}
            except Exception as e:  # noqa: BLE001 - a bad checkpoint is a finding, not a crash
                ok, reason = False, reason or "error"
                log.warning("checkpoint facts for %s: %s", m.name, e)
                facts[m.name] = {"present": True, "dir": None, "facts": None}
        st = CollectorStatus("checkpoint", ok, time.perf_counter() - t0, reason)
        self.store.update(lambda s: replace(s, checkpoint_facts=frozen_map(facts), **_status(s, st)))


    def _one(self, cfg: Config, m: ModelConfig) -> dict:
        d = resolve_model_dir(m, cfg)
        if d is None:
            return {"present": False}
        sc = self.scans.get(m.name, d, m.format, cfg.schedules.layout.interval)
        key = _signature(sc)
        cached = self._cache.get(m.name)
        if cached and cached[0] == key:
            return cached[1]
        entry = {"present": True, "dir": str(sc.root), "facts": checkpoint.derive_facts(sc)}
        self._cache[m.name] = (key, entry)
        return entry


def _signature(sc: "scanning.Scan") -> tuple:
    """Cheap change detector: sizes and mtimes of the files the facts are derived from."""
    sig: list[tuple] = [(sc.form,)]
    for rel in ("model_index.json", *sc.configs, *(w.rel for w in sc.weights)):
        try:
            st = (sc.root / rel).stat()
            sig.append((rel, st.st_size, st.st_mtime_ns))
        except OSError:
            sig.append((rel, None, None))
    return tuple(sig)
