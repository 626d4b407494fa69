"""Host memory, CPU and the free space where each model's files live."""

from __future__ import annotations

from typing import Iterable

from prometheus_client.core import Metric

from ..config import Config
from ..state import Snapshot
from ._families import gauge


class HostFigures:
    name = "host"

    def families(self, snap: Snapshot, cfg: Config) -> Iterable[Metric]:
        h = snap.host
        mem_total = gauge("wan_host_memory_total_bytes", "Host physical memory.")
        mem_avail = gauge("wan_host_memory_available_bytes", "Host memory available without swapping.")
        cpus = gauge("wan_host_cpus", "Logical CPUs.")
        cpu = gauge("wan_host_cpu_utilization_ratio", "Host CPU utilisation since the previous poll, 0-1.")
        load = gauge("wan_host_load1", "One-minute load average.")
        fs_free = gauge("wan_model_filesystem_free_bytes", "Free bytes on the filesystem holding the model's files.", ["model"])
        fs_size = gauge("wan_model_filesystem_size_bytes", "Size of the filesystem holding the model's files.", ["model"])
        if h is not None:
            mem_total.add_metric([], h.memory_total_bytes)
            mem_avail.add_metric([], h.memory_available_bytes)
            cpus.add_metric([], h.cpu_count)
            if h.cpu_utilization_ratio is not None:
                cpu.add_metric([], h.cpu_utilization_ratio)
            if h.load1 is not None:
                load.add_metric([], h.load1)
            for model, (free, total) in sorted(h.model_fs.items()):
                fs_free.add_metric([model], free)
                fs_size.add_metric([model], total)
        return [mem_total, mem_avail, cpus, cpu, load, fs_free, fs_size]
