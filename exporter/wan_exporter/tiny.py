"""Tiny, randomly initialised Wan pipelines built from the real diffusers classes.

They let the benchmark and health code run the real diffusers code paths (loading,
two-expert switching, image conditioning, VAE decode) in well under a second on a CPU,
with nothing downloaded: the tokenizer vocabulary is built locally with ``tokenizers``.
Component sizes follow diffusers' own tests (tests/pipelines/wan/test_wan*.py).

Importing this module must not import torch (the exporter process never does);
the heavy imports live inside the functions.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Callable, Iterable

TINY_KINDS: tuple[str, ...] = (
    "tiny-wan2.2-t2v-a14b",
    "tiny-wan2.2-i2v-a14b",
    "tiny-wan2.2-ti2v-5b",
    "tiny-wan2.1-t2v",
    "tiny-wan2.1-i2v",
)

# Written after everything else, so a directory without it is half-built and gets rebuilt.
MARKER = ".wan-exporter-tiny-complete"
SEED = 0
_VOCAB_WORDS = (
    "a cat dog walks runs on in the grass street realistic style video of with and sky sun "
    "red blue green car city water tree man woman bird flies slow motion camera light night"
).split()


def default_cache_dir() -> Path:
    """``$WAN_EXPORTER_CACHE`` or ``~/.cache/wan-exporter/tiny-models``."""
    env = os.environ.get("WAN_EXPORTER_CACHE")
    return Path(os.path.expanduser(env)) if env else Path.home() / ".cache" / "wan-exporter" / "tiny-models"


def _offline() -> None:
    # huggingface_hub reads these at import time; set them before the first import.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def _tokenizer() -> Any:
    """A small Unigram tokenizer in the T5 layout (<pad>=0, </s>=1, <unk>=2), built offline."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    pieces = [(f"\u2581{w}", -2.0) for w in _VOCAB_WORDS]
    pieces += [(c, -5.0) for c in "abcdefghijklmnopqrstuvwxyz0123456789.,!?'-"]
    pieces += [("\u2581", -3.0)]
    tok = Tokenizer(models.Unigram(specials + pieces, unk_id=2, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", model_max_length=512
    )


def _text_encoder(vocab_size: int) -> Any:
    from transformers import UMT5Config, UMT5EncoderModel

    cfg = UMT5Config(
        vocab_size=vocab_size, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8,
    )
    return UMT5EncoderModel(cfg).eval()


def _vae(wan22: bool) -> Any:
    from diffusers import AutoencoderKLWan

    kw: dict[str, Any] = dict(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                              temperal_downsample=[False, True, True])
    if wan22:  # the TI2V-5B VAE: z_dim 48, patchified, 16x spatial compression
        kw.update(z_dim=48, in_channels=12, out_channels=12, is_residual=True, patch_size=2,
                  latents_mean=[0.0] * 48, latents_std=[1.0] * 48, scale_factor_spatial=16, scale_factor_temporal=4)
    return AutoencoderKLWan(**kw).eval()


def _transformer(in_channels: int, out_channels: int = 16, image_dim: int | None = None) -> Any:
    from diffusers import WanTransformer3DModel

    return WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=in_channels,
        out_channels=out_channels, text_dim=32, freq_dim=256, ffn_dim=32, num_layers=2, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", rope_max_seq_len=32, image_dim=image_dim,
    ).eval()


def _scheduler() -> Any:
    from diffusers import UniPCMultistepScheduler

    return UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)


def _clip() -> tuple[Any, Any]:
    import transformers
    from transformers import CLIPVisionConfig, CLIPVisionModel

    # transformers 5 without torchvision falls back to the PIL processor with a warning;
    # naming it directly keeps model_index.json the same whether torchvision is installed or not.
    processor_cls = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor
    enc = CLIPVisionModel(CLIPVisionConfig(  # the class real Wan2.1 I2V checkpoints name
        hidden_size=4, projection_dim=4, num_hidden_layers=2, num_attention_heads=2, image_size=32,
        intermediate_size=16, patch_size=1,
    )).eval()
    return enc, processor_cls(crop_size=32, size=32)


def make_pipeline(kind: str) -> Any:
    """Build the in-memory pipeline of ``kind`` with weights fixed by :data:`SEED`."""
    if kind not in TINY_KINDS:
        raise ValueError(f"unknown tiny kind {kind!r}; expected one of {', '.join(TINY_KINDS)}")
    _offline()
    import torch

    with torch.random.fork_rng(devices=[]):  # seed our build without disturbing the caller's RNG
        torch.manual_seed(SEED)
        return _assemble(kind)


def _assemble(kind: str) -> Any:
    from diffusers import WanImageToVideoPipeline, WanPipeline

    tokenizer = _tokenizer()
    common = dict(tokenizer=tokenizer, text_encoder=_text_encoder(len(tokenizer)), scheduler=_scheduler())
    if kind == "tiny-wan2.2-t2v-a14b":
        return WanPipeline(vae=_vae(False), transformer=_transformer(16), transformer_2=_transformer(16),
                           boundary_ratio=0.875, **common)
    if kind == "tiny-wan2.2-i2v-a14b":
        return WanImageToVideoPipeline(vae=_vae(False), transformer=_transformer(36), transformer_2=_transformer(36),
                                       boundary_ratio=0.9, image_encoder=None, image_processor=None, **common)
    if kind == "tiny-wan2.2-ti2v-5b":
        return WanPipeline(vae=_vae(True), transformer=_transformer(48, 48), expand_timesteps=True, **common)
    if kind == "tiny-wan2.1-t2v":
        return WanPipeline(vae=_vae(False), transformer=_transformer(16), **common)
    encoder, processor = _clip()
    return WanImageToVideoPipeline(vae=_vae(False), transformer=_transformer(36, image_dim=4),
                                   image_encoder=encoder, image_processor=processor, **common)


def is_built(path: Path) -> bool:
    return (Path(path) / MARKER).is_file() and (Path(path) / "model_index.json").is_file()


def build(kind: str, dest: Path) -> Path:
    """Build ``kind`` and save it to ``dest`` (replaced); the marker file is written last."""
    dest = Path(dest)
    pipe = make_pipeline(kind)
    if dest.exists():
        shutil.rmtree(dest)
    tmp = dest.with_name(dest.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    pipe.save_pretrained(str(tmp), safe_serialization=True)
    tmp.rename(dest)
    (dest / MARKER).write_text(f"{kind}\n", encoding="utf-8")
    return dest


def build_all(
    dest_dir: Path, kinds: Iterable[str] = TINY_KINDS, progress: Callable[[str, str], None] | None = None
) -> dict[str, Path]:
    """Build every kind into ``dest_dir/<kind>``, skipping complete ones.

    ``progress(kind, state)`` is called with state "built" or "cached".
    """
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    for kind in kinds:
        path = dest_dir / kind
        if is_built(path):
            state = "cached"
        else:
            build(kind, path)
            state = "built"
        out[kind] = path
        if progress is not None:
            progress(kind, state)
    return out


__all__ = ["TINY_KINDS", "build", "build_all", "default_cache_dir", "is_built", "make_pipeline"]
