#!/usr/bin/env python3
"""Copy the repository's rules and dashboards into the Helm chart: one source, alerting/ and grafana/.

    python3 deploy/helm/generate.py           # rewrite deploy/helm/wan-exporter/files/
    python3 deploy/helm/generate.py --check   # exit 1 when the committed copies are stale

- files/rules/<name>.rules.yml: alerting/rules/*.rules.yml byte for byte (the chart's
  PrometheusRules take their groups from them),
- files/dashboards/<name>.json: grafana/dashboards/*.json byte for byte (one ConfigMap each,
  labelled for Grafana's dashboard sidecar).

Helm reads only files inside the chart, so the copies are committed; tests/test_deploy_helm.py
runs --check, so a rule or dashboard change without `python3 deploy/helm/generate.py` is caught.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CHART = HERE / "wan-exporter"
OUT = CHART / "files"
# A ConfigMap holds at most 1 MiB (and client-side apply copies it into a 256 KiB annotation).
CONFIGMAP_MAX_BYTES = 1 << 20


def render(repo: Path = REPO) -> dict[str, bytes]:
    """Path under files/ -> content."""
    out: dict[str, bytes] = {}
    for src in sorted((repo / "alerting" / "rules").glob("*.rules.yml")):
        out[f"rules/{src.name}"] = src.read_bytes()
    for src in sorted((repo / "grafana" / "dashboards").glob("*.json")):
        data = src.read_bytes()
        if len(data) > CONFIGMAP_MAX_BYTES:
            raise SystemExit(f"{src}: {len(data)} bytes, more than a ConfigMap holds (1 MiB)")
        out[f"dashboards/{src.name}"] = data
    return out


def stale(rendered: dict[str, bytes], out_dir: Path = OUT) -> list[str]:
    problems = []
    present = {p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*") if p.is_file()} if out_dir.is_dir() else set()
    for name, data in rendered.items():
        path = out_dir / name
        if not path.is_file():
            problems.append(f"{name}: missing")
        elif path.read_bytes() != data:
            problems.append(f"{name}: differs from its source")
    for name in sorted(present - set(rendered)):
        problems.append(f"{name}: stale (its source is gone)")
    return problems


def write(rendered: dict[str, bytes], out_dir: Path = OUT) -> None:
    for p in out_dir.rglob("*") if out_dir.is_dir() else ():
        if p.is_file() and p.relative_to(out_dir).as_posix() not in rendered:
            p.unlink()
    for name, data in rendered.items():
        (out_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (out_dir / name).write_bytes(data)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 when deploy/helm/wan-exporter/files/ is stale")
    args = ap.parse_args(argv)
    rendered = render()
    if args.check:
        problems = stale(rendered)
        for p in problems:
            print(p, file=sys.stderr)
        if problems:
            print("deploy/helm/wan-exporter/files/ is stale: run python3 deploy/helm/generate.py", file=sys.stderr)
            return 1
        return 0
    write(rendered)
    print(f"wrote {len(rendered)} files to {OUT.relative_to(REPO)}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
