"""`wan-exporter check-config` agrees with the running exporter: a model whose files are not on disk
(a volume not mounted yet, a hub snapshot not downloaded) is a health state, not a config error."""

from __future__ import annotations

import re
import subprocess
import sys

from support.procs import REPO, exporter_env
from wan_exporter.config import load_config
from wan_exporter.checkpoint.locate import resolve_model_dir

EXAMPLE = REPO / "examples" / "wan-exporter.yaml"


def _check_config(path, **env):
    return subprocess.run([sys.executable, "-m", "wan_exporter", "check-config", str(path)],
                          capture_output=True, text=True, env=exporter_env(env), timeout=60)


def test_the_example_config_is_valid_and_its_absent_models_are_warnings(tmp_path):
    r = _check_config(EXAMPLE, HF_HUB_CACHE=str(tmp_path / "hf"))
    assert r.returncode == 0, r.stderr
    assert "valid" in r.stdout
    assert "warning: models[2].path: no such directory or file: /models/Wan2.2-TI2V-5B-Diffusers" in r.stderr
    assert "reports each such model as missing" in r.stderr


def test_check_config_warns_for_exactly_the_models_the_exporter_reports_missing(tmp_path, monkeypatch):
    present = tmp_path / "present"
    present.mkdir()
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(
        "models:\n"
        f"  - {{name: a, kind: wan2.2-t2v-a14b, path: {present}}}\n"
        f"  - {{name: b, kind: wan2.2-t2v-a14b, path: {tmp_path / 'not-mounted'}}}\n"
        "  - {name: c, kind: wan2.2-t2v-a14b, hub_id: Wan-AI/Wan2.2-T2V-A14B-Diffusers}\n"
        f"exporter: {{hf_cache_dir: {tmp_path / 'hf'}}}\n")
    r = _check_config(cfg_file)
    assert r.returncode == 0, r.stderr
    warned = {int(i) for i in re.findall(r"warning: models\[(\d+)\]", r.stderr)}
    cfg = load_config(cfg_file)
    missing = {i for i, m in enumerate(cfg.models) if resolve_model_dir(m, cfg) is None}
    assert warned == missing == {1, 2}


def test_the_hub_cache_follows_huggingface_hub_variables(tmp_path):
    code = "from wan_exporter.checkpoint import hfcache; print(hfcache.cache_root())"
    clean = {k: "" for k in ("HF_HUB_CACHE", "HF_HOME")}
    for extra, expected in (({"HUGGINGFACE_HUB_CACHE": str(tmp_path / "old")}, tmp_path / "old"),
                            ({"XDG_CACHE_HOME": str(tmp_path / "xdg")}, tmp_path / "xdg" / "huggingface" / "hub")):
        env = exporter_env({**clean, **extra})
        for k in clean:
            env.pop(k)
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == str(expected)


def test_missing_single_files_are_warnings_each_with_its_path(tmp_path):
    present = tmp_path / "wan2.2_t2v_high_noise_14B_fp16.safetensors"
    present.write_bytes(b"x")
    cfg = tmp_path / "wan.yaml"
    cfg.write_text(f"models:\n  - {{name: m, kind: wan2.2-t2v-a14b, path: [{present}, {tmp_path}/low.safetensors]}}\n")
    r = subprocess.run([sys.executable, "-m", "wan_exporter", "check-config", str(cfg)], capture_output=True,
                       text=True, env=exporter_env(), timeout=60)
    assert r.returncode == 0, r.stderr
    assert f"warning: models[0].path[1]: no such file: {tmp_path}/low.safetensors" in r.stderr
    assert "path[0]" not in r.stderr


def test_a_profile_that_cannot_fit_its_gpu_is_refused_and_an_unreadable_gpu_is_a_warning(tmp_path):
    """The memory guard as check-config applies it: 8192x8192x1001 frames on an A14B cannot fit an
    H200's 140 GiB (NVML read through the stand-in); without NVML the estimate is printed as a warning."""
    from support.procs import write_nvml_state

    cfg = tmp_path / "wan.yaml"
    cfg.write_text("models:\n  - {name: big, kind: wan2.2-t2v-a14b, path: /nonexistent, device: 'cuda:0', "
                   "profiles: [huge, probe]}\nprofiles:\n  huge: {width: 8192, height: 8192, frames: 1001}\n"
                   "  probe: {width: 832, height: 480, frames: 17}\n")
    state = write_nvml_state(tmp_path / "nvml.json", gpus=[{"memory_total": 150754820096}])
    r = _check_config(cfg, WAN_EXPORTER_NVML_MODULE="support.fake_pynvml", FAKE_NVML_STATE=str(state))
    assert r.returncode == 1, r.stdout + r.stderr
    assert re.search(r"refused: models\[0\]\.profiles\[0\]: model big profile huge: would not fit: estimated peak "
                     r"at least [\d,.]+ GiB .* > 140\.4 GiB memory of cuda:0", r.stderr), r.stderr
    assert "profile probe" not in r.stderr  # 832x480x17 fits
    r = _check_config(cfg, WAN_EXPORTER_NVML_MODULE="support.no_such_module")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "warning: models[0].profiles[0]: model big profile huge: estimated peak at least" in r.stderr
    assert "cannot be read here (NVML)" in r.stderr
