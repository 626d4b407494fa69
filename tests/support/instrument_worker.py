"""A serving worker for the instrument tests, run as its own process.

``python -m support.instrument_worker serve KIND N``: build the tiny pipeline of KIND,
instrument it on the default registry (prometheus_client's multiprocess mode when
``PROMETHEUS_MULTIPROC_DIR`` is set) and generate N requests.

``python -m support.instrument_worker oom KIND``: generate once, then cap this process's
address space (RLIMIT_AS) just above what it holds and ask for a 512x512 video, which does
not fit: torch's CPU allocator raises a real out-of-memory error from inside the pipeline.
oneDNN is switched off first because its own allocator reports a failed allocation as
"could not create a primitive", which names no memory at all; torch's native kernels
allocate through torch's allocator. Prints one JSON line with what the caller saw and the
request counts.
"""

from __future__ import annotations

import json
import os
import resource
import sys


def _pipe(kind: str):
    from wan_exporter import tiny

    pipe = tiny.make_pipeline(kind)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _address_space() -> int:
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def serve(kind: str, n: int) -> None:
    from wan_exporter.instrument import instrument

    pipe = instrument(_pipe(kind), model="tiny")
    for _ in range(n):
        pipe(prompt="a cat walks", height=32, width=32, num_frames=5, num_inference_steps=2, output_type="np")
    print(json.dumps({"pid": os.getpid(), "requests": n}), flush=True)


def oom(kind: str) -> None:
    import torch
    from prometheus_client import CollectorRegistry

    from wan_exporter.instrument import instrument

    torch.backends.mkldnn.enabled = False
    registry = CollectorRegistry()
    pipe = instrument(_pipe(kind), model="tiny", registry=registry)
    pipe(prompt="a cat walks", height=32, width=32, num_frames=5, num_inference_steps=1, output_type="np")
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (_address_space() + (32 << 20), hard))
    seen = {}
    try:
        pipe(prompt="a cat walks", height=512, width=512, num_frames=9, num_inference_steps=2, output_type="np")
    except BaseException as exc:  # noqa: BLE001 - reported to the test
        seen = {"type": type(exc).__name__, "message": str(exc)[:500]}
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    counts = {o: registry.get_sample_value("wan_requests_total", {"model": "tiny", "outcome": o})
              for o in ("ok", "oom", "error")}
    failures = {s.labels["phase"]: s.value for m in registry.collect() if m.name == "wan_request_failures"
                for s in m.samples if s.name.endswith("_total") and s.labels.get("outcome") == "oom"}
    print(json.dumps({"raised": seen, "requests": counts, "oom_phases": failures}), flush=True)


if __name__ == "__main__":
    mode, kind, *rest = sys.argv[1:]
    if mode == "serve":
        serve(kind, int(rest[0]))
    elif mode == "oom":
        oom(kind)
    else:
        raise SystemExit(f"unknown mode {mode!r}")
