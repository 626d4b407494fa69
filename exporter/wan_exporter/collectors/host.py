"""Host memory, CPU and the free space where each model's files live."""

from __future__ import annotations

from typing import Iterable

from prometheus_client.core import Metric

from ..config import Config
from ..state import Snapshot
from ..contract import host
from .families import new


class HostFigures:
    name = "host"
    reads = ("host",)

    def families(self, snap: Snapshot, cfg: Config) -> Iterable[Metric]:
        h = snap.host
        mem_total = new(host.MEMORY_TOTAL_BYTES)
        mem_avail = new(host.MEMORY_AVAILABLE_BYTES)
        cpus = new(host.CPUS)
        cpu = new(host.CPU_UTILIZATION_RATIO)
        load = new(host.LOAD1)
        fs_free = new(host.MODEL_FILESYSTEM_FREE_BYTES)
        fs_size = new(host.MODEL_FILESYSTEM_SIZE_BYTES)
        if h is not None:
            mem_total.add_metric([], h.memory_total_bytes)
            mem_avail.add_metric([], h.memory_available_bytes)
            if h.cpu_count:  # unknown (None) is absent, never 0
                cpus.add_metric([], h.cpu_count)
            if h.cpu_utilization_ratio is not None:
                cpu.add_metric([], h.cpu_utilization_ratio)
            if h.load1 is not None:
                load.add_metric([], h.load1)
            for model, (free, total) in sorted(h.model_fs.items()):
                fs_free.add_metric([model], free)
                fs_size.add_metric([model], total)
        return [mem_total, mem_avail, cpus, cpu, load, fs_free, fs_size]
