#!/usr/bin/env python3
"""A small HTTP service serving a Wan pipeline through ``wan_exporter.instrument``.

    python3 examples/serve/server.py                       # tiny Wan 2.1 T2V on the CPU, port 9836
    curl -s -XPOST localhost:9836/generate -d '{"prompt": "a cat", "width": 32, "height": 32}'
    curl -s localhost:9836/metrics | grep wan_request

The pipeline is a tiny, randomly initialised one built offline by ``wan_exporter.tiny`` (or a
saved pipeline directory with ``--model-dir``): the point is the serving shape, not the video.
Requests wait in line for the one pipeline (one generation per device at a time, so CUDA peak
memory per request is known), and the wait is reported as queue wait. Standard library only,
besides the exporter's own dependencies (torch, diffusers, prometheus-client).

Endpoints: ``POST /generate`` (JSON: prompt, width, height, frames, steps; 200 with what was
generated, 400 for bad input, 500 for a failure), ``GET /metrics``, ``GET /healthz``.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, exposition

_CHECKOUT = Path(__file__).resolve().parents[2] / "exporter"
if (_CHECKOUT / "wan_exporter").is_dir() and str(_CHECKOUT) not in sys.path:  # run from a checkout
    sys.path.insert(0, str(_CHECKOUT))

from wan_exporter.instrument import classify, instrument, track  # noqa: E402

DEFAULT_PORT = 9836
DEFAULT_KIND = "tiny-wan2.1-t2v"
LIMITS = {"width": 1280, "height": 1280, "frames": 121, "steps": 50}  # what this service accepts at all


def load(kind: str, model_dir: str | None) -> Any:
    if model_dir:
        from diffusers import DiffusionPipeline

        return DiffusionPipeline.from_pretrained(model_dir)
    from wan_exporter.tiny import make_pipeline

    return make_pipeline(kind)


class Service:
    """One instrumented pipeline behind a lock: requests queue for it in arrival order."""

    def __init__(self, pipe: Any, model: str, registry: CollectorRegistry) -> None:
        self.model, self.registry = model, registry
        self.pipe = instrument(pipe, model=model, registry=registry)
        self._gpu = threading.Lock()

    def generate(self, body: dict[str, Any]) -> dict[str, Any]:
        enqueued = time.time()
        args = {
            "prompt": str(body.get("prompt", "")),
            "width": int(body.get("width", 32)),
            "height": int(body.get("height", 32)),
            "num_frames": int(body.get("frames", 5)),
            "num_inference_steps": int(body.get("steps", 2)),
        }
        with self._gpu, track.request(model=self.model, enqueued_at=enqueued, registry=self.registry):
            out = self.pipe(**args, output_type="np")
        frames = out.frames[0]
        return {"model": self.model, "frames": int(len(frames)), "width": args["width"], "height": args["height"],
                "seconds": round(time.time() - enqueued, 3)}


def handler(service: Service) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, code: int, doc: dict) -> None:
            self._send(code, json.dumps(doc).encode() + b"\n")

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if self.path == "/metrics":
                self._send(200, exposition.generate_latest(service.registry), exposition.CONTENT_TYPE_LATEST)
            elif self.path in ("/healthz", "/"):
                self._json(200, {"model": service.model, "status": "ok"})
            else:
                self._json(404, {"error": f"no such path {self.path}"})

        def do_POST(self) -> None:  # noqa: N802
            if self.path != "/generate":
                self._json(404, {"error": f"no such path {self.path}"})
                return
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                if not isinstance(body, dict):
                    raise ValueError("the body must be a JSON object")
                too_big = [k for k, v in LIMITS.items() if int(body.get(k, 0)) > v]
                if too_big:
                    raise ValueError("over this service's limits: " + ", ".join(f"{k} <= {LIMITS[k]}" for k in too_big))
            except (ValueError, TypeError) as e:  # rejected before any generation: not a request of the model
                self._json(400, {"error": str(e)})
                return
            try:
                self._json(200, service.generate(body))
            except Exception as e:  # noqa: BLE001 - the outcome is counted by instrument; the client gets why
                outcome = classify(e, None)  # the status code only; instrument counted the real outcome
                self._json(400 if outcome == "invalid_input" else 500, {"error": str(e), "outcome": outcome})

        def log_message(self, fmt: str, *args: object) -> None:
            sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))

    return Handler


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--web.listen-address", dest="listen", default=f"127.0.0.1:{DEFAULT_PORT}",
                   help=f"host:port to serve on (default 127.0.0.1:{DEFAULT_PORT})")
    p.add_argument("--kind", default=DEFAULT_KIND, help=f"tiny pipeline to build in memory (default {DEFAULT_KIND})")
    p.add_argument("--model-dir", help="a saved diffusers Wan pipeline to load instead (from_pretrained, offline)")
    p.add_argument("--model", default="tiny-t2v", help="the model label of the metrics (default tiny-t2v)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    import torch

    torch.set_num_threads(max(1, a.threads))
    host, _, port = a.listen.rpartition(":")
    service = Service(load(a.kind, a.model_dir), a.model, CollectorRegistry(auto_describe=True))
    server = ThreadingHTTPServer((host or "127.0.0.1", int(port)), handler(service))
    server.daemon_threads = True
    print(f"serving {a.model} ({a.model_dir or a.kind}) on http://{a.listen}  (POST /generate, GET /metrics)",
          flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
