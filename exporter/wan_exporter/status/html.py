"""The status page as HTML, from the view of :mod:`wan_exporter.status.model`.

Plain HTML and one same-origin stylesheet: no script, no inline style, no external asset,
so the page works offline and under a strict Content-Security-Policy. Every text from the
view is escaped here (GPU names come from the driver, file names from the disk). Exact
figures ride along in ``<data value=…>`` so a reader, or a test, sees the number /metrics has.
"""

from __future__ import annotations

import time
from html import escape
from typing import Any, Iterable

from . import svg

STATUS_ORDER = {"critical": 0, "missing": 1, "degraded": 2, None: 3, "healthy": 4}


def e(x: Any) -> str:
    return escape(str(x), quote=True)


# ----------------------------------------------------------------------------- formatting


def when(t: float | None, now: float) -> str:
    """UTC time with its age relative to the snapshot."""
    if t is None:
        return '<span class="na">never</span>'
    iso = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(t))
    return f'<time datetime="{iso}" title="{iso}">{e(age(now - t))}</time>'


def age(s: float) -> str:
    if s < 0:
        return "just now"
    for unit, n in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= n:
            return f"{s / n:.0f} {unit} ago"
    return f"{s:.0f} s ago"


def secs(v: float | None) -> str:
    if v is None:
        return "—"
    if v >= 120:
        return f"{v / 60:.1f} min"
    return f"{v:.3g} s" if v >= 0.01 else f"{v * 1000:.3g} ms"


_BYTES = ((" TiB", 1 << 40), (" GiB", 1 << 30), (" MiB", 1 << 20), (" KiB", 1 << 10))
_COUNTS = (("B", 1e9), ("M", 1e6), ("k", 1e3))


def _scaled(v: float | None, units: tuple[tuple[str, float], ...], plain: str) -> str:
    """``v`` in the largest of ``units`` it reaches, to three significant digits; else ``plain``."""
    if v is None:
        return "—"
    for unit, n in units:
        if v >= n:
            return f"{v / n:.3g}{unit}"
    return plain.format(v)


def size(v: float | None) -> str:
    return _scaled(v, _BYTES, "{:.0f} B")


def count(v: float | None) -> str:
    return _scaled(v, _COUNTS, "{:g}")


def pct(v: float | None) -> str:
    return "—" if v is None else f"{v * 100:.1f}%".replace(".0%", "%")


def data(field: str, value: Any, text: str) -> str:
    """A shown figure with its exact value (``null`` when unknown)."""
    v = "null" if value is None else repr(value) if isinstance(value, float) else str(value)
    return f'<data data-field="{e(field)}" value="{e(v)}">{e(text)}</data>'


def pill(status: str | None) -> str:
    s = status or "unknown"
    return f'<span class="pill s-{e(s)}" data-field="status">{e(s)}</span>'


def yesno(v: bool | None, yes: str = "yes", no: str = "no") -> str:
    if v is None:
        return '<span class="na">not measured</span>'
    return f'<span class="{"ok" if v else "bad"}">{e(yes if v else no)}</span>'


def links(items: Iterable[dict]) -> str:
    out = " ".join(f'<a class="rb" href="{e(r["url"])}">{e(r["alert"])}</a>' for r in items)
    return f'<p class="runbooks">Runbooks: {out}</p>' if out else ""


def table(head: Iterable[str], rows: Iterable[Iterable[str]], cls: str = "") -> str:
    th = "".join(f"<th>{e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


# ----------------------------------------------------------------------------- page


def render(v: dict[str, Any]) -> str:
    now = v["exporter"]["snapshot_at"]
    refresh = v["exporter"]["refresh_seconds"]
    meta = f'<meta http-equiv="refresh" content="{refresh:g}">' if refresh else ""
    models = v["models"]
    parts = [
        '<!doctype html><html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="referrer" content="no-referrer">', meta,
        "<title>wan-exporter status</title>",
        '<link rel="stylesheet" href="status.css">',
        "</head><body>",
        _header(v, now),
    ]
    if v["table_view"]:
        parts.append(_model_table(models))
    parts.append('<section id="models"><h2>Models</h2>')
    if not models:
        parts.append('<p class="na">No models configured.</p>')
    parts.append('<div class="cards">')
    for m in sorted(models, key=lambda m: STATUS_ORDER.get(m["status"], 3)):  # worst first, else config order
        parts.append(_card(m, now, folded=v["table_view"] and m["status"] in ("healthy", None)))
    parts.append("</div></section>")
    parts.append(_gpus(v["gpus"], v["host"]))
    parts.append(_exporter(v, now))
    parts.append('<footer><p>Rendered from the exporter\'s snapshot of '
                 f'{when(now, now)}; the same figures as <a href="metrics">/metrics</a> and '
                 '<a href="api/v1/status">/api/v1/status</a>.'
                 + (f" Reloads every {refresh:g} s." if refresh else "") + "</p></footer>")
    parts.append("</body></html>")
    return "".join(parts)


def _header(v: dict[str, Any], now: float) -> str:
    x = v["exporter"]
    nav = ['<a href="metrics">Metrics</a>', '<a href="api/v1/status">JSON</a>']
    for key, label in (("prometheus", "Prometheus"), ("grafana", "Grafana"), ("alertmanager", "Alertmanager")):
        if v["links"][key]:
            nav.append(f'<a href="{e(v["links"][key])}">{label}</a>')
    nav.append(f'<a href="{e(v["links"]["runbooks"])}">Runbooks</a>')
    summary = " ".join(f'<span class="pill s-{k}">{n} {k}</span>' for k, n in v["summary"].items() if n)
    ready = "" if x["ready"] else '<span class="pill s-degraded">starting: first snapshot not complete</span>'
    if not v["config"]["last_reload_success"]:
        ready += ' <a class="pill s-critical" href="#exporter">config reload failed</a>'
    demo = '<p class="note">Demo: tiny random models on the CPU; their figures say nothing about real models.</p>' \
        if x["demo"] else ""
    return (f'<header><h1>wan-exporter <small>{e(x["version"])}</small></h1>'
            f'<nav>{" · ".join(nav)}</nav>'
            f'<p class="summary">{summary or "no models"} {ready} <span class="muted">as of {when(now, now)}</span></p>'
            f"{demo}</header>")


def _model_table(models: list[dict]) -> str:
    rows = []
    for m in sorted(models, key=lambda m: (STATUS_ORDER.get(m["status"], 3), m["name"])):
        last = max((b["last_run"] for b in m["benchmarks"] if b["last_run"]), key=lambda r: r["finished_at"],
                   default=None)
        rows.append([f'<a href="#model-{e(m["name"])}">{e(m["name"])}</a>', pill(m["status"]), e(m["kind"]),
                     str(len(m["findings"])),
                     "—" if last is None else yesno(last["success"], "ok", e(last["reason"] or "failed")),
                     secs(last["duration_seconds"]) if last else "—"])
    return ('<section id="table"><h2>All models</h2>'
            + table(["Model", "Status", "Kind", "Findings", "Last benchmark", "Duration"], rows, "wide")
            + "</section>")


def _card(m: dict[str, Any], now: float, folded: bool) -> str:
    status = m["status"] or "unknown"
    head = (f'<summary><span class="name">{e(m["name"])}</span> {pill(m["status"])} '
            f'<span class="muted">{e(m["kind"])} · {e(m["device"])} · {e(m["dtype"])}</span></summary>')
    body = [_verdict(m), _checkpoint(m, now), _facts(m), _benchmarks(m, now),
            _traffic(m),
            _recommendation(m), links(m["runbooks"]),
            f'<p class="runbooks"><a href="{e(m["dashboard_url"])}">Grafana: model detail</a></p>'
            if m["dashboard_url"] else ""]
    return (f'<details class="card s-{e(status)}" id="model-{e(m["name"])}"{"" if folded else " open"}>'
            f"{head}{''.join(body)}</details>")


def _traffic(m: dict[str, Any]) -> str:
    """Serving traffic is measured in the serving process (wan_exporter.instrument), not here."""
    where = ""
    if m["dashboard_url"]:
        base = m["dashboard_url"].split("/d/", 1)[0]
        where = f' <a href="{e(base)}/d/wan-traffic/wan-traffic">Grafana: traffic</a>'
    return ('<h4>Traffic</h4><p class="na">Measured where the pipeline serves users: the service\'s own '
            f"/metrics (<code>wan_exporter.instrument</code>), not this exporter.{where}</p>")


def _verdict(m: dict[str, Any]) -> str:
    reasons = "".join(f"<li>{e(r)}</li>" for r in m["reasons"])
    out = [f'<h4>Verdict</h4>{"<ul class=reasons>" + reasons + "</ul>" if reasons else ""}']
    if m["status"] is None:
        out.append('<p class="na">Nothing measured yet.</p>')
    if m["findings"]:
        items = "".join(
            f'<li><span class="sev-{e(f["severity"])}">{e(f["severity"])}</span> <code>{e(f["kind"])}</code> '
            f'<span class="muted">({e(f["check"])} check)</span>'
            + (f' <code class="file">{e(f["path"])}</code>' if f["path"] else "")
            + (f'<br><span class="detail">{e(f["detail"])}</span>' if f["detail"] else "") + "</li>"
            for f in m["findings"])
        out.append(f'<ul class="findings">{items}</ul>')
    elif m["status"] is not None:
        out.append('<p class="ok">No current findings.</p>')
    return "".join(out)


def _checkpoint(m: dict[str, Any], now: float) -> str:
    c = m["checkpoint"]
    present = {True: "found", False: "not found", None: "not looked for yet"}[m["present"]]
    rows = [
        ("Files", f'{e(present)}' + (f' — <code class="file">{e(c["dir"])}</code>' if c["dir"] else "")),
        ("Form", e(c["form"]) if c["form"] else '<span class="na">not reported by this exporter version</span>'),
        ("Layout", "—" if c["files_expected"] is None else
         f'{data("files_present", c["files_present"], str(c["files_present"]))} of '
         f'{data("files_expected", c["files_expected"], str(c["files_expected"]))} promised files, '
         f'{data("size_bytes", c["size_bytes"], size(c["size_bytes"]))}'),
    ]
    i = c["integrity"]
    if i is None:
        rows.append(("Integrity", '<span class="na">not hashed yet</span>'))
    else:
        against = []
        if i["reference"]:
            against.append(f"the {e(i['reference'])} reference")
        if i["published_files"]:
            against.append(f"{i['published_files']} file(s) against their published SHA-256 (Hugging Face cache "
                           "blob or --local-dir download metadata)")
        if i["recorded_files"]:
            against.append(f"{i['recorded_files']} file(s) against a manifest recorded at first sight (not the "
                           "published content)")
        ref = "; ".join(against) or "a manifest recorded by an earlier hash run"
        rows.append(("Integrity", f'{data("integrity_ratio", i["ratio"], pct(i["ratio"]))} of '
                     f'{size(i["expected_bytes"])} verified {when(i["checked_at"], now)}, compared with {ref}'))
    checks = " ".join(
        f'<span class="{"ok" if ch["success"] else "bad" if ch["success"] is False else "na"}">{e(ch["check"])}</span>'
        f' {when(ch["finished_at"], now)}' for ch in m["checks"])
    rows.append(("Checks", checks or '<span class="na">none run yet</span>'))
    return "<h4>Checkpoint</h4>" + "".join(f"<p><b>{k}:</b> {v}</p>" for k, v in rows)


def _facts(m: dict[str, Any]) -> str:
    cap = m["capabilities"]
    p, ck = cap["published"], cap["checkpoint"]
    if p is None:
        return '<h4>Published facts</h4><p class="na">Unknown kind: no catalog entry.</p>'
    rows = [
        ["Parameters", count(p["parameters"]), count(ck["parameters"]) if ck else "—"],
        ["Active per step", count(p["active_parameters"]), ""],
        ["Experts", e(p["experts"]), e(ck["experts"]) if ck and ck["experts"] is not None else "—"],
        ["Boundary ratio", e(p["boundary_ratio"] if p["boundary_ratio"] is not None else "—"),
         e(ck["boundary_ratio"]) if ck and ck["boundary_ratio"] is not None else "—"],
        ["Resolutions", e(", ".join(p["resolutions"])), ""],
        ["Frames / fps / steps", f'{p["frames_default"]} / {p["fps_default"]} / {p["steps_default"] or "—"}', ""],
        ["Inputs", e(", ".join(p["inputs"])), ""],
        ["Min. VRAM", e(", ".join(f"{k}: {size(b)}" for k, b in p["vram_min_bytes"].items()) or "—"), ""],
        ["Stored dtypes", "", e(", ".join(ck["dtypes"])) if ck else "—"],
    ]
    out = "<h4>Published facts</h4>" + table(["", "Catalog", "Checkpoint"], rows, "facts")
    if cap["mismatches"]:
        out += '<ul class="mismatch">' + "".join(f"<li>{e(x)}</li>" for x in cap["mismatches"]) + "</ul>"
    elif cap["mismatches_checked"]:
        out += '<p class="ok">Checkpoint agrees with the catalog.</p>'
    return out


def _benchmarks(m: dict[str, Any], now: float) -> str:
    out = ["<h4>Benchmarks</h4>"]
    if not m["benchmarks"]:
        out.append('<p class="na">No benchmark profile configured.</p>')
    for b in m["benchmarks"]:
        f = f'benchmark.{b["profile"]}.'
        last, ok = b["last_run"], b["last_success"]
        out.append(f'<div class="bench"><p><b>{e(b["profile"])}</b> · {b["runs"]} run(s)')
        if last is None:
            est = b.get("estimated_peak_memory_bytes")
            if b.get("skipped", {}).get("would_not_fit") and est is not None:
                out.append(f' · <span class="bad">refused: would not fit (estimated peak '
                           f'{data(f + "estimated_peak_memory_bytes", est, size(est))})</span></p></div>')
            else:
                out.append(' · <span class="na">not run yet</span></p></div>')
            continue
        outcome = yesno(last["success"], "succeeded", f'failed ({last["reason"] or "failed"})')
        out.append(f" · last {outcome} {when(last['finished_at'], now)}")
        if b["consecutive_failures"]:
            out.append(f' · <span class="bad">{b["consecutive_failures"]} failure(s) in a row</span>')
        out.append("</p>")
        if ok is not None:
            note = "" if ok is last else f" (last success {when(ok['finished_at'], now)})"
            out.append(f'<p>Duration {data(f + "duration_seconds", ok["duration_seconds"], secs(ok["duration_seconds"]))}'
                       f', {data(f + "seconds_per_step", ok["seconds_per_step"], secs(ok["seconds_per_step"]))} per step'
                       f'{note}</p>')
            phases = list(ok["phases"].items())
            if phases:
                legend = " ".join(f'<span class="key {svg.PHASE_CLASSES.get(k, "ph-other")}">{e(k)} {secs(s)}</span>'
                                  for k, s in phases)
                out.append(f'<p class="phases">{svg.phase_bar(phases)}<br>{legend}</p>')
        peak = last["peak_memory_bytes"]
        if peak is not None:
            kind = "GPU" if last["peak_memory_kind"] == "cuda" else "host memory"
            total = last["memory_total_bytes"]
            against = (f' of {size(total)} {kind} ({data(f + "peak_memory_ratio", last["peak_memory_ratio"], pct(last["peak_memory_ratio"]))}) '
                       + svg.ratio_bar(last["peak_memory_ratio"], label="peak memory")) if total else \
                f' ({e(kind)} size unknown)'
            est = b.get("estimated_peak_memory_bytes")
            estimated = (f' · estimated {data(f + "estimated_peak_memory_bytes", est, size(est))} before the run'
                         if est is not None else "")
            out.append(f'<p>Peak memory {data(f + "peak_memory_bytes", peak, size(peak))}{against}{estimated}</p>')
        sanity = last["sanity"]
        if sanity:
            checks = " ".join(f'<span class="{"ok" if v else "bad"}">{e(k)}</span>' for k, v in sanity.items())
            out.append(f'<p>Sanity {checks} · passed in {data(f + "sanity_ratio", b["sanity_ratio"], pct(b["sanity_ratio"]))} of runs')
        else:
            out.append('<p>Sanity <span class="na">not checked</span>')
        out.append(f' · reproducible {yesno(b["reproducible"])}</p>')
        if b["baseline_seconds"]:
            out.append(f'<p>Baseline {secs(b["baseline_seconds"])}, performance '
                       f'{data(f + "performance_ratio", b["performance_ratio"], pct(b["performance_ratio"]))}</p>')
        hist = [(r["duration_seconds"], r["success"]) for r in b["history"]]
        if len(hist) > 1:
            spark = svg.sparkline(hist, label=f'last {len(hist)} runs of {b["profile"]}')
            out.append(f'<p class="hist">{spark}'
                       f' <span class="muted">last {len(hist)} runs</span></p>')
        out.append("</div>")
    return "".join(out)


def _recommendation(m: dict[str, Any]) -> str:
    if not m["recommendation"]:
        return ('<h4>Recommendation</h4><p class="na">Not a candidate yet: needs a healthy or degraded verdict and a '
                "successful benchmark.</p>")
    rows = [[e(s["use_case"].replace("_", " ")), e(s["priority"]),
             data(f'recommendation.{s["use_case"]}.{s["priority"]}', s["score"], f'{s["score"]:.2f}')
             + (" ★" if s["score"] >= 0.999999 else "")] for s in m["recommendation"]]
    return "<h4>Recommendation</h4>" + table(["Use case", "Priority", "Score (1 = best)"], rows, "facts")


def _gpus(g: dict[str, Any], host: dict[str, Any] | None) -> str:
    out = ['<section id="gpus"><details open><summary><h2>GPUs and host</h2></summary>']
    if not g["readable"]:
        cls = "bad" if g["lost"] else "na"
        out.append(f'<p class="{cls}">NVML not readable: {e(g["reason"] or "not polled yet")}.</p>')
    rows = []
    for d in g["devices"]:
        if d["lost"] and "used_by" in d:  # configured, but NVML does not list it
            rows.append([e(d["index"]), '<span class="bad">lost</span>',
                         f'configured for {e(", ".join(d["used_by"]))}, not reported by NVML', "", "", "", ""])
            continue
        if d["lost"]:  # NVML lists it and reports it lost (fallen off the bus): no figures to show
            rows.append([e(d["index"]), f'{e(d["name"] or "")}<br><code class="muted">{e(d["uuid"])}</code>',
                         '<span class="bad">lost: NVML reports it fallen off the bus</span>', "", "", "",
                         links(d["runbooks"])])
            continue
        used, total = d["memory_used_bytes"], d["memory_total_bytes"]
        mem = "—" if total is None else (f"{size(used)} of {size(total)} "
                                          + svg.ratio_bar((used or 0) / total, label="memory used"))
        util = "—" if d["utilization_ratio"] is None else \
            pct(d["utilization_ratio"]) + " " + svg.ratio_bar(d["utilization_ratio"], warn=2, label="utilisation")
        temp = "—" if d["temperature_celsius"] is None else f'{d["temperature_celsius"]:g} °C'
        state = f'<span class="bad">throttled: {e(", ".join(d["throttle_reasons"]))}</span>' if d["throttled"] else \
            '<span class="ok">ok</span>'
        if d["ecc_errors"]:
            state += f' <span class="bad">{d["ecc_errors"]} ECC error(s)</span>'
        rows.append([e(d["index"]), f'{e(d["name"])}<br><code class="muted">{e(d["uuid"])}</code>', util, mem, temp,
                     state, links(d["runbooks"])])
    if rows:
        out.append(table(["GPU", "Name", "Utilisation", "Memory", "Temperature", "State", ""], rows, "wide"))
    elif g["readable"]:
        out.append('<p class="na">NVML reports no GPU.</p>')
    out.append(links(g["runbooks"]))
    if host is not None:
        load = "—" if host["load1"] is None else f'{host["load1"]:.2f}'
        out.append(f'<p>Host: {host["cpus"]} CPUs, CPU {pct(host["cpu_utilization_ratio"])}, load {load}, memory '
                   f'{size(host["memory_available_bytes"])} available of {size(host["memory_total_bytes"])}</p>')
    out.append("</details></section>")
    return "".join(out)


def _job_state(j: dict[str, Any], now: float) -> str:
    """Idle, running, or stuck: a run in progress longer than its deadline (its figures go stale)."""
    if j["running_since"] is None:
        return '<span class="muted">idle</span>'
    ran = secs(max(0.0, now - j["running_since"]))
    if j["stuck"]:
        return f'<span class="bad">stuck: running for {ran}, deadline {secs(j["deadline_seconds"])}</span>'
    return f"running for {ran}"


def _exporter(v: dict[str, Any], now: float) -> str:
    c = v["config"]
    reload_state = yesno(c["last_reload_success"], "loaded", "last reload failed: running the previous config")
    rows = [[e(x["collector"]), yesno(x["success"], "ok", f'failing ({x["reason"] or "error"})'),
             secs(x["duration_seconds"]), when(x["last_success_at"], now), links(x["runbooks"])]
            for x in v["collectors"]]
    jobs = [[f'<code>{e(j["job"])}</code>', _job_state(j, now), when(j["last_success_at"], now),
             when(j["last_run_at"], now), secs(j["last_duration_seconds"]), secs(j["interval_seconds"]),
             f'{j["runs"]} / {j["failures"]} / {j["skipped"]}', links(j["runbooks"])]
            for j in v["jobs"]]
    stuck = [j["job"] for j in v["jobs"] if j["stuck"]]
    stuck_note = f', <span class="bad">{len(stuck)} job(s) stuck</span>' if stuck else ""
    return (f'<section id="exporter"><details{" open" if stuck else ""}><summary><h2>Exporter</h2> '
            f'<span class="muted">config {reload_state}, {len(v["collectors"])} collectors, {len(v["jobs"])} jobs'
            f'</span>{stuck_note}</summary>'
            f'<p>Config: {reload_state}, generation {c["generation"]}, loaded {when(c["last_reload_at"], now)}, '
            f'{c["models_configured"]} model(s).</p>{links(c["runbooks"])}'
            '<h3>Collectors</h3>'
            + table(["Collector", "Last cycle", "Duration", "Job last success", ""], rows, "wide")
            + "<h3>Scheduled jobs</h3>"
            + table(["Job", "State", "Last success", "Last run", "Duration", "Interval",
                     "Runs / failures / skipped", ""], jobs, "wide")
            + "</details></section>")
