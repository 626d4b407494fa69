"""Profiles of what missed: where a scrape's time goes, sampled with py-spy and broken down in-process.

* py-spy: the exporter is launched under ``py-spy record`` (attaching to a running process is
  not permitted on every machine; launching is) on the default config with 8 fake GPUs, scraped
  back to back as Prometheus scrapes, then stopped with SIGINT. Samples of the HTTP request
  threads are sorted by what they were inside: our collectors building metric families,
  prometheus_client serialising them, gzip, the HTTP server itself. Raw stacks are kept in the
  results folder (``profile-*.txt``, collapsed-stack format for flamegraph tools).
* In-process: the same App (no server) at 3, 50 and 200 models, timing each step of one render
  with ``time.process_time`` (CPU, median of several): collect, text serialisation, OpenMetrics
  serialisation, gzip at level 9 (prometheus_client's) and 6.
"""

from __future__ import annotations

import gzip
import os
import shutil
import signal
import statistics
import time
from collections import Counter
from pathlib import Path

from . import procs
from .common import Context, ItemResult, Row, Table
from .item_scrape import settle
from .scrape import MODES, Target

CATEGORIES = (
    ("collectors: building metric families (wan_exporter + prometheus_client add_metric)",
     ("wan_exporter/collectors/__init__.py",)),
    ("gzip", ("gzip.py",)),
    ("serialisation: prometheus_client generate_latest", ("exposition.py",)),
    ("HTTP server: accept, parse, write (wsgiref, socketserver)", ("socketserver.py", "wsgiref", "server.py", "socket.py")),
)


def _category(stack: str) -> str:
    for name, needles in CATEGORIES:
        if any(n in stack for n in needles):
            return name
    return "other"


def py_spy(ctx: Context, work: Path, seconds: float) -> tuple[list[Table], list[Row], list[str]]:
    spy = shutil.which("py-spy")
    if spy is None:
        return [], [], ["py-spy not installed (pip install py-spy): no sampled profile"]
    exp = procs.Exporter(work, "exporter-profiled", gpus=8)
    out = ctx.out / "profile-scrape-default.txt"
    proc = procs.Proc("py-spy", [spy, "record", "-r", "250", "-f", "raw", "-o", str(out), "--", *exp.args],
                      env=exp.env, log=work / "py-spy.log")
    proc.start()
    exp.proc = proc.proc  # for wait_* (the exporter is py-spy's child)
    exp.started_at = proc.started_at
    try:
        settle(exp, timeout=60)
        kid = proc.ps().children()[0]
        t = Target("exporter", exp.port, kid.pid, MODES["prometheus"])
        t_end = time.monotonic() + seconds
        while time.monotonic() < t_end:
            t.block(20)
    finally:
        try:
            proc.proc.send_signal(signal.SIGINT)
            proc.proc.wait(30)
        except Exception:  # noqa: BLE001
            pass
        proc.stop()
    if not out.exists():
        return [], [], [f"py-spy wrote no profile: {proc.log_tail(500)}"]
    cats: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    total = 0
    for line in out.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if "process_request_thread" not in stack:
            continue  # startup and background jobs
        k = int(n)
        total += k
        cats[_category(stack)] += k
        leaf[stack.split(";")[-1]] += k
    if not total:
        return [], [], ["py-spy: no samples of request threads"]
    table = Table(f"Where a scrape's time goes (py-spy, {total} samples of request threads, default config, 8 GPUs, "
                  "as Prometheus scrapes; each sample counted once, under the first matching part)",
                  ["part", "share of request-thread samples"],
                  [[c, f"{n / total:.0%}"] for c, n in cats.most_common()])
    top = Table("Lines most often executing on the request threads (self time)", ["function (file:line)", "share"],
                [[f, f"{n / total:.1%}"] for f, n in leaf.most_common(12)])
    rows = [Row("request-thread samples inside rendering (collectors + serialisation + gzip)",
                sum(n for c, n in cats.items() if not c.startswith(("HTTP", "other"))) / total * 100, "%")]
    return [table, top], rows, [f"py-spy raw stacks: {out.name} in the results folder (collapsed-stack format, "
                                "for flamegraph.pl or speedscope)"]


def in_process(ctx: Context, work: Path) -> Table:
    """One render of the App's registry, step by step, at several sizes (CPU ms, median)."""
    import yaml

    nvml = procs.nvml_state(work / "nvml-inproc.json", 8)
    saved = {k: os.environ.get(k) for k in ("WAN_EXPORTER_NVML_MODULE", "FAKE_NVML_STATE", "HF_HUB_CACHE", "XDG_STATE_HOME")}
    os.environ.update(WAN_EXPORTER_NVML_MODULE=procs.FAKE_NVML, FAKE_NVML_STATE=str(nvml),
                      HF_HUB_CACHE=str(work / "hf-empty"), XDG_STATE_HOME=str(work / "state"))
    from prometheus_client import generate_latest
    from prometheus_client.openmetrics.exposition import generate_latest as om_latest

    from wan_exporter.app import App
    from wan_exporter.config import parse_config

    rows = []
    try:
        for n in ((3, 10) if ctx.quick else (3, 50, 200)):
            cfg = parse_config(yaml.safe_dump(procs.models_config(ctx.tiny_dir, n)), f"<{n} models>")
            app = App(cfg)
            try:
                app._first_snapshot()
                for sub in app.subsystems:
                    for job in ("run_layout", "run_headers"):
                        if hasattr(sub, job):
                            getattr(sub, job)()
                reps = ctx.n(7, 2) if n <= 50 else ctx.n(3, 1)

                def cpu(fn) -> float:
                    fn()
                    ts = []
                    for _ in range(reps):
                        t0 = time.process_time()
                        fn()
                        ts.append(time.process_time() - t0)
                    return statistics.median(ts) * 1e3

                samples = sum(len(f.samples) for f in app.registry.collect())
                collect = cpu(lambda: list(app.registry.collect()))
                text = cpu(lambda: generate_latest(app.registry))
                om = cpu(lambda: om_latest(app.registry))
                body = om_latest(app.registry)
                g9 = cpu(lambda: gzip.compress(body))
                g6 = cpu(lambda: gzip.compress(body, compresslevel=6))
                rows.append([n, samples, collect, text - collect, om - collect, g9, g6, om + g9,
                             (om + g9) / samples * 1000, len(gzip.compress(body)), len(gzip.compress(body, 6))])
            finally:
                app.stop()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return Table("One render, step by step (CPU ms, in-process, 8 GPUs)",
                 ["models", "samples", "collect", "text serialise", "OpenMetrics serialise", "gzip -9", "gzip -6",
                  "Prometheus scrape total (collect + OM + gzip -9)", "µs per sample", "gzip -9 bytes", "gzip -6 bytes"],
                 rows)


def run(ctx: Context) -> ItemResult:
    res = ItemResult("P", "Profiles")
    work = ctx.scratch("profile")
    if ctx.profile:
        tables, rows, notes = py_spy(ctx, work, ctx.n(15, 3))
        res.tables += [t for t in tables if t.rows]
        res.rows += rows
        res.notes += notes
    res.tables.append(in_process(ctx, work))
    res.notes.append("The in-process table is what one render costs, wherever it runs. Since /metrics is served "
                     "pre-rendered (wan_exporter/web/exposition.py), renders run in the exporter's metrics-prerender thread "
                     "ahead of periodic scrapes, and the py-spy table (request threads only) shows what is left in the "
                     "scrape itself. Before that change rendering was about 90% of the request threads' samples.")
    return res


__all__ = ["run"]
