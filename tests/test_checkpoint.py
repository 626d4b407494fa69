"""Checkpoint facts come from real safetensors files and never raise for a broken checkpoint."""

from __future__ import annotations

import dataclasses
import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from wan_exporter import catalog
from wan_exporter.checkpoint import facts as checkpoint
from wan_exporter.checkpoint.facts import HeaderError, compare_with_catalog, derive_facts, read_safetensors_header
from wan_exporter.scan.safetensors_header import dtype_name, read_header

EXPORTER_DIR = Path(__file__).resolve().parents[1] / "exporter"


# ---------------------------------------------------------------- building diffusers-like layouts


def _write_json(path: Path, doc: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc), encoding="utf-8")


def _transformer(d: Path, *, dtype: type = np.float32, sharded: bool = False, in_channels: int = 16) -> int:
    """A small transformer component; returns its parameter count."""
    tensors = {
        "patch_embedding.weight": np.zeros((24, in_channels, 1, 2, 2), dtype),
        "blocks.0.attn1.to_q.weight": np.zeros((24, 24), dtype),
        "blocks.0.attn1.to_q.bias": np.zeros((24,), dtype),
        "proj_out.weight": np.zeros((64, 24), dtype),
    }
    _write_json(d / "config.json", {"_class_name": "WanTransformer3DModel", "num_layers": 1,
                                    "num_attention_heads": 2, "attention_head_dim": 12,
                                    "in_channels": in_channels, "patch_size": [1, 2, 2]})
    if not sharded:
        save_file(tensors, str(d / "diffusion_pytorch_model.safetensors"))
    else:
        names = sorted(tensors)
        parts = {"diffusion_pytorch_model-00001-of-00002.safetensors": names[:2],
                 "diffusion_pytorch_model-00002-of-00002.safetensors": names[2:]}
        for fname, keys in parts.items():
            save_file({k: tensors[k] for k in keys}, str(d / fname))
        _write_json(d / "diffusion_pytorch_model.safetensors.index.json",
                    {"metadata": {}, "weight_map": {k: f for f, ks in parts.items() for k in ks}})
    return sum(a.size for a in tensors.values())


def _layout(root: Path, *, experts: int = 2, boundary: float | None = 0.875, sharded_2: bool = True,
            expand_timesteps: bool = False, z_dim: int = 16) -> dict[str, int]:
    """A WanPipeline-style directory; returns parameters per component."""
    index = {
        "_class_name": "WanPipeline", "_diffusers_version": "0.42.1",
        "boundary_ratio": boundary, "expand_timesteps": expand_timesteps,
        "scheduler": ["diffusers", "UniPCMultistepScheduler"],
        "text_encoder": ["transformers", "UMT5EncoderModel"],
        "tokenizer": ["transformers", "TokenizersBackend"],
        "transformer": ["diffusers", "WanTransformer3DModel"],
        "transformer_2": ["diffusers", "WanTransformer3DModel"] if experts == 2 else [None, None],
        "vae": ["diffusers", "AutoencoderKLWan"],
    }
    _write_json(root / "model_index.json", index)
    _write_json(root / "scheduler" / "scheduler_config.json", {"_class_name": "UniPCMultistepScheduler"})
    _write_json(root / "tokenizer" / "tokenizer_config.json", {})
    counts = {"transformer": _transformer(root / "transformer")}
    if experts == 2:
        counts["transformer_2"] = _transformer(root / "transformer_2", sharded=sharded_2)
    te = {"shared.weight": np.ones((50, 8), np.float16)}
    _write_json(root / "text_encoder" / "config.json", {"d_model": 8})
    save_file(te, str(root / "text_encoder" / "model.safetensors"))
    counts["text_encoder"] = 400
    _write_json(root / "vae" / "config.json", {"_class_name": "AutoencoderKLWan", "z_dim": z_dim,
                                               "scale_factor_spatial": 8, "scale_factor_temporal": 4})
    save_file({"decoder.conv_in.weight": np.zeros((4, z_dim, 3, 3, 3), np.float32)},
              str(root / "vae" / "diffusion_pytorch_model.safetensors"))
    counts["vae"] = 4 * z_dim * 27
    return counts


# ---------------------------------------------------------------- derivation


def test_derives_parameters_experts_and_dtypes(tmp_path: Path) -> None:
    counts = _layout(tmp_path)
    f = derive_facts(tmp_path)
    assert f.problems == ()
    assert f.pipeline_class == "WanPipeline" and f.diffusers_version == "0.42.1"
    assert f.experts == 2 and f.boundary_ratio == 0.875 and f.expand_timesteps is False
    assert dict(f.parameters_by_component) == counts
    assert f.denoiser_parameters == counts["transformer"] + counts["transformer_2"]
    assert f.dtypes == ("float16", "float32")
    assert f.dtypes_by_component["text_encoder"] == ("float16",)
    assert f.transformer_config["num_attention_heads"] == 2
    assert f.vae_z_dim == 16 and f.vae_compression == (4, 16, 16)
    assert not f.has_image_encoder
    assert f.components["tokenizer"] == "TokenizersBackend"
    assert json.loads(json.dumps(f.as_dict()))["experts"] == 2


def test_bfloat16_and_float8_dtype_names(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file as save_torch

    p = tmp_path / "w.safetensors"
    save_torch({"a": torch.zeros(3, 4, dtype=torch.bfloat16), "b": torch.zeros(5, dtype=torch.float8_e4m3fn)}, str(p))
    h = read_header(p)
    assert h.dtypes() == ("bfloat16", "float8_e4m3fn")
    assert h.parameter_count() == 17
    assert h.validate(p.stat().st_size) == []
    assert dtype_name("F32") == "float32" and dtype_name("F16") == "float16"


def test_single_expert_without_boundary(tmp_path: Path) -> None:
    _layout(tmp_path, experts=1, boundary=None)
    f = derive_facts(tmp_path)
    assert f.experts == 1 and f.boundary_ratio is None and f.problems == ()
    assert f.denoiser_parameters == f.parameters_by_component["transformer"]


def test_read_safetensors_header_returns_the_raw_header(tmp_path: Path) -> None:
    p = tmp_path / "x.safetensors"
    save_file({"w": np.zeros((2, 3), np.float32)}, str(p), metadata={"format": "pt"})
    h = read_safetensors_header(p)
    assert h["w"] == {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}
    assert h["__metadata__"] == {"format": "pt"}
    parsed = read_header(p)
    assert parsed.data_size_expected == p.stat().st_size
    assert parsed.tensors["w"].offsets == (0, 24)


# ---------------------------------------------------------------- bad files


def test_truncated_file_is_a_header_error_mentioning_truncation(tmp_path: Path) -> None:
    p = tmp_path / "t.safetensors"
    save_file({"w": np.zeros((64, 64), np.float32)}, str(p))
    p.write_bytes(p.read_bytes()[:-100])
    with pytest.raises(HeaderError, match="truncated"):
        read_safetensors_header(p)
    # The header itself is intact, so the parameter count is still readable.
    h = read_header(p)
    assert h.parameter_count() == 4096
    assert "truncated" in h.validate(p.stat().st_size)[0]


def test_header_cut_off_is_truncation(tmp_path: Path) -> None:
    p = tmp_path / "t.safetensors"
    save_file({"w": np.zeros((4,), np.float32)}, str(p))
    p.write_bytes(p.read_bytes()[:20])
    with pytest.raises(HeaderError, match="truncated"):
        read_safetensors_header(p)


@pytest.mark.parametrize("content, match", [
    (b"", "too short"),
    (b"\x01\x02\x03", "too short"),
    (struct.pack("<Q", 10) + b"not json!!", "not valid JSON"),
    (struct.pack("<Q", 2) + b"[]", "not a JSON object"),
    (struct.pack("<Q", 1 << 60) + b"{}", "100 MB"),
    (struct.pack("<Q", 4) + b"\xff\xfe\x00\x01", "not valid JSON"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "100 MB"),  # a PNG's magic read as a header length
], ids=["empty", "three-bytes", "not-json", "json-array", "huge-length", "binary", "png"])
def test_garbage_is_a_header_error(tmp_path: Path, content: bytes, match: str) -> None:
    p = tmp_path / "g.safetensors"
    p.write_bytes(content)
    with pytest.raises(HeaderError, match=match):
        read_safetensors_header(p)


def _raw(tmp_path: Path, header: dict, data: bytes) -> Path:
    raw = json.dumps(header).encode()
    p = tmp_path / "raw.safetensors"
    p.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return p


def test_offsets_that_disagree_with_the_shape_are_rejected(tmp_path: Path) -> None:
    p = _raw(tmp_path, {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}, b"\0" * 8)
    with pytest.raises(HeaderError, match="expected 16"):
        read_header(p)


def test_overlapping_offsets_are_rejected(tmp_path: Path) -> None:
    p = _raw(tmp_path, {"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
                        "b": {"dtype": "U8", "shape": [4], "data_offsets": [2, 6]}}, b"\0" * 6)
    with pytest.raises(HeaderError, match="gap or overlap"):
        read_header(p)


def test_offsets_beyond_the_file_are_truncation(tmp_path: Path) -> None:
    p = _raw(tmp_path, {"w": {"dtype": "U8", "shape": [1000], "data_offsets": [0, 1000]}}, b"\0" * 10)
    with pytest.raises(HeaderError, match="truncated"):
        read_safetensors_header(p)


def test_trailing_bytes_are_reported(tmp_path: Path) -> None:
    p = tmp_path / "x.safetensors"
    save_file({"w": np.zeros((2,), np.float32)}, str(p))
    p.write_bytes(p.read_bytes() + b"junk")
    with pytest.raises(HeaderError, match="trailing"):
        read_safetensors_header(p)


# ---------------------------------------------------------------- broken checkpoints never raise


def test_missing_component_is_a_problem_not_an_exception(tmp_path: Path) -> None:
    _layout(tmp_path)
    for f in (tmp_path / "transformer_2").iterdir():
        f.unlink()
    (tmp_path / "transformer_2").rmdir()
    facts = derive_facts(tmp_path)
    assert facts.experts == 2  # what model_index.json declares
    assert facts.denoiser_parameters is None  # not every declared expert could be counted
    assert "transformer" in facts.parameters_by_component
    assert any("transformer_2" in p and "missing" in p for p in facts.problems)


def test_truncated_shard_is_reported_and_counted_from_its_header(tmp_path: Path) -> None:
    counts = _layout(tmp_path)
    shard = tmp_path / "transformer_2" / "diffusion_pytorch_model-00002-of-00002.safetensors"
    shard.write_bytes(shard.read_bytes()[:-16])
    facts = derive_facts(tmp_path)
    assert any("truncated" in p and "transformer_2/" in p for p in facts.problems)
    assert facts.parameters_by_component["transformer_2"] == counts["transformer_2"]


def test_garbage_shard_and_missing_shard(tmp_path: Path) -> None:
    _layout(tmp_path)
    d = tmp_path / "transformer_2"
    (d / "diffusion_pytorch_model-00001-of-00002.safetensors").write_bytes(b"garbage, not a safetensors file")
    (d / "diffusion_pytorch_model-00002-of-00002.safetensors").unlink()
    facts = derive_facts(tmp_path)
    assert "transformer_2" not in facts.parameters_by_component
    assert facts.denoiser_parameters is None
    assert any("shard listed" in p and "missing" in p for p in facts.problems)
    assert any("00001-of-00002" in p for p in facts.problems)


def test_missing_shard_without_index(tmp_path: Path) -> None:
    _layout(tmp_path)
    d = tmp_path / "transformer_2"
    (d / "diffusion_pytorch_model.safetensors.index.json").unlink()
    (d / "diffusion_pytorch_model-00002-of-00002.safetensors").unlink()
    facts = derive_facts(tmp_path)
    assert "transformer_2" not in facts.parameters_by_component
    assert any("shard 2 of 2 missing" in p for p in facts.problems)


@pytest.mark.parametrize("index_text", [None, "{not json", "[1, 2]"])
def test_missing_or_corrupt_model_index(tmp_path: Path, index_text: str | None) -> None:
    counts = _layout(tmp_path)
    if index_text is None:
        (tmp_path / "model_index.json").unlink()
    else:
        (tmp_path / "model_index.json").write_text(index_text)
    facts = derive_facts(tmp_path)
    assert facts.pipeline_class is None and facts.boundary_ratio is None
    assert facts.problems and facts.problems[0].startswith("model_index.json")
    # Components are guessed from the subdirectories, so counts are still there.
    assert facts.experts == 2
    assert facts.denoiser_parameters == counts["transformer"] + counts["transformer_2"]


def test_corrupt_config_and_pickle_weights(tmp_path: Path) -> None:
    _layout(tmp_path)
    (tmp_path / "transformer" / "config.json").write_text("{oops")
    te = tmp_path / "text_encoder"
    (te / "model.safetensors").unlink()
    (te / "pytorch_model.bin").write_bytes(b"\x80\x02pickle")
    facts = derive_facts(tmp_path)
    assert facts.transformer_config == {}
    assert any(p.startswith("transformer/config.json: unreadable") for p in facts.problems)
    assert any("only pytorch_model.bin" in p for p in facts.problems)
    assert "text_encoder" not in facts.parameters_by_component


@pytest.mark.parametrize("make", ["missing", "file", "empty"])
def test_not_a_checkpoint_directory(tmp_path: Path, make: str) -> None:
    target = tmp_path / "model"
    if make == "file":
        target.write_text("x")
    elif make == "empty":
        target.mkdir()
    facts = derive_facts(target)
    assert facts.problems
    assert facts.experts is None and facts.denoiser_parameters is None and facts.dtypes == ()


def test_problems_are_bounded(tmp_path: Path) -> None:
    _layout(tmp_path)
    d = tmp_path / "transformer_2"
    wm = {f"t{i}": f"diffusion_pytorch_model-{i:05d}-of-00100.safetensors" for i in range(1, 101)}
    _write_json(d / "diffusion_pytorch_model.safetensors.index.json", {"weight_map": wm})
    facts = derive_facts(tmp_path)
    assert len(facts.problems) == checkpoint.MAX_PROBLEMS + 1
    assert facts.problems[-1].startswith("... and ")


def test_deriving_facts_never_imports_torch(tmp_path: Path) -> None:
    """The exporter process derives facts; it must stay free of the heavy stack."""
    _layout(tmp_path)
    code = (
        "import sys; from wan_exporter.checkpoint.facts import derive_facts;"
        f"f = derive_facts({str(tmp_path)!r}); assert f.experts == 2, f;"
        "heavy = [m for m in ('torch', 'diffusers', 'numpy', 'safetensors') if m in sys.modules];"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={"PYTHONPATH": str(EXPORTER_DIR)})


# ---------------------------------------------------------------- comparison with the catalog


def test_compare_finds_an_expert_count_mismatch(tmp_path: Path) -> None:
    _layout(tmp_path, experts=1, boundary=None)
    found = compare_with_catalog(derive_facts(tmp_path), catalog.get("tiny-wan2.2-t2v-a14b"))
    assert any("1 denoising expert" in m and "has 2" in m for m in found)
    assert any("boundary_ratio" in m for m in found)


def test_compare_is_quiet_when_the_checkpoint_matches(tmp_path: Path) -> None:
    _layout(tmp_path)
    assert compare_with_catalog(derive_facts(tmp_path), catalog.get("tiny-wan2.2-t2v-a14b")) == ()


def test_compare_parameters_and_architecture_for_published_entries(tmp_path: Path) -> None:
    _layout(tmp_path, experts=1, boundary=None)
    facts = derive_facts(tmp_path)
    entry = catalog.get("wan2.1-t2v-1.3b")
    found = compare_with_catalog(facts, entry)
    assert any("denoiser parameters" in m and "off the exact" in m for m in found)
    assert any("transformer num_layers is 1" in m for m in found)
    right = dataclasses.replace(facts, denoiser_parameters=entry.parameters_derived,
                                transformer_config=dict(entry.architecture))
    assert compare_with_catalog(right, entry) == ()
    # 9% off the exact count is within the 10% tolerance; 12% is not.
    assert not compare_with_catalog(dataclasses.replace(right, denoiser_parameters=int(1.09 * 1_418_996_800)), entry)
    assert compare_with_catalog(dataclasses.replace(right, denoiser_parameters=int(1.12 * 1_418_996_800)), entry)


def test_compare_expand_timesteps_and_vae(tmp_path: Path) -> None:
    _layout(tmp_path, experts=1, boundary=None, expand_timesteps=False, z_dim=16)
    found = compare_with_catalog(derive_facts(tmp_path), catalog.get("tiny-wan2.2-ti2v-5b"))
    assert any("expand_timesteps" in m for m in found)
    assert any("z_dim is 16" in m for m in found)
    assert any("compression" in m for m in found)


def test_compare_pipeline_and_image_encoder(tmp_path: Path) -> None:
    _layout(tmp_path, experts=1, boundary=None)
    found = compare_with_catalog(derive_facts(tmp_path), catalog.get("tiny-wan2.1-i2v"))
    assert any("pipeline class is WanPipeline" in m for m in found)
    assert any("no image encoder" in m for m in found)


# ---------------------------------------------------------------- real tiny pipelines saved by diffusers


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    pytest.importorskip("diffusers")
    from wan_exporter import tiny

    return tiny.build_all(tmp_path_factory.mktemp("tiny"))


@pytest.mark.parametrize("kind", catalog.TINY_KEYS)
def test_real_tiny_pipelines_match_their_catalog_entries(tiny_dirs: dict[str, Path], kind: str) -> None:
    from safetensors.torch import load_file

    facts = derive_facts(tiny_dirs[kind])
    assert facts.problems == ()
    assert compare_with_catalog(facts, catalog.get(kind)) == ()
    assert facts.dtypes == ("float32",)
    for name, n in facts.parameters_by_component.items():
        weights = load_file(str(tiny_dirs[kind] / name / next(
            p.name for p in (tiny_dirs[kind] / name).iterdir() if p.suffix == ".safetensors")))
        assert n == sum(t.numel() for t in weights.values()), name
