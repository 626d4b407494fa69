"""Tiny Wan pipelines: built offline from the real diffusers classes, deterministic, reloadable."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from wan_exporter import tiny  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXPECTED = {
    # kind: (pipeline class, experts, boundary_ratio, expand_timesteps, transformer in_channels, vae z_dim)
    "tiny-wan2.2-t2v-a14b": ("WanPipeline", 2, 0.875, False, 16, 16),
    "tiny-wan2.2-i2v-a14b": ("WanImageToVideoPipeline", 2, 0.9, False, 36, 16),
    "tiny-wan2.2-ti2v-5b": ("WanPipeline", 1, None, True, 48, 48),
    "tiny-wan2.1-t2v": ("WanPipeline", 1, None, False, 16, 16),
    "tiny-wan2.1-i2v": ("WanImageToVideoPipeline", 1, None, False, 36, 16),
}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return tiny.build_all(tmp_path_factory.mktemp("tiny"))


def _file_hashes(d: Path) -> dict[str, str]:
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.rglob("*")) if p.is_file()}


def test_importing_tiny_and_sanity_never_imports_torch() -> None:
    code = "import sys, wan_exporter.tiny, wan_exporter.measure.sanity; assert 'torch' not in sys.modules, 'torch imported'"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "exporter")}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_default_cache_dir_honours_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("WAN_EXPORTER_CACHE", str(tmp_path / "c"))
    assert tiny.default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("WAN_EXPORTER_CACHE")
    assert tiny.default_cache_dir() == Path.home() / ".cache" / "wan-exporter" / "tiny-models"


def test_every_kind_is_a_diffusers_layout(built: dict[str, Path]) -> None:
    assert set(built) == set(tiny.TINY_KINDS) == set(EXPECTED)
    for kind, path in built.items():
        cls, experts, ratio, expand, _, _ = EXPECTED[kind]
        index = json.loads((path / "model_index.json").read_text())
        assert index["_class_name"] == cls
        assert index["boundary_ratio"] == ratio
        assert index["expand_timesteps"] is expand
        assert (index["transformer_2"][0] is not None) == (experts == 2), kind
        assert (path / "transformer_2").is_dir() == (experts == 2), kind
        assert tiny.is_built(path)
        assert sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) < 2_000_000  # tiny means tiny


def test_only_wan21_i2v_has_a_clip_image_encoder(built: dict[str, Path]) -> None:
    for kind, path in built.items():
        index = json.loads((path / "model_index.json").read_text())
        has_clip = index.get("image_encoder", [None])[0] is not None
        assert has_clip == (kind == "tiny-wan2.1-i2v"), kind


def test_each_kind_loads_back_with_the_real_pipeline_class(built: dict[str, Path]) -> None:
    import diffusers
    from wan_exporter.load.pipeline import load_pipeline

    for kind, path in built.items():
        cls, experts, ratio, expand, in_ch, z_dim = EXPECTED[kind]
        pipe = load_pipeline({"model_dir": str(path), "pipeline": cls, "dtype": "float32", "fault": "none"})
        assert type(pipe) is getattr(diffusers, cls)
        assert pipe.config.boundary_ratio == ratio
        assert pipe.config.expand_timesteps is expand
        assert pipe.transformer.config.in_channels == in_ch
        assert (pipe.transformer_2 is not None) == (experts == 2)
        assert pipe.vae.config.z_dim == z_dim


def test_reloaded_weights_equal_the_built_ones(built: dict[str, Path]) -> None:
    import torch
    from wan_exporter.load.pipeline import load_pipeline

    fresh = tiny.make_pipeline("tiny-wan2.2-t2v-a14b")
    loaded = load_pipeline({"model_dir": str(built["tiny-wan2.2-t2v-a14b"]), "pipeline": "WanPipeline",
                            "dtype": "float32", "fault": "none"})
    for name in ("transformer", "transformer_2", "text_encoder", "vae"):
        a, b = getattr(fresh, name).state_dict(), getattr(loaded, name).state_dict()
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), name


def test_same_command_builds_identical_files(built: dict[str, Path], tmp_path: Path) -> None:
    again = tiny.build("tiny-wan2.1-t2v", tmp_path / "again")
    assert _file_hashes(again) == _file_hashes(built["tiny-wan2.1-t2v"])


def test_build_all_skips_complete_and_rebuilds_half_written(tmp_path: Path) -> None:
    kinds = ("tiny-wan2.1-t2v",)
    seen: list[tuple[str, str]] = []
    tiny.build_all(tmp_path, kinds, progress=lambda k, s: seen.append((k, s)))
    tiny.build_all(tmp_path, kinds, progress=lambda k, s: seen.append((k, s)))
    assert seen == [("tiny-wan2.1-t2v", "built"), ("tiny-wan2.1-t2v", "cached")]
    (tmp_path / "tiny-wan2.1-t2v" / tiny.MARKER).unlink()  # as if interrupted before the marker
    (tmp_path / "tiny-wan2.1-t2v" / "vae" / "config.json").unlink()
    tiny.build_all(tmp_path, kinds, progress=lambda k, s: seen.append((k, s)))
    assert seen[-1] == ("tiny-wan2.1-t2v", "built")
    assert (tmp_path / "tiny-wan2.1-t2v" / "vae" / "config.json").is_file()


def test_unknown_kind_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown tiny kind"):
        tiny.build("tiny-wan9-t2v", tmp_path / "x")
