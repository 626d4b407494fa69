"""GPU readings through NVML (package nvidia-ml-py, module ``pynvml``).

Every NVML call runs on one dedicated worker thread and is awaited with a timeout, so a
wedged driver call can never stall the poller, let alone a scrape. While a call is
still stuck, later polls fail fast with reason ``timeout`` instead of piling up threads.
NVML is (re)initialised lazily: after any failure the next poll starts from nvmlInit.

The ``pynvml`` module is the only thing replaced in tests (there is no GPU on CI):
``WAN_EXPORTER_NVML_MODULE`` names a module with the same API.
"""

from __future__ import annotations

import ctypes
import importlib
import logging
import os
import queue
import threading
import time
from typing import Any, Callable

from .contract import labels
from .state import GpuReading, frozen_map

log = logging.getLogger(__name__)

# NVML clock-event (throttle) reason bits -> our bounded label values.
THROTTLE_REASONS = {
    0x0000000000000001: "gpu_idle",
    0x0000000000000002: "applications_clocks_setting",
    0x0000000000000004: "sw_power_cap",
    0x0000000000000008: "hw_slowdown",
    0x0000000000000010: "sync_boost",
    0x0000000000000020: "sw_thermal_slowdown",
    0x0000000000000040: "hw_thermal_slowdown",
    0x0000000000000080: "hw_power_brake_slowdown",
    0x0000000000000100: "display_clock_setting",
}

assert tuple(THROTTLE_REASONS.values()) == labels.THROTTLE_REASONS  # the contract's set, bit by bit

XID_EVENT = 0x0000000000000008  # nvmlEventTypeXidCriticalError


class NvmlUnavailable(Exception):
    """NVML cannot be used now; ``reason`` is a bounded label value."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class _CallThread:
    """Runs callables one at a time on a daemon thread, each awaited with a timeout."""

    def __init__(self) -> None:
        self._q: queue.Queue = queue.Queue()
        self._busy_since: float | None = None
        self._thread = threading.Thread(target=self._loop, name="nvml", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            func, box, done = self._q.get()
            self._busy_since = time.monotonic()
            try:
                box["value"] = func()
            except BaseException as e:  # noqa: BLE001 - handed back to the caller
                box["error"] = e
            finally:
                self._busy_since = None
                done.set()

    @property
    def wedged(self) -> bool:
        return self._busy_since is not None

    @property
    def wedged_for(self) -> float:
        since = self._busy_since
        return 0.0 if since is None else time.monotonic() - since

    def call(self, func: Callable[[], Any], timeout: float) -> Any:
        if self.wedged:
            raise NvmlUnavailable("timeout", "an earlier NVML call has not returned")
        box: dict[str, Any] = {}
        done = threading.Event()
        self._q.put((func, box, done))
        if not done.wait(timeout):
            raise NvmlUnavailable("timeout", f"NVML call did not return within {timeout:g}s")
        if "error" in box:
            raise box["error"]
        return box.get("value")


def _load_module() -> Any:
    name = os.environ.get("WAN_EXPORTER_NVML_MODULE", "pynvml")
    try:
        return importlib.import_module(name)
    except ImportError as e:
        raise NvmlUnavailable("library_missing", str(e)) from None


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class NvmlReader:
    """Reads every GPU once per :meth:`read` call; keeps NVML initialised between calls."""

    # A call stuck this long is given up on: its thread is abandoned (it may never return)
    # and a fresh one re-initialises NVML. At most MAX_ABANDONED threads are ever left behind.
    ABANDON_AFTER = 60.0
    MAX_ABANDONED = 3

    def __init__(self, timeout: float = 2.0, module: Any = None, abandon_after: float | None = None) -> None:
        self.timeout = timeout
        self.abandon_after = self.ABANDON_AFTER if abandon_after is None else abandon_after
        self.abandoned = 0
        self._module = module
        self._nv: Any = None
        self._initialised = False
        self._event_set: Any = None
        self._registered: set[str] = set()  # UUIDs whose XID events the event set receives
        self._handle_uuids: dict[int, str] = {}  # device handle -> UUID, for events of a GPU lost since
        self._lost: set[int] = set()  # indices reported lost, so a loss is logged once
        self._uuids: dict[int, str] = {}  # index -> UUID last read in this NVML session
        self._calls = _CallThread()

    # -- lifecycle -----------------------------------------------------------------
    def _ensure_init(self) -> Any:
        if self._initialised:
            return self._nv
        nv = self._module if self._module is not None else _load_module()
        try:
            self._call(nv.nvmlInit)
        except NvmlUnavailable:
            raise
        except Exception as e:  # noqa: BLE001
            raise NvmlUnavailable(_classify(nv, e), str(e)) from None
        self._nv = nv
        self._initialised = True
        self._event_set = None
        return nv

    def reset(self) -> None:
        """Forget the NVML session so the next read re-initialises (after GPU lost, driver reload)."""
        nv, self._nv, self._initialised, self._event_set = self._nv, None, False, None
        self._uuids = {}  # a new session may number the GPUs differently
        if nv is not None and not self._calls.wedged:
            try:
                self._call(nv.nvmlShutdown)
            except Exception:  # noqa: BLE001 - best effort
                pass

    def _call(self, func: Callable[..., Any], *args: Any) -> Any:
        return self._calls.call(lambda: func(*args), self.timeout)

    # -- reading -------------------------------------------------------------------
    def read(self) -> tuple[list[GpuReading], dict[tuple[str, str], int]]:
        """All GPUs plus XID events seen since the last read: ``{(uuid, xid): count}``.

        Raises :class:`NvmlUnavailable` when NVML cannot be read at all; a failure of
        one optional field only leaves that field ``None``; a GPU NVML reports lost is
        returned as a ``lost`` reading and the other GPUs are read as usual.
        """
        if (self._calls.wedged and self._calls.wedged_for > self.abandon_after
                and self.abandoned < self.MAX_ABANDONED):
            log.warning("an NVML call has not returned for %.0fs; abandoning it and re-initialising NVML",
                        self._calls.wedged_for)
            self.abandoned += 1
            self._calls = _CallThread()
            self._nv, self._initialised, self._event_set = None, False, None
        nv = self._ensure_init()
        try:
            count = self._call(nv.nvmlDeviceGetCount)
            driver = _text(self._opt(nv.nvmlSystemGetDriverVersion) or "")
            cuda = self._opt(nv.nvmlSystemGetCudaDriverVersion_v2) or self._opt(nv.nvmlSystemGetCudaDriverVersion)
            cuda_s = f"{cuda // 1000}.{(cuda % 1000) // 10}" if isinstance(cuda, int) and cuda else ""
            gpus = [self._read_or_lost(nv, i, driver, cuda_s) for i in range(count)]
            xids = self._drain_xids(nv, gpus)
            return gpus, xids
        except NvmlUnavailable:
            self.reset()
            raise
        except Exception as e:  # noqa: BLE001
            reason = _classify(nv, e)
            self.reset()
            raise NvmlUnavailable(reason, str(e)) from None

    def _opt(self, func: Callable[..., Any], *args: Any) -> Any:
        """An optional field: unsupported or failing reads give None, hangs still propagate."""
        try:
            return self._call(func, *args)
        except NvmlUnavailable:
            raise
        except Exception as e:  # noqa: BLE001
            if _classify(self._nv, e) == "gpu_lost":
                raise
            return None

    def _read_or_lost(self, nv: Any, index: int, driver: str, cuda: str) -> GpuReading:
        """One GPU; GPU_IS_LOST from any of its calls is that GPU's fault alone."""
        try:
            reading = self._read_one(nv, index, driver, cuda)
        except NvmlUnavailable:
            raise
        except Exception as e:  # noqa: BLE001
            if _classify(nv, e) != "gpu_lost":
                raise
            if index not in self._lost:
                log.warning("GPU %d: NVML reports it lost (fallen off the bus?); the other GPUs are still read", index)
                self._lost.add(index)
            # The UUID this index had earlier in this NVML session names it, so its XIDs join.
            return GpuReading(index=index, uuid=self._uuids.get(index, ""), name="", driver_version=driver,
                              cuda_version=cuda, lost=True)
        self._uuids[index] = reading.uuid
        if index in self._lost:
            log.warning("GPU %d: readable again (%s)", index, reading.uuid)
            self._lost.discard(index)
        return reading

    def _read_one(self, nv: Any, index: int, driver: str, cuda: str) -> GpuReading:
        h = self._call(nv.nvmlDeviceGetHandleByIndex, index)
        uuid = _text(self._call(nv.nvmlDeviceGetUUID, h))
        name = _text(self._call(nv.nvmlDeviceGetName, h))
        pci = self._opt(nv.nvmlDeviceGetPciInfo, h) if hasattr(nv, "nvmlDeviceGetPciInfo") else None
        cc = self._opt(nv.nvmlDeviceGetCudaComputeCapability, h)
        mem = self._memory(nv, h)
        util = self._opt(nv.nvmlDeviceGetUtilizationRates, h)
        temp = self._opt(nv.nvmlDeviceGetTemperature, h, getattr(nv, "NVML_TEMPERATURE_GPU", 0))
        power = self._opt(nv.nvmlDeviceGetPowerUsage, h)  # milliwatts
        limit = self._opt(nv.nvmlDeviceGetEnforcedPowerLimit, h)
        energy = self._opt(nv.nvmlDeviceGetTotalEnergyConsumption, h)  # millijoules
        clock = self._opt(nv.nvmlDeviceGetClockInfo, h, getattr(nv, "NVML_CLOCK_SM", 1))  # MHz
        reasons_fn = getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None) or nv.nvmlDeviceGetCurrentClocksThrottleReasons
        reasons = self._opt(reasons_fn, h)
        procs = self._opt(nv.nvmlDeviceGetComputeRunningProcesses, h)
        ecc: dict[tuple[str, str], int] = {}
        for etype, ename in ((0, "corrected"), (1, "uncorrected")):  # NVML_MEMORY_ERROR_TYPE_*
            v = self._opt(nv.nvmlDeviceGetTotalEccErrors, h, etype, 0)  # NVML_VOLATILE_ECC
            if v is not None:
                ecc[(ename, "volatile")] = int(v)
        proc_mem = None
        if procs is not None:
            proc_mem = sum(int(getattr(p, "usedGpuMemory", 0) or 0) for p in procs)
        return GpuReading(
            index=index,
            uuid=uuid,
            name=name,
            pci_bus_id=_text(getattr(pci, "busId", "") or "") if pci is not None else "",
            driver_version=driver,
            cuda_version=cuda,
            compute_capability=f"{cc[0]}.{cc[1]}" if cc else "",
            memory_total_bytes=int(mem.total) if mem is not None else None,
            memory_used_bytes=int(mem.used) if mem is not None else None,
            utilization_ratio=util.gpu / 100.0 if util is not None else None,
            memory_utilization_ratio=util.memory / 100.0 if util is not None else None,
            temperature_celsius=float(temp) if temp is not None else None,
            power_watts=power / 1000.0 if power is not None else None,
            power_limit_watts=limit / 1000.0 if limit is not None else None,
            energy_joules=energy / 1000.0 if energy is not None else None,
            sm_clock_hertz=clock * 1e6 if clock is not None else None,
            throttle_reasons=frozen_map({n: bool(reasons & bit) for bit, n in THROTTLE_REASONS.items()})
            if reasons is not None else frozen_map(),
            ecc_errors=frozen_map(ecc),
            processes=len(procs) if procs is not None else None,
            process_memory_bytes=proc_mem,
        )

    def _memory(self, nv: Any, h: Any) -> Any:
        """Memory info v2 when the driver has it: its ``used`` excludes driver-reserved memory,
        which is what nvidia-smi shows (v1 counts the reservation as used: ~600 MiB on an idle H200)."""
        v2 = getattr(nv, "nvmlMemory_v2", None)
        if v2 is not None:
            mem = self._opt(nv.nvmlDeviceGetMemoryInfo, h, v2)
            if mem is not None:
                return mem
        return self._opt(nv.nvmlDeviceGetMemoryInfo, h)

    def _drain_xids(self, nv: Any, gpus: list[GpuReading]) -> dict[tuple[str, str], int]:
        """Count XID events since the last read. Every event counts, repeats included."""
        out: dict[tuple[str, str], int] = {}
        if self._event_set is None:
            try:
                self._event_set = self._call(nv.nvmlEventSetCreate)
            except NvmlUnavailable:
                raise
            except Exception:  # noqa: BLE001 - events unsupported: XIDs stay unknown
                return out
            self._registered, self._handle_uuids = set(), {}
        for g in gpus:  # a GPU lost at the first read is registered once it is read again
            if g.lost or g.uuid in self._registered:
                continue
            try:
                h = self._call(nv.nvmlDeviceGetHandleByIndex, g.index)
                self._handle_uuids[_handle_key(h)] = g.uuid
                self._call(nv.nvmlDeviceRegisterEvents, h, XID_EVENT, self._event_set)
            except NvmlUnavailable:
                raise
            except Exception:  # noqa: BLE001 - not supported on this GPU, or lost since it was read
                pass
            self._registered.add(g.uuid)
        for _ in range(1000):  # bounded drain
            try:
                data = self._call(nv.nvmlEventSetWait_v2, self._event_set, 0)
            except NvmlUnavailable:
                raise
            except Exception:  # noqa: BLE001 - NVML_ERROR_TIMEOUT: nothing pending
                break
            # The handle seen at registration names the GPU even when it is lost now (XID 79).
            uuid = self._handle_uuids.get(_handle_key(data.device))
            if uuid is None:
                try:
                    uuid = _text(self._call(nv.nvmlDeviceGetUUID, data.device))
                except NvmlUnavailable:
                    raise
                except Exception:  # noqa: BLE001
                    uuid = "unknown"
            key = (uuid, str(int(data.eventData)))
            out[key] = out.get(key, 0) + 1
        return out


def _handle_key(h: Any) -> int:
    """A device handle's identity: NVML hands out the same pointer for a device all session."""
    try:
        return int(ctypes.cast(h, ctypes.c_void_p).value or 0) or id(h)
    except (TypeError, ctypes.ArgumentError):
        return id(h)


def _classify(nv: Any, e: BaseException) -> str:
    """Map an NVML exception to a bounded reason."""
    if nv is None:
        return "error"
    codes = {
        "NVML_ERROR_LIBRARY_NOT_FOUND": "library_missing",
        "NVML_ERROR_DRIVER_NOT_LOADED": "no_driver",
        "NVML_ERROR_GPU_IS_LOST": "gpu_lost",
        "NVML_ERROR_NO_PERMISSION": "no_permission",
        "NVML_ERROR_UNKNOWN": "unknown_error",
        "NVML_ERROR_TIMEOUT": "timeout",
    }
    value = getattr(e, "value", None)
    for const, reason in codes.items():
        if value is not None and value == getattr(nv, const, object()):
            return reason
    if isinstance(e, OSError):
        return "library_missing"
    return "error"
