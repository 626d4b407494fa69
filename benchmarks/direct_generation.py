"""The reference for item 3: the same diffusers pipeline, called directly, same inputs, no instrumentation.

``python3 -m benchmarks.direct_generation REQUEST.json`` prints one JSON line (two generations:
the first and a warm one); with ``--serve`` it stays up and generates once per ``gen`` line on
stdin, answering one JSON line each. The pipeline is
loaded exactly as the benchmark child loads it (:func:`wan_exporter.load.pipeline.load_pipeline`
and :func:`~wan_exporter.load.pipeline.place`: same weights, dtypes and device; loading is
outside both measured figures), then ``pipe(...)`` is called with the child's inputs
(prompt, size, frames, steps, guidance, seed, ``output_type="np"``) and nothing else: no
wrapped methods, no step callback, no progress messages. Each call is timed with
``perf_counter`` after a device synchronisation, as the child times its own.
"""

from __future__ import annotations

import json
import sys
import time


def main(argv: list[str]) -> int:
    t_start = time.perf_counter()
    serve = "--serve" in argv
    request = json.loads(open([a for a in argv if a != "--serve"][0]).read())
    from wan_exporter.load import pipeline
    from wan_exporter.measure import sanity
    from wan_exporter.bench.request import normalise_request
    from wan_exporter.childproc import keep_heap

    if serve:  # as the keep-warm worker does: both sides keep their heap, so neither faults it in per call
        keep_heap()
    pipeline.offline_env()
    req = normalise_request(request)
    t0 = time.perf_counter()
    import torch

    import_s = time.perf_counter() - t0
    device = str(req["device"])

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize(device)

    t0 = time.perf_counter()
    pipe = pipeline.load_pipeline(req)
    pipeline.place(pipe, req)
    sync()
    load_s = time.perf_counter() - t0

    def kwargs() -> dict:
        kw = dict(prompt=req["prompt"], negative_prompt=req["negative_prompt"], height=int(req["height"]),
                  width=int(req["width"]), num_frames=int(req["frames"]), num_inference_steps=int(req["steps"]),
                  guidance_scale=float(req["guidance_scale"]),
                  generator=torch.Generator("cpu").manual_seed(int(req["seed"])),
                  output_type="np", max_sequence_length=int(req["max_sequence_length"]))
        if req["guidance_scale_2"] is not None:
            kw["guidance_scale_2"] = float(req["guidance_scale_2"])
        return kw

    def once() -> tuple[float, str]:
        kw = kwargs()
        sync()
        t0 = time.perf_counter()
        out = pipe(**kw)
        sync()
        dt = time.perf_counter() - t0
        return dt, sanity.digest(out.frames[0])

    if serve:
        # One generation per "gen" line on stdin, one JSON line back; "quit" (or EOF) ends.
        print(json.dumps({"ready": True, "import_seconds": import_s, "load_seconds": load_s,
                          "process_seconds": time.perf_counter() - t_start}), flush=True)
        for line in sys.stdin:
            if line.strip() != "gen":
                break
            dt, digest = once()
            print(json.dumps({"seconds": dt, "digest": digest}), flush=True)
        return 0
    (first, digest), (warm, digest_warm) = once(), once()
    print(json.dumps({"import_seconds": import_s, "load_seconds": load_s, "first_seconds": first,
                      "warm_seconds": warm, "digest": digest, "digest_warm": digest_warm,
                      "process_seconds": time.perf_counter() - t_start}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
