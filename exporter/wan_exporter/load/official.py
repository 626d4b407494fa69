"""The official Wan layout as a diffusers pipeline, offline, through key mappings of our own.

``huggingface-cli download Wan-AI/Wan2.2-T2V-A14B`` gives expert folders (``config.json``
with ``_class_name: WanModel`` plus safetensors shards under the official tensor names),
``models_t5_umt5-xxl-enc-bf16.pth``, ``Wan2.1_VAE.pth`` (``Wan2.2_VAE.pth`` for TI2V-5B)
and the ``google/umt5-xxl/`` tokenizer. diffusers' ``scripts/convert_wan_to_diffusers.py``
converts such a folder but downloads configs and the text encoder from the Hub, so:

- each denoiser goes through diffusers' own single-file loader, fed the merged shards and a
  local ``config=`` directory whose diffusers config is derived from ``config.json`` and the
  tensor shapes (:func:`transformer_config`);
- the VAE and the umt5 encoder are built from configs derived from their tensor shapes and
  filled through the name mappings below (:func:`vae_official_name`, :func:`umt5_official_name`),
  which follow the module names of Wan's ``wan/modules/{vae,vae2_2,t5}.py`` as diffusers'
  conversion script reads them; diffusers' own ``convert_wan_vae_to_diffusers`` hard-codes the
  full-size Wan2.1 VAE (two residual blocks per level) and has no umt5 mapping.

Each mapping is one function from the diffusers (or transformers) name to the official name,
so the tiny fixtures are written with the same function that reads them back, and
tests/test_official_forms.py checks the same weights give the same output either way.
torch, diffusers and transformers are imported inside the functions.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

EXPERTS: tuple[str, str] = ("high_noise_model", "low_noise_model")
T5_FILE = "models_t5_umt5-xxl-enc-bf16.pth"
VAE_FILES: tuple[str, str] = ("Wan2.2_VAE.pth", "Wan2.1_VAE.pth")
TOKENIZER_DIR = "google/umt5-xxl"
CLIP_FILE = "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth"
# diffusers' conversion script: flow shift 5.0 for TI2V, 3.0 for the other Wan2.x T2V/I2V models
FLOW_SHIFT = {"ti2v": 5.0}
BOUNDARY_RATIO = {"t2v": 0.875, "i2v": 0.9}
_DATA = Path(__file__).resolve().parent.parent / "data"


class OfficialLayoutError(ValueError):
    """The folder is not an official layout this loader can run; the message names the file."""


# --------------------------------------------------------------------------- layout


def denoiser_dirs(root: Path) -> dict[str, Path]:
    """``transformer``/``transformer_2`` folders: the two experts of A14B, or the root DiT."""
    root = Path(root)
    if all((root / e / "config.json").is_file() for e in EXPERTS):
        return {"transformer": root / EXPERTS[0], "transformer_2": root / EXPERTS[1]}
    if (root / "config.json").is_file():
        return {"transformer": root}
    raise OfficialLayoutError(f"{root}: neither {EXPERTS[0]}/config.json and {EXPERTS[1]}/config.json nor config.json")


def why_not(root: Path) -> str | None:
    """A reason this official folder cannot be benchmarked, or None."""
    root = Path(root)
    if (root / CLIP_FILE).exists():
        return f"{root / CLIP_FILE}: Wan2.1 I2V's open-clip image encoder has no mapping here yet"
    try:
        denoiser_dirs(root)
    except OfficialLayoutError as exc:
        return str(exc)
    for need in (T5_FILE, TOKENIZER_DIR):
        if not (root / need).exists():
            return f"{root / need} is missing"
    if not any((root / v).is_file() for v in VAE_FILES):
        return f"{root}: neither {' nor '.join(VAE_FILES)}"
    return None


def vae_file(root: Path) -> Path:
    for name in VAE_FILES:
        if (Path(root) / name).is_file():
            return Path(root) / name
    raise OfficialLayoutError(f"{root}: neither {' nor '.join(VAE_FILES)}")


def read_shards(folder: Path) -> dict[str, Any]:
    """The expert's tensors from its shards (the index names them; else every *.safetensors)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    index = folder / "diffusion_pytorch_model.safetensors.index.json"
    if index.is_file():
        files = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
    else:
        files = sorted(p.name for p in folder.glob("*.safetensors"))
    if not files:
        raise OfficialLayoutError(f"{folder}: no safetensors shards")
    sd: dict[str, Any] = {}
    for f in files:
        sd.update(load_file(str(folder / f)))
    return sd


# --------------------------------------------------------------------------- transformer


def transformer_config(official: dict[str, Any], sd: dict[str, Any]) -> dict[str, Any]:
    """The diffusers WanTransformer3DModel config of an official expert, from config.json and shapes."""
    dim, heads = int(official["dim"]), int(official["num_heads"])
    image = "img_emb.proj.1.weight" in sd
    cfg: dict[str, Any] = {
        "_class_name": "WanTransformer3DModel",
        "patch_size": list(sd["patch_embedding.weight"].shape[2:]),
        "num_attention_heads": heads, "attention_head_dim": dim // heads,
        "in_channels": int(official.get("in_dim", sd["patch_embedding.weight"].shape[1])),
        "out_channels": int(official.get("out_dim", 16)),
        "text_dim": int(sd["text_embedding.0.weight"].shape[1]),
        "freq_dim": int(official.get("freq_dim", 256)), "ffn_dim": int(official["ffn_dim"]),
        "num_layers": int(official["num_layers"]),
        "cross_attn_norm": "blocks.0.norm3.weight" in sd,
        "qk_norm": "rms_norm_across_heads" if "blocks.0.self_attn.norm_q.weight" in sd else None,
        "eps": float(official.get("eps", 1e-6)),
        "image_dim": int(sd["img_emb.proj.1.weight"].shape[1]) if image else None,
        "added_kv_proj_dim": dim if image else None,
        "rope_max_seq_len": 1024,
        "pos_embed_seq_len": int(sd["img_emb.emb_pos"].shape[1]) if "img_emb.emb_pos" in sd else None,
    }
    return cfg


def load_transformer(folder: Path, dtype: Any) -> Any:
    """One expert through ``WanTransformer3DModel.from_single_file`` with a local config directory."""
    from diffusers import WanTransformer3DModel

    folder = Path(folder)
    official = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    sd = read_shards(folder)
    with tempfile.TemporaryDirectory(prefix="wan-config-") as cfg_dir:
        Path(cfg_dir, "config.json").write_text(json.dumps(transformer_config(official, sd)), encoding="utf-8")
        return WanTransformer3DModel.from_single_file(sd, config=cfg_dir, local_files_only=True,
                                                      torch_dtype=dtype).eval()


# --------------------------------------------------------------------------- VAE

_RESNET = {"norm1.gamma": "residual.0.gamma", "conv1.weight": "residual.2.weight", "conv1.bias": "residual.2.bias",
           "norm2.gamma": "residual.3.gamma", "conv2.weight": "residual.6.weight", "conv2.bias": "residual.6.bias",
           "conv_shortcut.weight": "shortcut.weight", "conv_shortcut.bias": "shortcut.bias"}
_MID = {"resnets.0": "middle.0", "attentions.0": "middle.1", "resnets.1": "middle.2"}


def vae_official_name(key: str, num_res_blocks: int, residual: bool) -> str:
    """The official Wan VAE name of diffusers ``AutoencoderKLWan`` parameter ``key``.

    Wan2.1 (``residual`` False) keeps the encoder's blocks flat and the decoder's levels flat
    (``num_res_blocks + 1`` residual blocks then a resample); Wan2.2 nests both per level.
    """
    top = {"quant_conv": "conv1", "post_quant_conv": "conv2"}
    head, _, rest = key.partition(".")
    if head in top:
        return f"{top[head]}.{rest}"
    side, _, rest = key.partition(".")  # encoder / decoder
    part, _, rest = rest.partition(".")
    if part == "conv_in":
        return f"{side}.conv1.{rest}"
    if part == "norm_out":
        return f"{side}.head.0.{rest}"
    if part == "conv_out":
        return f"{side}.head.2.{rest}"
    if part == "mid_block":
        m = re.match(r"(resnets\.\d|attentions\.0)\.(.*)", rest)
        if m is None:
            raise KeyError(key)
        sub = m.group(2)
        return f"{side}.{_MID[m.group(1)]}.{_RESNET.get(sub, sub)}"
    m = re.match(r"(\d+)\.(.*)", rest)
    if m is None or part not in ("down_blocks", "up_blocks"):
        raise KeyError(key)
    level, rest = int(m.group(1)), m.group(2)
    official_part = "downsamples" if part == "down_blocks" else "upsamples"
    r = re.match(r"resnets\.(\d+)\.(.*)", rest)
    if part == "down_blocks" and not residual:  # flat list, indices already official
        return f"{side}.downsamples.{level}.{_RESNET.get(rest, rest)}"
    per_level = num_res_blocks + (2 if part == "up_blocks" else 1)  # decoder levels hold one more block
    if r is not None:
        j, sub = int(r.group(1)), _RESNET[r.group(2)]
    else:
        s = re.match(r"(?:upsamplers\.0|upsampler|downsampler)\.(.*)", rest)
        if s is None:
            raise KeyError(key)
        j, sub = per_level - 1, s.group(1)
    if residual:
        return f"{side}.{official_part}.{level}.{official_part}.{j}.{sub}"
    return f"{side}.{official_part}.{level * per_level + j}.{sub}"


def vae_config(sd: dict[str, Any]) -> dict[str, Any]:
    """The AutoencoderKLWan config of an official VAE state dict, from its shapes."""
    residual = any(k.startswith("encoder.downsamples.0.downsamples.") for k in sd)
    base_dim = int(sd["encoder.conv1.weight"].shape[0])
    in_channels = int(sd["encoder.conv1.weight"].shape[1])
    if residual:
        levels = sorted({int(k.split(".")[2]) for k in sd if k.startswith("encoder.downsamples.")})
        nrb = len({k.split(".")[4] for k in sd if k.startswith("encoder.downsamples.0.downsamples.") and ".residual." in k})
        dims = [int(sd[f"encoder.downsamples.{i}.downsamples.0.residual.2.weight"].shape[0]) for i in levels]
        tdown = [f"encoder.downsamples.{i}.downsamples.{nrb}.time_conv.weight" in sd for i in levels[:-1]]
    else:
        idx = sorted({int(k.split(".")[2]) for k in sd if k.startswith("encoder.downsamples.")})
        dims, tdown, nrb, count = [], [], 0, 0
        for i in idx:
            if f"encoder.downsamples.{i}.residual.2.weight" in sd:
                if count == 0:
                    dims.append(int(sd[f"encoder.downsamples.{i}.residual.2.weight"].shape[0]))
                count += 1
            else:
                tdown.append(f"encoder.downsamples.{i}.time_conv.weight" in sd)
                nrb, count = count, 0
        nrb = nrb or count
    z_dim = int(sd["conv2.weight"].shape[0])
    cfg: dict[str, Any] = {
        "base_dim": base_dim, "z_dim": z_dim, "dim_mult": [d // base_dim for d in dims], "num_res_blocks": nrb,
        "temperal_downsample": tdown, "in_channels": in_channels,
        "out_channels": int(sd["decoder.head.2.weight"].shape[0]),
    }
    if residual:
        stats = json.loads((_DATA / "wan22_vae_latents.json").read_text(encoding="utf-8"))
        if z_dim != len(stats["latents_mean"]):
            raise OfficialLayoutError(f"a Wan2.2 VAE with z_dim {z_dim}: only 48 is known")
        dec = int(sd["decoder.head.0.gamma"].shape[0]) // cfg["dim_mult"][0]
        cfg.update(is_residual=True, patch_size=2 if in_channels == 12 else None, scale_factor_spatial=16,
                   scale_factor_temporal=4, decoder_base_dim=dec if dec != base_dim else None,
                   **stats)
    elif z_dim != 16:
        raise OfficialLayoutError(f"a Wan2.1 VAE with z_dim {z_dim}: only 16 is known")
    return cfg


def vae_from_official(sd: dict[str, Any], dtype: Any = None) -> Any:
    """AutoencoderKLWan filled from an official state dict; every tensor used, none missing."""
    from diffusers import AutoencoderKLWan

    cfg = vae_config(sd)
    model = AutoencoderKLWan(**cfg)
    theirs = {k: vae_official_name(k, cfg["num_res_blocks"], bool(cfg.get("is_residual"))) for k in model.state_dict()}
    _load_mapped(model, sd, theirs, "VAE")
    return model.eval() if dtype is None else model.to(dtype).eval()


def vae_to_official(model: Any) -> dict[str, Any]:
    """The official state dict of a diffusers AutoencoderKLWan (how the tiny fixtures are written)."""
    cfg = model.config
    return {vae_official_name(k, cfg.num_res_blocks, bool(cfg.is_residual)): v.detach().clone()
            for k, v in model.state_dict().items()}


# --------------------------------------------------------------------------- umt5

_T5 = [(r"shared\.weight", "token_embedding.weight"),
       (r"encoder\.final_layer_norm\.weight", "norm.weight"),
       (r"encoder\.block\.(\d+)\.layer\.0\.SelfAttention\.([qkvo])\.weight", r"blocks.\1.attn.\2.weight"),
       (r"encoder\.block\.(\d+)\.layer\.0\.SelfAttention\.relative_attention_bias\.weight",
        r"blocks.\1.pos_embedding.embedding.weight"),
       (r"encoder\.block\.(\d+)\.layer\.0\.layer_norm\.weight", r"blocks.\1.norm1.weight"),
       (r"encoder\.block\.(\d+)\.layer\.1\.DenseReluDense\.wi_0\.weight", r"blocks.\1.ffn.gate.0.weight"),
       (r"encoder\.block\.(\d+)\.layer\.1\.DenseReluDense\.wi_1\.weight", r"blocks.\1.ffn.fc1.weight"),
       (r"encoder\.block\.(\d+)\.layer\.1\.DenseReluDense\.wo\.weight", r"blocks.\1.ffn.fc2.weight"),
       (r"encoder\.block\.(\d+)\.layer\.1\.layer_norm\.weight", r"blocks.\1.norm2.weight")]


def umt5_official_name(key: str) -> str | None:
    """The official name of a transformers ``UMT5EncoderModel`` parameter; None for the tied
    ``encoder.embed_tokens`` copy of ``shared``. Wan's T5 gate is GELU(tanh) on ``gate.0``
    times ``fc1``, as umt5's gated-gelu is ``gelu_new(wi_0) * wi_1``."""
    if key == "encoder.embed_tokens.weight":
        return None
    for pat, rep in _T5:
        if re.fullmatch(pat, key):
            return re.sub(pat, rep, key)
    raise KeyError(key)


def umt5_config(sd: dict[str, Any]) -> Any:
    from transformers import UMT5Config

    vocab, d_model = sd["token_embedding.weight"].shape
    buckets, heads = sd["blocks.0.pos_embedding.embedding.weight"].shape
    layers = len({k.split(".")[1] for k in sd if k.startswith("blocks.")})
    return UMT5Config(vocab_size=int(vocab), d_model=int(d_model), d_kv=int(sd["blocks.0.attn.q.weight"].shape[0]) // int(heads),
                      d_ff=int(sd["blocks.0.ffn.fc1.weight"].shape[0]), num_layers=layers, num_heads=int(heads),
                      relative_attention_num_buckets=int(buckets), relative_attention_max_distance=128,
                      feed_forward_proj="gated-gelu", layer_norm_epsilon=1e-6)


def umt5_from_official(sd: dict[str, Any], dtype: Any = None) -> Any:
    from transformers import UMT5EncoderModel

    model = UMT5EncoderModel(umt5_config(sd))
    theirs = {k: umt5_official_name(k) for k in model.state_dict()}
    _load_mapped(model, sd, {k: v for k, v in theirs.items() if v is not None}, "umt5 encoder", strict=False)
    model.tie_weights()
    return model.eval() if dtype is None else model.to(dtype).eval()


def umt5_to_official(model: Any) -> dict[str, Any]:
    out = {}
    for k, v in model.state_dict().items():
        name = umt5_official_name(k)
        if name is not None:
            out[name] = v.detach().clone()
    return out


def _load_mapped(model: Any, sd: dict[str, Any], theirs: dict[str, str], what: str, strict: bool = True) -> None:
    missing = sorted(v for v in theirs.values() if v not in sd)
    unused = sorted(set(sd) - set(theirs.values()))
    if missing or unused:
        raise OfficialLayoutError(f"{what}: {len(missing)} tensors missing (first {missing[:3]}), "
                                  f"{len(unused)} not mapped (first {unused[:3]})")
    state = {k: sd[v] for k, v in theirs.items()}
    model.load_state_dict(state, strict=strict)


def load_pth(path: Path) -> dict[str, Any]:
    import torch

    sd = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    if not isinstance(sd, dict):
        raise OfficialLayoutError(f"{path}: not a state dict")
    return sd


# --------------------------------------------------------------------------- pipeline


def model_type(root: Path) -> str:
    dirs = denoiser_dirs(root)
    cfg = json.loads((dirs["transformer"] / "config.json").read_text(encoding="utf-8"))
    return str(cfg.get("model_type", "t2v"))


def load_pipeline(root: Path, dtype: Any, pipeline: str = "WanPipeline") -> Any:
    """The whole Wan pipeline from an official folder, in ``dtype`` (VAE in float32, as elsewhere)."""
    import torch
    from diffusers import UniPCMultistepScheduler, WanImageToVideoPipeline, WanPipeline
    from transformers import AutoTokenizer

    root = Path(root)
    why = why_not(root)
    if why is not None:
        raise OfficialLayoutError(why)
    dirs = denoiser_dirs(root)
    mtype = model_type(root)
    parts: dict[str, Any] = {name: load_transformer(d, dtype) for name, d in dirs.items()}
    parts["vae"] = vae_from_official(load_pth(vae_file(root)), torch.float32)
    parts["text_encoder"] = umt5_from_official(load_pth(root / T5_FILE), dtype)
    parts["tokenizer"] = AutoTokenizer.from_pretrained(str(root / TOKENIZER_DIR), local_files_only=True)
    parts["scheduler"] = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                                 num_train_timesteps=1000, flow_shift=FLOW_SHIFT.get(mtype, 3.0))
    if "transformer_2" in parts:
        parts["boundary_ratio"] = BOUNDARY_RATIO.get(mtype, 0.875)
    if mtype == "ti2v":
        parts["expand_timesteps"] = True
    if mtype == "i2v" or pipeline == "WanImageToVideoPipeline":
        pipe = WanImageToVideoPipeline(image_encoder=None, image_processor=None, **parts)
    else:
        pipe = WanPipeline(**parts)
    pipe.set_progress_bar_config(disable=True)
    return pipe


__all__ = ["EXPERTS", "OfficialLayoutError", "denoiser_dirs", "load_pipeline", "load_transformer", "transformer_config",
           "umt5_from_official", "umt5_official_name", "umt5_to_official", "vae_config", "vae_from_official",
           "vae_official_name", "vae_to_official", "why_not"]
