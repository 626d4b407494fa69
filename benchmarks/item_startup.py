"""Item 6, startup: launch -> first successful /metrics, median of several launches.

Launches are interleaved (exporter default, exporter --demo, node_exporter, the Python floor
server) so they share the machine's noise. "Launch" is just before ``Popen``; the probe is a
fresh HTTP/1.0 GET every 5 ms. /-/ready (host, checkpoint facts and GPUs read once) is timed
too, on the same launches.
"""

from __future__ import annotations

from . import common, procs
from .common import Context, ItemResult, Row, Table, median


def _launch_exporter(ctx: Context, work, name: str, demo: bool) -> tuple[float, float]:
    extra = {"WAN_EXPORTER_CACHE": str(ctx.tiny_dir)} if demo else None
    exp = procs.Exporter(work, name, demo=demo, gpus=8, extra_env=extra)
    exp.start()
    try:
        first = exp.wait_metrics(60)
        ready = exp.wait_ready(60)
    finally:
        exp.stop()
    return first, ready


def _launch_plain(p: procs.Proc, port: int) -> float:
    p.start()
    try:
        t = procs.wait_http(port, "/metrics", 30, 0.005, p.proc)
        return t - p.started_at
    finally:
        p.stop()


def run(ctx: Context) -> ItemResult:
    res = ItemResult("6", "Startup")
    work = ctx.scratch("startup")
    n = ctx.n(7, 2)
    demo_ok = ctx.tiny_dir is not None and len(common.built_kinds(ctx.tiny_dir)) == 5
    floor_resp = work / "floor.response"
    floor_resp.write_bytes(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\r\nup 1\n")
    times: dict[str, list[float]] = {"default": [], "default_ready": [], "demo": [], "demo_ready": [], "node": [], "floor": []}
    for i in range(n):
        f, r = _launch_exporter(ctx, work, f"exporter-start-{i}", demo=False)
        times["default"].append(f)
        times["default_ready"].append(r)
        if demo_ok:
            f, r = _launch_exporter(ctx, work, f"exporter-demo-start-{i}", demo=True)
            times["demo"].append(f)
            times["demo_ready"].append(r)
        if procs.node_exporter_bin():
            ne = procs.NodeExporter(work)
            times["node"].append(_launch_plain(ne, ne.port))
        fl = procs.Floor(work, f"floor-start-{i}", floor_resp)
        times["floor"].append(_launch_plain(fl, fl.port))
    med = {k: median(v) if v else None for k, v in times.items()}
    res.rows.append(Row("launch -> first /metrics (default config, 8 GPUs)", med["default"], "s",
                        "Python floor server (interpreter + http.server)", med["floor"]))
    if med["node"] is not None:
        res.rows.append(Row("launch -> first /metrics (default config) vs node_exporter", med["default"], "s",
                            "node_exporter", med["node"]))
    res.rows.append(Row("launch -> /-/ready (default config, 8 GPUs)", med["default_ready"], "s",
                        "Python floor server", med["floor"]))
    if demo_ok:
        res.rows.append(Row("launch -> first /metrics (--demo, tiny models prebuilt)", med["demo"], "s",
                            "Python floor server", med["floor"]))
        res.rows.append(Row("launch -> /-/ready (--demo)", med["demo_ready"], "s", "Python floor server", med["floor"]))
    else:
        res.notes.append("--demo launches skipped: the tiny models are not all built in the exporter's cache")
    res.tables.append(Table(f"Every launch (seconds), {n} of each", ["launch", "times", "median"],
                            [[k, ", ".join(f"{x:.3f}" for x in v), med[k]] for k, v in times.items() if v]))
    res.notes.append("No goal is set for startup in issue 9; the reference says how much of it is the Python "
                     "interpreter itself.")
    return res
