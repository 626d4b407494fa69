"""Tiny Wan checkpoints in every on-disk form, written offline for tests and demos.

Beside :mod:`wan_exporter.tiny` (diffusers directories), these are the forms people keep:
the official layout with official tensor names and ``torch.save`` ``.pth`` files, ComfyUI
fp16 and fp8-scaled single files (``F8_E4M3`` weights plus ``scale_weight`` tensors), GGUF
files written with llama.cpp's ``gguf`` package, and the places downloads put them: a
``--local-dir`` folder with its download metadata, the Hugging Face cache and ModelScope's
cache. Geometry follows the tiny diffusers transformer (dim 24, 2 blocks, 2 heads).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import time
from pathlib import Path
from typing import Any, Iterable

import numpy as np

DIM, HEADS, LAYERS, FFN, TEXT_DIM, FREQ_DIM = 24, 2, 2, 32, 32, 256
PATCH = (1, 2, 2)
COMMIT = "0123456789abcdef0123456789abcdef01234567"
_IN_OUT = {"t2v": (16, 16), "i2v": (36, 16), "ti2v": (48, 48)}


def official_tensors(model_type: str = "t2v", seed: int = 0) -> dict[str, np.ndarray]:
    """A WanModel state dict under the official names (float32)."""
    rng = np.random.default_rng(seed)
    in_dim, out_dim = _IN_OUT[model_type]

    def t(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    sd = {"patch_embedding.weight": t(DIM, in_dim, *PATCH), "patch_embedding.bias": t(DIM),
          "text_embedding.0.weight": t(DIM, TEXT_DIM), "text_embedding.0.bias": t(DIM),
          "text_embedding.2.weight": t(DIM, DIM), "text_embedding.2.bias": t(DIM),
          "time_embedding.0.weight": t(DIM, FREQ_DIM), "time_embedding.0.bias": t(DIM),
          "time_embedding.2.weight": t(DIM, DIM), "time_embedding.2.bias": t(DIM),
          "time_projection.1.weight": t(6 * DIM, DIM), "time_projection.1.bias": t(6 * DIM)}
    for i in range(LAYERS):
        b = f"blocks.{i}."
        for attn in ("self_attn", "cross_attn"):
            for p in "qkvo":
                sd[f"{b}{attn}.{p}.weight"], sd[f"{b}{attn}.{p}.bias"] = t(DIM, DIM), t(DIM)
            sd[f"{b}{attn}.norm_q.weight"], sd[f"{b}{attn}.norm_k.weight"] = t(DIM), t(DIM)
        sd[f"{b}norm3.weight"], sd[f"{b}norm3.bias"] = t(DIM), t(DIM)
        sd[f"{b}ffn.0.weight"], sd[f"{b}ffn.0.bias"] = t(FFN, DIM), t(FFN)
        sd[f"{b}ffn.2.weight"], sd[f"{b}ffn.2.bias"] = t(DIM, FFN), t(DIM)
        sd[f"{b}modulation"] = t(1, 6, DIM)
    sd["head.head.weight"], sd["head.head.bias"] = t(out_dim * 4, DIM), t(out_dim * 4)
    sd["head.modulation"] = t(1, 2, DIM)
    return sd


def parameter_count(model_type: str = "t2v") -> int:
    return sum(int(a.size) for a in official_tensors(model_type).values())


def official_config(model_type: str = "t2v") -> dict[str, Any]:
    in_dim, out_dim = _IN_OUT[model_type]
    return {"_class_name": "WanModel", "_diffusers_version": "0.33.0", "model_type": model_type, "dim": DIM,
            "ffn_dim": FFN, "freq_dim": FREQ_DIM, "num_heads": HEADS, "num_layers": LAYERS, "in_dim": in_dim,
            "out_dim": out_dim, "text_len": 512, "eps": 1e-6}


# ------------------------------------------------------------------ writers


def write_safetensors(path: Path, tensors: dict[str, tuple[str, tuple[int, ...], bytes]],
                      metadata: dict[str, str] | None = None) -> Path:
    """A safetensors file from raw bytes per tensor (so F8_E4M3 needs no float8 numpy type)."""
    header: dict[str, Any] = {"__metadata__": metadata} if metadata else {}
    pos = 0
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [pos, pos + len(raw)]}
        pos += len(raw)
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)) + blob)
        for _, _, raw in tensors.values():
            f.write(raw)
    return path


def _fp(sd: dict[str, np.ndarray], dtype: str) -> dict[str, tuple[str, tuple[int, ...], bytes]]:
    np_dtype = {"F16": np.float16, "F32": np.float32}[dtype]
    return {n: (dtype, a.shape, a.astype(np_dtype).tobytes()) for n, a in sd.items()}


def _fp8_scaled(sd: dict[str, np.ndarray], seed: int) -> dict[str, tuple[str, tuple[int, ...], bytes]]:
    """ComfyUI's fp8_scaled layout: 2-D+ weights as F8_E4M3 with a float32 scale_weight each."""
    rng = np.random.default_rng(seed)
    out: dict[str, tuple[str, tuple[int, ...], bytes]] = {}
    for n, a in sd.items():
        if n.endswith(".weight") and a.ndim == 2:
            codes = rng.integers(0, 0x7E, size=a.shape, dtype=np.uint8)  # finite e4m3fn codes (0x7f is NaN)
            out[n] = ("F8_E4M3", a.shape, codes.tobytes())
            out[n[: -len("weight")] + "scale_weight"] = ("F32", (1,), np.array([0.01], np.float32).tobytes())
        else:
            out[n] = ("F16", a.shape, a.astype(np.float16).tobytes())
    out["scaled_fp8"] = ("F8_E4M3", (0,), b"")
    return out


def _json(path: Path, doc: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2), encoding="utf-8")


def _pth(path: Path, seed: int, n: int = 3) -> None:
    import torch

    g = torch.Generator().manual_seed(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({f"layer.{i}.weight": torch.randn(8, 8, generator=g).to(torch.bfloat16) for i in range(n)}, path)


def _tokenizer(folder: Path) -> None:
    from .tiny import _tokenizer as build

    folder.mkdir(parents=True, exist_ok=True)
    build().save_pretrained(str(folder))


def official_layout(dest: Path, model_type: str = "t2v", experts: bool = True, shards: int = 2) -> Path:
    """The official Wan layout: expert folders (A14B) or one DiT at the root, T5 and VAE .pth, tokenizer."""
    dest = Path(dest)
    folders = ("high_noise_model", "low_noise_model") if experts else ("",)
    for k, folder in enumerate(folders):
        d = dest / folder if folder else dest
        sd = official_tensors(model_type, seed=k)
        names = list(sd)
        per = -(-len(names) // shards)
        weight_map = {}
        for s in range(shards):
            fname = f"diffusion_pytorch_model-{s + 1:05d}-of-{shards:05d}.safetensors"
            part = {n: sd[n] for n in names[s * per:(s + 1) * per]}
            write_safetensors(d / fname, _fp(part, "F32"))
            weight_map.update({n: fname for n in part})
        _json(d / "diffusion_pytorch_model.safetensors.index.json",
              {"metadata": {"total_size": sum(a.nbytes for a in sd.values())}, "weight_map": weight_map})
        _json(d / "config.json", official_config(model_type))
    _pth(dest / "models_t5_umt5-xxl-enc-bf16.pth", seed=10)
    _pth(dest / ("Wan2.2_VAE.pth" if model_type == "ti2v" else "Wan2.1_VAE.pth"), seed=11)
    _json(dest / "configuration.json", {"framework": "Pytorch", "task": f"{model_type}-video"})
    _tokenizer(dest / "google" / "umt5-xxl")
    if model_type == "i2v" and not experts:  # Wan2.1 I2V conditions on CLIP as well
        _pth(dest / "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth", seed=12)
        _tokenizer(dest / "xlm-roberta-large")
    return dest


def single_files(dest: Path, variant: str = "fp16", model_type: str = "t2v") -> list[Path]:
    """ComfyUI-named high and low noise files, fp16 or fp8_scaled."""
    out = []
    for k, noise in enumerate(("high", "low")):
        sd = official_tensors(model_type, seed=k)
        tensors = _fp8_scaled(sd, seed=k) if variant == "fp8_scaled" else _fp(sd, "F16")
        p = Path(dest) / f"wan2.2_{model_type}_{noise}_noise_14B_{variant}.safetensors"
        out.append(write_safetensors(p, tensors))
    return out


def gguf_files(dest: Path, model_type: str = "t2v", quant: str = "Q8_0") -> list[Path]:
    """QuantStack-named GGUF files, high and low noise: Q8_0 where rows fill blocks, F16 elsewhere."""
    import gguf

    qtype = gguf.GGMLQuantizationType[quant]
    block = gguf.GGML_QUANT_SIZES[qtype][0]
    out = []
    for k, noise in enumerate(("HighNoise", "LowNoise")):
        p = Path(dest) / f"Wan2.2-{model_type.upper()}-A14B-{noise}-{quant}.gguf"
        p.parent.mkdir(parents=True, exist_ok=True)
        w = gguf.GGUFWriter(str(p), arch="wan")
        w.add_string("general.name", f"tiny Wan2.2 {model_type} {noise}")
        w.add_uint32("general.file_type", int(qtype))
        for name, a in official_tensors(model_type, seed=k).items():
            if a.ndim == 2 and a.shape[-1] % block == 0:
                q = gguf.quants.quantize(a, qtype)
                w.add_tensor(name, q, raw_shape=q.shape, raw_dtype=qtype)
            else:
                w.add_tensor(name, a.astype(np.float16))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        out.append(p)
    return out


# ------------------------------------------------------------------ where downloads put them


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _files(root: Path) -> Iterable[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != ".cache"]
        for n in filenames:
            yield Path(dirpath) / n


def local_dir_metadata(root: Path, lfs_suffixes: tuple[str, ...] = (".safetensors", ".pth", ".gguf")) -> int:
    """What ``hf download --local-dir`` leaves: ``.cache/huggingface/download/<rel>.metadata`` per file.

    Weight files (LFS) get their sha256 as etag; small files a 40-hex git sha1, as on the Hub.
    """
    root = Path(root)
    n = 0
    for p in _files(root):
        rel = p.relative_to(root).as_posix()
        etag = _sha256(p) if p.name.endswith(lfs_suffixes) else hashlib.sha1(p.read_bytes()).hexdigest()
        meta = root / ".cache" / "huggingface" / "download" / f"{rel}.metadata"
        meta.parent.mkdir(parents=True, exist_ok=True)
        meta.write_text(f"{COMMIT}\n{etag}\n{time.time()}\n", encoding="utf-8")
        n += 1
    return n


def hf_cache(cache: Path, repo_id: str, src: Path) -> Path:
    """Copy ``src`` into an HF cache layout (blobs by sha256, snapshot symlinks, refs/main); returns the snapshot."""
    repo = Path(cache) / ("models--" + repo_id.replace("/", "--"))
    snap = repo / "snapshots" / COMMIT
    for p in _files(Path(src)):
        rel = p.relative_to(src)
        digest = _sha256(p)
        blob = repo / "blobs" / digest
        blob.parent.mkdir(parents=True, exist_ok=True)
        if not blob.exists():
            shutil.copyfile(p, blob)
        link = snap / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(COMMIT, encoding="utf-8")
    return snap


def modelscope_cache(cache: Path, repo_id: str, src: Path) -> Path:
    """Copy ``src`` where ``modelscope download`` puts a model: ``<cache>/models/<org>/<name>``."""
    from .checkpoint.locate import modelscope_dir

    dest = modelscope_dir(repo_id, str(cache))
    shutil.copytree(src, dest, dirs_exist_ok=True)
    return dest


def build_forms(dest: Path, progress: Any = None) -> dict[str, Path]:
    """Every form once under ``dest`` (replaced): what ``wan-exporter tiny-models --forms`` writes.

    Each is a --local-dir download (with its metadata), so ``check-model`` compares it with
    the published digests; the single-file and GGUF folders hold the high- and low-noise files.
    """
    dest = Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    out = {
        "official-wan2.2-t2v-a14b": official_layout(dest / "official-wan2.2-t2v-a14b"),
        "official-wan2.2-ti2v-5b": official_layout(dest / "official-wan2.2-ti2v-5b", model_type="ti2v", experts=False),
        "comfyui-fp16": single_files(dest / "comfyui-fp16", "fp16")[0].parent,
        "comfyui-fp8-scaled": single_files(dest / "comfyui-fp8-scaled", "fp8_scaled")[0].parent,
        "gguf-q8_0": gguf_files(dest / "gguf-q8_0")[0].parent,
    }
    for name, path in out.items():
        local_dir_metadata(path)
        if progress is not None:
            progress(name, "built")
    return out
