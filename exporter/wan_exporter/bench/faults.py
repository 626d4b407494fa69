"""Faults injected into a benchmark's real code path: a test hook, never configuration.

Only the test support code reaches this: the exporter reads the fault of a model from the JSON
file named by ``$WAN_EXPORTER_TEST_FAULTS`` (``{"model name": "oom"}``), read afresh at every
run so a test can switch a fault on and off while the exporter runs. Without the variable no
fault exists. Each fault fails the run through the code a real failure takes, so the
classification under test is the production one:

- ``oom``: a real allocation failure. Inside the first denoising step the child's memory is
  capped just above what it holds (``RLIMIT_AS`` on CPU; the CUDA caching allocator's
  per-process fraction on a GPU) and the next step's working memory is asked of torch's
  allocator, which fails as it does when a generation does not fit. The cap is lifted after
  the run. Where the platform does not enforce the cap, an OutOfMemoryError is raised instead.
- ``cuda_error``: the error text CUDA raises on an illegal memory access.
- ``crash``: SIGKILL from inside the first step; ``hang``: the first step never ends.
- ``nan``: NaN denoiser weights, for the sanity check to catch; ``load_failed``: a missing folder.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import time
from pathlib import Path
from typing import Any, Callable

FAULTS: tuple[str, ...] = ("none", "oom", "hang", "crash", "nan", "cuda_error", "load_failed")
ENV = "WAN_EXPORTER_TEST_FAULTS"
_MISSING_SUBFOLDER = "__wan_exporter_injected_missing__"
# Headroom left under the cap, so the interpreter and small allocations keep working.
_MARGIN = 64 << 20


def from_environment(model: str) -> str:
    """The fault the test environment sets for ``model``; "none" outside the tests."""
    path = os.environ.get(ENV)
    if not path:
        return "none"
    try:
        table = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "none"
    fault = str(table.get(model, "none")) if isinstance(table, dict) else "none"
    if fault not in FAULTS:
        raise ValueError(f"{ENV}: unknown fault {fault!r} for {model!r}; expected one of {', '.join(FAULTS)}")
    return fault


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


class Injector:
    """Fires a run's fault from inside its first denoising step; :meth:`restore` lifts a memory cap."""

    def __init__(self, fault: str, device: str) -> None:
        self.fault, self.device = fault, str(device)
        self._restore: Callable[[], None] | None = None

    def at_first_step(self) -> None:
        fault = self.fault
        if fault == "oom":
            self._out_of_memory()
        if fault == "cuda_error":
            raise RuntimeError("CUDA error: an illegal memory access was encountered (injected)")
        if fault == "crash":
            os.kill(os.getpid(), signal.SIGKILL)
        if fault == "hang":
            while True:  # only the parent's timeout ends this
                time.sleep(3600)

    def restore(self) -> None:
        if self._restore is not None:
            restore, self._restore = self._restore, None
            restore()

    def _out_of_memory(self) -> None:
        import torch

        if self.device.startswith("cuda") and torch.cuda.is_available():
            total = torch.cuda.get_device_properties(self.device).total_memory
            held = torch.cuda.memory_reserved(self.device)
            torch.cuda.set_per_process_memory_fraction(min(1.0, (held + _MARGIN) / total), self.device)
            self._restore = lambda: torch.cuda.set_per_process_memory_fraction(1.0, self.device)
            torch.empty(2 * _MARGIN, dtype=torch.uint8, device=self.device)
        elif _cap_address_space(self):
            torch.empty(2 * _MARGIN, dtype=torch.uint8)
        raise torch.OutOfMemoryError(
            "out of memory: the memory cap is not enforced on this platform (injected, no allocation failed)")


def _address_space() -> int | None:
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _cap_address_space(injector: Injector) -> bool:
    """Cap RLIMIT_AS at the current size plus the margin (soft limit only, so it can be lifted)."""
    used = _address_space()
    if used is None:
        return False
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = used + _MARGIN
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    try:
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    except (ValueError, OSError):
        return False
    injector._restore = lambda: resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    return True


__all__ = ["ENV", "FAULTS", "Injector", "from_environment", "model_dir", "poison"]
