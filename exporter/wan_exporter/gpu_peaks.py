"""Datasheet peak dense tensor-core rates of GPUs, keyed by the name NVML reports.

Model FLOPs utilisation needs a denominator an operator can look up: the vendor's peak
dense BF16 (and FP16) tensor rate, from the datasheet or architecture whitepaper cited on
each row. Datasheets print the sparse (2:4) figure with a footnote; the dense rate is half
of it, and that is the figure kept here. GeForce and RTX cards are listed with FP32
accumulate, which is what PyTorch's half-precision matmuls use.

Rules kept here, as in :mod:`wan_exporter.catalog`: a GPU nobody published a figure for
has no row, and a name that matches no row gets no figure (no guessing from a family
name). MIG slices get none either: a slice has a fraction of the SMs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

TERA = 10**12


@dataclass(frozen=True)
class GpuPeak:
    key: str
    pattern: str  # regex over the normalised NVML name (lower case, single spaces, "nvidia " dropped)
    bf16_dense: float  # FLOP/s
    fp16_dense: float  # FLOP/s, FP32 accumulate where the datasheet distinguishes
    source: str
    notes: str = ""


# ---------------------------------------------------------------- sources

_H100 = ("NVIDIA H100 Tensor Core GPU datasheet (nvidia.com/en-us/data-center/h100): BF16/FP16 Tensor Core "
         "1,979 TFLOPS (SXM), 1,671 TFLOPS (NVL), with sparsity")
_H100_PCIE = ("NVIDIA H100 PCIe product brief PB-11133-001 and the H100 datasheet (2022): BF16/FP16 Tensor Core "
              "1,513 TFLOPS with sparsity")
_H200 = ("NVIDIA H200 Tensor Core GPU datasheet (nvidia.com/en-us/data-center/h200): BF16/FP16 Tensor Core "
         "1,979 TFLOPS (H200 SXM), 1,671 TFLOPS (H200 NVL), with sparsity")
_GH200 = ("NVIDIA GH200 Grace Hopper Superchip datasheet: GPU FP16/BF16 Tensor Core 1,979 TFLOPS with sparsity")
_A100 = ("NVIDIA A100 Tensor Core GPU datasheet (nvidia.com/en-us/data-center/a100): BF16/FP16 Tensor Core "
         "312 TFLOPS | 624 TFLOPS with sparsity, for 40GB/80GB PCIe and SXM alike")
_A10 = "NVIDIA A10 Tensor Core GPU datasheet: BF16/FP16 Tensor Core 125 TFLOPS | 250 TFLOPS with sparsity"
_L40S = "NVIDIA L40S GPU datasheet: BF16/FP16 Tensor Core 362.05 TFLOPS | 733 TFLOPS with sparsity"
_L40 = "NVIDIA L40 GPU datasheet: BF16/FP16 Tensor Core 181.05 TFLOPS | 362.1 TFLOPS with sparsity"
_L4 = "NVIDIA L4 Tensor Core GPU datasheet: BF16/FP16 Tensor Core 242 TFLOPS with sparsity"
_ADA = ("NVIDIA Ada GPU Architecture whitepaper (v2.1), appendix tables: peak BF16 and FP16 Tensor TFLOPS with FP32 "
        "accumulate, dense/sparse: GeForce RTX 4090 165.2/330.4, RTX 6000 Ada Generation 364.2/728.5")
_B200 = ("NVIDIA HGX B200 / DGX B200 datasheet: FP16/BF16 Tensor Core 4.5 PFLOPS per GPU with sparsity "
         "(36 PFLOPS per 8-GPU system)")

PEAKS: tuple[GpuPeak, ...] = (
    # Checked in order; the first match wins, so specific names come before their families.
    GpuPeak("gh200", r"\bgh200\b", 989.5 * TERA, 989.5 * TERA, _GH200),
    GpuPeak("h200-nvl", r"\bh200\b.*\bnvl\b", 835.5 * TERA, 835.5 * TERA, _H200),
    GpuPeak("h200-sxm", r"\bh200\b", 989.5 * TERA, 989.5 * TERA, _H200,
            notes="NVML names the SXM part plain 'NVIDIA H200'."),
    GpuPeak("h100-nvl", r"\bh100\b.*\bnvl\b", 835.5 * TERA, 835.5 * TERA, _H100),
    GpuPeak("h100-pcie", r"\bh100\b.*\bpcie\b", 756.5 * TERA, 756.5 * TERA, _H100_PCIE),
    GpuPeak("h100-sxm", r"\bh100\b.*\b(hbm3|sxm5?)\b", 989.5 * TERA, 989.5 * TERA, _H100,
            notes="NVML names the SXM5 part 'NVIDIA H100 80GB HBM3'; a bare 'H100' is ambiguous and gets no row."),
    GpuPeak("a100", r"\ba100\b", 312 * TERA, 312 * TERA, _A100),
    GpuPeak("a10", r"\ba10\b", 125 * TERA, 125 * TERA, _A10, notes="Not the A10G, a cloud-only part without a datasheet."),
    GpuPeak("l40s", r"\bl40s\b", 362.05 * TERA, 362.05 * TERA, _L40S),
    GpuPeak("l40", r"\bl40\b", 181.05 * TERA, 181.05 * TERA, _L40),
    GpuPeak("l4", r"\bl4\b", 121 * TERA, 121 * TERA, _L4),
    GpuPeak("rtx-4090", r"\brtx 4090$", 165.2 * TERA, 165.2 * TERA, _ADA,
            notes="FP32 accumulate (PyTorch's); FP16 accumulate doubles it. Not the 4090 D or the laptop part."),
    GpuPeak("rtx-6000-ada", r"\brtx 6000 ada\b", 364.2 * TERA, 364.2 * TERA, _ADA),
    GpuPeak("b200", r"^b200\b", 2250 * TERA, 2250 * TERA, _B200),
)

# The precision a benchmark runs in -> the peak that applies; float32 has no tensor row (TF32 is
# another format), so its utilisation is unknown.
_BY_DTYPE = {"bfloat16": "bf16_dense", "float16": "fp16_dense"}


def normalise(name: str) -> str:
    """'NVIDIA  H100 80GB HBM3' -> 'h100 80gb hbm3'; hyphens and underscores become spaces."""
    s = re.sub(r"[\s_\-]+", " ", name.strip().lower())
    return re.sub(r"^nvidia ", "", re.sub(r"^nvidia geforce ", "", s))


def lookup(name: str) -> GpuPeak | None:
    """The row for an NVML (or ``torch.cuda`` device) name; None for unknown GPUs and MIG slices."""
    n = normalise(name or "")
    if not n or re.search(r"\bmig\b", n):
        return None
    return next((p for p in PEAKS if re.search(p.pattern, n)), None)


def peak_flops(name: str, dtype: str) -> float | None:
    """Datasheet peak dense tensor FLOP/s of GPU ``name`` in ``dtype``; None when nobody published one."""
    row = lookup(name)
    field = _BY_DTYPE.get(dtype)
    return getattr(row, field) if row is not None and field is not None else None
