"""The memory guard's prediction error: its estimate against the measured peak of every run.

    PYTHONPATH=exporter python3 -m benchmarks.memory_guard --tiny-dir DIR --out benchmarks/runs/memory-guard-cpu.json

Runs every tiny kind on this CPU through the exporter's runner (a spawned benchmark child,
its peak RSS measured) at two sizes, with the estimate the exporter makes before the child
starts (``bench.memory.estimate`` from the checkpoint facts it reads), and adds the
full-size H200 runs of ``benchmarks/runs/h200-fullsize.json`` (CUDA peak, parameter counts
from that file). Prints the Markdown table for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from types import SimpleNamespace

from wan_exporter import catalog
from wan_exporter.bench import memory
from wan_exporter.bench.runner import run_once
from wan_exporter.config import parse_config

ROOT = Path(__file__).resolve().parents[1]
SIZES = ((32, 32, 9), (256, 256, 33))


def tiny_rows(tiny_dir: Path) -> list[dict]:
    rows = []
    for kind in catalog.TINY_KEYS:
        path = tiny_dir / kind
        if not path.is_dir():
            continue
        image = catalog.get(kind).task in ("i2v", "ti2v")
        for w, h, f in SIZES:
            cfg = parse_config(
                f"models:\n  - {{name: m, kind: {kind}, path: '{path}', device: cpu, dtype: float32, profiles: [p]}}\n"
                f"profiles:\n  p: {{width: {w}, height: {h}, frames: {f}, steps: 2, image: {str(image).lower()}, "
                f"timeout: 10m}}\nbenchmark: {{kill_grace: 2s}}\n")
            m = cfg.model("m")
            est = memory.estimate(m, cfg.profiles["p"], memory.facts_on_disk(cfg, m), memory.host_memory())
            result, _ = run_once(cfg, m, "p", path, estimate=est)
            print(f"{kind} {w}x{h}x{f}: success={result.success} measured={result.peak_memory_bytes} "
                  f"estimated={est.bytes}", file=sys.stderr)
            rows.append(dict(run=f"{kind} (CPU, float32)", size=f"{w}x{h}x{f}", kind=result.peak_memory_kind,
                             measured=result.peak_memory_bytes, estimated=est.bytes, weights=est.weights_bytes,
                             activations=est.activations_bytes, vae=est.vae_decode_bytes, runtime=est.runtime_bytes,
                             success=result.success))
    return rows


def h200_rows() -> list[dict]:
    d = json.loads((ROOT / "benchmarks" / "runs" / "h200-fullsize.json").read_text())
    rows = []
    for r in d["runs"]:
        entry = catalog.get(r["kind"])
        facts = SimpleNamespace(parameters_by_component={k: v for k, v in d["parameters"][r["kind"]].items() if v},
                                transformer_config=entry.architecture, vae_compression=entry.vae_compression)
        m = SimpleNamespace(kind=r["kind"], device=r["device"], dtype="bfloat16", offload="none")
        est = memory.estimate(m, SimpleNamespace(width=r["width"], height=r["height"], frames=r["frames"]), facts)
        rows.append(dict(run=f"{r['kind']} (NVIDIA H200, bfloat16, h200-fullsize.json)",
                         size=f"{r['width']}x{r['height']}x{r['frames']}", kind=r["peak_memory_kind"],
                         measured=r["peak_memory_bytes"], estimated=est.bytes, weights=est.weights_bytes,
                         activations=est.activations_bytes, vae=est.vae_decode_bytes, runtime=est.runtime_bytes,
                         success=r["success"]))
    return rows


def markdown(rows: list[dict]) -> str:
    def mib(n: int | None) -> str:
        return "—" if n is None else f"{n / 2**20:,.0f}"

    out = ["| run | size | peak counted | measured MiB | estimated MiB | weights / activations / VAE / runtime MiB "
           "| error |", "|---|---|---|---:|---:|---|---:|"]
    for r in rows:
        err = f"{r['estimated'] / r['measured'] - 1:+.0%}" if r["measured"] else "—"
        out.append(f"| {r['run']} | {r['size']} | {r['kind']} | {mib(r['measured'])} | {mib(r['estimated'])} | "
                   f"{mib(r['weights'])} / {mib(r['activations'])} / {mib(r['vae'])} / {mib(r['runtime'])} | {err} |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m benchmarks.memory_guard")
    ap.add_argument("--tiny-dir", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    args = ap.parse_args(argv)
    rows = tiny_rows(args.tiny_dir) + h200_rows()
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2, sort_keys=True) + "\n")
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
