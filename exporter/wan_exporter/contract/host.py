"""Host memory, CPU and the filesystems that hold the models."""

from __future__ import annotations

from .family import Family

SOURCE = "host"

MEMORY_TOTAL_BYTES = Family(
    "wan_host_memory_total_bytes", "gauge",
    "Host physical memory.",
    labels=(), source=SOURCE)
MEMORY_AVAILABLE_BYTES = Family(
    "wan_host_memory_available_bytes", "gauge",
    "Host memory available without swapping.",
    labels=(), source=SOURCE)
CPUS = Family(
    "wan_host_cpus", "gauge",
    "Logical CPUs (absent when the platform does not say).",
    labels=(), source=SOURCE)
CPU_UTILIZATION_RATIO = Family(
    "wan_host_cpu_utilization_ratio", "gauge",
    "Host CPU utilisation since the previous poll, 0-1.",
    labels=(), source=SOURCE)
LOAD1 = Family(
    "wan_host_load1", "gauge",
    "One-minute load average.",
    labels=(), source=SOURCE)
MODEL_FILESYSTEM_FREE_BYTES = Family(
    "wan_model_filesystem_free_bytes", "gauge",
    "Free bytes on the filesystem holding the model's files.",
    labels=("model",), source=SOURCE)
MODEL_FILESYSTEM_SIZE_BYTES = Family(
    "wan_model_filesystem_size_bytes", "gauge",
    "Size of the filesystem holding the model's files.",
    labels=("model",), source=SOURCE)

FAMILIES: tuple[Family, ...] = (
    MEMORY_TOTAL_BYTES,
    MEMORY_AVAILABLE_BYTES,
    CPUS,
    CPU_UTILIZATION_RATIO,
    LOAD1,
    MODEL_FILESYSTEM_FREE_BYTES,
    MODEL_FILESYSTEM_SIZE_BYTES,
)
