"""On a CUDA GPU: per-request peak memory, step times from CUDA events, the CUDA out-of-memory path.

Runs only where torch sees a GPU; the same promises on the CPU are in test_instrument.py and
test_bench_child.py.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

from prometheus_client import CollectorRegistry  # noqa: E402

from wan_exporter import tiny  # noqa: E402
from wan_exporter.instrument import instrument  # noqa: E402

CALL = dict(prompt="a cat walks", height=64, width=64, num_frames=9, num_inference_steps=4, output_type="np")


def cuda_pipe(kind: str) -> Any:
    pipe = tiny.make_pipeline(kind).to("cuda:0")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_peak_memory_and_event_timed_steps_of_a_request_alone_on_its_gpu():
    reg = CollectorRegistry()
    pipe = instrument(cuda_pipe("tiny-wan2.2-t2v-a14b"), model="gpu", registry=reg)
    pipe(**CALL)
    pipe(**CALL)
    peak = reg.get_sample_value("wan_request_peak_memory_bytes", {"model": "gpu"})
    assert peak is not None and peak >= torch.cuda.memory_allocated(0) > 0
    steps = reg.get_sample_value("wan_request_step_duration_seconds_count", {"model": "gpu", "resolution": "below_480p"})
    total = reg.get_sample_value("wan_request_step_duration_seconds_sum", {"model": "gpu", "resolution": "below_480p"})
    denoise = reg.get_sample_value("wan_request_phase_duration_seconds_sum", {"model": "gpu", "phase": "denoise"})
    assert steps == 8 and 0 < total <= denoise * 1.05
    assert reg.get_sample_value("wan_request_expert_duration_seconds_count", {"model": "gpu", "expert": "low_noise"}) == 2


def test_overlapping_requests_on_one_gpu_publish_no_peak():
    reg = CollectorRegistry()
    pipes = [instrument(cuda_pipe("tiny-wan2.1-t2v"), model="overlap", registry=reg) for _ in range(2)]
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def serve(pipe: Any) -> None:
        try:
            def wait_for_the_other(p: Any, i: int, t: Any, kw: dict) -> dict:
                if i == 0:
                    barrier.wait(30)  # both requests are in their denoising loop at once
                return kw

            pipe(**CALL, callback_on_step_end=wait_for_the_other)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=serve, args=(p,)) for p in pipes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert reg.get_sample_value("wan_requests_total", {"model": "overlap", "outcome": "ok"}) == 2
    assert reg.get_sample_value("wan_request_peak_memory_bytes", {"model": "overlap"}) is None


def test_benchmark_oom_fault_is_a_real_cuda_allocation_failure(tmp_path: Path):
    from wan_exporter.bench.child import run_benchmark

    model_dir = tiny.build("tiny-wan2.1-t2v", tmp_path / "tiny-wan2.1-t2v")
    req = {"model_dir": str(model_dir), "pipeline": "WanPipeline", "device": "cuda:0", "dtype": "float32",
           "width": 32, "height": 32, "frames": 9, "steps": 2, "fault": "oom"}
    r = run_benchmark(req)
    assert (r["success"], r["reason"]) == (False, "oom"), r["detail"]
    assert "OutOfMemoryError" in r["detail"] and "injected" not in r["detail"], r["detail"]
    assert run_benchmark({**req, "fault": "none"})["success"]  # the cap was lifted
