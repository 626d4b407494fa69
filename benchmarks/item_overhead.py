"""Item 3, instrumentation overhead: a generation through the exporter's runner vs the same pipeline called directly.

Runner side: the exporter's own path, :func:`wan_exporter.bench.runner.build_request` from a
parsed config and :func:`wan_exporter.childproc.run_in_child` on the runner's child target
(spawned process, pipe, phase wrappers, step callback, progress messages, sanity checks),
with ``repeat_for_reproducibility`` so the child also times a second, warm generation. The
figure is the child's ``duration_seconds``: the pipeline call, excluding process start and
load. Reference side: :mod:`benchmarks.direct_generation` in a fresh process, the same
loader and inputs, a bare ``pipe(...)``. Pairs alternate which side goes first; medians are
compared, and equal output digests prove the inputs were the same.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time

from typing import Iterator

import psutil

from . import common
from .common import Context, ItemResult, Row, Table, median

GOAL = 1.03


def _config(ctx: Context, kind: str, device: str, size: tuple[int, int, int, int]):
    from wan_exporter.config import parse_config

    w, h, f, s = size
    text = f"""
models:
  - {{name: bench, kind: {kind}, path: "{ctx.tiny_dir / kind}", device: "{device}", dtype: float32, profiles: [p]}}
profiles:
  p: {{width: {w}, height: {h}, frames: {f}, steps: {s}, seed: 7, timeout: 10m}}
"""
    return parse_config(text, "<bench>")


def _runner(cfg) -> dict:
    from wan_exporter.bench.runner import CHILD_TARGET, build_request
    from wan_exporter.childproc import run_in_child

    m = cfg.models[0]
    req = build_request(m, cfg.profiles["p"], ctx_model_dir(m))
    req["repeat_for_reproducibility"] = True
    t0 = time.perf_counter()
    out = run_in_child(CHILD_TARGET, req, timeout=600, kill_grace=cfg.benchmark.kill_grace)
    wall = time.perf_counter() - t0
    r = out.result or {}
    if not r.get("success"):
        raise RuntimeError(f"runner generation failed: {r.get('reason')}: {r.get('detail')}")
    return {"first": r["duration_seconds"], "warm": r["repeat_duration_seconds"], "digest": r["output_digest"],
            "start": out.start_seconds, "import": r.get("import_seconds"), "load": (r.get("phases") or {}).get("load"),
            "wall": wall, "phases": r.get("phases") or {}}


def ctx_model_dir(m):
    from pathlib import Path

    return Path(m.path)


def _direct(ctx: Context, cfg) -> dict:
    from wan_exporter.bench.runner import build_request

    m = cfg.models[0]
    req = build_request(m, cfg.profiles["p"], ctx_model_dir(m))
    path = ctx.scratch("overhead") / "request.json"
    path.write_text(json.dumps(req))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(common.EXPORTER_SRC), str(common.REPO), env.get("PYTHONPATH", "")])
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "benchmarks.direct_generation", str(path)], capture_output=True,
                       text=True, env=env, cwd=str(common.REPO), timeout=900)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"direct generation failed: {r.stderr[-2000:]}")
    d = json.loads(r.stdout.strip().splitlines()[-1])
    return {"first": d["first_seconds"], "warm": d["warm_seconds"], "digest": d["digest"], "import": d["import_seconds"],
            "load": d["load_seconds"], "wall": wall, "process": d["process_seconds"]}


def sizes(ctx: Context, device: str) -> list[tuple[int, int, int, int]]:
    """(width, height, frames, steps). Tiny models run a step in milliseconds on a GPU, so it gets two sizes."""
    if ctx.quick:
        return [(32, 32, 9, 2)]
    if device == "cpu":
        return [(128, 128, 33, 10)]  # about 1 s with one thread: fixed costs do not dominate
    if os.environ.get("WAN_BENCH_SMALL_ONLY"):
        return [(64, 64, 17, 8)]
    return [(64, 64, 17, 8), (256, 256, 33, 8)]


def measure_cold(ctx: Context, device: str, label: str, size: tuple[int, int, int, int]) -> tuple[list[Row], list[Table], list[str]]:
    """Fresh processes: the runner's spawned child (the exporter's default) vs a fresh direct process, in pairs."""
    kind = "tiny-wan2.1-t2v"
    cfg = _config(ctx, kind, device, size)
    pairs = ctx.pairs or ctx.n(5, 1)
    runner, direct = [], []
    for i in range(pairs):
        order = (_runner, None) if i % 2 == 0 else (None, _runner)
        for which in order:
            if which is None:
                direct.append(_direct(ctx, cfg))
            else:
                runner.append(_runner(cfg))
        ctx.log(f"  {label} pair {i + 1}/{pairs}: runner {runner[-1]['first']:.3f}s / direct {direct[-1]['first']:.3f}s "
                f"(warm {runner[-1]['warm']:.3f} / {direct[-1]['warm']:.3f})")
    same = all(r["digest"] == runner[0]["digest"] for r in runner) and all(d["digest"] == runner[0]["digest"] for d in direct)
    med = {k: (median([r[k] for r in runner]), median([d[k] for d in direct])) for k in ("first", "warm")}
    pair_ratios = [r["first"] / d["first"] for r, d in zip(runner, direct)]
    warm_ratios = [r["warm"] / d["warm"] for r, d in zip(runner, direct)]
    what = f"{kind} on {device}, {size[0]}x{size[1]}, {size[2]} frames, {size[3]} steps"
    q = median(pair_ratios)
    rows = [
        Row(f"generation through the runner / direct (first call in a fresh process, {label})", med["first"][0], "s",
            "same pipeline called directly, fresh process", med["first"][1], ratio=q, goal=f"<= {GOAL:g}x",
            met=q <= GOAL, note=f"{what}; medians of {pairs} pairs; ratio = median of the per-pair ratios"),
        Row(f"  ratio of the medians, first call ({label})", med["first"][0] / med["first"][1], "x"),
        Row(f"  second call in the same fresh processes ({label})", med["warm"][0], "s",
            "same pipeline called directly", med["warm"][1]),
        Row(f"process start + imports + load through the runner ({label})",
            median([(r["start"] or 0) + (r["import"] or 0) + (r["load"] or 0) for r in runner]), "s",
            "direct: interpreter + imports + load", median([d["process"] - d["first"] - d["warm"] for d in direct]),
            note="reported separately, not part of the generation figure"),
    ]
    table = Table(f"Fresh-process pairs ({label}, {what}; seconds)",
                  ["pair", "runner first", "direct first", "ratio", "runner warm", "direct warm", "warm ratio",
                   "runner spawn->started", "runner load", "direct load"],
                  [[i + 1, r["first"], d["first"], pr, r["warm"], d["warm"], wr, r["start"], r["load"], d["load"]]
                   for i, (r, d, pr, wr) in enumerate(zip(runner, direct, pair_ratios, warm_ratios))])
    phases = runner[-1]["phases"]
    notes = [f"{label}: same output digest on every run of both sides: {'yes' if same else 'NO (inputs differ?)'}; "
             f"phases of the last runner generation: " + ", ".join(f"{k} {v:.3f}s" for k, v in phases.items())]
    return rows, [table], notes


def measure_warm(ctx: Context, device: str, label: str, size: tuple[int, int, int, int]) -> tuple[list[Row], list[Table], list[str]]:
    """Steady state, alternating call by call: the exporter's keep-warm runner worker vs a direct-call server.

    ``run_once(..., warm=WarmWorker)`` is the exporter's own path when ``benchmark.keep_warm`` is
    on: the same child code, phase wrappers and step callback installed for every run, the
    pipeline kept loaded. Alternating single generations (1-2 s each here) puts both sides in the
    same moments of the machine's noise, which whole-process pairs cannot.
    """
    from pathlib import Path

    from wan_exporter.bench.runner import CHILD_TARGET, build_request, run_once
    from wan_exporter.childproc import WarmWorker

    kind = "tiny-wan2.1-t2v"
    cfg = _config(ctx, kind, device, size)
    m = cfg.models[0]
    model_dir = Path(m.path)
    req_path = ctx.scratch("overhead") / "request-serve.json"
    req_path.write_text(json.dumps(build_request(m, cfg.profiles["p"], model_dir)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(common.EXPORTER_SRC), str(common.REPO), env.get("PYTHONPATH", "")])
    worker = WarmWorker(CHILD_TARGET, kill_grace=cfg.benchmark.kill_grace)
    direct = subprocess.Popen([sys.executable, "-m", "benchmarks.direct_generation", str(req_path), "--serve"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                              env=env, cwd=str(common.REPO))
    n = ctx.n(25, 2)
    runner_s: list[float] = []
    direct_s: list[float] = []
    runner_cpu: list[float] = []
    direct_cpu: list[float] = []
    digests: set[str] = set()
    procs_: dict[str, psutil.Process] = {}

    def cpu_of(side: str) -> float:
        t = procs_[side].cpu_times()
        return t.user + t.system

    def run_runner() -> float:
        c0 = cpu_of("runner") if "runner" in procs_ else None
        r, _ = run_once(cfg, m, "p", model_dir, warm=worker)
        if not r.success or r.duration_seconds is None:
            raise RuntimeError(f"runner generation failed: {r.reason}: {r.detail}")
        if c0 is not None:
            runner_cpu.append(cpu_of("runner") - c0)
        digests.add(r.output_digest)
        return r.duration_seconds

    def run_direct() -> float:
        assert direct.stdin is not None and direct.stdout is not None
        c0 = cpu_of("direct")
        direct.stdin.write("gen\n")
        direct.stdin.flush()
        d = json.loads(direct.stdout.readline())
        direct_cpu.append(cpu_of("direct") - c0)
        digests.add(d["digest"])
        return d["seconds"]

    try:
        assert direct.stdout is not None
        ready = json.loads(direct.stdout.readline() or "{}")
        if not ready.get("ready"):
            raise RuntimeError("direct-generation server did not start")
        procs_["direct"] = psutil.Process(direct.pid)
        t0 = time.perf_counter()
        first_runner = run_runner()  # spawns the worker and loads the pipeline
        runner_start = time.perf_counter() - t0 - first_runner
        procs_["runner"] = psutil.Process(worker._proc.pid)  # the worker's process, for its CPU time
        first_direct = run_direct()
        direct_cpu.clear()
        for i in range(n):
            if i % 2 == 0:
                runner_s.append(run_runner())
                direct_s.append(run_direct())
            else:
                direct_s.append(run_direct())
                runner_s.append(run_runner())
    finally:
        worker.close()
        try:
            if direct.stdin is not None:
                direct.stdin.write("quit\n")
                direct.stdin.close()
            direct.wait(30)
        except Exception:  # noqa: BLE001
            direct.kill()
    ratios = [r / d for r, d in zip(runner_s, direct_s)]
    mr, md = median(runner_s), median(direct_s)
    what = f"{kind} on {device}, {size[0]}x{size[1]}, {size[2]} frames, {size[3]} steps"
    q = median(ratios)
    cpu_rows = []
    if device == "cpu" and runner_cpu and direct_cpu:
        cr, cd = median(runner_cpu), median(direct_cpu)
        cpu_rows.append(Row(f"  CPU time per call, runner worker / direct server ({label})", cr, "s",
                            "direct server, same calls", cd, ratio=median([a / b for a, b in zip(runner_cpu, direct_cpu)]),
                            note="whole call (the runner's also includes its sanity checks and result message): "
                                 "insensitive to other processes' load, an upper bound on the instrumentation's work"))
    rows = [
        Row(f"generation through the runner / direct (steady state, alternating calls, {label})", mr, "s",
            "same pipeline called directly, same moments", md, ratio=q, goal=f"<= {GOAL:g}x", met=q <= GOAL,
            note=f"{what}; medians of {n} calls each; ratio = median of the {n} adjacent-call ratios"),
        Row(f"  ratio of the medians ({label})", mr / md, "x"),
        Row(f"  first generation after load ({label})", first_runner, "s", "direct, first generation", first_direct,
            note="one each: one-off costs"),
        Row(f"  runner worker spawn + imports + load ({label})", runner_start, "s",
            "direct: interpreter + imports + load", ready.get("process_seconds"),
            note="reported separately, never in the generation figure"),
    ] + cpu_rows
    table = Table(f"Alternating calls ({label}, {what}; seconds)", ["call", "runner", "direct", "ratio"],
                  [[i + 1, r, d, q] for i, (r, d, q) in enumerate(zip(runner_s, direct_s, ratios))])
    notes = [f"{label}, steady state: {'one output digest on every call of both sides' if len(digests) == 1 else f'{len(digests)} different output digests (inputs differ?)'}."]
    return rows, [table], notes


def run(ctx: Context) -> ItemResult:
    res = ItemResult("3", "Instrumentation overhead")
    if ctx.tiny_dir is None or "tiny-wan2.1-t2v" not in common.built_kinds(ctx.tiny_dir):
        res.skipped = "no tiny models (python3 -m wan_exporter tiny-models DIR)"
        return res
    for device in ctx_devices(ctx):
        for i, size in enumerate(sizes(ctx, device)):
            label = "CPU" if device == "cpu" else f"GPU {device}"
            if i:
                label += f" {size[0]}x{size[1]}x{size[2]}"
            for fn in (measure_warm, measure_cold):
                if fn is measure_cold and ctx.quick:
                    continue
                with _one_thread(device == "cpu"):
                    rows, tables, notes = fn(ctx, device, label, size)
                res.rows += rows
                res.tables += tables
                res.notes += notes
    res.notes.append("Two protocols. Steady state: the exporter's keep-warm worker (run_once with a WarmWorker: the "
                     "child's instrumentation installed for every run, the pipeline kept loaded) alternating call by "
                     "call with a direct-call server, so both sides share the machine's noise. Fresh processes: the "
                     "default runner path (a spawned child per run, whose first generation is the reported figure) "
                     "against a fresh direct process, in pairs; both first calls carry one-off costs (allocator "
                     "warm-up, kernel selection, lazy imports), and whole processes minutes apart see different "
                     "noise, so on a busy shared machine this figure is the noisier of the two. On the CPU both "
                     "sides run torch with one thread (OMP_NUM_THREADS=1): see _one_thread in item_overhead.py.")
    return res


@contextlib.contextmanager
def _one_thread(on: bool) -> Iterator[None]:
    """One torch thread on both sides (children inherit the environment).

    With OpenMP's spinning barriers, two threads on a machine whose cores other processes keep
    busy slow down erratically (a descheduled thread leaves the other spinning): generations of
    the same work here ranged from 0.2 to 6 s. One thread per side keeps the comparison about
    the instrumentation, which does not depend on the thread count.
    """
    old = os.environ.get("OMP_NUM_THREADS")
    if on:
        os.environ["OMP_NUM_THREADS"] = "1"
    try:
        yield
    finally:
        if on:
            if old is None:
                os.environ.pop("OMP_NUM_THREADS", None)
            else:
                os.environ["OMP_NUM_THREADS"] = old


def ctx_devices(ctx: Context) -> list[str]:
    return list(ctx.devices or ["cpu"])
