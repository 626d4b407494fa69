#!/usr/bin/env python3
"""Compare the exporter's NVML readings with nvidia-smi, field by field, on a real GPU.

    PYTHONPATH=exporter python3 scripts/gpu_verify.py [--json OUT]

Exit 0 when every field agrees within its tolerance (live figures such as power and
utilisation move between the two reads, so they get a tolerance), 1 otherwise.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import subprocess
import sys

from wan_exporter.nvml import NvmlReader

MIB = 1 << 20
# (nvidia-smi field, reading attribute, scale to our unit, absolute tolerance)
FIELDS = [
    ("uuid", "uuid", None, None),
    ("name", "name", None, None),
    ("driver_version", "driver_version", None, None),
    ("compute_cap", "compute_capability", None, None),
    ("memory.total", "memory_total_bytes", MIB, MIB),
    ("memory.used", "memory_used_bytes", MIB, 64 * MIB),
    ("utilization.gpu", "utilization_ratio", 0.01, 0.10),
    ("utilization.memory", "memory_utilization_ratio", 0.01, 0.10),
    ("temperature.gpu", "temperature_celsius", 1, 3),
    ("power.draw", "power_watts", 1, 30),
    ("enforced.power.limit", "power_limit_watts", 1, 1),
    ("clocks.sm", "sm_clock_hertz", 1e6, 300e6),
    ("ecc.errors.corrected.volatile.total", None, 1, 0),
    ("ecc.errors.uncorrected.volatile.total", None, 1, 0),
]


def smi() -> list[dict[str, str]]:
    q = ",".join(f for f, *_ in FIELDS)
    out = subprocess.run(["nvidia-smi", f"--query-gpu=index,{q}", "--format=csv,noheader,nounits"],
                         capture_output=True, text=True, check=True, timeout=30).stdout
    rows = []
    for rec in csv.reader(io.StringIO(out)):
        rec = [x.strip() for x in rec]
        rows.append(dict(zip(["index"] + [f for f, *_ in FIELDS], rec)))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="also write the comparison as JSON here")
    args = ap.parse_args()
    gpus, _ = NvmlReader(timeout=5).read()
    rows = smi()
    report, ok = [], True
    for g, row in zip(gpus, rows):
        for field, attr, scale, tol in FIELDS:
            ref_raw = row.get(field, "")
            if attr is None:
                etype = "corrected" if ".corrected." in field else "uncorrected"
                ours = g.ecc_errors.get((etype, "volatile"))
            else:
                ours = getattr(g, attr)
            if scale is None:
                agree = str(ours) == ref_raw
                ref = ref_raw
            else:
                try:
                    ref = float(ref_raw) * scale
                except ValueError:
                    ref = None  # "[N/A]" or "[Not Supported]"
                agree = (ours is None and ref is None) or (ours is not None and ref is not None and abs(ours - ref) <= tol)
            ok &= agree
            report.append({"gpu": g.index, "field": field, "exporter": ours, "nvidia_smi": ref, "agree": agree})
    if len(gpus) != len(rows):
        ok = False
        report.append({"field": "gpu count", "exporter": len(gpus), "nvidia_smi": len(rows), "agree": False})
    w = max(len(r["field"]) for r in report)
    for r in report:
        print(f"gpu {r.get('gpu', '-')}  {r['field']:<{w}}  exporter={r['exporter']!s:<22} nvidia-smi={r['nvidia_smi']!s:<22} "
              f"{'ok' if r['agree'] else 'DIFFERS'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1, default=str)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
