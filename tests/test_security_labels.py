"""Label hygiene: names are validated before they become label values, no prompt, path or free
text reaches a label, hostile text from outside (a GPU name) is escaped by the client library,
and a flood of models is refused with a clear error."""

from __future__ import annotations

import json
import subprocess

import pytest

from support.procs import ExporterProcess, parse_metrics, wait_for, write_nvml_state
from support.tools import require_tool
from wan_exporter.config import ConfigError, parse_config

KIND = "kind: wan2.2-t2v-a14b, hub_id: Wan-AI/Wan2.2-T2V-A14B-Diffusers"


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        parse_config(text)
    return exc.value.errors


@pytest.mark.parametrize("name", ["a" * 64, "wan2.2-t2v_A14B", "7b"])
def test_good_model_names(name):
    assert parse_config(f"models:\n  - {{name: '{name}', {KIND}}}\n").models[0].name == name


@pytest.mark.parametrize("name", [
    "a" * 65,  # too long for a label value we promise to keep short
    "-leading-dash", ".hidden", "",
    "has space", "slash/path", "../up", "quote\"d", "brace}", "new\nline", "back\\slash", "comma,x", "équipe",
    "emoji🙂",
])
def test_bad_model_names_are_refused(name):
    errs = errors_of(f"models:\n  - {{name: {json.dumps(name)}, {KIND}}}\n")
    assert any(e.startswith("models[0].name: invalid model name") for e in errs), errs


@pytest.mark.parametrize("name", ["a" * 65, "has space", "x/y", "q\"uote"])
def test_bad_profile_names_are_refused(name):
    errs = errors_of(f"profiles:\n  {json.dumps(name)}: {{frames: 17}}\n")
    assert any("invalid profile name" in e for e in errs), errs


def test_duplicate_model_names_are_refused():
    errs = errors_of(f"models:\n  - {{name: m, {KIND}}}\n  - {{name: m, {KIND}}}\n")
    assert any("duplicate model name 'm'" in e for e in errs), errs


def test_model_flood_is_refused_with_the_way_out():
    models = "".join(f"  - {{name: m{i}, {KIND}}}\n" for i in range(65))
    errs = errors_of("models:\n" + models)
    assert any("65 models configured, more than exporter.max_models (64)" in e and "raise the cap" in e
               for e in errs), errs
    ok = parse_config("exporter:\n  max_models: 65\nmodels:\n" + models)
    assert len(ok.models) == 65


@pytest.mark.e2e
def test_no_prompt_or_path_in_labels_and_hostile_gpu_names_are_escaped(tmp_path):
    secret_dir = tmp_path / "SECRET-PATH-do-not-export"
    secret_dir.mkdir()
    cfg = tmp_path / "wan.yaml"
    cfg.write_text(
        "models:\n"
        f"  - {{name: m1, kind: wan2.2-t2v-a14b, path: '{secret_dir}', profiles: [p]}}\n"
        "profiles:\n"
        "  p: {prompt: 'SECRET PROMPT do not export', negative_prompt: 'SECRET NEGATIVE'}\n"
        "schedules:\n"
        "  benchmark: {interval: 1h, enabled: false}\n"
        "  hash: {interval: 1d, enabled: false}\n"
    )
    hostile = 'NVIDIA "H200"} evil{x="1"\\ \nnext'
    state = write_nvml_state(tmp_path / "nvml.json", gpus=[{"name": hostile}])
    env = {"HF_HUB_CACHE": str(tmp_path / "hf"), "XDG_STATE_HOME": str(tmp_path / "state"),
           "WAN_EXPORTER_NVML_MODULE": "support.fake_pynvml", "FAKE_NVML_STATE": str(state)}
    with ExporterProcess([f"--config.file={cfg}"], env=env, log_path=tmp_path / "exporter.log") as exp:
        text = wait_for(lambda: (lambda t: t if "\nwan_gpu_info{" in t else None)(exp.metrics_text()), 15, 0.2,
                        "GPU series")
    samples = parse_metrics(text)  # the client library's own parser reads it back
    values = [v for (_, labels) in samples for _, v in labels]
    assert hostile in values, "the GPU name arrives intact: escaped on the way out, unescaped on the way in"
    for secret in ("SECRET", str(secret_dir), str(tmp_path)):
        assert not any(secret in v for v in values), secret
    model_labels = {v for (_, labels) in samples for k, v in labels if k == "model"}
    assert model_labels == {"m1"}
    r = subprocess.run([require_tool("promtool"), "check", "metrics"], input=text, capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
