"""``python3 -m benchmarks run --out bench-results/``: every item of issue 9, then BENCHMARKS.md.

    python3 -m benchmarks run --out bench-results/            # the full suite (about 15 minutes)
    python3 -m benchmarks run --quick --out /tmp/b --no-md     # a tiny smoke run (under a minute)
    python3 -m benchmarks run --only 1,7                       # some items
    python3 -m benchmarks report --out bench-results/          # re-render BENCHMARKS.md from results.json
    python3 -m benchmarks report --results benchmarks/runs/cpu-main.json --merge benchmarks/runs/...  # as committed
    python3 -m benchmarks run --exporter-src /tmp/patched/exporter   # measure a patched exporter tree

Keep this module's imports light: benchmark children are spawned and re-import it.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

ITEMS = {
    "1": ("item_scrape", "Scrape cost"),
    "1c": ("item_scrape:run_during", "Scrape cost while a benchmark runs"),
    "1s": ("item_slow_clients", "Scrapes while slow clients hold connections"),
    "2": ("item_footprint", "Footprint"),
    "3": ("item_overhead", "Instrumentation overhead"),
    "T": ("item_traffic", "Traffic instrumentation overhead"),
    "4": ("item_hashing", "Integrity hashing and cheap checks"),
    "5": ("item_detection", "Detection latency"),
    "6": ("item_startup", "Startup"),
    "7": ("item_scale", "Scale"),
    "7c": ("item_cap", "Scale at the cap"),
    "H": ("item_header", "A header at safetensors' size limit"),
    "G": ("item_gpu", "On an NVIDIA GPU"),
    "P": ("item_profile", "Profiles"),
}


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python3 -m benchmarks", description="wan-exporter performance suite")
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run the suite and write results.json (+ BENCHMARKS.md)")
    r.add_argument("--out", type=Path, default=Path("bench-results"), help="results folder (default bench-results/)")
    r.add_argument("--quick", action="store_true", help="tiny mode: few iterations, small files (smoke test)")
    r.add_argument("--only", default="", help="comma-separated item numbers, e.g. 1,4")
    r.add_argument("--md", type=Path, default=None, help="where to write the report (default BENCHMARKS.md in the repo; "
                                                            "with --quick: <out>/BENCHMARKS.md)")
    r.add_argument("--no-md", action="store_true", help="do not write the Markdown report")
    r.add_argument("--tiny-dir", type=Path, default=None,
                   help="built tiny models (default: the exporter's cache, built on first use)")
    r.add_argument("--exporter-src", type=Path, default=None,
                   help="an exporter/ source tree to measure instead of this checkout's (e.g. with a proposed patch)")
    r.add_argument("--no-profile", action="store_true", help="no py-spy sampling in item P")
    r.add_argument("--devices", default="cpu", help="devices for items 3 and T, comma-separated (e.g. cpu,cuda:0)")
    r.add_argument("--pairs", type=int, default=None, help="item 3: runner/direct pairs per size (default 7 CPU, 5 GPU)")
    r.add_argument("--keep", action="store_true", help="keep the scratch folder")
    r.add_argument("--label", default="", help="what this run is, shown when merged into another's report "
                                                "(e.g. 'with the proposed patches')")
    rep = sub.add_parser("report", help="re-render the Markdown report from <out>/results.json")
    rep.add_argument("--out", type=Path, default=Path("bench-results"))
    rep.add_argument("--results", type=Path, default=None, help="the main run's results.json (default <out>/results.json)")
    rep.add_argument("--md", type=Path, default=None)
    rep.add_argument("--merge", type=Path, action="append", default=[],
                     help="another run's results.json (e.g. from a GPU machine), shown in its own section")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.cmd == "report":
        from . import report

        md = args.md or report.default_md_path()
        report.render_file(args.results or args.out / "results.json", md, merge=args.merge)
        print(f"wrote {md}")
        return 0
    return run(args)


def run(args: argparse.Namespace) -> int:
    if args.exporter_src is not None:  # before anything imports wan_exporter
        src = str(args.exporter_src.resolve())
        os.environ["WAN_BENCH_EXPORTER_SRC"] = src
    from . import common, report

    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="wan-bench-"))
    log_file = open(out / "run.log", "w")

    def log(msg: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {msg}"
        print(line, flush=True)
        log_file.write(line + "\n")
        log_file.flush()

    ctx = common.Context(out=out, work=work, quick=args.quick, log=log, keep=args.keep, profile=not args.no_profile,
                         devices=[d.strip() for d in args.devices.split(",") if d.strip()], pairs=args.pairs)
    wanted = [s.strip() for s in args.only.split(",") if s.strip()] or list(ITEMS)
    unknown = [w for w in wanted if w not in ITEMS]
    if unknown:
        print(f"unknown item(s): {', '.join(unknown)}; known: {', '.join(ITEMS)}", file=sys.stderr)
        return 2
    command = "python3 -m benchmarks run" + (" --quick" if args.quick else "") + (
        f" --only {args.only}" if args.only else "") + (
        f" --devices {args.devices}" if args.devices != "cpu" else "") + f" --out {args.out}"
    if args.exporter_src is not None:
        command += f" --exporter-src {args.exporter_src}"
    doc = {"machine": common.machine(), "command": command, "quick": args.quick, "items": {},
           "exporter_src": str(common.EXPORTER_SRC), "label": args.label}
    t_all = time.perf_counter()
    try:
        ctx.tiny_dir = common.tiny_models(ctx, args.tiny_dir)
        for key in wanted:
            mod_name, title = ITEMS[key]
            log(f"item {key}: {title}")
            t0 = time.perf_counter()
            try:
                mod_name, _, fn = mod_name.partition(":")
                mod = importlib.import_module(f"benchmarks.{mod_name}")
                res = getattr(mod, fn or "run")(ctx)
            except Exception as e:  # noqa: BLE001 - one broken item is reported, the others still run
                log(f"item {key} failed: {e!r}")
                (out / f"item{key}-error.txt").write_text(traceback.format_exc())
                res = common.ItemResult(key, title, skipped=f"failed: {e!r} (traceback in item{key}-error.txt)")
            res.seconds = time.perf_counter() - t0
            doc["items"][key] = res.to_json()
            common.write_json(out / "results.json", doc)
            for row in res.rows:
                log("  " + report.row_line(row))
            if res.skipped:
                log(f"  skipped: {res.skipped}")
        doc["seconds"] = time.perf_counter() - t_all
        doc["machine"]["loadavg_at_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
        common.write_json(out / "results.json", doc)
        if not args.no_md:
            md = args.md or (out / "BENCHMARKS.md" if args.quick else report.default_md_path())
            report.render_file(out / "results.json", md)
            log(f"wrote {md}")
        log(f"done in {doc['seconds']:.0f}s; results in {out / 'results.json'}")
    finally:
        log_file.close()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"scratch kept in {work}")
    failed = [k for k, v in doc["items"].items() if v.get("skipped", "").startswith("failed")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
