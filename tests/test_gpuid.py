"""A benchmark device is matched to its NVML GPU in one place: by the UUID a run reported,
else by number in PCI order (the order the benchmark child is started with)."""

from __future__ import annotations

import os

import pytest

from wan_exporter import gpuid
from wan_exporter.bench import child
from wan_exporter.state import GpuReading

UUID = "GPU-00000000-0000-0000-0000-{:012d}".format
GPUS = [GpuReading(index=i, uuid=UUID(i), name="NVIDIA H200", memory_total_bytes=(i + 1) << 30) for i in range(3)]


def test_cuda_n_is_nvml_index_n_before_a_run():
    assert gpuid.find(GPUS, "cuda:2", env={}) is GPUS[2]
    assert gpuid.find(GPUS, "cuda", env={}) is GPUS[0]
    assert gpuid.find(GPUS, "cpu", env={}) is None
    assert gpuid.find(GPUS, "cuda:7", env={}) is None


def test_the_uuid_a_run_reported_wins_over_the_number():
    assert gpuid.find(GPUS, "cuda:0", UUID(2), env={}) is GPUS[2]
    assert gpuid.find(GPUS, "cuda:0", "GPU-not-listed", env={}) is None  # no guess by number
    assert gpuid.gpu_label(GPUS, "cuda:0", UUID(2), env={}) == "2"


@pytest.mark.parametrize("device, visible, expected", [
    ("cuda:0", "2,0", 2), ("cuda:1", "2,0", 0),
    ("cuda:0", UUID(1) + "," + UUID(0), 1),  # CUDA accepts UUIDs in the list too
    ("cuda:1", "0", None), ("cuda:0", "", None),
])
def test_cuda_visible_devices_renumbers_the_child(device, visible, expected):
    found = gpuid.find(GPUS, device, env={"CUDA_VISIBLE_DEVICES": visible})
    assert (found.index if found else None) == expected


def test_a_lost_gpu_is_matched_by_nothing_and_keeps_its_label():
    gpus = [GPUS[0], GpuReading(index=1, uuid="", name="", lost=True)]
    assert gpuid.find(gpus, "cuda:1", env={}) is None
    assert gpuid.gpu_label(gpus, "cuda:1", UUID(1), env={}) == "1"  # a configured model's label does not flap
    assert gpuid.gpu_label([], "cuda:1", env={}) == "1"
    assert gpuid.gpu_label([], "cpu", env={}) == ""


def test_benchmark_child_numbers_cuda_devices_as_nvml_does(monkeypatch):
    monkeypatch.setenv("CUDA_DEVICE_ORDER", "FASTEST_FIRST")
    with pytest.raises(ValueError):  # a bad request fails after the environment is set, before any import
        child.run_benchmark({"fault": "no-such-fault"})
    assert os.environ["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"


def test_a_benchmark_on_a_lost_gpu_is_skipped_and_the_other_gpu_still_runs():
    from wan_exporter.bench.subsystem import courtesy_skip
    from wan_exporter.config import Config
    from wan_exporter.state import CollectorStatus, Snapshot, frozen_map

    snap = Snapshot(gpus=(GPUS[0], GpuReading(index=1, uuid="", name="", lost=True)),
                    collectors=frozen_map({"gpu": CollectorStatus("gpu", True, 0.01)}))
    assert courtesy_skip(snap, Config(), "cuda:1") == "gpu_unavailable"
    assert courtesy_skip(snap, Config(), "cuda:0") is None


def test_peak_memory_ratio_is_over_the_gpu_the_run_reported():
    from wan_exporter.collectors.benchmark import memory_total_for
    from wan_exporter.state import BenchmarkResult, Snapshot

    r = BenchmarkResult(model="m", profile="p", success=True, started_at=0, finished_at=1, device="cuda:0",
                        gpu_uuid=UUID(2), peak_memory_bytes=1 << 30, peak_memory_kind="cuda")
    assert memory_total_for(Snapshot(gpus=tuple(GPUS)), r) == GPUS[2].memory_total_bytes
