"""The real exporter process with a model in each checkpoint form: verdicts, facts and the hash
reference it compared against, as Prometheus would scrape them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from support.procs import ExporterProcess, sample, wait_for
from wan_exporter import tiny_forms

pytestmark = pytest.mark.e2e

KIND = "tiny-wan2.2-t2v-a14b"


def _flip(path: Path) -> None:
    with open(path, "r+b") as f:
        f.seek(-100, os.SEEK_END)
        b = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([b[0] ^ 0xFF]))


def test_every_form_gets_its_verdict_facts_and_reference(tmp_path: Path) -> None:
    official = tiny_forms.official_layout(tmp_path / "src" / "Wan2.2-T2V-A14B")
    tiny_forms.hf_cache(tmp_path / "hf", "Wan-AI/Wan2.2-T2V-A14B", official)
    fp8 = tiny_forms.single_files(tmp_path / "comfy", "fp8_scaled")
    gguf = tiny_forms.gguf_files(tmp_path / "gguf")
    local = tiny_forms.official_layout(tmp_path / "local" / "Wan2.2-T2V-A14B")
    tiny_forms.local_dir_metadata(local)
    _flip(local / "low_noise_model" / "diffusion_pytorch_model-00001-of-00002.safetensors")  # after the download
    models = [
        {"name": "official", "kind": KIND, "hub_id": ["Wan-AI/Wan2.2-T2V-A14B-Diffusers", "Wan-AI/Wan2.2-T2V-A14B"]},
        {"name": "comfy", "kind": KIND, "path": [str(p) for p in fp8]},
        {"name": "gguf", "kind": KIND, "path": [str(p) for p in gguf], "format": "gguf"},
        {"name": "local", "kind": KIND, "path": str(local)},
    ]
    cfg = tmp_path / "wan.yaml"
    cfg.write_text(json.dumps({  # JSON is YAML
        "models": models,
        "schedules": {"layout": {"interval": "1s"}, "headers": {"interval": "1s"}, "hash": {"interval": "2s"},
                      "benchmark": {"interval": "1h", "enabled": False}},
        "exporter": {"state_dir": str(tmp_path / "state")},
    }))
    env = {"HF_HUB_CACHE": str(tmp_path / "hf"), "WAN_EXPORTER_NVML_MODULE": "no_such_nvml_module",
           "MODELSCOPE_CACHE": str(tmp_path / "ms")}
    with ExporterProcess([f"--config.file={cfg}"], env=env, log_path=tmp_path / "exporter.log") as exp:
        def settled() -> dict | None:
            s = exp.metrics()
            done = all(sample(s, "wan_health_check_success", model=m["name"], check="hash") is not None
                       for m in models)
            return s if done and sample(s, "wan_model_checkpoint_parameters", model="gguf") else None

        s = wait_for(settled, 60, 0.3, "a hash run of every model")

    def status(model: str) -> str:
        return next(st for st in ("healthy", "degraded", "critical", "missing")
                    if sample(s, "wan_model_health_status", model=model, status=st) == 1)

    params = 2 * tiny_forms.parameter_count()
    for name, form in (("official", "official"), ("comfy", "single_file"), ("gguf", "gguf")):
        assert status(name) == "healthy", name
        assert sample(s, "wan_model_checkpoint_form", model=name, form=form) == 1
        assert sample(s, "wan_model_checkpoint_parameters", model=name) == params
        assert sample(s, "wan_model_checkpoint_experts", model=name) == 2
    assert sample(s, "wan_model_checkpoint_dtype", model="comfy", dtype="float8_e4m3fn") == 1
    assert sample(s, "wan_model_checkpoint_dtype", model="gguf", dtype="q8_0") == 1
    # Compared with the HF cache's blob names, not a first-sight record.
    assert sample(s, "wan_model_integrity_ratio", model="official", reference="published") == 1
    assert sample(s, "wan_model_integrity_ratio", model="comfy", reference="recorded") == 1
    # The byte flipped after the --local-dir download is caught on the first hash run.
    assert status("local") == "critical"
    assert sample(s, "wan_model_health_issues", model="local", issue="hash_mismatch") == 1
    assert sample(s, "wan_model_integrity_ratio", model="local", reference="published") < 1


@pytest.mark.parametrize("form", ("official", "gguf"))
def test_a_form_the_benchmark_cannot_load_is_skipped_with_a_bounded_reason(form: str, tmp_path: Path) -> None:
    from prometheus_client import generate_latest

    from support.procs import parse_metrics
    from wan_exporter.app import App
    from wan_exporter.config import parse_config

    if form == "official":
        path = json.dumps(str(tiny_forms.official_layout(tmp_path / "Wan2.2-T2V-A14B")))
    else:
        path = json.dumps([str(p) for p in tiny_forms.gguf_files(tmp_path / "gguf")])
    app = App(parse_config(f"""
models:
  - {{name: m, kind: {KIND}, path: {path}, device: cpu, dtype: float32, profiles: [tiny]}}
profiles:
  tiny: {{width: 32, height: 32, frames: 9, steps: 2}}
exporter: {{state_dir: '{tmp_path / "state"}'}}
"""))
    bench = next(s for s in app.subsystems if type(s).__name__ == "BenchmarkSubsystem")
    cfg = app.config()
    assert bench.run_one(cfg, cfg.model("m"), "tiny") is None
    s = parse_metrics(generate_latest(app.registry).decode())
    assert sample(s, "wan_benchmark_skipped_total", model="m", reason="unsupported_format") == 1
    assert sample(s, "wan_benchmark_runs_total", model="m", profile="tiny") == 0


@pytest.fixture(scope="module")
def diffusers_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from wan_exporter import tiny

    return tiny.build(KIND, tmp_path_factory.mktemp("base") / KIND)


@pytest.mark.parametrize("form", ("single_file", "gguf"))
def test_single_file_and_gguf_transformers_benchmark_through_diffusers_loaders(
        form: str, diffusers_base: Path, tmp_path: Path) -> None:
    files = (tiny_forms.single_files(tmp_path / "f", "fp16") if form == "single_file"
             else tiny_forms.gguf_files(tmp_path / "f"))
    cfg = tmp_path / "wan.yaml"
    cfg.write_text(json.dumps({
        "models": [{"name": "m", "kind": KIND, "path": [str(p) for p in files], "base": str(diffusers_base),
                    "device": "cpu", "dtype": "float32", "profiles": ["tiny"]}],
        "profiles": {"tiny": {"width": 32, "height": 32, "frames": 9, "steps": 2, "timeout": "3m"}},
        "schedules": {"benchmark": {"interval": "1h"}, "hash": {"interval": "1h"}},
        "exporter": {"state_dir": str(tmp_path / "state")},
    }))
    env = {"WAN_EXPORTER_NVML_MODULE": "no_such_nvml_module", "HF_HUB_CACHE": str(tmp_path / "hf")}
    with ExporterProcess([f"--config.file={cfg}"], env=env, log_path=tmp_path / "exporter.log") as exp:
        s = wait_for(lambda: (lambda m: m if sample(m, "wan_benchmark_last_run_success", model="m",
                                                    profile="tiny") is not None else None)(exp.metrics()),
                     240, 0.5, "the first benchmark run")
    log = (tmp_path / "exporter.log").read_text()
    assert sample(s, "wan_benchmark_last_run_success", model="m", profile="tiny") == 1, log[-3000:]
    assert sample(s, "wan_benchmark_runs_total", model="m", profile="tiny") == 1


def test_fp8_scaled_files_are_skipped_because_diffusers_drops_their_scales(diffusers_base: Path,
                                                                             tmp_path: Path) -> None:
    from wan_exporter.load.forms import skip_reason
    from wan_exporter.config import ModelConfig

    files = tuple(str(p) for p in tiny_forms.single_files(tmp_path / "f", "fp8_scaled"))
    m = ModelConfig(name="m", kind=KIND, path=files, base=str(diffusers_base))
    assert skip_reason(tuple(map(Path, files)), m) == "unsupported_format"
    assert skip_reason(tuple(map(Path, files)), ModelConfig(name="m", kind=KIND, path=files)) == "unsupported_format"
    fp16 = tuple(str(p) for p in tiny_forms.single_files(tmp_path / "g", "fp16"))
    m = ModelConfig(name="m", kind=KIND, path=fp16, base=str(diffusers_base))
    assert skip_reason(tuple(map(Path, fp16)), m) is None


def test_the_benchmark_request_names_the_single_files_around_the_base(tmp_path: Path) -> None:
    """The child loads each expert from its own file; the base gives everything else."""
    from wan_exporter.bench.runner import build_request
    from wan_exporter.config import ModelConfig, Profile

    low, high = (str(p) for p in reversed(tiny_forms.gguf_files(tmp_path / "f")))  # listed low first
    m = ModelConfig(name="m", kind=KIND, path=(low, high), base=str(tmp_path / "base"))
    req = build_request(m, Profile(), (Path(low), Path(high)))
    assert req["model_dir"] == str(tmp_path / "base") and req["transformer_format"] == "gguf"
    assert req["transformer_files"] == {"transformer": high, "transformer_2": low}


def test_two_files_that_both_look_like_one_expert_are_skipped_not_one_dropped(tmp_path: Path, caplog) -> None:
    import shutil

    from wan_exporter.load.forms import skip_reason
    from wan_exporter.config import ModelConfig

    high, _low = tiny_forms.gguf_files(tmp_path / "f")
    again = Path(shutil.copy2(high, high.with_name("Wan2.2-T2V-A14B-HighNoise-Q4_K_S.gguf")))
    base = tmp_path / "base"
    base.mkdir()
    (base / "model_index.json").write_text("{}")
    m = ModelConfig(name="m", kind=KIND, path=(str(high), str(again)), base=str(base))
    with caplog.at_level("INFO"):
        assert skip_reason((high, again), m) == "unsupported_format"
    assert "all look like the denoiser transformer" in caplog.text


def test_a_benchmark_reads_the_scan_the_health_checks_made_instead_of_walking_again(tmp_path: Path,
                                                                                    monkeypatch) -> None:
    from wan_exporter import scan as scanning
    from wan_exporter.bench.subsystem import BenchmarkSubsystem
    from wan_exporter.config import Config, ModelConfig, Profile
    from wan_exporter.scan import cache
    from wan_exporter.scan.cache import ScanCache
    from wan_exporter.state import Store

    files = tuple(str(p) for p in tiny_forms.single_files(tmp_path / "f", "fp8_scaled"))
    base = tmp_path / "base"
    base.mkdir()
    (base / "model_index.json").write_text("{}")
    m = ModelConfig(name="m", kind=KIND, path=files, base=str(base), device="cpu", profiles=("p",))
    cfg = Config(models=(m,), profiles={"p": Profile()})
    scans = ScanCache()
    scans.get("m", tuple(map(Path, files)), m.format, cfg.schedules.layout.interval)  # the layout check's
    walks: list[object] = []
    real = scanning.scan

    def counted(*a, **kw):
        walks.append(a[0])
        return real(*a, **kw)

    monkeypatch.setattr(scanning, "scan", counted)
    monkeypatch.setattr(cache, "scan", counted)
    bench = BenchmarkSubsystem(Store(), None, lambda: cfg, scans)  # type: ignore[arg-type]
    assert bench.run_one(cfg, m, "p") is None  # fp8-scaled: skipped as unsupported_format
    assert bench.store.snapshot.benchmarks[("m", "p")].skipped == {"unsupported_format": 1} and walks == []
