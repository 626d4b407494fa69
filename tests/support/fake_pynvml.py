"""A stand-in for the ``pynvml`` module, for machines without an NVIDIA GPU.

This is the narrowest boundary we can fake: the exporter's own NVML code runs unchanged
on top of it. State comes from the JSON file named by ``FAKE_NVML_STATE`` and is re-read
on every call, so a test can change GPUs or inject a fault while the exporter runs:

    {"fault": "none" | "library_missing" | "gpu_lost" | "unknown" | "hang",
     "gpus": [{"name": "NVIDIA H200", "memory_total": 150754820096, ...}],
     "xid_events": [[0, 79], [0, 79]]}   # drained once each, in order

A fault under one GPU is that device's alone, as NVML reports an XID 79 card:
``{"fault": "gpu_lost"}`` fails every call on it (its handle included), and
``"fault_calls": ["nvmlDeviceGetTemperature"]`` narrows the fault to those calls.
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


_DEVICE_FAULTS = {"gpu_lost": NVML_ERROR_GPU_IS_LOST, "unknown": NVML_ERROR_UNKNOWN}


def _device_fault(g: dict, call: str) -> None:
    fault = g.get("fault", "none")
    if fault == "none" or ("fault_calls" in g and call not in g["fault_calls"]):
        return
    if fault == "hang":
        time.sleep(float(g.get("hang_seconds", 3600)))
        return
    raise NVMLError(_DEVICE_FAULTS[fault])


def _gpu(handle: object, call: str = "") -> dict:
    st = _check()
    gpus = st.get("gpus", [])
    i = handle.index  # type: ignore[attr-defined]
    if i >= len(gpus):
        raise NVMLError(NVML_ERROR_GPU_IS_LOST)
    g = {**_DEFAULTS, "index": i, "uuid": f"GPU-00000000-0000-0000-0000-{i:012d}",
         "pci_bus_id": f"00000000:{0x19 + i:02X}:00.0", **gpus[i]}
    _device_fault(g, call)
    return g


_handles: dict[int, SimpleNamespace] = {}  # NVML hands out one handle per device for the session


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


def _handle(i: int) -> SimpleNamespace:
    with _lock:
        return _handles.setdefault(i, SimpleNamespace(index=i))


def nvmlDeviceGetHandleByIndex(i: int) -> SimpleNamespace:
    if i >= nvmlDeviceGetCount():
        raise NVMLError(NVML_ERROR_NOT_FOUND)
    h = _handle(i)
    _gpu(h, "nvmlDeviceGetHandleByIndex")
    return h


def nvmlDeviceGetUUID(h) -> str:
    return _gpu(h, "nvmlDeviceGetUUID")["uuid"]


def nvmlDeviceGetName(h) -> str:
    return _gpu(h, "nvmlDeviceGetName")["name"]


def nvmlDeviceGetCudaComputeCapability(h):
    return tuple(_gpu(h, "nvmlDeviceGetCudaComputeCapability")["cc"])


nvmlMemory_v2 = 0x02000028


class nvmlPciInfo_t(SimpleNamespace):
    pass


def nvmlDeviceGetPciInfo(h):
    return nvmlPciInfo_t(busId=_gpu(h, "nvmlDeviceGetPciInfo")["pci_bus_id"].encode())


def nvmlDeviceGetMemoryInfo(h, version=None):
    g = _gpu(h, "nvmlDeviceGetMemoryInfo")
    return SimpleNamespace(total=g["memory_total"], used=g["memory_used"], free=g["memory_total"] - g["memory_used"])


def nvmlDeviceGetUtilizationRates(h):
    g = _gpu(h, "nvmlDeviceGetUtilizationRates")
    return SimpleNamespace(gpu=g["util_gpu"], memory=g["util_memory"])


def nvmlDeviceGetTemperature(h, sensor):
    return _gpu(h, "nvmlDeviceGetTemperature")["temperature"]


def nvmlDeviceGetPowerUsage(h):
    return _gpu(h, "nvmlDeviceGetPowerUsage")["power_mw"]


def nvmlDeviceGetEnforcedPowerLimit(h):
    return _gpu(h, "nvmlDeviceGetEnforcedPowerLimit")["power_limit_mw"]


def nvmlDeviceGetTotalEnergyConsumption(h):
    return _gpu(h, "nvmlDeviceGetTotalEnergyConsumption")["energy_mj"]


def nvmlDeviceGetClockInfo(h, clock):
    return _gpu(h, "nvmlDeviceGetClockInfo")["sm_clock_mhz"]


def nvmlDeviceGetCurrentClocksEventReasons(h):
    return _gpu(h, "nvmlDeviceGetCurrentClocksEventReasons")["throttle"]


nvmlDeviceGetCurrentClocksThrottleReasons = nvmlDeviceGetCurrentClocksEventReasons


def nvmlDeviceGetTotalEccErrors(h, error_type, counter_type):
    g = _gpu(h, "nvmlDeviceGetTotalEccErrors")
    return g["ecc_uncorrected"] if error_type == 1 else g["ecc_corrected"]


def nvmlDeviceGetComputeRunningProcesses(h):
    return [SimpleNamespace(pid=p.get("pid", 1), usedGpuMemory=p.get("memory", 0)) for p in _gpu(h, "nvmlDeviceGetComputeRunningProcesses")["processes"]]


def nvmlEventSetCreate():
    _check()
    return SimpleNamespace(kind="event_set", devices=set())


def nvmlDeviceRegisterEvents(h, mask, event_set):
    _gpu(h, "nvmlDeviceRegisterEvents")
    with _lock:
        event_set.devices.add(h.index)


def nvmlEventSetWait_v2(event_set, timeout_ms):
    """The next event of a registered device; events of devices not registered are passed over."""
    global _drained
    st = _check()
    events = st.get("xid_events", [])
    with _lock:
        while _drained < len(events) and events[_drained][0] not in event_set.devices:
            _drained += 1
        if _drained >= len(events):
            raise NVMLError(NVML_ERROR_TIMEOUT)
        gpu, xid = events[_drained]
        _drained += 1
    return SimpleNamespace(device=_handle(gpu), eventData=xid, eventType=8)
