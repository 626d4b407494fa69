"""Model FLOPs of a Wan denoising step, from the transformer's config and the run's size.

A figure an operator can hold against the GPU: "8.4 s per step" says little, "1.7 PFLOP per
forward at 400 TFLOP/s, 40 % of the datasheet peak" says how far the run is from the
hardware's limit. Counted are the matrix products (linear layers, the patch convolution,
attention's two products), the work a FLOP counter sees and tensor cores do; norms, RoPE,
softmax and activations are elementwise and left out, as in every MFU figure.

Per transformer block and forward, with L video tokens, d = heads x head_dim, Lt text tokens
(the prompt is padded to 512 for umt5) and Li image tokens (CLIP, Wan2.1 I2V only)::

    12 L d^2          self-attention Q, K, V, O and cross-attention Q, O
    4 L d ffn         feed-forward
    4 L^2 d           self-attention scores and weighted sum
    4 (Lt+Li) d^2     cross-attention K, V of the text (and image) tokens
    4 L (Lt+Li) d     cross-attention scores and weighted sum

plus once per forward the patch embedding, the text (and image) projections, the timestep
MLP (per token for TI2V-5B, whose timestep is per token) and the output projection; VACE
models add their control blocks, of the same shape. A step
runs one expert (the two A14B experts share a shape) once, twice with classifier-free
guidance. Matches torch's FlopCounterMode over a real forward (tests/test_flops.py).

Stdlib only: the exporter computes this from configs read off disk, without torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

# The benchmark pads every prompt to umt5's text_len (child max_sequence_length).
TEXT_TOKENS = 512
_DEFAULT_PATCH = (1, 2, 2)
_DEFAULT_TEXT_DIM = 4096  # umt5-xxl d_model
_DEFAULT_FREQ_DIM = 256
# Transformer classes whose forward this count follows; another (Wan2.2-Animate's, with its motion
# and face encoders) gets no figure rather than a wrong one.
COUNTED_CLASSES = ("WanTransformer3DModel", "WanVACETransformer3DModel", "WanModel")


@dataclass(frozen=True)
class TransformerShape:
    """The geometry that decides a Wan transformer's FLOPs (diffusers config names)."""

    dim: int  # num_attention_heads x attention_head_dim
    ffn_dim: int
    num_layers: int
    patch_size: tuple[int, int, int] = _DEFAULT_PATCH
    in_channels: int = 16
    out_channels: int = 16
    text_dim: int = _DEFAULT_TEXT_DIM
    freq_dim: int = _DEFAULT_FREQ_DIM
    image_dim: int | None = None  # CLIP hidden size when the model attends to image tokens
    vace_layers: int = 0  # VACE: blocks of the control branch, one per entry of vace_layers
    vace_in_channels: int = 0


def _pos_int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else None


def shape_from_config(cfg: Mapping[str, Any]) -> TransformerShape | None:
    """Read a diffusers (``WanTransformer3DModel``) or official (``WanModel``) config.json.

    None when the geometry is missing or not positive integers, or the class is one this count
    does not follow: no FLOPs are better than FLOPs from a guessed width.
    """
    if cfg.get("_class_name", COUNTED_CLASSES[0]) not in COUNTED_CLASSES:
        return None
    heads, head_dim = _pos_int(cfg.get("num_attention_heads")), _pos_int(cfg.get("attention_head_dim"))
    dim = heads * head_dim if heads and head_dim else _pos_int(cfg.get("dim"))  # official: dim, num_heads
    ffn, layers = _pos_int(cfg.get("ffn_dim")), _pos_int(cfg.get("num_layers"))
    if not (dim and ffn and layers):
        return None
    patch = cfg.get("patch_size", _DEFAULT_PATCH)
    if not (isinstance(patch, (list, tuple)) and len(patch) == 3 and all(_pos_int(p) for p in patch)):
        return None
    in_ch = _pos_int(cfg.get("in_channels")) or _pos_int(cfg.get("in_dim")) or 16
    out_ch = _pos_int(cfg.get("out_channels")) or _pos_int(cfg.get("out_dim")) or in_ch
    return TransformerShape(
        dim=dim, ffn_dim=ffn, num_layers=layers, patch_size=(patch[0], patch[1], patch[2]),
        in_channels=in_ch, out_channels=out_ch,
        text_dim=_pos_int(cfg.get("text_dim")) or _DEFAULT_TEXT_DIM,
        freq_dim=_pos_int(cfg.get("freq_dim")) or _DEFAULT_FREQ_DIM,
        image_dim=_pos_int(cfg.get("image_dim")),
        vace_layers=len(cfg.get("vace_layers") or ()) if isinstance(cfg.get("vace_layers"), (list, tuple)) else 0,
        vace_in_channels=_pos_int(cfg.get("vace_in_channels")) or 0,
    )


def latent_tokens(width: int, height: int, frames: int, vae_stride: tuple[int, int, int],
                  patch_size: tuple[int, int, int] = _DEFAULT_PATCH) -> int:
    """Video tokens the transformer sees: (F-1)/st+1 latent frames, H/sh x W/sw latents, patchified.

    ``vae_stride`` is the VAE's own compression (4x8x8 Wan2.1 VAE, 4x16x16 Wan2.2 VAE),
    without the patch. Integer division, as the pipeline's own shape arithmetic.
    """
    st, sh, sw = vae_stride
    pt, ph, pw = patch_size
    latent_frames = (frames - 1) // st + 1
    return (latent_frames // pt) * (height // sh // ph) * (width // sw // pw)


def vae_stride_from_compression(compression: tuple[int, int, int],
                                patch_size: tuple[int, int, int] = _DEFAULT_PATCH) -> tuple[int, int, int]:
    """The VAE's stride from a total compression that includes the patch (catalog, checkpoint facts)."""
    return (compression[0] // patch_size[0], compression[1] // patch_size[1], compression[2] // patch_size[2])


def forward_flops(shape: TransformerShape, tokens: int, text_tokens: int = TEXT_TOKENS, image_tokens: int = 0,
                  per_token_timestep: bool = False) -> int:
    """FLOPs of one transformer forward for one sample (batch 1)."""
    d, L, lt = shape.dim, tokens, text_tokens
    li = image_tokens if shape.image_dim else 0
    ctx = lt + li
    p = math.prod(shape.patch_size)
    block = 12 * L * d * d + 4 * L * d * shape.ffn_dim + 4 * L * L * d + 4 * ctx * d * d + 4 * L * ctx * d
    once = 2 * L * shape.in_channels * p * d  # patch embedding (a strided Conv3d)
    once += 2 * lt * (shape.text_dim * d + d * d)  # text projection: Linear(text_dim, d), Linear(d, d)
    if li:
        img = shape.image_dim or 0
        once += 2 * li * (img * img + img * d)  # image projection: FeedForward(img, d, mult=1)
    # timestep MLP Linear(freq, d), Linear(d, d) and the 6-way modulation Linear(d, 6d)
    once += (L if per_token_timestep else 1) * 2 * (shape.freq_dim * d + 7 * d * d)
    once += 2 * L * d * shape.out_channels * p  # output projection
    if shape.vace_layers:
        # VACE's control branch: a block of the same shape per entry, its d x d output projection
        # (and the first one's input projection), over the control video's patch embedding.
        once += shape.vace_layers * (block + 2 * L * d * d) + 2 * L * d * d + 2 * L * shape.vace_in_channels * p * d
    return shape.num_layers * block + once


def step_flops(forward: int, cfg: bool) -> int:
    """One denoising step: one expert's forward, twice with classifier-free guidance."""
    return forward * (2 if cfg else 1)


def uses_cfg(guidance_scale: float | None) -> bool:
    """diffusers' WanPipeline runs the unconditional branch when guidance_scale > 1."""
    return guidance_scale is not None and guidance_scale > 1.0


@dataclass(frozen=True)
class StepCount:
    """The FLOPs of one run's denoising step and what they were computed from."""

    tokens: int
    forward_flops: int
    step_flops: int
    cfg: bool


def count_step(cfg: Mapping[str, Any], width: int, height: int, frames: int,
               compression: tuple[int, int, int], guidance_scale: float | None,
               image_tokens: int = 0, per_token_timestep: bool = False,
               text_tokens: int = TEXT_TOKENS) -> StepCount | None:
    """FLOPs per denoising step of a run; None when the transformer config lacks its geometry.

    ``compression``: pixels per token (VAE stride x patch), as the catalog and the checkpoint
    facts record it. ``image_tokens``: the CLIP encoder's tokens, for models with ``image_dim``.
    """
    shape = shape_from_config(cfg)
    if shape is None or min(width, height, frames) <= 0:
        return None
    tokens = latent_tokens(width, height, frames, vae_stride_from_compression(compression, shape.patch_size),
                           shape.patch_size)
    if tokens <= 0:
        return None
    # FLF2V folds two images' tokens into one sequence of pos_embed_seq_len (2 x 257).
    image_tokens = _pos_int(cfg.get("pos_embed_seq_len")) or image_tokens
    fwd = forward_flops(shape, tokens, text_tokens, image_tokens, per_token_timestep)
    on = uses_cfg(guidance_scale)
    return StepCount(tokens=tokens, forward_flops=fwd, step_flops=step_flops(fwd, on), cfg=on)
