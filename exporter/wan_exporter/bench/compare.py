"""Formats side by side: a run's decoded frames against those of the same weights in another form.

A model with ``compare_to: <reference model>`` (say fp8-scaled or GGUF files of the weights the
reference runs in bf16) is compared at run time, in the benchmark child, with the reference's
last output of the same profile: the reference's runs keep their 8-bit decoded frames under the
state directory, with the inputs that made them, and the compared run reads them back. Only the
same inputs (seed, size, frames, steps, prompts, guidance) compare; otherwise, or before the
reference has run, nothing is reported and the detail says why.

Figures, on the 8-bit frames scaled to 0..1 (what the video holds): the largest absolute
difference of any pixel channel, and PSNR = 10 log10(1 / MSE) in decibels (+Inf when equal).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

# Request keys whose values must match for two outputs to be comparable.
INPUTS: tuple[str, ...] = ("seed", "width", "height", "frames", "steps", "prompt", "negative_prompt", "guidance_scale",
                           "guidance_scale_2", "image", "max_sequence_length")


def frames_path(state: Path, model: str, profile: str) -> Path:
    return Path(state) / "reference-frames" / model / f"{profile}.npz"


def request_fields(cfg: Any, m: Any, profile: str, state: Path) -> dict[str, Any]:
    """Where this run keeps its frames (when another model compares with it) and which it compares with."""
    out: dict[str, Any] = {}
    if any(o.compare_to == m.name and profile in o.profiles for o in cfg.models):
        out["save_frames"] = str(frames_path(state, m.name, profile))
    if m.compare_to is not None:
        out["compare_frames"] = str(frames_path(state, m.compare_to, profile))
        out["compare_reference"] = m.compare_to
    return out


def _inputs(req: dict[str, Any]) -> str:
    return json.dumps({k: req.get(k) for k in INPUTS}, sort_keys=True)


def to_uint8(frames: Any) -> Any:
    import numpy as np

    return (np.clip(np.nan_to_num(np.asarray(frames, dtype=np.float32)), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def save(path: str, frames: Any, req: dict[str, Any]) -> None:
    """Write the frames and their inputs atomically (a reader never sees half a file)."""
    import numpy as np

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".partial.npz")
    np.savez_compressed(tmp, frames=to_uint8(frames), inputs=np.array(_inputs(req)))
    os.replace(tmp, p)


def difference(a: Any, b: Any) -> tuple[float, float]:
    """(max abs difference, PSNR in dB) of two uint8 frame arrays, on the 0..1 scale."""
    import numpy as np

    d = a.astype(np.float64) / 255.0 - b.astype(np.float64) / 255.0
    mse = float(np.mean(d * d))
    return float(np.max(np.abs(d))) if d.size else 0.0, (math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse))


def compare(path: str, frames: Any, req: dict[str, Any]) -> tuple[float | None, float | None, str]:
    """(max abs difference, PSNR, why not) of ``frames`` against the reference kept at ``path``."""
    import numpy as np

    p = Path(path)
    if not p.is_file():
        return None, None, f"no reference output yet at {p}"
    try:
        with np.load(p) as z:
            ref, inputs = z["frames"], str(z["inputs"])
    except (OSError, ValueError, KeyError) as exc:
        return None, None, f"reference output {p} unreadable: {exc}"
    if inputs != _inputs(req):
        return None, None, f"reference output {p} was made with other inputs"
    ours = to_uint8(frames)
    if ours.shape != ref.shape:
        return None, None, f"reference output {p} has shape {ref.shape}, this run {ours.shape}"
    mad, psnr = difference(ours, ref)
    return mad, psnr, ""
