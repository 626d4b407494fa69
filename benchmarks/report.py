"""Render BENCHMARKS.md from a results.json written by ``python3 -m benchmarks run``.

The generated part holds every figure of the run; the hand-written analysis (profiles read,
proposed fixes) lives in ``benchmarks/analysis.md`` and is appended as it is.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .common import REPO, ItemResult, Row, Table

ANALYSIS = Path(__file__).resolve().parent / "analysis.md"
# The full-size GPU run (scripts/gpu_fullsize.py), written up by hand: not an item of this suite.
FULLSIZE = Path(__file__).resolve().parent / "fullsize.md"
FORMS = Path(__file__).resolve().parent / "forms.md"
# The memory guard's prediction error (benchmarks/memory_guard.py prints its table).
MEMORY_GUARD = Path(__file__).resolve().parent / "memory_guard.md"

HEADLINES = {
    # item -> figure-name prefixes that make the summary table
    "1": ("default config, 8 GPUs: p99 latency, as Prometheus", "default config, 8 GPUs: p50 latency, as Prometheus",
          "default config, 8 GPUs: CPU per scrape, as Prometheus", "default config, 8 GPUs: p99 latency, one scrape",
          "50 models, 8 GPUs: p99 latency, as Prometheus", "50 models, 8 GPUs: p99 latency, one scrape"),
    "1c": ("p50 latency while", "p99 latency while"),
    "1s": ("scrapes answered with", "connections the exporter held"),
    "2": ("exporter RSS", "exporter idle CPU", "torch"),
    "3": ("generation through the runner / direct",),
    "4": ("hash throughput (warm", "layout check", "headers check"),
    "5": ("fault -> webhook",),
    "6": ("launch -> first /metrics (default",),
    "7": ("p99 latency at 200 models",),
    "7c": ("64 models, 8 GPUs: p50 latency", "64 models, 8 GPUs: p99 latency", "64 models, 8 GPUs: CPU per snapshot"),
}


def item_order(key: str) -> tuple[int, str]:
    digits = "".join(c for c in key if c.isdigit())
    return (int(digits) if digits else 99, key)


def default_md_path() -> Path:
    return REPO / "BENCHMARKS.md"


def fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if math.isnan(v):
            return "—"
        a = abs(v)
        if a >= 1000:
            return f"{v:,.0f}"
        if a >= 100:
            return f"{v:.0f}"
        if a >= 10:
            return f"{v:.1f}"
        if a >= 1:
            return f"{v:.2f}"
        if a == 0:
            return "0"
        return f"{v:.{digits}f}"
    return str(v).replace("|", "\\|")


def met_mark(m: bool | None) -> str:
    return "—" if m is None else ("**met**" if m else "**MISSED**")


def row_line(r: Row) -> str:
    s = f"{r.figure}: {fmt(r.value)} {r.unit}"
    if r.ref_value is not None:
        s += f" vs {r.reference} {fmt(r.ref_value)} {r.unit} (ratio {fmt(r.ratio)})"
    if r.goal:
        s += f" goal {r.goal}: {'met' if r.met else 'MISSED' if r.met is not None else '-'}"
    return s


def _row_table(rows: list[Row]) -> list[str]:
    out = ["| figure | value | reference | reference value | ratio | goal | met? |",
           "|---|---:|---|---:|---:|---|---|"]
    for r in rows:
        unit = f" {r.unit}" if r.unit and r.unit != "x" else ("×" if r.unit == "x" else "")
        ref_unit = unit if r.ref_value is not None else ""
        note = f" ({r.note})" if r.note else ""
        out.append(f"| {fmt(r.figure)}{fmt(note) if note else ''} | {fmt(r.value)}{unit} | {fmt(r.reference) or '—'} | "
                   f"{fmt(r.ref_value)}{ref_unit} | {fmt(r.ratio) + '×' if r.ratio is not None else '—'} | "
                   f"{fmt(r.goal) or '—'} | {met_mark(r.met)} |")
    return out


def _table(t: Table) -> list[str]:
    out = [f"*{t.title}*", "", "| " + " | ".join(t.columns) + " |", "|" + "---|" * len(t.columns)]
    for row in t.rows:
        out.append("| " + " | ".join(fmt(c) for c in row) + " |")
    return out


MACHINE_KEYS = ("date", "cpu", "cores", "memory", "kernel", "virtualisation", "os", "gpu", "python", "torch", "diffusers",
                "transformers", "prometheus_client", "psutil", "node_exporter", "prometheus", "alertmanager", "sha256sum",
                "loadavg_at_start", "loadavg_at_end")


def _machine(m: dict) -> list[str]:
    out = ["| | |", "|---|---|"]
    for k in MACHINE_KEYS:
        if k in m:
            out.append(f"| {k.replace('_', ' ')} | {fmt(m[k])} |")
    return out


def _sections(items: dict[str, ItemResult], level: str = "##") -> list[str]:
    lines: list[str] = []
    for key, it in items.items():
        lines += [f"{level} {key}. {it.title}", ""]
        if it.skipped:
            lines += [f"Not measured: {it.skipped}", ""]
            continue
        lines += _row_table(it.rows) + [""]
        for t in it.tables:
            lines += _table(t) + [""]
        for n in it.notes:
            lines.append(f"- {n}")
        lines += ["", f"<sub>item took {fmt(it.seconds)} s</sub>", ""]
    return lines


def _items(doc: dict) -> dict[str, ItemResult]:
    return {k: ItemResult.from_json(v) for k, v in sorted(doc["items"].items(), key=lambda kv: item_order(kv[0]))}


def _summary(items: dict[str, ItemResult], where: str = "") -> list[str]:
    lines = []
    for key, it in items.items():
        if it.skipped:
            lines.append(f"| {key}. {it.title}{where} | {fmt(it.skipped)} | | | | | — |")
            continue
        prefixes = HEADLINES.get(key, ())
        picked = [r for r in it.rows if any(r.figure.startswith(p) for p in prefixes)] or it.rows[:2]
        for r in picked:
            unit = "×" if r.unit == "x" else f" {r.unit}"
            ref = f"{fmt(r.ref_value)}{unit if r.ref_value is not None else ''}"
            if r.reference:
                ref += f" ({fmt(r.reference)})"
            lines.append(f"| {key}. {it.title}{where} | {fmt(r.figure)} | {fmt(r.value)}{unit} | {ref} | "
                         f"{fmt(r.ratio) + '×' if r.ratio is not None else '—'} | {fmt(r.goal) or '—'} | {met_mark(r.met)} |")
    return lines


def _label(doc: dict) -> str:
    m = doc.get("machine", {})
    return doc.get("label") or f"on {m.get('gpu') or m.get('cpu')}"


def render(doc: dict, merged: list[dict] | None = None, rerender: str = "python3 -m benchmarks report") -> str:
    merged = merged or []
    items = _items(doc)
    lines = [
        "# Benchmarks",
        "",
        "<!-- GENERATED by `python3 -m benchmarks run` (benchmarks/report.py); the runs shown are kept in "
        f"benchmarks/runs/, the analysis at the end is benchmarks/analysis.md. Re-render: {rerender} -->",
        "",
        "What the exporter costs and how precisely it measures, each figure next to a reference measured **in the "
        "same run** (node_exporter, a floor server returning the same bytes, `sha256sum`, the same diffusers "
        "pipeline called directly, the configured alerting delays), reported as a ratio: the machine is shared and "
        "noisy, so absolute timings move from run to run while the ratios hold.",
        "",
        "Reproduce (needs Debian's `prometheus`, `prometheus-alertmanager` and `prometheus-node-exporter`, "
        "and `pip install py-spy`; tiny models are built on first use):",
        "",
        "```sh",
        doc.get("command", "python3 -m benchmarks run --out bench-results/"),
        "```",
        "",
        f"The run took {fmt(doc.get('seconds', 0) / 60)} minutes"
        + (" (**--quick**: tiny iteration counts, a smoke run; not the figures to quote)" if doc.get("quick") else "")
        + (f"; exporter source measured: `{doc['exporter_src']}`" if doc.get("exporter_src") and
           "--exporter-src" in doc.get("command", "") else "")
        + ".",
        "",
        "## Machine",
        "",
    ]
    lines += _machine(doc["machine"])
    lines += ["", "## Summary", "", "| item | figure | value | reference | ratio | goal | met? |",
              "|---|---|---:|---:|---:|---|---|"]
    lines += _summary(items)
    for extra in merged:
        lines += _summary(_items(extra), f" ({extra.get('short') or _label(extra)})")
    missed = [(k, r) for k, it in items.items() for r in it.rows if r.met is False]
    lines += ["", f"Goals missed by the current code in this run: **{len(missed)}**"
              + (" — " + "; ".join(f"{k}: {r.figure}" for k, r in missed) if missed else "") + ".", ""]
    for extra in merged:
        xm = [(k, r) for k, it in _items(extra).items() for r in it.rows if r.met is False]
        lines += [f"Goals missed — {_label(extra)}: **{len(xm)}**"
                  + (" — " + "; ".join(f"{k}: {r.figure}" for k, r in xm) if xm else "") + ".", ""]
    lines += _sections(items)
    for extra in merged:
        m = extra["machine"]
        lines += [f"## Separate run: {_label(extra)}", "", "```sh", extra.get("command", ""), "```", ""]
        lines += _machine(m) + [""]
        lines += _sections(_items(extra), "###")
    for part in (ANALYSIS, FULLSIZE, FORMS, MEMORY_GUARD):
        if part.exists():
            lines += [part.read_text().rstrip(), ""]
    return "\n".join(lines)


def render_file(results: Path, md: Path, merge: list[Path] | None = None) -> None:
    doc = json.loads(Path(results).read_text())
    merged = [json.loads(Path(m).read_text()) for m in (merge or [])]
    cmd = (f"python3 -m benchmarks report --results {_rel(results)}"
           + "".join(f" --merge {_rel(m)}" for m in (merge or [])))
    md.write_text(render(doc, merged, cmd))


def _rel(p: Path) -> str:
    try:
        return str(Path(p).resolve().relative_to(REPO))
    except ValueError:
        return str(p)
