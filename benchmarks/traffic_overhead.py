"""The measuring side of item T: an instrumented pipeline against the raw one, in one process.

``python3 -m benchmarks.traffic_overhead MODEL_DIR DEVICE W H FRAMES STEPS N`` loads the tiny
pipeline twice with the benchmark child's loader (same weights, dtype, device), instruments
one with :func:`wan_exporter.instrument.instrument` on its own registry and leaves the other
bare, then alternates calls (raw first on even calls, instrumented first on odd ones), each
timed with ``perf_counter`` after a device synchronisation. It then times the per-step work
the instrumentation adds (the step callback and its clock) and the per-request bookkeeping
(opening and recording a request), each alone in a loop. Prints one JSON line.
"""

from __future__ import annotations

import json
import sys
import time


def main(argv: list[str]) -> int:
    model_dir, device = argv[0], argv[1]
    w, h, frames, steps, n = (int(x) for x in argv[2:7])
    from wan_exporter.measure import phases as measure
    from wan_exporter.load import pipeline
    from wan_exporter.measure import sanity
    from wan_exporter.bench.request import normalise_request

    pipeline.offline_env()
    import torch
    from prometheus_client import CollectorRegistry

    from wan_exporter.instrument import instrument, track

    req = normalise_request({"model_dir": model_dir, "pipeline": "WanPipeline", "device": device, "dtype": "float32"})

    def load():
        pipe = pipeline.load_pipeline(req)
        pipeline.place(pipe, req)
        return pipe

    raw, inst = load(), load()
    registry = CollectorRegistry()
    instrument(inst, model="bench", registry=registry)

    def sync() -> None:
        measure.sync(torch, device)

    def once(pipe) -> tuple[float, str]:
        kw = dict(prompt="A cat walks on the grass, realistic style.", height=h, width=w, num_frames=frames,
                  num_inference_steps=steps, guidance_scale=4.0, output_type="np",
                  generator=torch.Generator("cpu").manual_seed(7))
        sync()
        t0 = time.perf_counter()
        out = pipe(**kw)
        sync()
        return time.perf_counter() - t0, sanity.digest(out.frames[0])

    once(raw), once(inst)  # first calls carry one-off costs on both sides
    raw_s, inst_s, digests = [], [], set()
    for i in range(n):
        order = (raw, inst) if i % 2 == 0 else (inst, raw)
        for pipe in order:
            dt, digest = once(pipe)
            (raw_s if pipe is raw else inst_s).append(dt)
            digests.add(digest)
    counted = registry.get_sample_value("wan_requests_total", {"model": "bench", "outcome": "ok"})

    # Per step: the instrumentation's callback work alone (clock, expert lookup), on the real pipeline.
    from wan_exporter.instrument.wrap import _chained

    run = measure.Run(torch=torch, device=device, steps=10**9, step_times=True)
    run.denoise_begins(time.perf_counter())
    callback = _chained(run, None)  # what the pipeline calls after each step
    t = inst.scheduler.timesteps[0] if len(inst.scheduler.timesteps) else torch.tensor(0)
    loops, kwargs = 20000, {}
    t0 = time.perf_counter()
    for i in range(loops):
        callback(inst, i % max(steps, 1), t, kwargs)
    step_us = (time.perf_counter() - t0) / loops * 1e6
    t0 = time.perf_counter()
    run.step_durations()
    resolve_us = (time.perf_counter() - t0) / loops * 1e6

    # Per request: open, classify and record one request (no pipeline work inside).
    loops = 5000
    t0 = time.perf_counter()
    for _ in range(loops):
        with track.request(model="bench-empty", registry=registry) as r:
            r.output(frames=frames, width=w, height=h, fps=16)
    request_us = (time.perf_counter() - t0) / loops * 1e6

    print(json.dumps({"raw": raw_s, "instrumented": inst_s, "digests": len(digests), "counted": counted,
                      "expected_count": n + 1, "step_us": step_us, "step_resolve_us": resolve_us,
                      "request_us": request_us, "torch_threads": torch.get_num_threads()}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
