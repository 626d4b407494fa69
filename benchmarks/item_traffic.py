"""Item T, traffic instrumentation overhead: ``instrument(pipe)`` against the raw pipeline, alternating calls.

Both pipelines live in one process (:mod:`benchmarks.traffic_overhead`), loaded alike, called
alternately so both see the same moments of the machine's noise; the figure is the median of
the adjacent-call ratios, and equal output digests prove the inputs were the same. Beside it,
the instrumentation's own work per denoising step and per request, each timed alone in a loop,
in microseconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from . import common
from .common import Context, ItemResult, Row, Table, median
from .item_overhead import _one_thread, ctx_devices

GOAL = 1.01
KIND = "tiny-wan2.1-t2v"


def sizes(ctx: Context, device: str) -> list[tuple[int, int, int, int]]:
    """(width, height, frames, steps): about a second a call on one CPU thread, so fixed costs do not dominate;
    on a GPU the 480p class (448x448), where a tiny model still takes a fraction of a second."""
    if ctx.quick:
        return [(32, 32, 9, 2)]
    return [(128, 128, 33, 10)] if device == "cpu" else [(448, 448, 33, 8)]  # the tiny rope fits 28 patches


def measure(ctx: Context, device: str, size: tuple[int, int, int, int]) -> dict:
    n = ctx.n(25 if device == "cpu" else 80, 3)  # GPU calls are short and noisy: more of them
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(common.EXPORTER_SRC), str(common.REPO), env.get("PYTHONPATH", "")])
    args = [str(ctx.tiny_dir / KIND), device, *(str(x) for x in size), str(n)]
    r = subprocess.run([sys.executable, "-m", "benchmarks.traffic_overhead", *args], capture_output=True, text=True,
                       env=env, cwd=str(common.REPO), timeout=1800)
    if r.returncode != 0:
        raise RuntimeError(f"traffic overhead run failed: {r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def run(ctx: Context) -> ItemResult:
    res = ItemResult("T", "Traffic instrumentation overhead")
    if ctx.tiny_dir is None or KIND not in common.built_kinds(ctx.tiny_dir):
        res.skipped = "no tiny models (python3 -m wan_exporter tiny-models DIR)"
        return res
    for device in ctx_devices(ctx):
        label = "CPU" if device == "cpu" else f"GPU {device}"
        for size in sizes(ctx, device):
            with _one_thread(device == "cpu"):
                d = measure(ctx, device, size)
            raw, inst = d["raw"], d["instrumented"]
            ratios = [i / r for r, i in zip(raw, inst)]
            q = median(ratios)
            what = f"{KIND} on {device}, {size[0]}x{size[1]}, {size[2]} frames, {size[3]} steps"
            res.rows += [
                Row(f"instrumented / raw pipeline call (alternating calls, {label})", median(inst), "s",
                    "the same pipeline, not instrumented, same moments", median(raw), ratio=q, goal=f"<= {GOAL:g}x",
                    met=q <= GOAL, note=f"{what}; medians of {len(raw)} calls each; ratio = median of the adjacent-call "
                                        "ratios"),
                Row(f"  ratio of the medians ({label})", median(inst) / median(raw), "x"),
                Row(f"  instrumentation work per denoising step ({label})", d["step_us"], "us",
                    note="the step callback the instrumentation installs (clock, expert lookup, the rank's heartbeat "
                             "gauges and stall-watch progress), timed alone over 20,000 calls"),
                Row(f"  per-request bookkeeping ({label})", d["request_us"], "us",
                    note="open, classify and record one request into the metrics (request and per-rank series), "
                             "timed alone over 5,000 requests"),
            ]
            res.tables.append(Table(f"Alternating calls ({label}, {what}; seconds)", ["call", "raw", "instrumented",
                                                                                      "ratio"],
                                    [[i + 1, r, s, q] for i, (r, s, q) in enumerate(zip(raw, inst, ratios))]))
            res.notes.append(f"{label}: {'one output digest on every call of both sides' if d['digests'] == 1 else str(d['digests']) + ' different output digests (inputs differ?)'}; "
                             f"requests counted by the instrumented side: {d['counted']:g} of {d['expected_count']}; "
                             f"torch threads: {d['torch_threads']}.")
    return res
