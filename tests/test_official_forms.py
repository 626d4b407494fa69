"""The official layout and fp8-scaled files give the reference output, and benchmark end to end.

Tolerances: the key mappings move float32 tensors unchanged, so the same weights through
either naming give bit-identical outputs (``torch.equal``). fp8-scaled files are compared with
their own dequantised reference (``weight.float() * scale_weight``), also exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from support.procs import parse_metrics, sample
from wan_exporter import tiny, tiny_forms
from wan_exporter.load import official

KIND = "tiny-wan2.2-t2v-a14b"


@pytest.fixture(scope="module")
def layouts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("forms")
    return {"a14b": tiny_forms.official_layout(d / "Wan2.2-T2V-A14B"),
            "fp8": tiny_forms.single_files(d / "comfy", "fp8_scaled")[0].parent,
            "base": tiny.build(KIND, d / KIND)}


def test_official_tensors_load_as_the_diffusers_model_they_name(layouts: dict[str, Path]) -> None:
    import torch
    from diffusers import WanTransformer3DModel
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers

    folder = layouts["a14b"] / "high_noise_model"
    ours = official.load_transformer(folder, torch.float32)
    ref = tiny._transformer(16)  # the tiny diffusers geometry the official config describes
    for k in ("num_attention_heads", "attention_head_dim", "in_channels", "out_channels", "text_dim", "ffn_dim",
              "num_layers", "cross_attn_norm", "qk_norm", "patch_size"):
        assert tuple(ours.config[k]) == tuple(ref.config[k]) if k == "patch_size" else ours.config[k] == ref.config[k], k
    ref.load_state_dict(convert_wan_transformer_to_diffusers(official.read_shards(folder)), strict=True)
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(1, 16, 2, 8, 8, generator=g), torch.tensor([500.0])
    text = torch.randn(1, 6, 32, generator=g)
    with torch.no_grad():
        assert torch.equal(ours(x, t, text).sample, ref(x, t, text).sample)


@pytest.mark.parametrize("wan22", (False, True))
def test_the_vae_mapping_gives_the_same_output_either_way(wan22: bool) -> None:
    import torch

    ref = tiny._vae(wan22)
    sd = official.vae_to_official(ref)
    assert ("encoder.downsamples.0.downsamples.0.residual.0.gamma" in sd) == wan22  # Wan2.2 nests per level
    assert {"decoder.middle.0.residual.0.gamma", "encoder.head.2.weight", "conv1.weight", "conv2.weight"} <= set(sd)
    ours = official.vae_from_official(sd)
    x = torch.randn(1, 3, 5, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(ours(x).sample, ref(x).sample)


def test_the_wan21_vae_names_are_those_diffusers_own_converter_reads() -> None:
    """diffusers' single-file converter hard-codes the full-size Wan2.1 VAE (dim_mult 1,2,4,4, two
    residual blocks per level): on that geometry, at base_dim 4 instead of 96, our names must be
    exactly the ones it maps."""
    import torch
    from diffusers import AutoencoderKLWan
    from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers

    ref = AutoencoderKLWan(base_dim=4, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2,
                           temperal_downsample=[False, True, True])
    back = convert_wan_vae_to_diffusers(official.vae_to_official(ref))
    theirs = ref.state_dict()
    assert set(back) == set(theirs) and all(torch.equal(back[k], theirs[k]) for k in theirs)


def test_the_umt5_mapping_gives_the_same_encoding_either_way() -> None:
    import torch

    tok = tiny._tokenizer()
    ref = tiny._text_encoder(len(tok))
    sd = official.umt5_to_official(ref)
    assert "blocks.0.ffn.gate.0.weight" in sd and "token_embedding.weight" in sd and "norm.weight" in sd
    ours = official.umt5_from_official(sd)
    ids = tok(["a cat walks on the grass"], return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(ours(**ids).last_hidden_state, ref(**ids).last_hidden_state)


def test_fp8_scaled_weights_are_dequantised_never_run_unscaled(layouts: dict[str, Path], tmp_path: Path) -> None:
    import torch
    from diffusers import WanTransformer3DModel
    from safetensors.torch import load_file, save_file

    from wan_exporter.load.single_file import dequantised_state, load_transformers

    path = str(sorted(layouts["fp8"].glob("*high_noise*"))[0])
    raw = load_file(path)
    state, scaled = dequantised_state(path, torch.float32)
    assert scaled and not any(k.endswith("scale_weight") or k == "scaled_fp8" for k in state)
    w = "blocks.0.self_attn.q.weight"
    assert raw[w].dtype == torch.float8_e4m3fn
    assert torch.equal(state[w], raw[w].float() * raw["blocks.0.self_attn.q.scale_weight"])
    # The quantised file holds the official weights to fp8 precision (the fixture quantises them).
    orig = torch.from_numpy(tiny_forms.official_tensors("t2v", seed=0)[w])
    assert (state[w] - orig).abs().max() <= orig.abs().max() / 8 and (raw[w].float() - orig).abs().max() > 1
    # The benchmark's loader gives the model of the dequantised reference, exactly.
    req = {"model_dir": str(layouts["base"]), "transformer_files": {"transformer": path}}
    ours = load_transformers(req, torch.float32)["transformer"]
    ref_file = tmp_path / "ref.safetensors"
    save_file(state, str(ref_file))
    ref = WanTransformer3DModel.from_single_file(str(ref_file), config=str(layouts["base"]), subfolder="transformer",
                                                 local_files_only=True, torch_dtype=torch.float32)
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), ref.state_dict().values()))
    bad = {k: v for k, v in raw.items() if k != "blocks.0.self_attn.q.scale_weight"}
    save_file(bad, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ValueError, match="no scale_weight"):
        dequantised_state(str(tmp_path / "bad.safetensors"), torch.float32)


def test_official_fp8_and_gguf_forms_benchmark_side_by_side(layouts: dict[str, Path], tmp_path: Path) -> None:
    """The official layout (the bf16 run), fp8-scaled and GGUF Q8_0 files of the same DiT weights run the
    real pipeline in the benchmark child; /metrics has their figures, their labels and each one's output
    difference from the bf16 run, computed at run time from the decoded frames of the same seed."""
    from prometheus_client import generate_latest

    from wan_exporter.app import App
    from wan_exporter.config import parse_config

    fp8 = json.dumps([str(p) for p in sorted(layouts["fp8"].glob("*.safetensors"))])
    gguf = json.dumps([str(p) for p in tiny_forms.gguf_files(tmp_path / "gguf")])
    app = App(parse_config(f"""
models:
  - {{name: official, kind: {KIND}, path: '{layouts["a14b"]}', device: cpu, profiles: [tiny]}}
  - {{name: fp8, kind: {KIND}, path: {fp8}, base: '{layouts["base"]}', device: cpu, profiles: [tiny],
     compare_to: official}}
  - {{name: q8, kind: {KIND}, path: {gguf}, base: '{layouts["base"]}', device: cpu, profiles: [tiny],
     compare_to: official}}
profiles:
  tiny: {{width: 32, height: 32, frames: 5, steps: 2, timeout: 3m}}
exporter: {{state_dir: '{tmp_path / "state"}'}}
"""))
    bench = next(s for s in app.subsystems if type(s).__name__ == "BenchmarkSubsystem")
    cfg = app.config()
    for name in ("official", "fp8", "q8"):
        r = bench.run_one(cfg, cfg.model(name), "tiny")
        assert r is not None and r.success, (name, r)
    s = parse_metrics(generate_latest(app.registry).decode())
    labels = {"official": ("official", "fp32"), "fp8": ("single_file", "fp8_e4m3fn_scaled"), "q8": ("gguf", "gguf_q8_0")}
    for name, (form, fmt) in labels.items():
        assert sample(s, "wan_benchmark_run_info", model=name, profile="tiny", form=form, weight_format=fmt,
                      compute_dtype="bfloat16") == 1, name
        assert sample(s, "wan_generation_seconds_per_step", model=name, profile="tiny") > 0
        assert sample(s, "wan_generation_peak_memory_bytes", model=name, profile="tiny") > 0
        assert sample(s, "wan_benchmark_skipped_total", model=name, reason="unsupported_format") is None
    for name in ("fp8", "q8"):
        assert sample(s, "wan_benchmark_comparison_info", model=name, reference="official") == 1
        mad = sample(s, "wan_benchmark_output_max_abs_difference_ratio", model=name, profile="tiny", reference="official")
        psnr = sample(s, "wan_benchmark_output_psnr_decibels", model=name, profile="tiny", reference="official")
        assert mad is not None and 0 <= mad <= 1 and psnr is not None and psnr > 0, (name, mad, psnr)
    assert sample(s, "wan_benchmark_output_psnr_decibels", model="official", profile="tiny", reference="official") is None
