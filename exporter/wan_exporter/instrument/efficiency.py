"""FLOPs of a request's denoising steps and the peak of the GPU it ran on, from the live pipeline.

The same arithmetic as the benchmark's figures (:mod:`wan_exporter.measure.flops`,
:mod:`wan_exporter.gpu_peaks`), fed by the pipeline in memory instead of files on disk: the
transformer's diffusers config, the pipeline's own VAE scale factors, the CLIP encoder's
config, and the call's width, height, frames, prompt length and guidance. A step's FLOPs
depend only on those, so each (config, shape) is counted once and remembered: a request pays
a dictionary look-up, never a count, and no step pays anything.
"""

from __future__ import annotations

import threading
from typing import Any, Mapping

from .. import gpu_peaks
from ..measure import flops
from ..checkpoint.facts import image_tokens_of

# Distinct (config, shape) pairs remembered per pipeline; a service serves a handful of sizes.
_CACHE_LIMIT = 256


def _config(component: Any) -> Mapping[str, Any]:
    cfg = getattr(component, "config", None)
    return cfg if isinstance(cfg, Mapping) else {}


class StepFlops:
    """FLOPs per denoising step of one pipeline, per request shape, counted once."""

    def __init__(self) -> None:
        self._cache: dict[tuple, tuple[Any, int | None]] = {}
        self._lock = threading.Lock()

    def per_step(self, pipe: Any, width: int | None, height: int | None, frames: int | None,
                 guidance_scale: float | None, text_tokens: int | None) -> int | None:
        """FLOPs of one step for one video, or None where the geometry or a count input is unknown."""
        if not (width and height and frames):
            return None
        tcfg = _config(getattr(pipe, "transformer", None))
        key = (id(tcfg), int(width), int(height), int(frames), flops.uses_cfg(guidance_scale),
               int(text_tokens or flops.TEXT_TOKENS))
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and hit[0] is tcfg:  # the config object itself: an id is reused only after it dies
            return hit[1]
        value = self._count(pipe, tcfg, *key[1:])
        with self._lock:
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[key] = (tcfg, value)
        return value

    @staticmethod
    def _count(pipe: Any, tcfg: Mapping[str, Any], width: int, height: int, frames: int, cfg: bool,
               text_tokens: int) -> int | None:
        shape = flops.shape_from_config(tcfg)
        st = getattr(pipe, "vae_scale_factor_temporal", None)
        ss = getattr(pipe, "vae_scale_factor_spatial", None)
        if shape is None or not (isinstance(st, int) and isinstance(ss, int) and st > 0 and ss > 0):
            return None
        pt, ph, pw = shape.patch_size
        compression = (st * pt, ss * ph, ss * pw)
        image_tokens = image_tokens_of(_config(getattr(pipe, "image_encoder", None))) or 0
        if shape.image_dim and not image_tokens and not tcfg.get("pos_embed_seq_len"):
            return None  # the model attends to image tokens nobody can count here
        per_token = bool(_config(pipe).get("expand_timesteps", False))  # TI2V-5B: a timestep per token
        count = flops.count_step(tcfg, width, height, frames, compression, 2.0 if cfg else 1.0,
                                 image_tokens=image_tokens, per_token_timestep=per_token, text_tokens=text_tokens)
        return count.step_flops if count is not None else None


def videos(prompt: Any, prompt_embeds: Any, per_prompt: Any) -> int:
    """Videos one call generates: prompts (or prompt embeddings) times ``num_videos_per_prompt``."""
    if isinstance(prompt, (list, tuple)):
        n = len(prompt)
    elif prompt is None and prompt_embeds is not None and getattr(prompt_embeds, "ndim", 0) >= 1:
        n = int(prompt_embeds.shape[0])
    else:
        n = 1
    return max(1, n) * max(1, int(per_prompt or 1))


def peak(torch: Any, device: str, pipe: Any) -> tuple[str, float] | None:
    """(gpu_peaks key, datasheet dense FLOP/s in the transformer's dtype) of a CUDA device; None otherwise."""
    if torch is None or not str(device).startswith("cuda"):
        return None
    try:
        name = str(torch.cuda.get_device_name(torch.device(device)))
        dtype = str(getattr(getattr(pipe, "transformer", None), "dtype", "")).replace("torch.", "")
    except Exception:  # noqa: BLE001 - no device name: no peak, rather than a guess
        return None
    row = gpu_peaks.lookup(name)
    value = gpu_peaks.peak_flops(name, dtype) if row is not None else None
    return (row.key, value) if row is not None and value is not None else None


__all__ = ["StepFlops", "peak", "videos"]
