"""A small diffusers-like Wan model directory written with the real safetensors library.

Other health tests import :func:`write_model`; the test here keeps the fixture honest:
a freshly written model passes every check and is healthy.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

SHARDS = ("transformer/diffusion_pytorch_model-00001-of-00002.safetensors",
          "transformer/diffusion_pytorch_model-00002-of-00002.safetensors")
VAE = "vae/diffusion_pytorch_model.safetensors"
TEXT_ENCODER = "text_encoder/model.safetensors"
WEIGHTS = SHARDS + (VAE, TEXT_ENCODER)

MODEL_INDEX = {
    "_class_name": "WanPipeline",
    "_diffusers_version": "0.42.1",
    "boundary_ratio": None,
    "expand_timesteps": False,
    "scheduler": ["diffusers", "UniPCMultistepScheduler"],
    "text_encoder": ["transformers", "UMT5EncoderModel"],
    "tokenizer": ["transformers", "T5TokenizerFast"],
    "transformer": ["diffusers", "WanTransformer3DModel"],
    "transformer_2": [None, None],
    "vae": ["diffusers", "AutoencoderKLWan"],
}


# A minimal but loadable Unigram tokenizer (the `tokenizers` JSON format), so the real load check can run.
TOKENIZER = {
    "version": "1.0", "truncation": None, "padding": None,
    "added_tokens": [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                      "normalized": False, "special": True} for i, t in enumerate(("<pad>", "</s>", "<unk>"))],
    "normalizer": None,
    "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True},
    "post_processor": None,
    "decoder": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True},
    "model": {"type": "Unigram", "unk_id": 2, "byte_fallback": False,
              "vocab": [["<pad>", 0.0], ["</s>", 0.0], ["<unk>", 0.0], ["\u2581a", -2.0], ["\u2581cat", -2.0],
                        ["\u2581", -3.0]] + [[c, -5.0] for c in "abcdefghijklmnopqrstuvwxyz"]},
}


def _tensors(prefix: str, n: int, size: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {f"{prefix}.{i}.weight": rng.standard_normal(size).astype(np.float32) for i in range(n)}


def _json(path: Path, doc: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2))


def write_model(root: Path, tensor_elems: int = 4096) -> Path:
    """Write the model into ``root`` (created); 12 files, four of them weights (~100 KB)."""
    root.mkdir(parents=True, exist_ok=True)
    _json(root / "model_index.json", MODEL_INDEX)
    _json(root / "scheduler" / "scheduler_config.json",
          {"_class_name": "UniPCMultistepScheduler", "prediction_type": "flow_prediction", "flow_shift": 3.0})
    _json(root / "tokenizer" / "tokenizer.json", TOKENIZER)
    _json(root / "tokenizer" / "tokenizer_config.json",
          {"model_max_length": 512, "pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>"})
    _json(root / "transformer" / "config.json",
          {"_class_name": "WanTransformer3DModel", "num_layers": 2, "num_attention_heads": 2, "attention_head_dim": 12,
           "in_channels": 16, "out_channels": 16, "patch_size": [1, 2, 2]})
    weight_map = {}
    for k, rel in enumerate(SHARDS):
        t = _tensors(f"blocks.{k}", 2, tensor_elems, seed=k)
        save_file(t, str(root / rel))
        weight_map.update({name: Path(rel).name for name in t})
    _json(root / "transformer" / "diffusion_pytorch_model.safetensors.index.json",
          {"metadata": {"total_size": 2 * 2 * tensor_elems * 4}, "weight_map": weight_map})
    _json(root / "vae" / "config.json", {"_class_name": "AutoencoderKLWan", "z_dim": 16, "base_dim": 3})
    save_file(_tensors("decoder", 2, tensor_elems // 4, seed=10), str(root / VAE))
    _json(root / "text_encoder" / "config.json", {"architectures": ["UMT5EncoderModel"], "d_model": 32})
    save_file(_tensors("encoder", 2, tensor_elems // 4, seed=11), str(root / TEXT_ENCODER))
    return root


def kinds(result) -> list[str]:  # noqa: ANN001
    return sorted({i.kind for i in result.issues})


def test_written_model_passes_every_check_and_is_healthy(tmp_path: Path) -> None:
    from wan_exporter.config import Thresholds
    from wan_exporter.health import hashing, headers, layout
    from wan_exporter.health.verdict import verdict
    from wan_exporter.state import Snapshot, frozen_map

    d = write_model(tmp_path / "m")
    results = [layout.check("m", d), headers.check("m", d), hashing.check("m", d, tmp_path / "state")]
    for r in results:
        assert r.success, (r.check, r.issues)
        assert r.issues == ()
    lay = results[0]
    assert lay.facts["files_expected"] == 12 and lay.facts["files_present"] == 12
    assert lay.facts["size_bytes"] == sum((d / w).stat().st_size for w in WEIGHTS)
    assert results[1].facts["files_checked"] == 4
    h = results[2].facts
    assert h["verified_bytes"] == h["expected_bytes"] == lay.facts["size_bytes"]
    assert h["files_recorded"] == 4
    v = verdict(Snapshot(checks=frozen_map({("m", r.check): r for r in results})), "m", Thresholds())
    assert v.status == "healthy" and not any(v.issues.values())
