"""Saving a benchmark's video: a courtesy to the operator, never part of what is measured."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..measure.phases import Progress, emit


def export_video(frames: Any, path: str, fps: int) -> None:
    import numpy as np
    from diffusers.utils import export_to_video

    clean = np.clip(np.nan_to_num(np.asarray(frames, dtype=np.float32), nan=0.0), 0.0, 1.0)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    export_to_video(list(clean), path, fps=int(fps))


def export_phase(frames: Any, req: dict[str, Any], result: dict[str, Any], progress: Progress | None,
                 detail: Any) -> None:
    """Save the video; a failed save is noted in ``detail`` but does not fail the benchmark."""
    emit(progress, {"event": "phase", "phase": "export", "generation": 1})
    t0 = time.perf_counter()
    try:
        export_video(frames, str(req["output_path"]), int(req["fps"]))
        result["output_path"] = str(req["output_path"])
    except Exception as exc:  # noqa: BLE001 - saving is a courtesy, not the benchmark
        result["detail"] = (result["detail"] + "; " if result["detail"] else "") + "export failed: " + detail(exc)
    result["phases"]["export"] = time.perf_counter() - t0


__all__ = ["export_phase", "export_video"]
