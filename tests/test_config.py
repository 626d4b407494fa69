"""Config: every bad input gets its own message with its YAML path; good input types cleanly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from support.procs import REPO, exporter_env
from wan_exporter.config import ConfigError, parse_config
from wan_exporter.defaults import default_config, demo_config

MODEL = "{name: m1, kind: wan2.2-t2v-a14b, hub_id: Wan-AI/Wan2.2-T2V-A14B-Diffusers}"


def errors_of(text: str, **kw) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        parse_config(text, **kw)
    return exc.value.errors


def test_empty_config_is_valid_and_typed():
    cfg = parse_config("")
    assert cfg.models == ()
    assert cfg.schedules.benchmark.interval == 3600.0
    assert cfg.schedules.load.enabled is False


def test_example_config_is_valid():
    cfg = parse_config((REPO / "examples" / "wan-exporter.yaml").read_text())
    assert [m.name for m in cfg.models] == ["t2v-a14b", "i2v-a14b", "ti2v-5b"]
    assert cfg.model("t2v-a14b").baselines == {"probe-480p": 20.0}
    assert cfg.benchmark.busy_foreign_memory_bytes == 1 << 30
    assert cfg.hashing.chunk_bytes == 8 << 20
    assert cfg.schedules.hash.interval == 86400.0


def test_embedded_default_and_demo_configs_are_valid(tmp_path):
    assert [m.kind for m in default_config().models] == ["wan2.2-t2v-a14b", "wan2.2-i2v-a14b", "wan2.2-ti2v-5b"]
    demo = demo_config(tmp_path)
    assert all(m.device == "cpu" and m.kind.startswith("tiny-") for m in demo.models)
    assert all(m.name.startswith("tiny-") for m in demo.models)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("schedules:\n  benchmark:\n    interval: soon\n", "schedules.benchmark.interval: expected a duration like 15m"),
        ("modles: []\n", "modles: unknown key (did you mean 'models'?)"),
        (f"models:\n  - {MODEL}\n  - {{name: m2, kind: wan2.2-t2v-a14b, hubid: x/y}}\n",
         "models[1].hubid: unknown key (did you mean 'hub_id'?)"),
        ("models:\n  - {name: m1, kind: wan2.2-t2v-a14x, hub_id: a/b}\n",
         "models[0].kind: unknown model kind 'wan2.2-t2v-a14x' (did you mean 'wan2.2-t2v-a14b'?)"),
        (f"models:\n  - {MODEL}\n  - {MODEL}\n", "models[1].name: duplicate model name 'm1' (also models[0])"),
        ("models:\n  - {name: 'bad name/..', kind: wan2.2-t2v-a14b, hub_id: a/b}\n", "models[0].name: invalid model name"),
        ("models:\n  - {name: m, kind: wan2.2-t2v-a14b}\n", "models[0]: exactly one of path or hub_id is required"),
        ("models:\n  - {name: m, kind: wan2.2-t2v-a14b, hub_id: a/b, dtype: fp8}\n",
         "models[0].dtype: expected one of bfloat16, float16, float32"),
        ("models:\n  - {name: m, kind: wan2.2-t2v-a14b, hub_id: a/b, device: gpu0}\n",
         "models[0].device: expected cpu, cuda or cuda:N"),
        ("models:\n  - {name: m, kind: wan2.2-t2v-a14b, hub_id: a/b, profiles: [nope]}\n",
         "models[0].profiles[0]: unknown profile 'nope'"),
        ("profiles:\n  p: {frames: 16}\n", "profiles.p.frames: 16 frames; Wan needs 4n+1 frames"),
        ("profiles:\n  p: {width: 833}\n", "profiles.p.width: 833 is not a positive multiple of 16"),
        ("models:\n  - {name: m, kind: wan2.2-ti2v-5b, hub_id: a/b, profiles: [p]}\nprofiles:\n  p: {width: 848, height: 480}\n",
         "models[0].profiles[0]: profile 'p' width 848 is not a multiple of 32"),
        ("models:\n  - {name: m, kind: wan2.2-t2v-a14b, hub_id: a/b, profiles: [p]}\nprofiles:\n  p: {image: true}\n",
         "takes no image input"),
        ("benchmark:\n  busy_foreign_memory_bytes: lots\n", "benchmark.busy_foreign_memory_bytes: expected a size like 8GiB"),
        ("benchmark:\n  keep_warm: 'yes'\n", "benchmark.keep_warm: expected true or false"),
        ("models: {}\n", "models: expected a list"),
        ("models:\n  - {name: m, kind: wan2.2-t2v-a14b, hub_id: []}\n",
         "models[0].hub_id: expected 'organisation/name' or a non-empty list of them"),
        ("models:\n  - {name: m, kind: wan2.2-t2v-a14b, path: /x, device: cpu, offload: model}\n",
         "models[0].offload: CPU offload needs a CUDA device"),
        ("kubernetes:\n  jobs: {ttl_seconds_after_finished: 0}\n",
         "kubernetes.jobs.ttl_seconds_after_finished: expected at least 30 s"),
        ("kubernetes:\n  jobs: {ttl_seconds_after_finished: 40, poll_interval: 20s}\n",
         "kubernetes.jobs.ttl_seconds_after_finished: expected at least 30 s and 3 poll intervals (got 40)"),
        ("- just a list\n", "top level: expected a mapping"),
        ("models: [\n", "invalid YAML"),
    ],
)
def test_each_bad_input_has_its_message(text, expected):
    errs = errors_of(text)
    assert any(expected in e for e in errs), errs


def test_a_value_of_the_wrong_type_is_one_error_without_follow_on_errors():
    assert errors_of("exporter:\n  links: {grafana: 5}\n") == ["exporter.links.grafana: expected a string"]
    assert errors_of("models:\n  - {name: m, kind: 5, hub_id: a/b}\n") == ["models[0].kind: expected a string"]


def test_every_error_is_reported_at_once():
    text = (
        "modles: []\n"
        "schedules:\n  benchmark:\n    interval: soon\n"
        "models:\n  - {name: m, kind: nope, hub_id: a/b}\n"
    )
    errs = errors_of(text)
    assert len(errs) >= 3, errs
    assert any(e.startswith("modles:") for e in errs)
    assert any(e.startswith("schedules.benchmark.interval:") for e in errs)


def test_python_object_tag_is_rejected_clearly():
    errs = errors_of("models: !!python/object/apply:os.system ['echo pwned']\n")
    assert len(errs) == 1
    assert "line 1" in errs[0] and "tag not allowed" in errs[0]


def test_missing_path_is_an_error_for_check_config_only(tmp_path):
    text = "models:\n  - {name: m, kind: wan2.2-t2v-a14b, path: /nonexistent/model}\n"
    parse_config(text)  # at run time a missing directory is a health finding, not a config error
    assert any("models[0].path: no such directory" in e for e in errors_of(text, check_paths=True))


def test_model_flood_is_capped():
    models = "".join(f"  - {{name: m{i}, kind: wan2.2-t2v-a14b, hub_id: a/b}}\n" for i in range(70))
    errs = errors_of("models:\n" + models)
    assert any("more than exporter.max_models (64)" in e for e in errs)


def _check_config(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wan_exporter", "check-config", str(path)],
                          capture_output=True, text=True, env=exporter_env(), timeout=60)


def test_check_config_cli_exit_codes(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "models:\n  - {name: a, kind: wan2.2-t2v-a14b, hub_id: x/y}\n  - {name: b, kind: wan2.2-t2v-a14b, hub_id: x/y}\n"
        "  - {name: c, kind: wan2.2-t2v-a14b, path: /no/such/dir}\n"
        "schedules:\n  benchmark:\n    interval: later\n"
    )
    r = _check_config(bad)
    assert r.returncode == 1
    assert "models[2].path: no such directory" in r.stderr
    assert "schedules.benchmark.interval: expected a duration like 15m" in r.stderr
    good = tmp_path / "good.yaml"
    good.write_text(f"models:\n  - {MODEL}\n")
    r = _check_config(good)
    assert r.returncode == 0, r.stderr
    assert "valid" in r.stdout


def test_non_utf8_file_is_a_clear_error(tmp_path):
    from wan_exporter.config import load_config

    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(b"models: []\n# caf\xe9\n")
    with pytest.raises(ConfigError) as exc:
        load_config(bad)
    assert "not UTF-8" in exc.value.errors[0]
    r = _check_config(bad)
    assert r.returncode == 1 and "not UTF-8" in r.stderr and "Traceback" not in r.stderr


def test_path_may_be_a_file_or_a_list_of_files_with_a_format(tmp_path):
    a, b = tmp_path / "high.safetensors", tmp_path / "low.gguf"
    a.write_bytes(b"x")
    b.write_bytes(b"x")
    cfg = parse_config(f"""
models:
  - {{name: one, kind: wan2.2-ti2v-5b, path: {a}}}
  - {{name: two, kind: wan2.2-t2v-a14b, path: [{a}, {b}], format: single_file}}
  - {{name: hub, kind: wan2.2-t2v-a14b, hub_id: [Wan-AI/Wan2.2-T2V-A14B-Diffusers, Wan-AI/Wan2.2-T2V-A14B]}}
""", check_paths=True)
    assert cfg.models[0].path == str(a) and cfg.models[0].format == "auto"
    assert cfg.models[1].path == (str(a), str(b)) and cfg.models[1].format == "single_file"
    assert cfg.models[2].hub_id == ("Wan-AI/Wan2.2-T2V-A14B-Diffusers", "Wan-AI/Wan2.2-T2V-A14B")


def test_bad_paths_formats_and_hub_ids_are_each_reported_with_their_path(tmp_path):
    errors = errors_of(f"""
models:
  - {{name: a, kind: wan2.2-t2v-a14b, path: [{tmp_path}/high.safetensors, {tmp_path}/notes.txt]}}
  - {{name: b, kind: wan2.2-t2v-a14b, path: [{tmp_path}/x.gguf], format: official}}
  - {{name: c, kind: wan2.2-t2v-a14b, path: {tmp_path}, format: gguff}}
  - {{name: d, kind: wan2.2-t2v-a14b, hub_id: [Wan-AI/ok, not a repo]}}
""", check_paths=True)
    assert f"models[0].path[0]: no such file: {tmp_path}/high.safetensors" in errors
    assert any(e.startswith("models[0].path[1]: expected a .safetensors or .gguf file") for e in errors)
    assert any(e.startswith("models[1].format: official is a directory form") for e in errors)
    assert any(e.startswith("models[2].format: expected one of auto, diffusers") and "gguf" in e for e in errors)
    assert any(e.startswith("models[3].hub_id[1]: expected 'organisation/name'") for e in errors)


def test_base_must_be_a_diffusers_directory(tmp_path):
    f = tmp_path / "high.gguf"
    f.write_bytes(b"x")
    errors = errors_of(f"models:\n  - {{name: m, kind: wan2.2-t2v-a14b, path: [{f}], base: {tmp_path}}}\n",
                       check_paths=True)
    assert errors == [f"models[0].base: not a diffusers-format directory (no model_index.json): {tmp_path}"]


def test_compare_to_names_another_model_of_the_same_kind_that_shares_a_profile():
    profiles = "profiles: {p: {}, q: {}}\n"
    ok = parse_config(profiles + "models:\n  - {name: a, kind: wan2.2-t2v-a14b, hub_id: o/x, profiles: [p]}\n"
                      "  - {name: b, kind: wan2.2-t2v-a14b, hub_id: o/y, profiles: [p], compare_to: a}\n")
    assert ok.model("b").compare_to == "a"
    errs = errors_of(profiles + "models:\n"
                     "  - {name: a, kind: wan2.2-t2v-a14b, hub_id: o/x, profiles: [p]}\n"
                     "  - {name: b, kind: wan2.2-ti2v-5b, hub_id: o/y, profiles: [p], compare_to: a}\n"
                     "  - {name: c, kind: wan2.2-t2v-a14b, hub_id: o/z, profiles: [q], compare_to: a}\n"
                     "  - {name: d, kind: wan2.2-t2v-a14b, hub_id: o/w, profiles: [p], compare_to: aa}\n"
                     "  - {name: e, kind: wan2.2-t2v-a14b, hub_id: o/v, profiles: [p], compare_to: e}\n")
    assert errs == [
        "models[1].compare_to: 'a' is a wan2.2-t2v-a14b, this model a wan2.2-ti2v-5b; only forms of one model compare",
        "models[2].compare_to: 'a' runs none of this model's profiles",
        "models[3].compare_to: no model named 'aa' (did you mean 'a'?)",
        "models[4].compare_to: a model cannot be compared with itself",
    ], errs
