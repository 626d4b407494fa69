"""One rank of a two-rank generation for the multi-rank tests, run as its own process.

Started by :func:`launch` (or by ``torchrun``) with the environment torchrun gives a rank:
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``. Each rank joins a
gloo group, builds the same tiny Wan2.2 A14B pipeline (same seed, so the same weights), turns on
diffusers' own Ulysses context parallelism on ``transformer`` and ``transformer_2``,
instruments it, and generates ``--requests`` videos. Faults are real and on one rank only:
``--sleep S --at-step K --on-rank R`` sleeps S seconds inside step K (in the transformer's
forward, after its collectives; ``--sleep-in N``: only in request N), ``--kill-at-step K
--kill-in N --on-rank R`` sends the rank SIGKILL there, in request N.

Metrics go to ``PROMETHEUS_MULTIPROC_DIR`` when set, else each rank serves its own /metrics
on its own port of ``--ports``. Prints one JSON line per rank: the outcomes it saw and its digests.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=1)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--stall-after", type=float, default=60.0)
    ap.add_argument("--ports", default="", help="comma-separated: rank N serves /metrics on the Nth")
    ap.add_argument("--on-rank", type=int, default=-1)
    ap.add_argument("--sleep", type=float, default=0.0)
    ap.add_argument("--at-step", type=int, default=-1, help="-1: every step")
    ap.add_argument("--kill-at-step", type=int, default=-1)
    ap.add_argument("--sleep-in", type=int, default=-1, help="the request (0-based) that sleeps; -1: every one")
    ap.add_argument("--kill-in", type=int, default=0, help="the request (0-based) in which the rank is killed")
    ap.add_argument("--timeout", type=float, default=60.0, help="gloo group timeout, seconds")
    ap.add_argument("--linger", type=float, default=0.0, help="seconds to keep serving after the requests")
    a = ap.parse_args(argv)

    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=a.timeout))
    rank = dist.get_rank()
    from prometheus_client import start_http_server

    from wan_exporter import tiny
    from wan_exporter.bench.parallel import enable_context_parallel
    from wan_exporter.instrument import instrument

    if a.ports and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        start_http_server(int(a.ports.split(",")[rank]), addr="127.0.0.1")
    torch.manual_seed(0)
    pipe = tiny.make_pipeline("tiny-wan2.2-t2v-a14b")
    pipe.set_progress_bar_config(disable=True)
    enable_context_parallel(pipe, ulysses=dist.get_world_size())
    pipe = instrument(pipe, model="tiny", stall_after=a.stall_after)

    step = {"i": 0, "request": 0}
    faulty = rank == a.on_rank
    slept: set[tuple[int, int]] = set()

    def in_step(module, args, output):  # the transformer's forward, after its collectives (the output gather)
        if faulty and a.kill_at_step == step["i"] and a.kill_in == step["request"]:
            os.kill(os.getpid(), signal.SIGKILL)
        if faulty and a.sleep and a.at_step in (-1, step["i"]) and a.sleep_in in (-1, step["request"]):
            if a.at_step == -1 or (step["request"], step["i"]) not in slept:  # once per step when one is named
                slept.add((step["request"], step["i"]))
                time.sleep(a.sleep)
        return output

    def on_step_end(p, i, t, kw):
        step["i"] = i + 1
        return kw

    for name in ("transformer", "transformer_2"):
        getattr(pipe, name).register_forward_hook(in_step)
    seen = []
    for n in range(a.requests):
        step["i"], step["request"] = 0, n
        try:
            out = pipe(prompt="a cat walks", height=32, width=32, num_frames=5, num_inference_steps=a.steps,
                       output_type="np", generator=torch.Generator("cpu").manual_seed(3),
                       callback_on_step_end=on_step_end)
            seen.append({"ok": True, "sum": float(out.frames.sum())})
        except Exception as exc:  # noqa: BLE001 - reported to the test
            seen.append({"ok": False, "error": f"{type(exc).__name__}: {str(exc)[:300]}"})
            break
    print(json.dumps({"rank": rank, "pid": os.getpid(), "seen": seen}), flush=True)
    if a.linger:
        time.sleep(a.linger)
    if seen and seen[-1]["ok"]:
        dist.destroy_process_group()
    return 0


def launch(args: list[str], world_size: int = 2, env: dict | None = None, log_dir: Path | None = None
           ) -> list[subprocess.Popen]:
    """Start ``world_size`` ranks with torchrun's environment (one local group, loopback rendezvous)."""
    from support.procs import exporter_env, free_port

    port = free_port()
    procs = []
    for rank in range(world_size):
        e = exporter_env({**(env or {}), "RANK": str(rank), "WORLD_SIZE": str(world_size), "LOCAL_RANK": str(rank),
                          "LOCAL_WORLD_SIZE": str(world_size), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
                          "OMP_NUM_THREADS": "1", "TORCH_FR_BUFFER_SIZE": "2000"})
        err = open(log_dir / f"rank{rank}.log", "w") if log_dir else subprocess.DEVNULL  # noqa: SIM115
        procs.append(subprocess.Popen([sys.executable, "-m", "support.rank_worker", *args], env=e,
                                      stdout=subprocess.PIPE, stderr=err, text=True))
    return procs


def results(procs: list[subprocess.Popen], timeout: float = 300) -> list[dict | None]:
    """Each rank's JSON line (None for a rank that printed none, e.g. killed), after all exited."""
    out = []
    for p in procs:
        text, _ = p.communicate(timeout=timeout)
        lines = [ln for ln in (text or "").splitlines() if ln.startswith("{")]
        out.append(json.loads(lines[-1]) if lines else None)
    return out


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
