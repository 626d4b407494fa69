"""GPU peak table: NVML names as drivers report them map to the right datasheet row, or to none."""

from __future__ import annotations

import pytest

from wan_exporter import gpu_peaks

TERA = 1e12


@pytest.mark.parametrize("name, key", [
    ("NVIDIA H200", "h200-sxm"),
    ("NVIDIA H200 NVL", "h200-nvl"),
    ("NVIDIA GH200 480GB", "gh200"),
    ("NVIDIA H100 80GB HBM3", "h100-sxm"),
    ("NVIDIA H100 SXM5 80GB", "h100-sxm"),
    ("NVIDIA H100 PCIe", "h100-pcie"),
    ("NVIDIA H100 NVL", "h100-nvl"),
    ("NVIDIA A100-SXM4-40GB", "a100"),
    ("NVIDIA A100-SXM4-80GB", "a100"),
    ("NVIDIA A100-PCIE-40GB", "a100"),
    ("NVIDIA A100 80GB PCIe", "a100"),
    ("NVIDIA A10", "a10"),
    ("NVIDIA L40S", "l40s"),
    ("NVIDIA L40", "l40"),
    ("NVIDIA L4", "l4"),
    ("NVIDIA GeForce RTX 4090", "rtx-4090"),
    ("NVIDIA RTX 6000 Ada Generation", "rtx-6000-ada"),
    ("NVIDIA B200", "b200"),
    ("  nvidia  h200 ", "h200-sxm"),
])
def test_nvml_names_map_to_their_datasheet_row(name, key):
    row = gpu_peaks.lookup(name)
    assert row is not None and row.key == key


@pytest.mark.parametrize("name", [
    "", "cpu", "NVIDIA H100", "NVIDIA H800", "NVIDIA A10G", "NVIDIA GeForce RTX 4090 D",
    "NVIDIA GeForce RTX 4090 Laptop GPU", "NVIDIA GB200", "Tesla V100-SXM2-16GB", "AMD Instinct MI300X",
    "NVIDIA H100 80GB HBM3 MIG 1g.10gb", "NVIDIA A100-SXM4-40GB MIG 3g.20gb",
])
def test_unknown_gpus_and_mig_slices_get_no_figure(name):
    assert gpu_peaks.lookup(name) is None
    assert gpu_peaks.peak_flops(name, "bfloat16") is None


def test_peaks_are_the_dense_half_of_the_datasheet_sparse_figures():
    assert gpu_peaks.peak_flops("NVIDIA H200", "bfloat16") == 989.5 * TERA
    assert gpu_peaks.peak_flops("NVIDIA H100 80GB HBM3", "float16") == 989.5 * TERA
    assert gpu_peaks.peak_flops("NVIDIA A100-SXM4-80GB", "bfloat16") == 312 * TERA
    assert gpu_peaks.peak_flops("NVIDIA L4", "bfloat16") == 121 * TERA
    assert gpu_peaks.peak_flops("NVIDIA B200", "bfloat16") == 2250 * TERA


def test_float32_runs_have_no_tensor_peak():
    # TF32 is another format; a float32 run's utilisation is unknown, not measured against a wrong peak.
    assert gpu_peaks.peak_flops("NVIDIA H200", "float32") is None


def test_every_row_cites_its_source_and_has_a_unique_key():
    keys = [p.key for p in gpu_peaks.PEAKS]
    assert len(keys) == len(set(keys))
    for p in gpu_peaks.PEAKS:
        assert "datasheet" in p.source or "whitepaper" in p.source or "product brief" in p.source, p.key
        assert 0 < p.bf16_dense < 1e16 and 0 < p.fp16_dense < 1e16
