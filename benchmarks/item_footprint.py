"""Item 2, footprint: resident memory and idle CPU of the exporter next to node_exporter.

Both run side by side at the same time: the exporter on its embedded default config with 8
fake GPUs (so its GPU poll runs every 10 s), node_exporter with its default collectors. After
a warm-up of scrapes, neither is scraped for the idle window; CPU is the process's CPU time
over the window (psutil), RSS is sampled every second (peak reported). "torch never imported"
is checked from the outside: no file of the torch package is mapped into the exporter.
"""

from __future__ import annotations

import time

import psutil

from . import procs
from .common import Context, ItemResult, Row, Table
from .item_scrape import settle
from .scrape import MODES, Target

RSS_GOAL_MB = 80.0
IDLE_CPU_GOAL_PCT = 1.0
MB = 1024 * 1024


def _sample(p: psutil.Process) -> tuple[float, float]:
    m = p.memory_full_info()
    return m.rss / MB, getattr(m, "uss", m.rss) / MB


def run(ctx: Context) -> ItemResult:
    res = ItemResult("2", "Footprint")
    work = ctx.scratch("footprint")
    window = ctx.n(60, 3)
    exp = procs.Exporter(work, "exporter-footprint", gpus=8).start()
    node = None
    try:
        settle(exp)
        targets = [Target("exporter", exp.port, exp.pid, MODES["prometheus"])]
        if procs.node_exporter_bin():
            node = procs.NodeExporter(work).start()
            procs.wait_http(node.port, timeout=20, proc=node.proc)
            targets.append(Target("node_exporter", node.port, node.pid, MODES["prometheus"]))
        else:
            res.notes.append("node_exporter not installed: no reference row")
        for t in targets:  # warm: the allocations a scrape makes are part of the steady state
            t.block(ctx.n(50, 5), record=False)
        time.sleep(1.0)
        ps = {t.name: psutil.Process(t.pid) for t in targets}
        cpu0 = {n: procs.cpu_seconds(p) for n, p in ps.items()}
        peak = {n: (0.0, 0.0) for n in ps}
        t0 = time.monotonic()
        while time.monotonic() - t0 < window:
            for n, p in ps.items():
                rss, uss = _sample(p)
                peak[n] = (max(peak[n][0], rss), max(peak[n][1], uss))
            time.sleep(1.0)
        wall = time.monotonic() - t0
        cpu = {n: (procs.cpu_seconds(p) - cpu0[n]) / wall * 100.0 for n, p in ps.items()}
        threads = {n: p.num_threads() for n, p in ps.items()}
        torch_files = procs.has_mapped(exp.pid, "/torch/") + procs.has_mapped(exp.pid, "libtorch")
        py_modules = len(procs.has_mapped(exp.pid, ".so"))
    finally:
        exp.stop()
        if node is not None:
            node.stop()
    n_rss = peak.get("node_exporter", (None, None))[0]
    n_cpu = cpu.get("node_exporter")
    res.rows.append(Row("exporter RSS (peak over the idle window)", peak["exporter"][0], "MB", "node_exporter RSS", n_rss,
                        goal=f"<= {RSS_GOAL_MB:g} MB", met=peak["exporter"][0] <= RSS_GOAL_MB))
    res.rows.append(Row("exporter USS (memory unique to the process)", peak["exporter"][1], "MB", "node_exporter USS",
                        peak.get("node_exporter", (None, None))[1]))
    res.rows.append(Row(f"exporter idle CPU over {window:.0f} s", cpu["exporter"], "% of a core", "node_exporter idle CPU",
                        n_cpu, goal=f"<= {IDLE_CPU_GOAL_PCT:g}% of a core", met=cpu["exporter"] <= IDLE_CPU_GOAL_PCT))
    res.rows.append(Row("torch files mapped into the exporter process", float(len(torch_files)), "files",
                        goal="0 (torch only in children)", met=not torch_files,
                        note="checked in /proc/<pid>/maps" + (": " + ", ".join(torch_files[:3]) if torch_files else "")))
    res.tables.append(Table("Processes", ["process", "RSS MB (peak)", "USS MB (peak)", "idle CPU % of a core", "threads"],
                            [[n, peak[n][0], peak[n][1], cpu[n], threads[n]] for n in ps]))
    res.notes.append(f"Exporter on the embedded default config with 8 fake GPUs: its GPU poll (every 10 s), host poll "
                     f"(15 s), checkpoint and layout checks (30 s) run during the window; the fake NVML module re-reads "
                     f"its JSON state file on every call, which real NVML would not. {py_modules} shared objects mapped.")
    return res
