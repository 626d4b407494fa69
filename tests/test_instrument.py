"""wan_exporter.instrument on real tiny Wan pipelines, scraped over real HTTP.

Pipelines are the project's tiny, randomly initialised ones (wan_exporter.tiny), built in
memory; failures come through real inputs: a size that is not a multiple of 16, NaN weights,
a real out-of-memory under an address-space cap in a child process, a caller's interrupt.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from support.procs import exporter_env
from wan_exporter.contract import traffic
from wan_exporter.instrument import instrument, track

STEPS, FRAMES, SIZE = 2, 5, 32
CALL = dict(prompt="a cat walks on the grass", height=SIZE, width=SIZE, num_frames=FRAMES,
            num_inference_steps=STEPS, output_type="np")


def tiny_pipe(kind: str) -> Any:
    from wan_exporter import tiny

    pipe = tiny.make_pipeline(kind)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def call(pipe: Any, **over: Any) -> Any:
    import torch

    kw = {**CALL, "generator": torch.Generator("cpu").manual_seed(3), **over}
    return pipe(**kw)


def value(reg: CollectorRegistry, name: str, **labels: str) -> float:
    v = reg.get_sample_value(name, labels)
    return 0.0 if v is None else v


class Served:
    """A real /metrics endpoint (prometheus_client's HTTP server on loopback) for ``registry``."""

    def __init__(self, registry: Any) -> None:
        self.server, self.thread = start_http_server(0, addr="127.0.0.1", registry=registry)

    def scrape(self) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.server.server_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as r:
            text = r.read().decode()
        return {f.name: f for f in text_string_to_metric_families(text)}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def sample(families: dict[str, Any], family: str, name: str, **labels: str) -> float | None:
    for s in families[family].samples:
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    return None


@pytest.fixture(scope="module")
def a14b() -> Any:
    """One instrumented two-expert text-to-video pipeline shared by the module (own registry)."""
    reg = CollectorRegistry()
    pipe = instrument(tiny_pipe("tiny-wan2.2-t2v-a14b"), model="t2v-a14b", registry=reg, sample_outputs=1.0)
    return pipe, reg


# --------------------------------------------------------------------------- one line, real endpoint


def test_one_line_shows_every_traffic_family_with_correct_counts_on_metrics():
    reg = CollectorRegistry()
    pipe = instrument(tiny_pipe("tiny-wan2.2-t2v-a14b"), model="t2v-a14b", registry=reg, sample_outputs=1.0)
    served = Served(reg)
    try:
        for _ in range(2):
            out = call(pipe)
            assert out.frames.shape == (1, FRAMES, SIZE, SIZE, 3)
        with pytest.raises(ValueError):
            call(pipe, height=40)
        with track.request(model="t2v-a14b", enqueued_at=time.time() - 1.5, registry=reg):
            call(pipe)
        fams = served.scrape()
    finally:
        served.close()
    for fam in traffic.FAMILIES:  # every row is served, with the contract's help and type
        assert fam.name in fams, fam.name
        assert fams[fam.name].documentation == fam.help and fams[fam.name].type == fam.type, fam.name
    req = "wan_requests"
    assert sample(fams, req, "wan_requests_total", model="t2v-a14b", outcome="ok") == 3
    assert sample(fams, req, "wan_requests_total", model="t2v-a14b", outcome="invalid_input") == 1
    assert sample(fams, req, "wan_requests_total", model="t2v-a14b", outcome="oom") == 0  # exported before it happens
    assert sample(fams, "wan_request_failures", "wan_request_failures_total", model="t2v-a14b",
                  outcome="invalid_input", phase="other") == 1
    assert sample(fams, "wan_requests_in_flight", "wan_requests_in_flight", model="t2v-a14b") == 0
    dur = "wan_request_duration_seconds"
    assert sample(fams, dur, dur + "_count", model="t2v-a14b", resolution="below_480p") == 3
    assert sample(fams, dur, dur + "_sum", model="t2v-a14b", resolution="below_480p") > 0
    step = "wan_request_step_duration_seconds"
    assert sample(fams, step, step + "_count", model="t2v-a14b", resolution="below_480p") == 3 * STEPS
    wait = "wan_request_queue_wait_seconds"
    assert sample(fams, wait, wait + "_count", model="t2v-a14b") == 1
    assert sample(fams, wait, wait + "_sum", model="t2v-a14b") >= 1.5
    phase = "wan_request_phase_duration_seconds"
    for name in ("text_encode", "denoise", "vae_decode", "postprocess"):
        assert sample(fams, phase, phase + "_count", model="t2v-a14b", phase=name) == 3, name
    assert sample(fams, phase, phase + "_count", model="t2v-a14b", phase="image_encode") is None
    expert = "wan_request_expert_duration_seconds"
    for name in traffic.EXPERTS:
        assert sample(fams, expert, expert + "_count", model="t2v-a14b", expert=name) == 3
    assert sample(fams, "wan_request_expert_switch_step", "wan_request_expert_switch_step", model="t2v-a14b") in (0, 1)
    assert sample(fams, "wan_request_frames", "wan_request_frames_total", model="t2v-a14b") == 3 * FRAMES
    assert sample(fams, "wan_request_pixels", "wan_request_pixels_total", model="t2v-a14b") == 3 * FRAMES * SIZE * SIZE
    assert sample(fams, "wan_request_video_seconds", "wan_request_video_seconds_total",
                  model="t2v-a14b") == pytest.approx(3 * FRAMES / 16)
    assert sample(fams, "wan_request_output_checks", "wan_request_output_checks_total", model="t2v-a14b") == 3
    assert sample(fams, "wan_request_peak_memory_bytes", "wan_request_peak_memory_bytes", model="t2v-a14b") is None


def test_phases_are_parts_of_the_request_and_steps_make_up_denoise(a14b):
    pipe, reg = a14b
    before = value(reg, "wan_request_duration_seconds_sum", model="t2v-a14b", resolution="below_480p")
    phases_before = {p: value(reg, "wan_request_phase_duration_seconds_sum", model="t2v-a14b", phase=p)
                     for p in traffic.TRAFFIC_PHASES}
    steps_before = value(reg, "wan_request_step_duration_seconds_sum", model="t2v-a14b", resolution="below_480p")
    call(pipe)
    duration = value(reg, "wan_request_duration_seconds_sum", model="t2v-a14b", resolution="below_480p") - before
    phases = {p: value(reg, "wan_request_phase_duration_seconds_sum", model="t2v-a14b", phase=p) - v
              for p, v in phases_before.items()}
    steps = value(reg, "wan_request_step_duration_seconds_sum", model="t2v-a14b", resolution="below_480p") - steps_before
    assert 0 < sum(phases.values()) <= duration
    assert steps == pytest.approx(phases["denoise"], rel=0.05)


# --------------------------------------------------------------------------- outcomes


def test_size_not_a_multiple_of_16_is_invalid_input_and_raises_the_pipelines_own_error(a14b):
    pipe, reg = a14b
    raw = tiny_pipe("tiny-wan2.1-t2v")
    with pytest.raises(ValueError) as expected:
        call(raw, width=40)
    before = value(reg, "wan_requests_total", model="t2v-a14b", outcome="invalid_input")
    with pytest.raises(ValueError) as got:
        call(pipe, width=40)
    assert str(got.value) == str(expected.value)
    assert value(reg, "wan_requests_total", model="t2v-a14b", outcome="invalid_input") == before + 1


def test_exception_reaches_the_caller_unchanged_and_counts_as_error_in_its_phase(a14b):
    pipe, reg = a14b

    class Boom(Exception):
        pass

    raised = Boom("from the caller's callback")

    def callback(p: Any, i: int, t: Any, kw: dict) -> dict:
        raise raised

    before = value(reg, "wan_request_failures_total", model="t2v-a14b", outcome="error", phase="denoise")
    with pytest.raises(Boom) as got:
        call(pipe, callback_on_step_end=callback)
    assert got.value is raised and got.value.__cause__ is None
    assert value(reg, "wan_request_failures_total", model="t2v-a14b", outcome="error", phase="denoise") == before + 1
    assert value(reg, "wan_requests_in_flight", model="t2v-a14b") == 0


def test_nan_output_is_found_by_sampled_sanity_and_the_frames_still_reach_the_caller():
    from wan_exporter.bench import faults

    reg = CollectorRegistry()
    pipe = tiny_pipe("tiny-wan2.1-t2v")
    faults.poison(pipe, "nan")
    pipe = instrument(pipe, model="t2v", registry=reg, sample_outputs=1.0)
    out = call(pipe)
    assert out.frames.shape[1] == FRAMES
    assert value(reg, "wan_requests_total", model="t2v", outcome="nan_output") == 1
    assert value(reg, "wan_request_failures_total", model="t2v", outcome="nan_output", phase="postprocess") == 1
    assert value(reg, "wan_request_output_sanity_failures_total", model="t2v", check="finite") == 1
    assert value(reg, "wan_request_output_checks_total", model="t2v") == 1
    assert value(reg, "wan_request_duration_seconds_count", model="t2v", resolution="below_480p") == 0


def test_real_out_of_memory_in_a_memory_limited_child_is_oom():
    r = subprocess.run([sys.executable, "-m", "support.instrument_worker", "oom", "tiny-wan2.1-t2v"],
                       capture_output=True, text=True, env=exporter_env(), timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert "DefaultCPUAllocator: can't allocate memory" in got["raised"]["message"], got
    assert got["requests"] == {"ok": 1, "oom": 1, "error": 0}, got
    assert sum(got["oom_phases"].values()) == 1 and set(got["oom_phases"]) <= set(traffic.FAILURE_PHASES), got


def test_caller_interrupt_and_keyboard_interrupt_are_cancelled(a14b):
    pipe, reg = a14b
    before = value(reg, "wan_requests_total", model="t2v-a14b", outcome="cancelled")

    def stop(p: Any, i: int, t: Any, kw: dict) -> dict:
        p._interrupt = True  # diffusers' documented way to stop a generation early
        return kw

    out = call(pipe, callback_on_step_end=stop)
    assert out.frames is not None
    assert value(reg, "wan_requests_total", model="t2v-a14b", outcome="cancelled") == before + 1

    def interrupt(p: Any, i: int, t: Any, kw: dict) -> dict:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        call(pipe, callback_on_step_end=interrupt)
    assert value(reg, "wan_requests_total", model="t2v-a14b", outcome="cancelled") == before + 2
    assert value(reg, "wan_request_failures_total", model="t2v-a14b", outcome="cancelled", phase="denoise") >= 1


# --------------------------------------------------------------------------- wrapping


def test_instrumenting_twice_counts_once_and_keeps_the_same_object(a14b):
    pipe, reg = a14b
    cls = type(pipe)
    assert instrument(pipe, model="t2v-a14b", registry=reg) is pipe and type(pipe) is cls
    with pytest.raises(ValueError, match="already instrumented"):
        instrument(pipe, model="another-name", registry=reg)
    ok = value(reg, "wan_requests_total", model="t2v-a14b", outcome="ok")
    decode = value(reg, "wan_request_phase_duration_seconds_count", model="t2v-a14b", phase="vae_decode")
    steps = value(reg, "wan_request_step_duration_seconds_count", model="t2v-a14b", resolution="below_480p")
    call(pipe)
    assert value(reg, "wan_requests_total", model="t2v-a14b", outcome="ok") == ok + 1
    assert value(reg, "wan_request_phase_duration_seconds_count", model="t2v-a14b", phase="vae_decode") == decode + 1
    assert value(reg, "wan_request_step_duration_seconds_count", model="t2v-a14b",
                 resolution="below_480p") == steps + STEPS


def test_callers_step_callback_still_runs_chained_with_its_tensor_inputs(a14b):
    from diffusers.callbacks import PipelineCallback

    pipe, reg = a14b
    seen: list[tuple[int, tuple]] = []

    def callback(p: Any, i: int, t: Any, kw: dict) -> dict:
        seen.append((i, tuple(kw["latents"].shape)))
        return kw

    call(pipe, callback_on_step_end=callback, callback_on_step_end_tensor_inputs=["latents"])
    assert [i for i, _ in seen] == list(range(STEPS))

    class Record(PipelineCallback):
        tensor_inputs = ["prompt_embeds"]

        def __init__(self) -> None:
            super().__init__()
            self.calls = 0

        def callback_fn(self, pipeline: Any, step_index: int, timestep: Any, callback_kwargs: dict) -> dict:
            assert "prompt_embeds" in callback_kwargs  # diffusers passes what tensor_inputs names
            self.calls += 1
            return callback_kwargs

    record = Record()
    call(pipe, callback_on_step_end=record)
    assert record.calls == STEPS


def test_image_to_video_two_experts_and_ti2v_image_mode_are_measured():
    from wan_exporter.load.pipeline import as_image_pipeline
    from wan_exporter.bench.request import conditioning_image

    reg = CollectorRegistry()
    image = conditioning_image(SIZE, SIZE, 1)
    i2v = instrument(tiny_pipe("tiny-wan2.2-i2v-a14b"), model="i2v-a14b", registry=reg)
    call(i2v, image=image)
    ti2v = instrument(as_image_pipeline(tiny_pipe("tiny-wan2.2-ti2v-5b")), model="ti2v-5b", registry=reg)
    call(ti2v, image=image)
    for model in ("i2v-a14b", "ti2v-5b"):
        assert value(reg, "wan_requests_total", model=model, outcome="ok") == 1, model
        assert value(reg, "wan_request_phase_duration_seconds_count", model=model, phase="image_encode") == 1, model
    assert value(reg, "wan_request_expert_duration_seconds_count", model="i2v-a14b", expert="low_noise") == 1
    assert value(reg, "wan_request_expert_duration_seconds_count", model="ti2v-5b", expert="high_noise") == 0
    assert value(reg, "wan_request_video_seconds_total", model="ti2v-5b") == pytest.approx(FRAMES / 24)
    from wan_exporter import catalog
    from wan_exporter.measure import flops

    for model, pipe, kind, per_token in (("i2v-a14b", i2v, "tiny-wan2.2-i2v-a14b", False),
                                         ("ti2v-5b", ti2v, "tiny-wan2.2-ti2v-5b", True)):
        step = flops.count_step(pipe.transformer.config, SIZE, SIZE, FRAMES, catalog.CATALOG[kind].vae_compression,
                                5.0, per_token_timestep=per_token)
        assert value(reg, "wan_request_flops_total", model=model) == STEPS * step.step_flops, model


def test_request_flops_are_flops_py_figure_per_step_times_steps_of_successful_requests_and_no_peak_on_cpu():
    from wan_exporter import catalog
    from wan_exporter.measure import flops

    reg = CollectorRegistry()
    pipe = instrument(tiny_pipe("tiny-wan2.1-t2v"), model="t2v", registry=reg)
    call(pipe)
    call(pipe)
    call(pipe, guidance_scale=1.0)  # no classifier-free guidance: one forward per step
    with pytest.raises(ValueError):
        call(pipe, height=40)  # failed requests add nothing
    compression = catalog.CATALOG["tiny-wan2.1-t2v"].vae_compression
    with_cfg, without = (flops.count_step(pipe.transformer.config, SIZE, SIZE, FRAMES, compression, g)
                         for g in (5.0, 1.0))
    assert with_cfg.step_flops == 2 * without.step_flops > 0
    assert value(reg, "wan_request_flops_total", model="t2v") == STEPS * (2 * with_cfg.step_flops + without.step_flops)
    assert value(reg, "wan_request_phase_duration_seconds_count", model="t2v", phase="denoise") == 3
    peak = traffic.REQUEST_PEAK_FLOPS_PER_SECOND.name
    assert [s for m in reg.collect() if m.name == peak for s in m.samples] == []  # CPU: no peak, no utilisation


def test_peak_is_the_datasheet_row_of_the_cuda_device_in_the_transformers_dtype():
    from types import SimpleNamespace

    from wan_exporter.instrument.efficiency import peak

    # torch.cuda's device name, where no GPU can answer: the narrowest stand-in.
    fake_torch = SimpleNamespace(device=str, cuda=SimpleNamespace(get_device_name=lambda d: "NVIDIA H200"))
    bf16 = SimpleNamespace(transformer=SimpleNamespace(dtype="torch.bfloat16"))
    fp32 = SimpleNamespace(transformer=SimpleNamespace(dtype="torch.float32"))
    assert peak(fake_torch, "cuda:0", bf16) == ("h200-sxm", 989.5e12)
    assert peak(fake_torch, "cuda:0", fp32) is None  # no tensor-core row for float32
    assert peak(fake_torch, "cpu", bf16) is None
    unknown = SimpleNamespace(device=str, cuda=SimpleNamespace(get_device_name=lambda d: "NVIDIA Unknown GPU"))
    assert peak(unknown, "cuda:0", bf16) is None


def test_pipeline_assembled_from_separately_loaded_parts_is_measured(tmp_path: Path):
    """A single-file checkpoint ends as components handed to the pipeline class: the same class, measured alike."""
    from diffusers import WanPipeline, WanTransformer3DModel

    parts = tiny_pipe("tiny-wan2.1-t2v")
    parts.transformer.save_pretrained(tmp_path / "transformer")
    transformer = WanTransformer3DModel.from_pretrained(tmp_path / "transformer")
    pipe = WanPipeline(**{**parts.components, "transformer": transformer})
    pipe.set_progress_bar_config(disable=True)
    reg = CollectorRegistry()
    call(instrument(pipe, model="assembled", registry=reg))
    assert value(reg, "wan_requests_total", model="assembled", outcome="ok") == 1


# --------------------------------------------------------------------------- track.request


def test_track_request_times_non_pipeline_work_and_lets_its_exception_through():
    reg = CollectorRegistry()
    with track.request(model="upscaler", enqueued_at=time.time() - 0.5, registry=reg) as req:
        time.sleep(0.05)
        req.output(frames=8, width=1280, height=720, fps=16)
    with pytest.raises(ValueError, match="bad"):
        with track.request(model="upscaler", registry=reg):
            raise ValueError("bad input")
    with pytest.raises(RuntimeError):
        with track.request(model="upscaler", registry=reg):
            raise RuntimeError("broken")
    assert value(reg, "wan_requests_total", model="upscaler", outcome="ok") == 1
    assert value(reg, "wan_requests_total", model="upscaler", outcome="invalid_input") == 1
    assert value(reg, "wan_requests_total", model="upscaler", outcome="error") == 1
    assert value(reg, "wan_request_duration_seconds_count", model="upscaler", resolution="720p") == 1
    assert value(reg, "wan_request_duration_seconds_sum", model="upscaler", resolution="720p") >= 0.05
    assert value(reg, "wan_request_queue_wait_seconds_sum", model="upscaler") >= 0.5
    assert value(reg, "wan_request_video_seconds_total", model="upscaler") == pytest.approx(0.5)
    assert value(reg, "wan_request_pixels_total", model="upscaler") == 8 * 1280 * 720
    assert value(reg, "wan_requests_in_flight", model="upscaler") == 0


def test_a_failure_while_recording_never_reaches_the_caller_nor_replaces_its_exception(caplog):
    reg = CollectorRegistry()
    with track.request(model="upscaler", registry=reg) as req:
        req.output(frames=8, width="wide", height=720)  # a width no resolution class takes: recording raises
    pipeline_error = RuntimeError("the pipeline's own failure")
    with pytest.raises(RuntimeError) as got:
        with track.request(model="upscaler", registry=reg) as req:
            req.output(width="wide", height=720)
            raise pipeline_error
    assert got.value is pipeline_error
    assert "recording a request of upscaler failed" in caplog.text
    assert value(reg, "wan_requests_in_flight", model="upscaler") == 0


def test_a_failing_output_check_never_fails_the_pipeline_call(monkeypatch, caplog):
    from wan_exporter.measure import sanity

    def broken(arr: Any) -> Any:
        raise RuntimeError("the check itself failed")

    monkeypatch.setattr(sanity, "check_frames", broken)
    reg = CollectorRegistry()
    pipe = instrument(tiny_pipe("tiny-wan2.1-t2v"), model="t2v", registry=reg, sample_outputs=1.0)
    out = call(pipe)
    assert out.frames.shape[1] == FRAMES
    assert "measuring the output of t2v failed" in caplog.text
    assert value(reg, "wan_requests_total", model="t2v", outcome="ok") == 1


def test_a_requests_peak_is_read_while_no_other_request_can_join_its_device(monkeypatch):
    from wan_exporter.measure import phases as measure
    from wan_exporter.instrument import request as rq

    held: list[bool] = []

    def peak_memory(torch: Any, device: str) -> tuple[int, str]:
        held.append(rq._DEVICE_LOCK.locked())
        return 5, "cuda"

    monkeypatch.setattr(measure, "is_cuda", lambda d: True)
    monkeypatch.setattr(measure, "reset_peak", lambda torch, d: None)
    monkeypatch.setattr(measure, "sync", lambda torch, d: None)
    monkeypatch.setattr(measure, "peak_memory", peak_memory)
    with track.request(model="alone", registry=CollectorRegistry()) as req:
        req.on_device("cuda:0")
    assert held == [True] and req.peak_memory == 5 and not rq._ON_DEVICE["cuda:0"]


def test_resolution_classes_follow_the_short_side():
    cases = {(832, 480): "480p", (480, 832): "480p", (1280, 720): "720p", (1280, 704): "720p",
             (1920, 1080): "1080p", (32, 32): "below_480p", (1024, 600): "other", (2560, 1440): "other"}
    assert {k: traffic.resolution_class(*k) for k in cases} == cases


# --------------------------------------------------------------------------- process boundaries


def test_importing_instrument_imports_neither_torch_nor_diffusers_and_starts_nothing():
    code = ("import sys, threading, wan_exporter.instrument as i; "
            "print(sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules), "
            "threading.active_count())")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=exporter_env(), timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["[]", "1"]


def test_multiprocess_mode_adds_up_two_workers(tmp_path: Path):
    mp_dir = tmp_path / "prom"
    mp_dir.mkdir()
    env = exporter_env({"PROMETHEUS_MULTIPROC_DIR": str(mp_dir)})
    workers = [subprocess.Popen([sys.executable, "-m", "support.instrument_worker", "serve", "tiny-wan2.1-t2v", str(n)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
               for n in (1, 2)]
    for w in workers:
        out, err = w.communicate(timeout=300)
        assert w.returncode == 0, err[-3000:]
    reg = CollectorRegistry()
    MultiProcessCollector(reg, path=str(mp_dir))
    served = Served(reg)
    try:
        fams = served.scrape()
    finally:
        served.close()
    assert sample(fams, "wan_requests", "wan_requests_total", model="tiny", outcome="ok") == 3
    assert sample(fams, "wan_request_step_duration_seconds", "wan_request_step_duration_seconds_count",
                  model="tiny", resolution="below_480p") == 3 * STEPS
    assert sample(fams, "wan_request_frames", "wan_request_frames_total", model="tiny") == 3 * FRAMES
    assert sample(fams, "wan_requests_in_flight", "wan_requests_in_flight", model="tiny") == 0
