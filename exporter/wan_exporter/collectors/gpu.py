"""GPU figures from the last NVML poll. A GPU NVML cannot read has no series at all."""

from __future__ import annotations

from typing import Iterable

from prometheus_client.core import Metric

from ..config import Config
from ..nvml import THROTTLE_REASONS
from ..state import Snapshot
from ._families import bool_value, counter, gauge, info


class GpuFigures:
    name = "gpu"

    def families(self, snap: Snapshot, cfg: Config) -> Iterable[Metric]:
        gpu_ok = snap.collectors.get("gpu")
        devices = gauge("wan_gpu_devices", "Number of GPUs NVML reports (absent while NVML cannot be read).")
        g_info = info("wan_gpu", "Identity of each GPU.",
                      ["gpu", "uuid", "name", "driver_version", "cuda_version", "compute_capability"])
        mem_total = gauge("wan_gpu_memory_total_bytes", "Total GPU memory.", ["gpu"])
        mem_used = gauge("wan_gpu_memory_used_bytes", "GPU memory in use, by every process.", ["gpu"])
        util = gauge("wan_gpu_utilization_ratio", "Fraction of the last sample period a kernel was running.", ["gpu"])
        mem_util = gauge("wan_gpu_memory_utilization_ratio", "Fraction of the sample period device memory was read or written.", ["gpu"])
        temp = gauge("wan_gpu_temperature_celsius", "GPU core temperature.", ["gpu"])
        power = gauge("wan_gpu_power_watts", "Power draw.", ["gpu"])
        limit = gauge("wan_gpu_power_limit_watts", "Enforced power limit.", ["gpu"])
        energy = counter("wan_gpu_energy_joules", "Energy consumed since the driver was loaded.", ["gpu"])
        clock = gauge("wan_gpu_sm_clock_hertz", "Current SM clock.", ["gpu"])
        throttle = gauge("wan_gpu_throttle_reason_active", "1 while a clock throttle reason is active.", ["gpu", "reason"])
        ecc = counter("wan_gpu_ecc_errors", "ECC memory errors since the driver was loaded (volatile counters).",
                      ["gpu", "error_type"])
        xid = counter("wan_gpu_xid_errors", "XID critical error events seen by the exporter (every event counts).",
                      ["gpu", "xid"])
        procs = gauge("wan_gpu_processes", "Compute processes running on the GPU.", ["gpu"])
        proc_mem = gauge("wan_gpu_process_memory_bytes", "GPU memory held by compute processes.", ["gpu"])

        if gpu_ok is not None and gpu_ok.success:
            devices.add_metric([], len(snap.gpus))
        by_uuid = {}
        for g in snap.gpus:
            i = str(g.index)
            by_uuid[g.uuid] = i
            g_info.add_metric([i, g.uuid, g.name, g.driver_version, g.cuda_version, g.compute_capability], {})
            for fam, v in ((mem_total, g.memory_total_bytes), (mem_used, g.memory_used_bytes),
                           (util, g.utilization_ratio), (mem_util, g.memory_utilization_ratio),
                           (temp, g.temperature_celsius), (power, g.power_watts), (limit, g.power_limit_watts),
                           (energy, g.energy_joules), (clock, g.sm_clock_hertz), (procs, g.processes),
                           (proc_mem, g.process_memory_bytes)):
                if v is not None:
                    fam.add_metric([i], v)
            if g.throttle_reasons:
                for reason in THROTTLE_REASONS.values():
                    throttle.add_metric([i, reason], bool_value(g.throttle_reasons.get(reason, False)))
            for (etype, _ctr), n in sorted(g.ecc_errors.items()):
                ecc.add_metric([i, etype], n)
        for (uuid, code), n in sorted(snap.gpu_xid_totals.items()):
            xid.add_metric([by_uuid.get(uuid, uuid), code], n)
        return [devices, g_info, mem_total, mem_used, util, mem_util, temp, power, limit, energy, clock,
                throttle, ecc, xid, procs, proc_mem]
