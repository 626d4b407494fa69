"""Where item 3's steady-state gap comes from: per call, the wall time of the pipeline call and
the whole process's user and system CPU and page faults, for the keep-warm runner worker and
for the direct-call server, alternating call by call as item 3 does.

    python3 -m benchmarks.probe_steady_state [--calls 12] [--size 128x128x33x10]

Prints one JSON document: per side the medians, and per call the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from . import common
from .common import median


def proc_stat(pid: int) -> dict[str, float]:
    """utime and stime in seconds, minor and major faults, from /proc/PID/stat."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2:].split()
    tick = os.sysconf("SC_CLK_TCK")
    return {"user": int(fields[11]) / tick, "sys": int(fields[12]) / tick, "minflt": int(fields[7]),
            "majflt": int(fields[9])}


def delta(a: dict, b: dict) -> dict:
    return {k: b[k] - a[k] for k in a}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m benchmarks.probe_steady_state", description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=12)
    ap.add_argument("--size", default="128x128x33x10", help="WIDTHxHEIGHTxFRAMESxSTEPS")
    ap.add_argument("--tiny-dir", type=Path, default=None)
    args = ap.parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = "1"  # as item 3 on the CPU
    from wan_exporter.bench.runner import CHILD_TARGET, build_request, run_once
    from wan_exporter.childproc import WarmWorker
    from wan_exporter.config import parse_config
    from wan_exporter.tiny import default_cache_dir

    tiny = args.tiny_dir or default_cache_dir()
    w, h, f, s = (int(x) for x in args.size.split("x"))
    kind = "tiny-wan2.1-t2v"
    cfg = parse_config(f"""
models:
  - {{name: bench, kind: {kind}, path: "{tiny / kind}", device: cpu, dtype: float32, profiles: [p]}}
profiles:
  p: {{width: {w}, height: {h}, frames: {f}, steps: {s}, seed: 7, timeout: 10m}}
""", "<probe>")
    m = cfg.models[0]
    req_path = Path(f"/tmp/probe-steady-{os.getpid()}.json")
    req_path.write_text(json.dumps(build_request(m, cfg.profiles["p"], Path(m.path))))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(common.EXPORTER_SRC), str(common.REPO), env.get("PYTHONPATH", "")])
    direct = subprocess.Popen([sys.executable, "-m", "benchmarks.direct_generation", str(req_path), "--serve"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                              env=env, cwd=str(common.REPO))
    worker = WarmWorker(CHILD_TARGET, kill_grace=10)
    calls: dict[str, list[dict]] = {"runner": [], "direct": []}
    try:
        assert json.loads(direct.stdout.readline()).get("ready")

        def run_runner(record: bool) -> None:
            pid = worker._proc.pid if worker._proc is not None else None
            a = proc_stat(pid) if pid else None
            r, _ = run_once(cfg, m, "p", Path(m.path), warm=worker)
            if record and a is not None:
                calls["runner"].append({"seconds": r.duration_seconds, **delta(a, proc_stat(worker._proc.pid))})

        def run_direct(record: bool) -> None:
            a = proc_stat(direct.pid)
            direct.stdin.write("gen\n")
            direct.stdin.flush()
            d = json.loads(direct.stdout.readline())
            if record:
                calls["direct"].append({"seconds": d["seconds"], **delta(a, proc_stat(direct.pid))})

        run_runner(False)
        run_direct(False)
        for i in range(args.calls):
            for fn in ((run_runner, run_direct) if i % 2 == 0 else (run_direct, run_runner)):
                fn(True)
    finally:
        worker.close()
        if direct.stdin is not None:
            direct.stdin.write("quit\n")
            direct.stdin.close()
        direct.wait(30)
        req_path.unlink(missing_ok=True)
    out = {"size": args.size, "calls": args.calls, "loadavg": os.getloadavg(), "when": time.strftime("%H:%M:%S")}
    for side, rows in calls.items():
        out[side] = {k: median([r[k] for r in rows]) for k in rows[0]}
    out["ratio"] = {k: out["runner"][k] / out["direct"][k] if out["direct"][k] else None for k in out["runner"]}
    out["per_call"] = calls
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
