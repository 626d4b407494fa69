"""The benchmark child: real tiny pipelines on CPU, real faults, real classification.

Generations run in-process (fast); one test goes through a spawned child to prove the
pipe protocol and that the crash fault really kills the process.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from wan_exporter import tiny  # noqa: E402
from wan_exporter.measure import sanity  # noqa: E402
from wan_exporter.bench.child import child_main, classify, conditioning_image, run_benchmark  # noqa: E402
from wan_exporter.health.loadcheck import load_check  # noqa: E402

PIPELINES = {
    "tiny-wan2.2-t2v-a14b": "WanPipeline",
    "tiny-wan2.2-i2v-a14b": "WanImageToVideoPipeline",
    "tiny-wan2.2-ti2v-5b": "WanPipeline",
    "tiny-wan2.1-t2v": "WanPipeline",
    "tiny-wan2.1-i2v": "WanImageToVideoPipeline",
}
SHAPE = (9, 32, 32, 3)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return tiny.build_all(tmp_path_factory.mktemp("tiny"))


def request(models: dict[str, Path], kind: str, **over: Any) -> dict[str, Any]:
    req = {
        "model_dir": str(models[kind]), "kind": kind, "pipeline": PIPELINES[kind], "device": "cpu",
        "dtype": "float32", "offload": "none", "vae_tiling": False, "width": 32, "height": 32, "frames": 9,
        "steps": 2, "guidance_scale": 4.0, "guidance_scale_2": None, "seed": 7, "prompt": "a cat walks",
        "negative_prompt": "", "image": False, "fault": "none", "output_path": None, "fps": 16,
        "repeat_for_reproducibility": False,
    }
    req.update(over)
    return req


# --------------------------------------------------------------------------- sanity (pure numpy)


def noise(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random(SHAPE, dtype=np.float32)


def test_sanity_passes_noise_video() -> None:
    assert sanity.check_frames(noise(), SHAPE) == {"finite": True, "not_black": True, "not_frozen": True, "shape": True}


def test_sanity_flags_nan_frames_before_any_uint8_cast() -> None:
    f = noise()
    f[3, 5, 5, 1] = np.nan
    checks = sanity.check_frames(f, SHAPE)
    assert checks["finite"] is False and checks["shape"] is True
    assert sanity.check_frames(np.full(SHAPE, np.inf, np.float32), SHAPE)["finite"] is False


def test_sanity_flags_black_frames() -> None:
    assert sanity.check_frames(np.zeros(SHAPE, np.float32), SHAPE)["not_black"] is False
    assert sanity.check_frames(np.full(SHAPE, 0.01, np.float32), SHAPE)["not_black"] is False


def test_sanity_flags_frozen_frames() -> None:
    frozen = np.repeat(noise()[:1], SHAPE[0], axis=0)
    checks = sanity.check_frames(frozen, SHAPE)
    assert checks["not_frozen"] is False and checks["not_black"] is True
    single = noise()[:1]
    assert sanity.check_frames(single, (1, 32, 32, 3))["not_frozen"] is True  # one frame cannot be frozen


def test_sanity_flags_wrong_shape() -> None:
    assert sanity.check_frames(noise(), (9, 32, 48, 3))["shape"] is False
    assert sanity.check_frames(noise()[..., :2], None)["shape"] is False
    assert sanity.check_frames(noise()[0], None)["shape"] is False


def test_digest_is_stable_and_shape_aware() -> None:
    f = noise()
    assert sanity.digest(f) == sanity.digest(f.copy())
    assert sanity.digest(f) == sanity.digest(sanity.to_uint8(f))
    assert sanity.digest(f) != sanity.digest(noise(1))
    assert sanity.digest(f.reshape(9, 16, 64, 3)) != sanity.digest(f)
    assert len(sanity.digest(f)) == 64


# --------------------------------------------------------------------------- real generations


@pytest.mark.parametrize("kind", list(PIPELINES))
def test_every_kind_generates_a_sane_reproducible_video(models: dict[str, Path], kind: str) -> None:
    events: list[dict] = []
    r = run_benchmark(request(models, kind, repeat_for_reproducibility=True), progress=events.append)
    assert r["success"], r["detail"]
    assert r["reason"] == ""
    assert r["sanity"] == {"finite": True, "not_black": True, "not_frozen": True, "shape": True}
    expected_phases = {"load", "text_encode", "denoise", "vae_decode"}
    if PIPELINES[kind] == "WanImageToVideoPipeline":
        expected_phases.add("image_encode")
    assert set(r["phases"]) == expected_phases
    assert all(v > 0 for v in r["phases"].values()), r["phases"]
    generation = sum(v for k, v in r["phases"].items() if k != "load")
    assert r["duration_seconds"] >= generation  # phases are parts of the call
    assert r["seconds_per_step"] == pytest.approx(r["phases"]["denoise"] / 2)
    assert (r["steps"], r["frames"], r["width"], r["height"]) == (2, 9, 32, 32)
    assert r["peak_memory_kind"] == "rss" and r["peak_memory_bytes"] > 50 * 2**20
    assert r["reproducible"] is True and len(r["output_digest"]) == 64
    assert set(r["versions"]) == {"torch", "diffusers", "transformers"} and all(r["versions"].values())
    assert (r["device"], r["gpu_name"], r["gpu_uuid"], r["energy_joules"]) == ("cpu", "", "", None)
    steps = [e["step"] for e in events if e["event"] == "step" and e["generation"] == 1]
    phases = [e["phase"] for e in events if e["event"] == "phase" and e["generation"] == 1]
    assert steps == [1, 2]
    assert phases[0] == "load" and phases.index("text_encode") < phases.index("denoise") < phases.index("vae_decode")


def test_same_seed_same_digest_across_runs_other_seed_differs(models: dict[str, Path]) -> None:
    a = run_benchmark(request(models, "tiny-wan2.1-t2v"))
    b = run_benchmark(request(models, "tiny-wan2.1-t2v"))
    c = run_benchmark(request(models, "tiny-wan2.1-t2v", seed=8))
    assert a["output_digest"] == b["output_digest"] != c["output_digest"]


def test_ti2v_text_and_image_mode_conditions_on_the_image(models: dict[str, Path]) -> None:
    t2v = run_benchmark(request(models, "tiny-wan2.2-ti2v-5b"))
    i2v = run_benchmark(request(models, "tiny-wan2.2-ti2v-5b", image=True))
    assert t2v["success"] and i2v["success"], (t2v["detail"], i2v["detail"])
    assert "image_encode" in i2v["phases"] and "image_encode" not in t2v["phases"]
    assert t2v["output_digest"] != i2v["output_digest"]


def test_video_is_exported_when_asked(models: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "v" / "last.mp4"
    r = run_benchmark(request(models, "tiny-wan2.1-t2v", output_path=str(out)))
    assert r["success"], r["detail"]
    assert r["output_path"] == str(out) and out.stat().st_size > 0
    assert r["phases"]["export"] > 0


def test_conditioning_image_is_deterministic_and_structured() -> None:
    a, b = conditioning_image(64, 48, 3), conditioning_image(64, 48, 3)
    assert a.size == (64, 48) and a.mode == "RGB"
    assert a.tobytes() == b.tobytes() != conditioning_image(64, 48, 4).tobytes()
    assert np.asarray(a).std() > 10


# --------------------------------------------------------------------------- faults


@pytest.mark.parametrize(
    ("fault", "reason"),
    [("nan", "nan_output"), ("oom", "oom"), ("cuda_error", "cuda_error"), ("load_failed", "load_failed")],
)
def test_fault_is_classified_through_the_real_path(models: dict[str, Path], fault: str, reason: str) -> None:
    r = run_benchmark(request(models, "tiny-wan2.2-t2v-a14b", fault=fault))
    assert r["success"] is False
    assert r["reason"] == reason, r["detail"]
    assert r["detail"]
    if fault == "nan":
        assert r["sanity"]["finite"] is False and r["sanity"]["shape"] is True
    if fault == "oom" and sys.platform == "linux":
        # A real allocation failure under a real address-space cap, not a raised exception.
        assert "DefaultCPUAllocator: can't allocate memory" in r["detail"], r["detail"]
    if fault == "load_failed":
        assert "load" not in r["phases"]
    else:
        assert r["phases"]["load"] > 0
    assert r["peak_memory_kind"] == "rss"


def test_memory_cap_of_the_oom_fault_is_lifted_after_the_run(models: dict[str, Path]) -> None:
    import resource

    before = resource.getrlimit(resource.RLIMIT_AS)
    assert run_benchmark(request(models, "tiny-wan2.1-t2v", fault="oom"))["reason"] == "oom"
    assert resource.getrlimit(resource.RLIMIT_AS) == before
    assert run_benchmark(request(models, "tiny-wan2.1-t2v"))["success"]  # the process still generates


def test_faults_come_only_from_the_test_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from wan_exporter.bench import faults
    from wan_exporter.config import ConfigError, parse_config

    with pytest.raises(ConfigError) as err:
        parse_config("models:\n  - {name: m, kind: t2v-a14b, path: /m, fault: oom}\n")
    assert "models[0].fault: unknown key" in str(err.value)
    monkeypatch.delenv(faults.ENV, raising=False)
    assert faults.from_environment("m") == "none"
    table = tmp_path / "faults.json"
    monkeypatch.setenv(faults.ENV, str(table))
    assert faults.from_environment("m") == "none"  # named but not written yet: no fault
    table.write_text('{"m": "oom"}')
    assert (faults.from_environment("m"), faults.from_environment("other")) == ("oom", "none")
    table.write_text('{"m": "meltdown"}')
    with pytest.raises(ValueError, match="unknown fault"):
        faults.from_environment("m")


def test_cuda_requested_without_cuda_is_a_cuda_error(models: dict[str, Path]) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    r = run_benchmark(request(models, "tiny-wan2.1-t2v", device="cuda:0"))
    assert (r["success"], r["reason"]) == (False, "cuda_error")
    assert (r["peak_memory_bytes"], r["peak_memory_kind"]) == (None, "")


def test_classify_messages() -> None:
    assert classify(RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"), "generate") == "oom"
    assert classify(RuntimeError("CUDA error: device-side assert triggered"), "generate") == "cuda_error"
    assert classify(OSError("no such file"), "load") == "load_failed"
    assert classify(ValueError("boom"), "generate") == "unknown"  # the process lives: not a crash


def test_unknown_failure_reasons_are_published_as_unknown_not_crash() -> None:
    from wan_exporter.bench import runner
    from wan_exporter.childproc import ChildOutcome

    assert runner.classify(ChildOutcome(result={"success": False, "reason": "gremlins"}))[0] == "unknown"
    assert runner.classify(ChildOutcome(result={"success": False}))[0] == "unknown"
    assert runner.classify(ChildOutcome(result={"success": False, "reason": "oom"}))[0] == "oom"
    assert runner.classify(ChildOutcome(exitcode=-9))[0] == "crash"  # the child died: that is a crash
    assert runner.classify(ChildOutcome(exitcode=1))[0] == "crash"


def test_a_success_without_a_duration_never_enters_the_histogram() -> None:
    from wan_exporter.bench import aggregate
    from wan_exporter.state import BenchmarkAggregate, BenchmarkResult

    buckets = (1.0, 10.0)
    ok = BenchmarkResult(model="m", profile="p", success=True, started_at=0.0, finished_at=1.0, duration_seconds=5.0)
    agg = aggregate.fold(BenchmarkAggregate(), ok, buckets, window=5)
    unmeasured = BenchmarkResult(model="m", profile="p", success=True, started_at=2.0, finished_at=3.0)
    agg = aggregate.fold(agg, unmeasured, buckets, window=5)
    assert agg.bucket_counts == (0, 1, 0) and (agg.duration_count, agg.duration_sum) == (1, 5.0)
    assert agg.recent_durations == (5.0,)
    assert agg.runs == 2 and agg.last_success is unmeasured and agg.consecutive_failures == 0
    failed = BenchmarkResult(model="m", profile="p", success=False, started_at=4.0, finished_at=5.0)
    assert aggregate.fold(agg, failed, buckets, window=5).failures == {"unknown": 1}


# --------------------------------------------------------------------------- load check


def test_load_check_builds_every_kind_on_meta(models: dict[str, Path]) -> None:
    for kind, path in models.items():
        r = load_check({"model_dir": str(path), "pipeline": PIPELINES[kind]})
        assert r["success"], r["issues"]
        assert r["facts"]["experts"] == (2 if "a14b" in kind else 1)
        assert r["facts"]["parameters"] > 0


def test_load_check_reports_skew_and_layout(models: dict[str, Path], tmp_path: Path) -> None:
    import json
    import shutil

    assert load_check({"model_dir": str(tmp_path)})["issues"][0]["kind"] == "not_diffusers_layout"
    d = tmp_path / "skewed"
    shutil.copytree(models["tiny-wan2.1-t2v"], d)
    index = json.loads((d / "model_index.json").read_text())
    index["_class_name"] = "WanFuturePipeline"
    (d / "model_index.json").write_text(json.dumps(index))
    r = load_check({"model_dir": str(d)})
    assert r["success"] is False and r["issues"][0]["kind"] == "version_skew"
    index["_class_name"] = "WanPipeline"
    index["transformer"] = ["diffusers", "WanFutureTransformer"]
    index["motion_prior"] = 0.5
    (d / "model_index.json").write_text(json.dumps(index))
    skew = [i["detail"] for i in load_check({"model_dir": str(d)})["issues"] if i["kind"] == "version_skew"]
    assert any("motion_prior" in s for s in skew) and any("WanFutureTransformer" in s for s in skew), skew
    index["transformer"] = ["diffusers", "WanTransformer3DModel"]
    (d / "model_index.json").write_text(json.dumps(index))
    shutil.rmtree(d / "vae")
    issues = load_check({"model_dir": str(d)})["issues"]
    assert {"kind": "load_failed", "detail": "vae: component folder missing"} in issues


def test_load_check_finds_missing_ftfy_before_a_benchmark_would(models: dict[str, Path],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import diffusers.pipelines.wan.pipeline_wan_i2v as i2v_module

    # What the module looks like when `import ftfy` was skipped because ftfy is not installed.
    monkeypatch.delattr(i2v_module, "ftfy", raising=False)
    r = load_check({"model_dir": str(models["tiny-wan2.1-i2v"])})
    assert r["success"] is False
    assert [i["kind"] for i in r["issues"]] == ["version_skew"] and "ftfy" in r["issues"][0]["detail"]
    assert load_check({"model_dir": str(models["tiny-wan2.1-t2v"])})["success"]  # WanPipeline guards ftfy
    b = run_benchmark(request(models, "tiny-wan2.1-i2v"))
    assert (b["success"], b["reason"]) == (False, "unknown") and "ftfy" in b["detail"]


# --------------------------------------------------------------------------- spawned child


def _start(req: dict[str, Any]) -> tuple[Any, Any]:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=child_main, args=(req, child), daemon=True)
    proc.start()
    child.close()
    return proc, parent


def _collect(proc: Any, parent: Any, timeout: float = 90.0) -> tuple[int | None, list[tuple[str, dict]]]:
    msgs: list[tuple[str, dict]] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if parent.poll(0.2):
                try:
                    msgs.append(parent.recv())
                except EOFError:
                    break
                if msgs[-1][0] == "result":
                    break
            elif not proc.is_alive():
                break
    finally:
        proc.join(10)
        if proc.is_alive():
            proc.kill()
            proc.join(5)
        parent.close()
    return proc.exitcode, msgs


def test_spawned_children_stream_progress_and_crash_for_real(models: dict[str, Path]) -> None:
    # Both children start at once: each pays ~5 s of torch/diffusers imports.
    ok = _start(request(models, "tiny-wan2.1-t2v"))
    killed = _start(request(models, "tiny-wan2.1-t2v", fault="crash"))
    code, msgs = _collect(*ok)
    assert code == 0
    assert msgs[-1][0] == "result" and msgs[-1][1]["success"], msgs[-1]
    steps = [m[1]["step"] for m in msgs if m[0] == "progress" and m[1]["event"] == "step"]
    assert steps == [1, 2]
    code, msgs = _collect(*killed)
    assert code == -9  # SIGKILL from inside the first denoising step
    assert msgs and all(kind == "progress" for kind, _ in msgs)  # died mid-run: no result ever sent


def test_one_models_benchmark_raising_does_not_stop_the_next_on_that_device() -> None:
    from wan_exporter.bench.subsystem import BenchmarkSubsystem
    from wan_exporter.config import Config, ModelConfig, Profile
    from wan_exporter.state import Store

    cfg = Config(models=tuple(ModelConfig(name=n, kind="tiny-wan2.1-t2v", path="/x", device="cpu", profiles=("p",))
                              for n in ("a", "b", "c")), profiles={"p": Profile()})
    sub = BenchmarkSubsystem(Store(), None, lambda: cfg)  # type: ignore[arg-type]
    ran: list[str] = []

    def run_one(cfg: Config, m: ModelConfig, profile: str) -> None:
        ran.append(m.name)
        if m.name == "a":
            raise ValueError("a bug in one model's run")

    sub.run_one = run_one  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="a/p"):
        sub._job("cpu", [("a", "p"), ("b", "p"), ("c", "p")])()
    assert ran == ["a", "b", "c"]
