"""GPU figures from the last NVML poll.

A GPU NVML reports lost has only ``wan_gpu_lost 1``; the others keep every series.
"""

from __future__ import annotations

from typing import Iterable

from prometheus_client.core import Metric

from ..config import Config
from ..state import Snapshot
from ..contract import gpu, labels
from .families import bool_value, new


class GpuFigures:
    name = "gpu"
    reads = (("collectors", lambda c: c.get("gpu")), "gpus", "gpu_xid_totals")

    def families(self, snap: Snapshot, cfg: Config) -> Iterable[Metric]:
        gpu_ok = snap.collectors.get("gpu")
        devices = new(gpu.DEVICES)
        g_info = new(gpu.INFO)
        lost = new(gpu.LOST)
        mem_total = new(gpu.MEMORY_TOTAL_BYTES)
        mem_used = new(gpu.MEMORY_USED_BYTES)
        util = new(gpu.UTILIZATION_RATIO)
        mem_util = new(gpu.MEMORY_UTILIZATION_RATIO)
        temp = new(gpu.TEMPERATURE_CELSIUS)
        power = new(gpu.POWER_WATTS)
        limit = new(gpu.POWER_LIMIT_WATTS)
        energy = new(gpu.ENERGY_JOULES)
        clock = new(gpu.SM_CLOCK_HERTZ)
        throttle = new(gpu.THROTTLE_REASON_ACTIVE)
        ecc = new(gpu.ECC_ERRORS)
        xid = new(gpu.XID_ERRORS)
        procs = new(gpu.PROCESSES)
        proc_mem = new(gpu.PROCESS_MEMORY_BYTES)

        if gpu_ok is not None and gpu_ok.success:
            devices.add_metric([], len(snap.gpus))
        by_uuid = {g.uuid: str(g.index) for g in snap.gpus if g.uuid}
        for g in snap.gpus:
            i = str(g.index)
            lost.add_metric([i], bool_value(g.lost))
            if g.lost:
                continue
            g_info.add_metric([i, g.uuid, g.name, g.driver_version, g.cuda_version, g.compute_capability,
                               g.pci_bus_id], {})
            for fam, v in ((mem_total, g.memory_total_bytes), (mem_used, g.memory_used_bytes),
                           (util, g.utilization_ratio), (mem_util, g.memory_utilization_ratio),
                           (temp, g.temperature_celsius), (power, g.power_watts), (limit, g.power_limit_watts),
                           (energy, g.energy_joules), (clock, g.sm_clock_hertz), (procs, g.processes),
                           (proc_mem, g.process_memory_bytes)):
                if v is not None:
                    fam.add_metric([i], v)
            if g.throttle_reasons:
                for reason in labels.THROTTLE_REASONS:
                    throttle.add_metric([i, reason], bool_value(g.throttle_reasons.get(reason, False)))
            for (etype, _ctr), n in sorted(g.ecc_errors.items()):
                ecc.add_metric([i, etype], n)
        for (uuid, code), n in sorted(snap.gpu_xid_totals.items()):
            xid.add_metric([by_uuid.get(uuid, uuid), code], n)
        return [devices, g_info, lost, mem_total, mem_used, util, mem_util, temp, power, limit, energy, clock,
                throttle, ecc, xid, procs, proc_mem]
