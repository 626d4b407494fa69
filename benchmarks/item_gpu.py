"""On an NVIDIA GPU: the GPU collector's cost through real NVML, next to the fake NVML module.

Runs only where ``nvidia-smi`` finds a GPU. The exporter polls the real ``pynvml`` every
second (test schedule); the figure is its own ``wan_exporter_collector_duration_seconds``
{collector="gpu"}, read after each poll, against the same exporter code on the fake module
reporting the same number of GPUs (which re-reads a JSON file per call). Scrape latency with
the real GPU's series is measured against the floor as in item 1.
"""

from __future__ import annotations

import shutil
import subprocess
import time

from . import procs, scrape
from .common import Context, ItemResult, Row, Table, median, percentile
from .item_scrape import settle
from .scrape import MODES, Target


def gpu_count() -> int:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return 0
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


def _poll_durations(exp: procs.Exporter, n: int) -> list[float]:
    seen, out = None, []
    deadline = time.monotonic() + n * 3 + 30
    while len(out) < n and time.monotonic() < deadline:
        _, _, body = procs.raw_get(exp.port, headers=MODES["plain"])
        for line in body.decode().splitlines():
            if line.startswith('wan_exporter_collector_duration_seconds{collector="gpu"}'):
                v = float(line.rsplit(" ", 1)[1])
                if v != seen:
                    seen = v
                    out.append(v)
        time.sleep(0.25)
    return out[1:]  # the first is the synchronous first poll (NVML init)


def run(ctx: Context) -> ItemResult:
    res = ItemResult("G", "On an NVIDIA GPU")
    n_gpu = gpu_count()
    if not n_gpu:
        res.skipped = "no NVIDIA GPU on this machine (nvidia-smi -L finds none)"
        return res
    work = ctx.scratch("gpu")
    cfg = procs.write_config(work / "gpu.yaml", {"schedules": {"gpu": {"interval": "1s"}}, "models": []})
    n = ctx.n(20, 3)
    out: dict[str, list[float]] = {}
    scr: dict[str, dict] = {}
    for name, real in (("real NVML", True), ("fake NVML", False)):
        exp = procs.Exporter(work, f"exporter-{'real' if real else 'fake'}", config=cfg, gpus=n_gpu, real_nvml=real).start()
        floor = None
        try:
            settle(exp, tasks=())
            out[name] = _poll_durations(exp, n)
            if real:
                resp = work / "gpu.response"
                scrape.capture(exp.port, MODES["prometheus"], resp)
                floor = procs.Floor(work, "floor-gpu", resp).start()
                procs.wait_http(floor.port, timeout=20, proc=floor.proc)
                ts = [Target("exporter", exp.port, exp.pid, MODES["prometheus"]),
                      Target("floor", floor.port, floor.pid, MODES["prometheus"])]
                scrape.interleaved(ts, ctx.n(10, 2), ctx.n(50, 10))
                scr = {t.name: t.summary() for t in ts}
                _, _, body = procs.raw_get(exp.port, headers=MODES["plain"])
                gpu_series = sum(1 for ln in body.decode().splitlines() if ln.startswith("wan_gpu_"))
        finally:
            if floor is not None:
                floor.stop()
            exp.stop()
    real, fake = out.get("real NVML") or [], out.get("fake NVML") or []
    res.rows.append(Row(f"GPU poll, real NVML ({n_gpu} GPU), median", median(real) * 1e3 if real else None, "ms",
                        "same code on the fake NVML module", median(fake) * 1e3 if fake else None))
    res.rows.append(Row("GPU poll, real NVML, p90", percentile(real, 90) * 1e3 if real else None, "ms"))
    if scr:
        e, f = scr["exporter"], scr["floor"]
        res.rows.append(Row(f"scrape p99 with the real GPU's series ({gpu_series} wan_gpu_* series)", e["p99_ms"], "ms",
                            "floor (same bytes)", f["p99_ms"]))
        res.rows.append(Row("scrape p50 with the real GPU's series", e["p50_ms"], "ms", "floor (same bytes)", f["p50_ms"]))
    res.tables.append(Table("GPU poll durations (ms), one poll per second",
                            ["NVML", "polls", "median", "p90", "max"],
                            [[k, len(v), median(v) * 1e3, percentile(v, 90) * 1e3, max(v) * 1e3] for k, v in out.items() if v]))
    res.notes.append("The poll runs on the exporter's NVML thread in the background; a scrape never waits on it.")
    return res
