"""A stand-in for the ``pynvml`` module, for machines without an NVIDIA GPU.

This is the narrowest boundary we can fake: the exporter's own NVML code runs unchanged
on top of it. State comes from the JSON file named by ``FAKE_NVML_STATE`` and is re-read
on every call, so a test can change GPUs or inject a fault while the exporter runs:

    {"fault": "none" | "library_missing" | "gpu_lost" | "unknown" | "hang",
     "gpus": [{"name": "NVIDIA H200", "memory_total": 150754820096, ...}],
     "xid_events": [[0, 79], [0, 79]]}   # drained once each, in order
"""

from __future__ import annotations

import json
import os
import threading
import time
from types import SimpleNamespace

NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_TIMEOUT = 10
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_UNKNOWN = 999
NVML_TEMPERATURE_GPU = 0
NVML_CLOCK_SM = 1


class NVMLError(Exception):
    def __init__(self, value: int) -> None:
        super().__init__(f"NVML error {value}")
        self.value = value


_lock = threading.Lock()
_drained = 0


def _state() -> dict:
    path = os.environ.get("FAKE_NVML_STATE")
    if not path:
        raise NVMLError(NVML_ERROR_LIBRARY_NOT_FOUND)
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        raise NVMLError(NVML_ERROR_LIBRARY_NOT_FOUND) from None


def _check() -> dict:
    st = _state()
    fault = st.get("fault", "none")
    if fault == "library_missing":
        raise NVMLError(NVML_ERROR_LIBRARY_NOT_FOUND)
    if fault == "gpu_lost":
        raise NVMLError(NVML_ERROR_GPU_IS_LOST)
    if fault == "unknown":
        raise NVMLError(NVML_ERROR_UNKNOWN)
    if fault == "hang":
        time.sleep(float(st.get("hang_seconds", 3600)))
    return st


def _gpu(handle: object) -> dict:
    st = _check()
    gpus = st.get("gpus", [])
    i = handle.index  # type: ignore[attr-defined]
    if i >= len(gpus):
        raise NVMLError(NVML_ERROR_GPU_IS_LOST)
    return {**_DEFAULTS, "index": i, "uuid": f"GPU-00000000-0000-0000-0000-{i:012d}", **gpus[i]}


_DEFAULTS = {
    "name": "NVIDIA H200",
    "memory_total": 150754820096,
    "memory_used": 1073741824,
    "util_gpu": 0,
    "util_memory": 0,
    "temperature": 35,
    "power_mw": 75000,
    "power_limit_mw": 700000,
    "energy_mj": 123456789,
    "sm_clock_mhz": 345,
    "throttle": 1,
    "ecc_corrected": 0,
    "ecc_uncorrected": 0,
    "processes": [],
    "cc": [9, 0],
}


def nvmlInit() -> None:
    _check()


def nvmlShutdown() -> None:
    pass


def nvmlDeviceGetCount() -> int:
    return len(_check().get("gpus", []))


def nvmlSystemGetDriverVersion() -> str:
    return _check().get("driver_version", "580.159.04")


def nvmlSystemGetCudaDriverVersion_v2() -> int:
    return int(_check().get("cuda_version", 13000))


nvmlSystemGetCudaDriverVersion = nvmlSystemGetCudaDriverVersion_v2


def nvmlDeviceGetHandleByIndex(i: int) -> SimpleNamespace:
    if i >= nvmlDeviceGetCount():
        raise NVMLError(NVML_ERROR_NOT_FOUND)
    return SimpleNamespace(index=i)


def nvmlDeviceGetUUID(h) -> str:
    return _gpu(h)["uuid"]


def nvmlDeviceGetName(h) -> str:
    return _gpu(h)["name"]


def nvmlDeviceGetCudaComputeCapability(h):
    return tuple(_gpu(h)["cc"])


nvmlMemory_v2 = 0x02000028


def nvmlDeviceGetMemoryInfo(h, version=None):
    g = _gpu(h)
    return SimpleNamespace(total=g["memory_total"], used=g["memory_used"], free=g["memory_total"] - g["memory_used"])


def nvmlDeviceGetUtilizationRates(h):
    g = _gpu(h)
    return SimpleNamespace(gpu=g["util_gpu"], memory=g["util_memory"])


def nvmlDeviceGetTemperature(h, sensor):
    return _gpu(h)["temperature"]


def nvmlDeviceGetPowerUsage(h):
    return _gpu(h)["power_mw"]


def nvmlDeviceGetEnforcedPowerLimit(h):
    return _gpu(h)["power_limit_mw"]


def nvmlDeviceGetTotalEnergyConsumption(h):
    return _gpu(h)["energy_mj"]


def nvmlDeviceGetClockInfo(h, clock):
    return _gpu(h)["sm_clock_mhz"]


def nvmlDeviceGetCurrentClocksEventReasons(h):
    return _gpu(h)["throttle"]


nvmlDeviceGetCurrentClocksThrottleReasons = nvmlDeviceGetCurrentClocksEventReasons


def nvmlDeviceGetTotalEccErrors(h, error_type, counter_type):
    g = _gpu(h)
    return g["ecc_uncorrected"] if error_type == 1 else g["ecc_corrected"]


def nvmlDeviceGetComputeRunningProcesses(h):
    return [SimpleNamespace(pid=p.get("pid", 1), usedGpuMemory=p.get("memory", 0)) for p in _gpu(h)["processes"]]


def nvmlEventSetCreate():
    _check()
    return SimpleNamespace(kind="event_set")


def nvmlDeviceRegisterEvents(h, mask, event_set):
    _gpu(h)


def nvmlEventSetWait_v2(event_set, timeout_ms):
    global _drained
    st = _check()
    events = st.get("xid_events", [])
    with _lock:
        if _drained >= len(events):
            raise NVMLError(NVML_ERROR_TIMEOUT)
        gpu, xid = events[_drained]
        _drained += 1
    return SimpleNamespace(device=SimpleNamespace(index=gpu), eventData=xid, eventType=8)
