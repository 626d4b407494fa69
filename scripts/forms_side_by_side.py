#!/usr/bin/env python3
"""The tiny forms of one model side by side, through the exporter's own scheduled-benchmark path.

Builds (offline, ``wan_exporter.tiny_forms``) the official Wan2.2 T2V-A14B layout and ComfyUI fp16,
fp8-scaled and GGUF Q8_0 files of the same DiT weights, configures them as four models of which three
``compare_to`` the official one (the bf16 run), runs each once through ``BenchmarkSubsystem.run_one``
(a spawned benchmark child, as the scheduler does) and writes what /metrics then serves:
``--out DIR`` gets ``forms.json`` (the raw figures and the exposition lines) and ``forms.md`` (a table).

    PYTHONPATH=$PWD/exporter python3 scripts/forms_side_by_side.py --out /tmp/forms [--device cuda:0]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

KIND = "tiny-wan2.2-t2v-a14b"
MODELS = ("official", "fp16", "fp8", "q8")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--frames", type=int, default=9)
    ap.add_argument("--steps", type=int, default=4)
    args = ap.parse_args()

    from prometheus_client import generate_latest

    from wan_exporter import tiny, tiny_forms
    from wan_exporter.app import App
    from wan_exporter.config import parse_config

    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="wan-forms-") as tmp:
        d = Path(tmp)
        t0 = time.perf_counter()
        official = tiny_forms.official_layout(d / "Wan2.2-T2V-A14B")
        files = {"fp16": tiny_forms.single_files(d / "fp16", "fp16"),
                 "fp8": tiny_forms.single_files(d / "fp8", "fp8_scaled"),
                 "q8": tiny_forms.gguf_files(d / "q8")}
        base = tiny.build(KIND, d / KIND)
        built = time.perf_counter() - t0
        common = f"device: {args.device}, dtype: bfloat16, profiles: [p]"
        lines = [f"  - {{name: official, kind: {KIND}, path: '{official}', {common}}}"]
        for name, fs in files.items():
            lines.append(f"  - {{name: {name}, kind: {KIND}, path: {json.dumps([str(f) for f in fs])}, "
                         f"base: '{base}', compare_to: official, {common}}}")
        app = App(parse_config("models:\n" + "\n".join(lines) + f"""
profiles:
  p: {{width: {args.size}, height: {args.size}, frames: {args.frames}, steps: {args.steps}, timeout: 10m}}
exporter: {{state_dir: '{d / "state"}'}}
"""))
        bench = next(s for s in app.subsystems if type(s).__name__ == "BenchmarkSubsystem")
        cfg = app.config()
        results = {}
        for name in MODELS:
            r = bench.run_one(cfg, cfg.model(name), "p")
            results[name] = {k: getattr(r, k) for k in ("success", "reason", "detail", "seconds_per_step",
                                                        "duration_seconds", "peak_memory_bytes", "peak_memory_kind",
                                                        "form", "weight_format", "compute_dtype", "compared_with",
                                                        "output_max_abs_difference", "output_psnr_decibels")}
            results[name]["phases"] = dict(r.phases)
            print(name, json.dumps(results[name]), file=sys.stderr, flush=True)
        exposition = [ln for ln in generate_latest(app.registry).decode().splitlines()
                      if ln.startswith(("wan_benchmark_run_info", "wan_benchmark_output_", "wan_benchmark_comparison",
                                        "wan_generation_seconds_per_step", "wan_generation_peak_memory_bytes"))]
    import diffusers
    import torch

    doc = {"device": args.device, "machine": platform.node(), "python": platform.python_version(),
           "torch": torch.__version__, "diffusers": diffusers.__version__, "build_seconds": built,
           "profile": {"width": args.size, "height": args.size, "frames": args.frames, "steps": args.steps},
           "results": results, "exposition": exposition}
    (args.out / "forms.json").write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    rows = ["| model | form | weight_format | compute dtype | s/step | peak memory | max abs difference vs official "
            "| PSNR vs official |", "|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        mad, psnr = r["output_max_abs_difference"], r["output_psnr_decibels"]
        rows.append(f"| {name} | {r['form']} | {r['weight_format']} | {r['compute_dtype']} | "
                    f"{r['seconds_per_step']:.4f} | {r['peak_memory_bytes'] / 2**20:,.0f} MiB ({r['peak_memory_kind']}) | "
                    f"{'—' if mad is None else f'{mad:.4f}'} | {'—' if psnr is None else f'{psnr:.1f} dB'} |"
                    if r["success"] else f"| {name} | failed: {r['reason']} {r['detail'][:80]} |")
    (args.out / "forms.md").write_text("\n".join(rows) + "\n")
    print("\n".join(rows))
    return 0 if all(r["success"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
