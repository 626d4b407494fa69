"""GPU figures from NVML."""

from __future__ import annotations

from . import labels
from .family import Family

SOURCE = "gpu"

DEVICES = Family(
    "wan_gpu_devices", "gauge",
    "Number of GPUs NVML reports, lost ones included (absent while NVML cannot be read).",
    labels=(), source=SOURCE)
INFO = Family(
    "wan_gpu", "info",
    "Identity of each GPU NVML can read; pci_bus_id as dcgm-exporter labels it, for joins.",
    labels=("gpu", "uuid", "name", "driver_version", "cuda_version", "compute_capability", "pci_bus_id"),
    source=SOURCE)
LOST = Family(
    "wan_gpu_lost", "gauge",
    "1 while NVML reports the GPU lost (fallen off the bus, XID 79), 0 for each GPU it reads; a lost GPU has no other series.",
    labels=("gpu",), source=SOURCE)
MEMORY_TOTAL_BYTES = Family(
    "wan_gpu_memory_total_bytes", "gauge",
    "Total GPU memory.",
    labels=("gpu",), source=SOURCE)
MEMORY_USED_BYTES = Family(
    "wan_gpu_memory_used_bytes", "gauge",
    "GPU memory in use, by every process.",
    labels=("gpu",), source=SOURCE)
UTILIZATION_RATIO = Family(
    "wan_gpu_utilization_ratio", "gauge",
    "Fraction of the last sample period a kernel was running.",
    labels=("gpu",), source=SOURCE)
MEMORY_UTILIZATION_RATIO = Family(
    "wan_gpu_memory_utilization_ratio", "gauge",
    "Fraction of the sample period device memory was read or written.",
    labels=("gpu",), source=SOURCE)
TEMPERATURE_CELSIUS = Family(
    "wan_gpu_temperature_celsius", "gauge",
    "GPU core temperature.",
    labels=("gpu",), source=SOURCE)
POWER_WATTS = Family(
    "wan_gpu_power_watts", "gauge",
    "Power draw.",
    labels=("gpu",), source=SOURCE)
POWER_LIMIT_WATTS = Family(
    "wan_gpu_power_limit_watts", "gauge",
    "Enforced power limit.",
    labels=("gpu",), source=SOURCE)
ENERGY_JOULES = Family(
    "wan_gpu_energy_joules", "counter",
    "Energy consumed since the driver was loaded.",
    labels=("gpu",), source=SOURCE)
SM_CLOCK_HERTZ = Family(
    "wan_gpu_sm_clock_hertz", "gauge",
    "Current SM clock.",
    labels=("gpu",), source=SOURCE)
THROTTLE_REASON_ACTIVE = Family(
    "wan_gpu_throttle_reason_active", "gauge",
    "1 while a clock throttle reason is active.",
    labels=("gpu", "reason"), source=SOURCE,
    bounded={"reason": labels.THROTTLE_REASONS})
ECC_ERRORS = Family(
    "wan_gpu_ecc_errors", "counter",
    "ECC memory errors since the driver was loaded (volatile counters).",
    labels=("gpu", "error_type"), source=SOURCE)
XID_ERRORS = Family(
    "wan_gpu_xid_errors", "counter",
    "XID critical error events seen by the exporter (every event counts).",
    labels=("gpu", "xid"), source=SOURCE)
PROCESSES = Family(
    "wan_gpu_processes", "gauge",
    "Compute processes running on the GPU.",
    labels=("gpu",), source=SOURCE)
PROCESS_MEMORY_BYTES = Family(
    "wan_gpu_process_memory_bytes", "gauge",
    "GPU memory held by compute processes.",
    labels=("gpu",), source=SOURCE)

ALLOCATION_INFO = Family(
    "wan_gpu_allocation", "info",
    "The pod container the kubelet allocated the GPU to (pod-resources API; opt-in: kubernetes.pod_resources.publish_pods). Never probed while allocated.",
    labels=("gpu", "uuid", "namespace", "pod", "container"), source=SOURCE)

FAMILIES: tuple[Family, ...] = (
    DEVICES,
    INFO,
    LOST,
    MEMORY_TOTAL_BYTES,
    MEMORY_USED_BYTES,
    UTILIZATION_RATIO,
    MEMORY_UTILIZATION_RATIO,
    TEMPERATURE_CELSIUS,
    POWER_WATTS,
    POWER_LIMIT_WATTS,
    ENERGY_JOULES,
    SM_CLOCK_HERTZ,
    THROTTLE_REASON_ACTIVE,
    ECC_ERRORS,
    XID_ERRORS,
    PROCESSES,
    PROCESS_MEMORY_BYTES,
    ALLOCATION_INFO,
)
