#!/usr/bin/env python3
"""Generate the Python stubs of the kubelet pod-resources API v1 from its published proto.

    python3 scripts/gen_podresources.py           # rewrite exporter/wan_exporter/kube/podresources_v1_pb2*.py
    python3 scripts/gen_podresources.py --check   # exit 1 when the committed stubs differ

The proto is k8s.io/kubelet's pkg/apis/podresources/v1/api.proto (module k8s.io/kubelet v0.37.2,
from the Go module proxy), committed unchanged as exporter/wan_exporter/kube/podresources_v1.proto.
The stubs are committed so the exporter needs only grpcio and protobuf at run time; generating
them needs grpcio-tools (a test dependency). tests/test_kube_podresources.py runs --check.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PKG = "wan_exporter/kube"
PROTO = f"{PKG}/podresources_v1.proto"
OUTPUTS = ("podresources_v1_pb2.py", "podresources_v1_pb2_grpc.py")


def generate(out: Path) -> None:
    from grpc_tools import protoc

    rc = protoc.main(["protoc", f"-I{REPO / 'exporter'}", f"--python_out={out}", f"--grpc_python_out={out}",
                      str(REPO / "exporter" / PROTO)])
    if rc != 0:
        raise SystemExit(f"protoc failed ({rc}) on {PROTO}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        stale = []
        for name in OUTPUTS:
            new = (Path(tmp) / PKG / name).read_text(encoding="utf-8")
            dest = REPO / "exporter" / PKG / name
            if args.check:
                if not dest.is_file() or dest.read_text(encoding="utf-8") != new:
                    stale.append(str(dest.relative_to(REPO)))
            else:
                dest.write_text(new, encoding="utf-8")
    if stale:
        print("stale (run python3 scripts/gen_podresources.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
