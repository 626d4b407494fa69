"""diffusers' context parallelism on a Wan pipeline, on GPUs (NCCL) and on CPUs (gloo).

``model.enable_parallelism(config=ContextParallelConfig(ulysses_degree=N))`` is made per
model, so a two-expert pipeline (Wan2.2 A14B) needs it on ``transformer`` and ``transformer_2``.
``torch.distributed`` must be initialised first.

On a CPU-only torch, diffusers' ``_resolve_parallel_config`` picks the rank's device as
``rank % torch.accelerator.device_count()``, and ``device_count()`` is 0 there: a
ZeroDivisionError before any collective runs. On the CPU every rank has the one device "cpu",
so for the length of ``enable_parallelism`` alone, and only when the accelerator is the CPU,
``device_count`` answers 1. Nothing else is changed: the mesh, the collectives (gloo's
all-to-all and all-gather) and the attention are diffusers' own.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator


@contextlib.contextmanager
def _cpu_counts_as_one_device(torch: Any) -> Iterator[None]:
    accel = getattr(torch, "accelerator", None)
    on_cpu = torch._C._get_accelerator().type == "cpu"
    if accel is None or not on_cpu or accel.device_count() > 0:
        yield
        return
    real = accel.device_count
    accel.device_count = lambda: 1
    try:
        yield
    finally:
        accel.device_count = real


def enable_context_parallel(pipe: Any, ulysses: int) -> list[str]:
    """Ulysses context parallelism of degree ``ulysses`` on every transformer of ``pipe``; the names it applied to."""
    import torch
    from diffusers import ContextParallelConfig

    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        raise RuntimeError("context parallelism needs torch.distributed initialised first (init_process_group)")
    world = torch.distributed.get_world_size()
    if ulysses < 1 or world % ulysses:
        raise ValueError(f"ulysses degree {ulysses} does not divide the world size {world}")
    done = []
    with _cpu_counts_as_one_device(torch):
        for name in ("transformer", "transformer_2"):
            model = getattr(pipe, name, None)
            if model is not None:
                model.enable_parallelism(config=ContextParallelConfig(ulysses_degree=ulysses))
                done.append(name)
    return done


__all__ = ["enable_context_parallel"]
