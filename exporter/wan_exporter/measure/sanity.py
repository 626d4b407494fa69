"""Pure-numpy checks of generated frames, kept apart from torch so they are unit-testable.

Checks run on the float output (values in [0, 1]) *before* any uint8 conversion: casting
NaN to uint8 silently yields 0 (black) or garbage, which would hide the real failure.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np

from ..contract.labels import SANITY_CHECKS as CHECKS  # the bounded set, declared once

# Brightest value below which a video counts as black (0..1 scale, ~5/255).
BLACK_MAX = 0.02
# Mean absolute frame-to-frame change below which a multi-frame video counts as frozen
# (0..1 scale, ~0.25/255): generated videos are never this still, a stuck decoder is.
FROZEN_MEAN_DIFF = 1e-3


def check_frames(frames: np.ndarray, expected_shape: Sequence[int] | None = None) -> dict[str, bool]:
    """Return ``{check: passed}`` for ``frames`` shaped (frames, height, width, 3).

    ``expected_shape`` is (frames, height, width, 3) as requested; ``None`` skips the
    shape comparison but still requires a 4-D RGB array.
    """
    arr = np.asarray(frames)
    if arr.dtype == np.uint8:
        arr = arr.astype(np.float32) / 255.0
    arr = arr.astype(np.float32, copy=False)
    finite_mask = np.isfinite(arr)
    finite = bool(finite_mask.all()) and arr.size > 0
    clean = np.where(finite_mask, arr, 0.0) if not finite else arr
    return {
        "finite": finite,
        "not_black": _not_black(clean),
        "not_frozen": _not_frozen(clean),
        "shape": _shape_ok(arr, expected_shape),
    }


def _not_black(arr: np.ndarray) -> bool:
    return arr.size > 0 and float(arr.max()) >= BLACK_MAX


def _not_frozen(arr: np.ndarray) -> bool:
    if arr.ndim != 4 or arr.shape[0] < 2:
        return arr.size > 0  # a single image cannot be frozen
    return float(np.abs(np.diff(arr, axis=0)).mean()) >= FROZEN_MEAN_DIFF


def _shape_ok(arr: np.ndarray, expected: Sequence[int] | None) -> bool:
    if arr.ndim != 4 or arr.shape[-1] != 3:
        return False
    return expected is None or tuple(arr.shape) == tuple(int(x) for x in expected)


def to_uint8(frames: np.ndarray) -> np.ndarray:
    """Float [0, 1] frames to uint8 the way diffusers does (``round(x * 255)``), NaN as 0."""
    arr = np.asarray(frames)
    if arr.dtype == np.uint8:
        return arr
    arr = np.nan_to_num(arr.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    return (np.clip(arr, 0.0, 1.0) * 255.0).round().astype(np.uint8)


def digest(frames: np.ndarray) -> str:
    """sha256 of the uint8 frames, shape included, so two runs compare by one string."""
    u8 = np.ascontiguousarray(to_uint8(frames))
    h = hashlib.sha256()
    h.update(repr(tuple(u8.shape)).encode())
    h.update(u8.tobytes())
    return h.hexdigest()


def passed(sanity: dict[str, bool]) -> bool:
    return all(sanity.values())


__all__ = ["BLACK_MAX", "CHECKS", "FROZEN_MEAN_DIFF", "check_frames", "digest", "passed", "to_uint8"]
