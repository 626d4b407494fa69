"""Faults injected into a benchmark's real code path, for the fault tests.

A fault is named in the request; each one fails the run through the code a real
failure would take, so the classification under test is the production one.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

FAULTS: tuple[str, ...] = ("none", "oom", "hang", "crash", "nan", "cuda_error", "load_failed")
_MISSING_SUBFOLDER = "__wan_exporter_injected_missing__"


def model_dir(req: dict[str, Any]) -> Path:
    """Where to load from: the load_failed fault loads a folder that does not exist."""
    path = Path(req["model_dir"])
    return path / _MISSING_SUBFOLDER if req["fault"] == "load_failed" else path


def poison(pipe: Any, fault: str) -> None:
    """The "nan" fault: poison the denoisers so the real sanity check has to catch it."""
    if fault != "nan":
        return
    import torch

    with torch.no_grad():
        for name in ("transformer", "transformer_2"):
            model = getattr(pipe, name, None)
            if model is not None:
                for p in model.parameters():
                    if torch.is_floating_point(p):
                        p.fill_(float("nan"))


def at_first_step(fault: str) -> None:
    """Faults raised from inside the first denoising step, i.e. through the real call stack."""
    if fault == "oom":
        import torch

        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB (injected)")
    if fault == "cuda_error":
        raise RuntimeError("CUDA error: an illegal memory access was encountered (injected)")
    if fault == "crash":
        os.kill(os.getpid(), signal.SIGKILL)
    if fault == "hang":
        while True:  # only the parent's timeout ends this
            time.sleep(3600)


__all__ = ["FAULTS", "at_first_step", "model_dir", "poison"]
