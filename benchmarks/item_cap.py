"""Item 7c, scale at the cap: 64 models (the default ``exporter.max_models``) and 8 GPUs.

One exporter with 64 tiny pipelines on disk (every per-model family populated; scheduled
benchmarks off) and 8 fake GPUs polled every second, so that every scrape finds a new
snapshot, as a Prometheus scraping every few seconds would with the default 10 s GPU poll
and a health check landing now and then. It is scraped as Prometheus scrapes, every 1.3 s
(not a multiple of the poll's period, so scrapes land at every phase of it rather than at one
phase for the whole run), beside a floor server returning the same bytes in the same ticks.

CPU per snapshot change is what serving adds: the exporter's CPU over the scraped window,
less its CPU over an equal window without scrapes (its polls and checks), divided by the
scrapes that saw new data. With the exposition rendered part by part, a GPU poll re-renders
the GPU part (and the exporter's own), not the 64 models' figures.
"""

from __future__ import annotations

from . import scrape
from .common import Context, ItemResult, Row, Table
from .item_scrape import exporter_beside_floor

FLOOR_GOAL = 2.0


def run(ctx: Context) -> ItemResult:
    res = ItemResult("7c", "Scale at the cap")
    n_models, gpus = ctx.n(64, 8), 8
    interval, ticks, idle_s = 1.3, ctx.n(150, 8), ctx.n(40, 4)
    work = ctx.scratch("cap")
    with exporter_beside_floor(ctx, work, "cap", n_models, gpus, settle_s=90,
                               extra={"schedules": {"gpu": {"interval": "1s"}}}) as (exp, targets, raw):
        body = scrape.decoded_body(raw)
        ctx.log(f"  {n_models} models, {gpus} GPUs: {scrape.count_series(body)} series; idle {idle_s} s")
        idle = scrape.idle_rate(exp.pid, idle_s)
        ctx.log(f"  periodic: {ticks} scrapes every {interval:g} s")
        per = scrape.periodic(targets, ticks, interval)
        idle_after = scrape.idle_rate(exp.pid, idle_s)
        rss = exp.ps().memory_info().rss / 2**20
    e, f = per["exporter"], per["floor"]
    changes = max(1, round(e["changed_share"] * (ticks - 1)))
    idle_rate = (idle + idle_after) / 2
    window = ticks * interval
    cpu_total_ms = e["cpu_ms_per_scrape"] * ticks
    marginal_ms = max(0.0, cpu_total_ms - idle_rate * window * 1e3)
    label = f"{n_models} models, {gpus} GPUs"
    every = f"one scrape every {interval:g} s, {e['changed_share']:.0%} after a snapshot change"
    for q in ("p50", "p99"):
        ok = e[f"{q}_ms"] <= FLOOR_GOAL * f[f"{q}_ms"]
        res.rows.append(Row(f"{label}: {q} latency, {every}", e[f"{q}_ms"], "ms", "floor (same bytes), same ticks",
                            f[f"{q}_ms"], goal=f"<= {FLOOR_GOAL:g}x floor", met=ok, note=f"{ticks} scrapes"))
    res.rows.append(Row(f"{label}: CPU per snapshot change (serving; polls and checks subtracted)", marginal_ms / changes,
                        "ms", "floor CPU per scrape", f["cpu_ms_per_scrape"],
                        note=f"{changes} scrapes saw new data; exporter idle {idle_rate * 100:.2f}% of a core "
                             f"(before {idle * 100:.2f}%, after {idle_after * 100:.2f}%)"))
    res.rows.append(Row(f"{label}: CPU per scrape, polls and checks included", e["cpu_ms_per_scrape"], "ms",
                        "floor CPU per scrape", f["cpu_ms_per_scrape"], note="CPU over the whole window / scrapes"))
    res.tables.append(Table(f"{label}, as Prometheus scrapes (OpenMetrics, gzip), {every}",
                            ["target", "p50 ms", "p90 ms", "p99 ms", "max ms", "CPU ms per scrape (whole window)",
                             "scrapes"],
                            [[name, s["p50_ms"], s["p90_ms"], s["p99_ms"], s["max_ms"], s["cpu_ms_per_scrape"],
                              s["scrapes"]] for name, s in per.items()]))
    res.notes.append(f"Payload: {scrape.count_series(body)} series, {len(body):,} bytes as OpenMetrics text, "
                     f"{len(raw):,} bytes on the wire (gzip); exporter RSS after the run {rss:.1f} MB.")
    return res


__all__ = ["run"]
