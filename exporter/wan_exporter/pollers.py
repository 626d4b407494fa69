"""Background pollers for the GPU, the host and the model files.

Each poll builds fresh readings and swaps them into the store, with a
:class:`CollectorStatus` telling whether it worked and, if not, why (bounded reason).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import psutil

from .checkpoint import facts as checkpoint
from .checkpoint import locate
from . import scan as scanning
from .scan.cache import ScanCache
from .config import Config, ModelConfig
from .contract.labels import NO_GPU_COLLECTOR_REASONS
from .nvml import NvmlReader, NvmlUnavailable
from .state import CollectorStatus, HostReading, Snapshot, Store, frozen_map

log = logging.getLogger(__name__)


def resolve_model_dir(m: ModelConfig, cfg: Config) -> "Path | tuple[Path, ...] | None":
    """Where the model's files are: its path (a directory, a file, or a list of files), or the
    first of its hub ids found in the HF cache or ModelScope's cache. None: not there."""
    if isinstance(m.path, tuple):
        return tuple(Path(os.path.expanduser(p)) for p in m.path)
    if m.path is not None:
        p = Path(os.path.expanduser(m.path))
        return p if p.is_dir() or p.is_file() else None
    hubs = m.hub_id if isinstance(m.hub_id, tuple) else (m.hub_id or "",)
    return locate.resolve(hubs, m.revision, cfg.exporter.hf_cache_dir)


def model_folder(target: "Path | tuple[Path, ...] | None") -> Path | None:
    """The folder a model's files live in (for disk usage)."""
    if target is None:
        return None
    if isinstance(target, tuple):
        return target[0].parent if target else None
    return target if target.is_dir() else target.parent


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


class HostPoller:
    def __init__(self, store: Store, config: Callable[[], Config]) -> None:
        self.store = store
        self.config = config
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
                d = model_folder(resolve_model_dir(m, cfg))
                if d is None:
                    continue
                try:
                    du = psutil.disk_usage(str(d))
                    fs[m.name] = (du.free, du.total)
                except OSError:
                    pass
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
        for m in cfg.models:
            d = resolve_model_dir(m, cfg)
            if d is None:
                facts[m.name] = {"present": False}
                continue
            try:
                sc = self.scans.get(m.name, d, m.format, cfg.schedules.layout.interval)
                key = _signature(sc)
                cached = self._cache.get(m.name)
                if cached and cached[0] == key:
                    facts[m.name] = cached[1]
                    continue
                f = checkpoint.derive_facts(sc)
                entry = facts[m.name] = {"present": True, "dir": str(sc.root), "facts": f}
                self._cache[m.name] = (key, entry)
            except Exception as e:  # noqa: BLE001 - a bad checkpoint is a finding, not a crash
                ok = False
                log.warning("checkpoint facts for %s: %s", m.name, e)
                facts[m.name] = {"present": True, "dir": str(model_folder(d)), "facts": None}
        st = CollectorStatus("checkpoint", ok, time.perf_counter() - t0, "" if ok else "error")
        self.store.update(lambda s: replace(s, checkpoint_facts=frozen_map(facts), **_status(s, st)))


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
