"""A benchmark request: its defaults, its empty result, and the pipeline inputs built from it.

Requests and results are plain dicts of builtins because they cross a process pipe; result
keys are named after :class:`wan_exporter.state.BenchmarkResult` fields plus
``reproducible`` and ``versions``.
"""

from __future__ import annotations

import random
from typing import Any, Callable

from .faults import FAULTS


def normalise_request(request: dict[str, Any]) -> dict[str, Any]:
    """Fill defaults so a partial request (tests, CLI) behaves like a full one."""
    req = {
        "model_dir": "", "kind": "", "pipeline": "WanPipeline", "device": "cpu", "dtype": "bfloat16",
        "offload": "none", "vae_tiling": False, "width": 832, "height": 480, "frames": 17, "steps": 4,
        "guidance_scale": 4.0, "guidance_scale_2": None, "seed": 42,
        "prompt": "A cat walks on the grass, realistic style.", "negative_prompt": "", "image": False,
        "fault": "none", "output_path": None, "fps": 16, "repeat_for_reproducibility": False,
        "max_sequence_length": 512, "ulysses": 1,
    }
    req.update({k: v for k, v in dict(request).items() if v is not None or k in ("guidance_scale_2", "output_path")})
    if req["fault"] not in FAULTS:
        raise ValueError(f"unknown fault {req['fault']!r}; expected one of {', '.join(FAULTS)}")
    return req


def empty_result(req: dict[str, Any]) -> dict[str, Any]:
    return {
        "success": False, "reason": "", "detail": "", "duration_seconds": None, "phases": {},
        "steps": int(req["steps"]), "seconds_per_step": None, "frames": int(req["frames"]),
        "width": int(req["width"]), "height": int(req["height"]), "peak_memory_bytes": None,
        "peak_memory_kind": "", "energy_joules": None, "sanity": {}, "output_digest": "",
        "reproducible": None, "versions": {}, "device": str(req["device"]), "gpu_name": "", "gpu_uuid": "",
        "output_path": None, "import_seconds": None, "repeat_duration_seconds": None,
        "output_max_abs_difference": None, "output_psnr_decibels": None, "compared_with": "",
        "comparison_detail": "",
    }


def conditioning_image(width: int, height: int, seed: int) -> Any:
    """A deterministic RGB test image: a two-axis gradient with a few shapes placed by ``seed``.

    Structure matters for image-to-video: a flat image would let a broken encoder pass unnoticed.
    """
    import numpy as np
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    r = x / max(width - 1, 1)
    g = y / max(height - 1, 1)
    b = 1.0 - (r + g) / 2.0
    arr = (np.stack([r, g, b], axis=-1) * 255).astype(np.uint8)
    img = Image.fromarray(arr, "RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(3):
        x0, y0 = rng.randrange(0, max(width // 2, 1)), rng.randrange(0, max(height // 2, 1))
        x1, y1 = x0 + rng.randrange(width // 4 + 1, width // 2 + 2), y0 + rng.randrange(height // 4 + 1, height // 2 + 2)
        colour = tuple(rng.randrange(256) for _ in range(3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x0, y0, x1, y1], fill=colour)
    return img


def call_kwargs(req: dict[str, Any], image: Any, on_step_end: Callable[..., Any] | None) -> dict[str, Any]:
    """The pipeline call's arguments; float frames as numpy so sanity sees them before any uint8 cast."""
    import torch

    kw: dict[str, Any] = dict(
        prompt=req["prompt"], negative_prompt=req["negative_prompt"], height=int(req["height"]),
        width=int(req["width"]), num_frames=int(req["frames"]), num_inference_steps=int(req["steps"]),
        guidance_scale=float(req["guidance_scale"]),
        # A CPU generator gives the same initial noise on every device type.
        generator=torch.Generator("cpu").manual_seed(int(req["seed"])),
        output_type="np", max_sequence_length=int(req["max_sequence_length"]),
    )
    if on_step_end is not None:
        kw["callback_on_step_end"] = on_step_end
    if req["guidance_scale_2"] is not None:
        kw["guidance_scale_2"] = float(req["guidance_scale_2"])
    if image is not None:
        kw["image"] = image
    return kw


__all__ = ["call_kwargs", "conditioning_image", "empty_result", "normalise_request"]
