"""What a benchmark run's denoiser weights are stored as, read from file headers (no torch).

The benchmark info series carries it beside the compute dtype, so a bf16 run, an fp8-scaled
file dequantised to bf16 and a GGUF Q8_0 file of the same model tell apart on a dashboard.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Iterable

from ..contract.labels import WEIGHT_FORMATS

_SAFETENSORS = {"BF16": "bf16", "F16": "fp16", "F32": "fp32", "F8_E4M3": "fp8_e4m3fn", "F8_E5M2": "fp8_e5m2"}


def _denoiser_files(form: str | None, target: Any) -> list[Path]:
    if isinstance(target, (list, tuple)):
        return [Path(p) for p in target]
    root = Path(target)
    if root.is_file():
        return [root]
    if form == "official":
        sub = [root / "high_noise_model", root / "low_noise_model"]
        dirs = [d for d in sub if d.is_dir()] or [root]
    else:
        dirs = [root / "transformer", root / "transformer_2"]
    return sorted(p for d in dirs if d.is_dir() for p in d.glob("*.safetensors"))


def _label(counts: Counter, scaled: bool, gguf: bool) -> str:
    if not counts:
        return "unknown"
    if gguf:  # a quantised file keeps small tensors (norms, biases, odd rows) in float: name its quantisation
        quantised = Counter({k: v for k, v in counts.items() if k not in ("F32", "F16", "BF16")})
        counts = quantised or counts
    top = counts.most_common(1)[0][0]
    name = ("gguf_" + top.lower()) if gguf else _SAFETENSORS.get(top, "")
    if scaled and name.startswith("fp8"):
        name += "_scaled"
    return name if name in WEIGHT_FORMATS else "other"


def weight_format(form: str | None, target: Any) -> str:
    """The stored format of most of the denoiser's parameters, from :data:`WEIGHT_FORMATS` (for GGUF,
    of most of its quantised parameters); "unknown" when no header could be read."""
    from ..checkpoint.forms import SCALE_TENSOR
    from ..scan.tables import TableError, read_table

    counts: Counter = Counter()
    scaled = gguf = False
    for f in _denoiser_files(form, target):
        fmt = "gguf" if f.suffix.lower() == ".gguf" else "safetensors"
        try:
            table = read_table(f, fmt)
        except (TableError, OSError):
            continue
        gguf = gguf or fmt == "gguf"
        for name, t in table.tensors.items():
            if SCALE_TENSOR.search(name):
                scaled = True
                continue
            counts[str(t.dtype)] += max(t.numel, 0)
    return _label(counts, scaled, gguf)


def names() -> Iterable[str]:
    return WEIGHT_FORMATS
