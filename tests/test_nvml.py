"""NVML faults at the narrowest boundary (the pynvml module): the exporter keeps serving,
reports the failure with a reason, never stalls on a hung call, and recovers."""

from __future__ import annotations

import threading
import time

import pytest

from support import fake_pynvml
from support.procs import write_nvml_state
from wan_exporter.nvml import NvmlReader, NvmlUnavailable
from wan_exporter.pollers import GpuPoller
from wan_exporter.state import Store

TWO_GPUS = [{"name": "NVIDIA H200", "util_gpu": 37, "temperature": 51, "power_mw": 123456,
             "memory_used": 2 << 30, "processes": [{"pid": 42, "memory": 1 << 30}]},
            {"name": "NVIDIA H200", "throttle": 0x40 | 0x1}]


@pytest.fixture
def nvml_state(tmp_path, monkeypatch):
    path = tmp_path / "nvml.json"
    monkeypatch.setenv("FAKE_NVML_STATE", str(path))
    monkeypatch.setattr(fake_pynvml, "_drained", 0)
    monkeypatch.setattr(fake_pynvml, "_handles", {})
    write_nvml_state(path, gpus=TWO_GPUS)
    return path


def test_reads_every_field(nvml_state):
    gpus, xids = NvmlReader(timeout=2, module=fake_pynvml).read()
    assert [g.index for g in gpus] == [0, 1]
    g = gpus[0]
    assert g.name == "NVIDIA H200" and g.uuid.startswith("GPU-")
    assert g.utilization_ratio == pytest.approx(0.37)
    assert g.temperature_celsius == 51
    assert g.power_watts == pytest.approx(123.456)
    assert g.memory_used_bytes == 2 << 30
    assert g.processes == 1 and g.process_memory_bytes == 1 << 30
    assert g.compute_capability == "9.0"
    assert g.cuda_version == "13.0"
    assert g.pci_bus_id == "00000000:19:00.0" and gpus[1].pci_bus_id == "00000000:1A:00.0"
    assert not g.lost and not gpus[1].lost
    assert gpus[1].throttle_reasons["hw_thermal_slowdown"] is True
    assert gpus[1].throttle_reasons["hw_slowdown"] is False
    assert xids == {}


def test_repeated_xid_counts_each_time(nvml_state):
    write_nvml_state(nvml_state, gpus=TWO_GPUS, xid_events=[[0, 79], [0, 79], [1, 48]])
    store = Store()
    poller = GpuPoller(store, NvmlReader(timeout=2, module=fake_pynvml))
    poller.poll()
    poller.poll()
    totals = store.snapshot.gpu_xid_totals
    uuid0 = store.snapshot.gpus[0].uuid
    assert totals[(uuid0, "79")] == 2
    assert sum(totals.values()) == 3


@pytest.mark.parametrize("fault, reason", [("library_missing", "library_missing"), ("gpu_lost", "gpu_lost"),
                                           ("unknown", "unknown_error")])
def test_fault_is_reported_then_recovers(nvml_state, fault, reason):
    store = Store()
    poller = GpuPoller(store, NvmlReader(timeout=2, module=fake_pynvml))
    poller.poll()
    assert store.snapshot.collectors["gpu"].success
    write_nvml_state(nvml_state, gpus=TWO_GPUS, fault=fault)
    poller.poll()
    st = store.snapshot.collectors["gpu"]
    assert not st.success and st.reason == reason
    assert store.snapshot.gpus == ()  # no stale readings published
    write_nvml_state(nvml_state, gpus=TWO_GPUS)
    poller.poll()  # re-initialises NVML
    assert store.snapshot.collectors["gpu"].success
    assert len(store.snapshot.gpus) == 2


@pytest.mark.parametrize("fault_calls", [None, ["nvmlDeviceGetTemperature"]], ids=["every_call", "one_optional_call"])
def test_one_lost_gpu_keeps_the_others_series(nvml_state, fault_calls):
    store = Store()
    poller = GpuPoller(store, NvmlReader(timeout=2, module=fake_pynvml))
    poller.poll()
    before = store.snapshot.gpus[0]
    lost = {**TWO_GPUS[1], "fault": "gpu_lost", **({"fault_calls": fault_calls} if fault_calls else {})}
    write_nvml_state(nvml_state, gpus=[TWO_GPUS[0], lost], xid_events=[[1, 79]])
    poller.poll()
    snap = store.snapshot
    assert snap.collectors["gpu"].success  # NVML answers: one GPU's fault is not the collector's
    g0, g1 = snap.gpus
    assert g0 == before and not g0.lost  # every figure of the other GPU kept
    assert g1.lost and g1.index == 1 and g1.temperature_celsius is None and g1.name == ""
    assert g1.uuid == "GPU-00000000-0000-0000-0000-000000000001"  # as read before the loss, so its XIDs join
    # The XID 79 of the lost card is counted against it, named by the handle seen before the loss.
    assert snap.gpu_xid_totals == {("GPU-00000000-0000-0000-0000-000000000001", "79"): 1}
    write_nvml_state(nvml_state, gpus=TWO_GPUS)
    poller.poll()
    assert [g.lost for g in store.snapshot.gpus] == [False, False]
    assert store.snapshot.gpus[1].uuid.endswith("000000000001")


def test_gpu_lost_at_first_read_is_watched_for_xids_once_it_is_back(nvml_state):
    write_nvml_state(nvml_state, gpus=[TWO_GPUS[0], {"fault": "gpu_lost"}])
    store = Store()
    poller = GpuPoller(store, NvmlReader(timeout=2, module=fake_pynvml))
    poller.poll()
    assert [g.lost for g in store.snapshot.gpus] == [False, True]
    assert store.snapshot.gpus[1].uuid == ""  # never read: not known
    write_nvml_state(nvml_state, gpus=TWO_GPUS, xid_events=[[1, 48]])
    poller.poll()
    assert store.snapshot.gpu_xid_totals == {(store.snapshot.gpus[1].uuid, "48"): 1}


def test_hung_call_never_stalls_the_poller(nvml_state):
    reader = NvmlReader(timeout=0.3, module=fake_pynvml)
    store = Store()
    poller = GpuPoller(store, reader)
    poller.poll()
    hang = 6.0
    write_nvml_state(nvml_state, gpus=TWO_GPUS, fault="hang", hang_seconds=hang)
    t0 = time.monotonic()
    poller.poll()
    # Returned while the call is still stuck (bounds generous for a loaded machine: the hang is the event).
    assert time.monotonic() - t0 < hang / 2
    assert store.snapshot.collectors["gpu"].reason == "timeout"
    threads = {t.ident for t in threading.enumerate()}
    poller.poll()  # the stuck call is still running: fail fast, no new thread
    assert time.monotonic() - t0 < hang / 2
    assert {t.ident for t in threading.enumerate()} <= threads, "a poll during a stuck call started a thread"
    assert store.snapshot.collectors["gpu"].reason == "timeout"
    write_nvml_state(nvml_state, gpus=TWO_GPUS)
    deadline = time.monotonic() + hang + 30
    while not store.snapshot.collectors["gpu"].success:  # the hung call returns; NVML recovers
        assert time.monotonic() < deadline, "NVML never recovered after the hang"
        time.sleep(0.2)
        poller.poll()
    poller.poll()
    assert store.snapshot.collectors["gpu"].success


def test_missing_library_without_fake(monkeypatch):
    monkeypatch.setenv("WAN_EXPORTER_NVML_MODULE", "no_such_nvml_module")
    with pytest.raises(NvmlUnavailable) as e:
        NvmlReader(timeout=1).read()
    assert e.value.reason == "library_missing"


def test_call_that_never_returns_is_abandoned_and_nvml_reinitialised(nvml_state):
    reader = NvmlReader(timeout=0.2, module=fake_pynvml, abandon_after=0.5)
    store = Store()
    poller = GpuPoller(store, reader)
    write_nvml_state(nvml_state, gpus=TWO_GPUS, fault="hang", hang_seconds=30)
    poller.poll()
    assert store.snapshot.collectors["gpu"].reason == "timeout"
    write_nvml_state(nvml_state, gpus=TWO_GPUS)  # the driver answers again; the stuck call still has not returned
    time.sleep(0.6)
    poller.poll()
    assert store.snapshot.collectors["gpu"].success
    assert reader.abandoned == 1 and len(store.snapshot.gpus) == 2
