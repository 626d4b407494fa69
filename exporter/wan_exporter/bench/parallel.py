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




# --------------------------------------------------------------------------- a benchmark over several ranks
# The benchmark child is rank 0; it spawns ranks 1..N-1 (multiprocessing "spawn", as the child itself
# is spawned), which load the same pipeline on their own device, join one process group (NCCL on
# GPUs, gloo on the CPU) and run the same call. Every rank times its own steps (a device
# synchronisation at each step end, on that rank only: no collective is added) and reads its own
# peak memory; ranks 1..N-1 send theirs back over a pipe after the call. Skew is computed afterwards
# from the figures, never inside a step.


def rank_device(device: str, rank: int) -> str:
    """Rank r of a generation on ``cuda:i`` runs on ``cuda:i+r``; on the CPU every rank is "cpu"."""
    if not device.startswith("cuda"):
        return device
    base = int(device.split(":", 1)[1]) if ":" in device else 0
    return f"cuda:{base + rank}"


def devices(device: str, world: int) -> list[str]:
    """Every device a generation of ``world`` ranks occupies (the busy-GPU skip checks them all)."""
    return [rank_device(device, r) for r in range(world)]


class StepClock:
    """Wall-clock ends of each denoising step on this rank, taken after a device synchronisation."""

    def __init__(self, run: Any) -> None:
        self.run = run
        self.ends: list[float] = []  # perf_counter, synchronised
        self.walls: list[float] = []  # time.time() at the same moments: comparable across ranks of one host

    def tick(self) -> None:
        import time

        self.ends.append(self.run.now())
        self.walls.append(time.time())

    def figures(self, rank: int, torch: Any, device: str) -> dict[str, Any]:
        from ..measure import phases as measure

        start = self.run.denoise_start
        marks = ([start] if start is not None else []) + self.ends
        peak, kind = measure.peak_memory(torch, device)
        return {"rank": rank, "device": device, "step_seconds": [b - a for a, b in zip(marks, marks[1:])],
                "step_end_times": list(self.walls), "peak_memory_bytes": peak, "peak_memory_kind": kind}


def summarise(ranks: list[dict[str, Any]]) -> dict[str, Any]:
    """Skews of one parallel generation from every rank's figures (None where a figure is missing)."""
    means = [sum(r["step_seconds"]) / len(r["step_seconds"]) for r in ranks if r.get("step_seconds")]
    ends = [r.get("step_end_times") or [] for r in ranks]
    n = min((len(e) for e in ends), default=0)
    out: dict[str, Any] = {"rank_step_skew_seconds": (max(means) - min(means)) if len(means) == len(ranks) else None,
                           "rank_step_end_skew_seconds": None}
    if n and len(ends) == len(ranks):
        out["rank_step_end_skew_seconds"] = max(max(e[i] for e in ends) - min(e[i] for e in ends) for i in range(n))
    return out


def init_group(req: dict[str, Any], rank: int) -> Any:
    """Join the generation's process group: NCCL on GPUs, gloo on the CPU; the profile's timeout bounds it."""
    import datetime

    import torch

    device = rank_device(str(req["device"]), rank)
    backend = "nccl" if device.startswith("cuda") else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(torch.device(device))
    torch.distributed.init_process_group(
        backend, init_method=f"tcp://127.0.0.1:{int(req['_port'])}", rank=rank, world_size=int(req["ulysses"]),
        timeout=datetime.timedelta(seconds=float(req.get("_timeout") or 600)))
    return torch.distributed


def ready() -> None:
    """Every rank loaded: start the call together, so no rank's first step holds another's load time.

    A barrier before the call, outside every step; a no-op without a process group."""
    import torch

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


class Ranks:
    """Rank 0's view of the other ranks: started before the load, joined after the call.

    The other ranks are plain subprocesses (``python -m wan_exporter.bench.rank RANK REQUEST_JSON``,
    one JSON line back on stdout): the benchmark child is a daemonic multiprocessing child,
    which may not start multiprocessing children of its own."""

    def __init__(self, req: dict[str, Any]) -> None:
        import json
        import os
        import socket
        import subprocess
        import sys

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            req["_port"] = s.getsockname()[1]
        req["_parent"] = os.getpid()  # each rank dies with this process (bench/rank.py)
        self.procs = []
        text = json.dumps({k: v for k, v in req.items() if isinstance(v, (str, int, float, bool, type(None)))})
        for rank in range(1, int(req["ulysses"])):
            p = subprocess.Popen([sys.executable, "-m", "wan_exporter.bench.rank", str(rank), text],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                 text=True, env=dict(os.environ))
            self.procs.append(p)

    def join(self, timeout: float) -> list[dict[str, Any]]:
        """Every other rank's figures; a rank that died or stayed silent says so."""
        import json
        import subprocess
        import time

        deadline = time.monotonic() + timeout
        out = []
        for rank, p in enumerate(self.procs, start=1):
            got: dict[str, Any] = {"rank": rank, "error": "no figures from this rank (it died or hung)"}
            try:
                text, _ = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
                lines = [ln for ln in (text or "").splitlines() if ln.startswith("{")]
                if lines:
                    got = json.loads(lines[-1])
            except (subprocess.TimeoutExpired, ValueError):
                pass
            if got.get("error") and p.returncode is not None and p.returncode != 0:
                got["error"] += f" (exit status {p.returncode})"
            out.append(got)
        return out

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            with contextlib.suppress(Exception):
                p.communicate(timeout=5)


__all__ = ["Ranks", "StepClock", "devices", "enable_context_parallel", "init_group", "rank_device", "ready",
           "summarise"]
