"""Capability catalog of the published Wan models, with the source of every figure.

Figures are the authors' published ones (Wan-Video/Wan2.1, Wan-Video/Wan2.2 READMEs and
configs, diffusers docs). What a checkpoint on disk says about itself is derived
separately (:mod:`wan_exporter.checkpoint.facts`); disagreements are health findings.

Rules kept here: a figure nobody published is left out (empty mapping or ``None``), never
estimated; ``precisions[0]`` is the native precision; ``size_multiple`` equals the total
spatial compression (VAE stride x transformer patch), which is why it is 16 for the
Wan2.1 VAE and 32 for the Wan2.2 (TI2V-5B) VAE.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

GB = 10**9


@dataclass(frozen=True)
class CatalogEntry:
    key: str
    model_id: str  # Hugging Face hub id of the diffusers-format checkpoint
    family: str  # "wan2.2" | "wan2.1" | "tiny"
    task: str  # "t2v" | "i2v" | "ti2v" | "flf2v" | "animate" | "vace"
    pipeline: str  # diffusers pipeline class name
    inputs: tuple[str, ...]  # "text", "image", "last_frame", "video", "mask", "reference_image", ...
    parameters: int | None  # total parameters of the denoiser(s), published
    active_parameters: int | None  # per denoising step (MoE: one expert)
    resolutions: tuple[tuple[int, int], ...]  # (width, height), native
    frames_default: int
    fps_default: int
    steps_default: int | None
    vae_compression: tuple[int, int, int]  # (t, h, w) total, incl. patchify
    vae_z_dim: int
    experts: int
    boundary_ratio: float | None
    precisions: tuple[str, ...]  # precisions the model runs correctly in (fp16 is left out: _FP16_NOTE)
    lora: bool  # the pipeline loads LoRAs and the authors do not advise against them
    output_formats: tuple[str, ...]
    vram_min_bytes: Mapping[str, int]  # offload mode -> published minimum VRAM
    size_multiple: int  # width/height must be multiples of this
    sources: tuple[str, ...] = ()
    notes: str = ""
    tiny: bool = False
    guidance_default: tuple[float, ...] = field(default=())
    # ---- optional additions (defaults keep older constructors valid) ----
    # Peak GPU memory from the authors' efficiency tables, key "<gpu>-<resolution>[-<variant>]".
    published_peak_bytes: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    # Total generation seconds from the same tables, same keys.
    published_total_seconds: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    # Exact denoiser parameter count of the released architecture (all experts), computed from
    # the published transformer config; the nominal "14B" names are rounded and can be 20% off.
    parameters_derived: int | None = None
    # Relative tolerance for comparing a checkpoint's denoiser parameters with the catalog.
    parameters_tolerance: float = 0.10
    # Published transformer geometry: num_layers, num_attention_heads, attention_head_dim,
    # ffn_dim, in_channels, out_channels (diffusers config names).
    architecture: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    image_encoder: bool = False  # whether the pipeline ships a CLIP image encoder


CATALOG: dict[str, CatalogEntry] = {}

# The embedded default config's models.
DEFAULT_MODELS: tuple[str, ...] = ("wan2.2-t2v-a14b", "wan2.2-i2v-a14b", "wan2.2-ti2v-5b")

OFFLOAD_MODES: tuple[str, ...] = ("none", "model", "group", "sequential")


def _add(entry: CatalogEntry) -> None:
    CATALOG[entry.key] = entry


def get(key: str) -> CatalogEntry:
    return CATALOG[key]


def vram_min_bytes(entry: CatalogEntry, offload: str) -> int | None:
    """Published minimum VRAM for ``offload`` mode, or None when nobody published one.

    No fallback between modes: a figure published for model offload says nothing
    reliable about group or sequential offload.
    """
    return entry.vram_min_bytes.get(offload)


def native_precision(entry: CatalogEntry) -> str:
    """The precision the weights were trained and published in."""
    return entry.precisions[0]


def frames_ok(frames: int) -> bool:
    """Wan generates 4n+1 frames (Wan2.1 generate.py ``--frame_num`` help)."""
    return frames >= 1 and (frames - 1) % 4 == 0


def _gb(x: float) -> int:
    return round(x * GB)


def _m(d: Mapping) -> Mapping:
    return MappingProxyType(dict(d))


# ---------------------------------------------------------------- shared figures

_W22 = "github.com/Wan-Video/Wan2.2 README.md"
_W22_CFG = "github.com/Wan-Video/Wan2.2 wan/configs/*.py"
_W21 = "github.com/Wan-Video/Wan2.1 README.md"
_W21_GEN = "github.com/Wan-Video/Wan2.1 generate.py (defaults: 81 frames, 40 steps i2v / 50 otherwise, guidance 5.0)"
_W21_CFG = "github.com/Wan-Video/Wan2.1 wan/configs/*.py"
_DF_DOC = "github.com/huggingface/diffusers docs/source/en/api/pipelines/wan.md"
_DF_CONV = "github.com/huggingface/diffusers scripts/convert_wan_to_diffusers.py"
_DF_SRC = "github.com/huggingface/diffusers src/diffusers/pipelines/wan (WanLoraLoaderMixin, export_to_video)"
_BF16 = "bfloat16 tensor-core support starts at CUDA compute capability 8.0 (NVIDIA Ampere)"
_DERIVED = "denoiser parameter count: WanTransformer3DModel built on the meta device from the published config"

# float16 loads, but bf16-trained Wan weights overflow in it (NaN / black frames): not a supported precision.
_PRECISIONS = ("bfloat16", "float32")
_TINY_PRECISIONS = ("float32", "bfloat16", "float16")
_OUTPUTS = ("frames", "mp4")
_FP16_NOTE = (
    "bfloat16 native; float16 is known to give NaN latents / black frames "
    "(bf16-trained weights overflow in fp16), so it is not listed as supported. Compute capability 8.0 "
    "is our inference from bf16 tensor-core support, not a published requirement, and is not exported."
)
_GEOM_14B = {"num_layers": 40, "num_attention_heads": 40, "attention_head_dim": 128, "ffn_dim": 13824}
_GEOM_1_3B = {"num_layers": 30, "num_attention_heads": 12, "attention_head_dim": 128, "ffn_dim": 8960}
_GEOM_5B = {"num_layers": 30, "num_attention_heads": 24, "attention_head_dim": 128, "ffn_dim": 14336}
_480P = ((832, 480), (480, 832))
_720P = ((1280, 720), (720, 1280))
_WAN21_VAE = (4, 16, 16)  # VAE stride 4x8x8, transformer patch 1x2x2
_WAN22_VAE = (4, 32, 32)  # VAE 4x16x16, transformer patch 1x2x2

# ---------------------------------------------------------------- Wan2.2

_add(CatalogEntry(
    key="wan2.2-t2v-a14b", model_id="Wan-AI/Wan2.2-T2V-A14B-Diffusers", family="wan2.2", task="t2v",
    pipeline="WanPipeline", inputs=("text",),
    parameters=27 * 10**9, active_parameters=14 * 10**9,
    resolutions=_480P + _720P, frames_default=81, fps_default=16, steps_default=40,
    vae_compression=_WAN21_VAE, vae_z_dim=16, experts=2, boundary_ratio=0.875,
    precisions=_PRECISIONS, lora=True, output_formats=_OUTPUTS,
    # README: the single-GPU command runs with --offload_model True --convert_model_dtype.
    vram_min_bytes=_m({"model": 80 * GB}),
    size_multiple=16, guidance_default=(4.0, 3.0),
    published_peak_bytes=_m({"h100-480p": _gb(41.3), "h100-720p": _gb(59.8), "h100x8-720p": _gb(37.1),
                             "a100-480p": _gb(41.3), "a100-720p": _gb(59.8)}),
    published_total_seconds=_m({"h100-480p": 326.9, "h100-720p": 1041.5, "h100x8-720p": 155.1,
                                "a100-480p": 785.7, "a100-720p": 2735.7}),
    parameters_derived=2 * 14_288_491_584,
    architecture=_m({**_GEOM_14B, "in_channels": 16, "out_channels": 16}),
    sources=(_W22, _W22_CFG, _DF_DOC, _DF_SRC, _BF16, _DERIVED),
    notes=("MoE: high-noise expert (transformer) for early steps, low-noise expert (transformer_2) after "
           "boundary_ratio x num_train_timesteps; ~14B each, 27B total, 14B active. "
           "80 GB is for the README's single-GPU command, which uses --offload_model True --convert_model_dtype "
           "(the original code, not diffusers). Efficiency-table peaks are single GPU with the same flags "
           "(h100x8: 8 GPUs, FSDP + Ulysses). Wan2.2 #42: 720P OOM at VAE decode on A100 80GB. " + _FP16_NOTE),
))

_add(CatalogEntry(
    key="wan2.2-i2v-a14b", model_id="Wan-AI/Wan2.2-I2V-A14B-Diffusers", family="wan2.2", task="i2v",
    pipeline="WanImageToVideoPipeline", inputs=("text", "image"),
    parameters=27 * 10**9, active_parameters=14 * 10**9,
    resolutions=_480P + _720P, frames_default=81, fps_default=16, steps_default=40,
    vae_compression=_WAN21_VAE, vae_z_dim=16, experts=2, boundary_ratio=0.900,
    precisions=_PRECISIONS, lora=True, output_formats=_OUTPUTS,
    vram_min_bytes=_m({"model": 80 * GB}),
    size_multiple=16, guidance_default=(3.5, 3.5),
    published_peak_bytes=_m({"h100-480p": _gb(41.0), "h100-720p": _gb(59.7)}),
    published_total_seconds=_m({"h100-480p": 327.8, "h100-720p": 1055.9}),
    parameters_derived=2 * 14_288_901_184,
    architecture=_m({**_GEOM_14B, "in_channels": 36, "out_channels": 16}),
    sources=(_W22, _W22_CFG, _DF_DOC, _DF_SRC, _BF16, _DERIVED),
    notes=("MoE like T2V-A14B; the image conditions the transformer through its 36 input channels, "
           "no CLIP image encoder. 80 GB is for the README's single-GPU command with --offload_model True "
           "--convert_model_dtype. The size is an area; the aspect ratio follows the input image. "
           "diffusers #12011: OOM regression. " + _FP16_NOTE),
))

_add(CatalogEntry(
    key="wan2.2-ti2v-5b", model_id="Wan-AI/Wan2.2-TI2V-5B-Diffusers", family="wan2.2", task="ti2v",
    pipeline="WanPipeline", inputs=("text", "image"),
    parameters=5 * 10**9, active_parameters=5 * 10**9,
    resolutions=((1280, 704), (704, 1280)), frames_default=121, fps_default=24, steps_default=50,
    vae_compression=_WAN22_VAE, vae_z_dim=48, experts=1, boundary_ratio=None,
    precisions=_PRECISIONS, lora=True, output_formats=_OUTPUTS,
    # README: 24 GB with --offload_model True --convert_model_dtype --t5_cpu; the offload flags can be
    # dropped "if you are running on a GPU with at least 80GB VRAM".
    vram_min_bytes=_m({"model": 24 * GB, "none": 80 * GB}),
    size_multiple=32, guidance_default=(5.0,),
    published_peak_bytes=_m({"rtx4090-720p-t2v": _gb(22.9), "rtx4090-720p-i2v": _gb(22.8)}),
    published_total_seconds=_m({"rtx4090-720p-t2v": 534.7, "rtx4090-720p-i2v": 524.8}),
    parameters_derived=4_999_787_712,
    architecture=_m({**_GEOM_5B, "in_channels": 48, "out_channels": 48}),
    sources=(_W22, _W22_CFG, _DF_DOC, _DF_SRC, _BF16, _DERIVED),
    notes=("One model for text->video and text+image->video (expand_timesteps=True); the hub checkpoint's "
           "model_index names WanPipeline, image conditioning runs through WanImageToVideoPipeline. "
           "720P is 1280x704 or 704x1280 only. Wan2.2 VAE 4x16x16, z_dim 48; with the 1x2x2 patch 4x32x32, "
           "hence sizes in multiples of 32. Shift 5.0. 24 GB is with --offload_model True --convert_model_dtype "
           "--t5_cpu (original code). " + _FP16_NOTE),
))

_add(CatalogEntry(
    key="wan2.2-animate-14b", model_id="Wan-AI/Wan2.2-Animate-14B-Diffusers", family="wan2.2", task="animate",
    pipeline="WanAnimatePipeline",
    inputs=("text", "image", "pose_video", "face_video", "background_video", "mask_video"),
    parameters=14 * 10**9, active_parameters=14 * 10**9,
    resolutions=_720P, frames_default=77, fps_default=30, steps_default=20,
    vae_compression=_WAN21_VAE, vae_z_dim=16, experts=1, boundary_ratio=None,
    # diffusers' WanAnimatePipeline has WanLoraLoaderMixin, but the README advises against LoRAs
    # trained on Wan2.2 (its relighting LoRA for replacement mode ships with the release).
    precisions=_PRECISIONS, lora=False, output_formats=_OUTPUTS,
    vram_min_bytes=_m({}),
    size_multiple=16, guidance_default=(1.0,),
    # No exact count was published; the diffusers transformer also holds the motion and face
    # encoders and image cross-attention on top of the 14B backbone, hence the wide tolerance.
    parameters_tolerance=0.30,
    architecture=_m({**_GEOM_14B, "in_channels": 36, "out_channels": 16}),
    image_encoder=True,
    sources=(_W22, _W22_CFG, _DF_DOC, _DF_SRC, _BF16),
    notes=("Character animation (mode='animate': image + pose_video + face_video) or replacement "
           "(mode='replace': adds background_video + mask_video); 77-frame segments "
           "(segment_frame_length), 1 conditioning frame carried over, guidance 1.0, 20 steps, 30 fps. "
           "The README advises against LoRAs trained on Wan2.2 (\"may lead to unexpected behavior\"), so LoRA is "
           "not listed as supported although the diffusers pipeline can load one. No VRAM figure published. " + _FP16_NOTE),
))

# ---------------------------------------------------------------- Wan2.1

_add(CatalogEntry(
    key="wan2.1-t2v-1.3b", model_id="Wan-AI/Wan2.1-T2V-1.3B-Diffusers", family="wan2.1", task="t2v",
    pipeline="WanPipeline", inputs=("text",),
    parameters=1_300_000_000, active_parameters=1_300_000_000,
    resolutions=_480P, frames_default=81, fps_default=16, steps_default=50,
    vae_compression=_WAN21_VAE, vae_z_dim=16, experts=1, boundary_ratio=None,
    precisions=_PRECISIONS, lora=True, output_formats=_OUTPUTS,
    # README: "requires only 8.19 GB VRAM" (RTX 4090, --offload_model True --t5_cpu).
    vram_min_bytes=_m({"model": _gb(8.19)}),
    size_multiple=16, guidance_default=(5.0,),
    published_peak_bytes=_m({"rtx4090-480p": _gb(8.19)}),
    published_total_seconds=_m({"rtx4090-480p": 261.4}),
    parameters_derived=1_418_996_800,
    architecture=_m({**_GEOM_1_3B, "in_channels": 16, "out_channels": 16}),
    sources=(_W21, _W21_GEN, _W21_CFG, _DF_DOC, _DF_CONV, _DF_SRC, _BF16, _DERIVED),
    notes=("480P; 720P works but is 'generally less stable'. 8.19 GB on an RTX 4090 with --offload_model True "
           "--t5_cpu (original code), ~4 min for 5 s of 480P. The README recommends guidance 6 and shift 8-12 "
           "for this model. " + _FP16_NOTE),
))

_add(CatalogEntry(
    key="wan2.1-t2v-14b", model_id="Wan-AI/Wan2.1-T2V-14B-Diffusers", family="wan2.1", task="t2v",
    pipeline="WanPipeline", inputs=("text",),
    parameters=14 * 10**9, active_parameters=14 * 10**9,
    resolutions=_480P + _720P, frames_default=81, fps_default=16, steps_default=50,
    vae_compression=_WAN21_VAE, vae_z_dim=16, experts=1, boundary_ratio=None,
    precisions=_PRECISIONS, lora=True, output_formats=_OUTPUTS,
    # diffusers docs: ~13GB with group offloading of the text encoder and transformer.
    vram_min_bytes=_m({"group": 13 * GB}),
    size_multiple=16, guidance_default=(5.0,),
    published_peak_bytes=_m({"h100-720p": _gb(69.1)}),
    published_total_seconds=_m({"h100-720p": 1837.9}),
    parameters_derived=14_288_491_584,
    architecture=_m({**_GEOM_14B, "in_channels": 16, "out_channels": 16}),
    sources=(_W21, _W21_GEN, _W21_CFG, _DF_DOC, _DF_CONV, _DF_SRC, _BF16, _DERIVED),
    notes="~13 GB is the diffusers docs' group-offload example (leaf_level, streams). " + _FP16_NOTE,
))

_I2V_14B_PARAMS = 16_394_878_784  # 14B trunk + image cross-attention (image_dim 1280, added_kv_proj_dim 5120)
_I2V_14B_GEOM = _m({**_GEOM_14B, "in_channels": 36, "out_channels": 16})

_add(CatalogEntry(
    key="wan2.1-i2v-14b-480p", model_id="Wan-AI/Wan2.1-I2V-14B-480P-Diffusers", family="wan2.1", task="i2v",
    pipeline="WanImageToVideoPipeline", inputs=("text", "image"),
    parameters=14 * 10**9, active_parameters=14 * 10**9,
    resolutions=_480P, frames_default=81, fps_default=16, steps_default=40,
    vae_compression=_WAN21_VAE, vae_z_dim=16, experts=1, boundary_ratio=None,
    precisions=_PRECISIONS, lora=True, output_formats=_OUTPUTS,
    vram_min_bytes=_m({}),
    size_multiple=16, guidance_default=(5.0,),
    parameters_derived=_I2V_14B_PARAMS, architecture=_I2V_14B_GEOM, image_encoder=True,
    sources=(_W21, _W21_GEN, _W21_CFG, _DF_DOC, _DF_CONV, _DF_SRC, _BF16, _DERIVED),
    notes=("CLIP ViT-H image encoder; the size is an area, the aspect ratio follows the image; shift 3.0 at 480P. "
           "No VRAM figure published. " + _FP16_NOTE),
))

_add(CatalogEntry(
    key="wan2.1-i2v-14b-720p", model_id="Wan-AI/Wan2.1-I2V-14B-720P-Diffusers", family="wan2.1", task="i2v",
    pipeline="WanImageToVideoPipeline", inputs=("text", "image"),
    parameters=14 * 10**9, active_parameters=14 * 10**9,
    resolutions=_720P, frames_default=81, fps_default=16, steps_default=40,
    vae_compression=_WAN21_VAE, vae_z_dim=16, experts=1, boundary_ratio=None,
    precisions=_PRECISIONS, lora=True, output_formats=_OUTPUTS,
    vram_min_bytes=_m({}),
    size_multiple=16, guidance_default=(5.0,),
    published_peak_bytes=_m({"h100-720p": _gb(76.7)}),
    published_total_seconds=_m({"h100-720p": 1491.6}),
    parameters_derived=_I2V_14B_PARAMS, architecture=_I2V_14B_GEOM, image_encoder=True,
    sources=(_W21, _W21_GEN, _W21_CFG, _DF_DOC, _DF_CONV, _DF_SRC, _BF16, _DERIVED),
    notes="CLIP ViT-H image encoder; the size is an area, the aspect ratio follows the image. " + _FP16_NOTE,
))

_add(CatalogEntry(
    key="wan2.1-flf2v-14b-720p", model_id="Wan-AI/Wan2.1-FLF2V-14B-720P-diffusers", family="wan2.1",
    task="flf2v", pipeline="WanImageToVideoPipeline", inputs=("text", "image", "last_frame"),
    parameters=14 * 10**9, active_parameters=14 * 10**9,
    resolutions=_720P, frames_default=81, fps_default=16, steps_default=50,
    vae_compression=_WAN21_VAE, vae_z_dim=16, experts=1, boundary_ratio=None,
    precisions=_PRECISIONS, lora=True, output_formats=_OUTPUTS,
    vram_min_bytes=_m({}),
    size_multiple=16, guidance_default=(5.0,),
    parameters_derived=16_395_536_704,
    architecture=_I2V_14B_GEOM, image_encoder=True,
    sources=(_W21, _W21_GEN, _W21_CFG, _DF_DOC, _DF_SRC, _BF16, _DERIVED),
    notes=("First and last frame -> video: WanImageToVideoPipeline(image=..., last_image=...), CLIP image encoder. "
           "Trained mainly on Chinese prompts. Shift 16 (generate.py); the diffusers example uses guidance 5.5. "
           "No VRAM figure published. " + _FP16_NOTE),
))

_add(CatalogEntry(
    key="wan2.1-vace-1.3b", model_id="Wan-AI/Wan2.1-VACE-1.3B-diffusers", family="wan2.1", task="vace",
    pipeline="WanVACEPipeline", inputs=("text", "video", "mask", "reference_image"),
    parameters=1_300_000_000, active_parameters=1_300_000_000,
    resolutions=_480P, frames_default=81, fps_default=16, steps_default=50,
    vae_compression=_WAN21_VAE, vae_z_dim=16, experts=1, boundary_ratio=None,
    precisions=_PRECISIONS, lora=True, output_formats=_OUTPUTS,
    vram_min_bytes=_m({}),
    size_multiple=16, guidance_default=(5.0,),
    parameters_derived=2_153_972_032,
    architecture=_m({**_GEOM_1_3B, "in_channels": 16, "out_channels": 16}),
    sources=(_W21, _W21_GEN, _W21_CFG, _DF_DOC, _DF_SRC, _BF16,
             _DERIVED + " (WanVACETransformer3DModel, vace_layers every 2nd of 30, vace_in_channels 96)"),
    notes=("All-in-one create/edit: control video, mask (white = generate), reference images; all optional. "
           "The 15 VACE blocks add ~0.7B to the 1.3B backbone. No VRAM figure published. " + _FP16_NOTE),
))

_add(CatalogEntry(
    key="wan2.1-vace-14b", model_id="Wan-AI/Wan2.1-VACE-14B-diffusers", family="wan2.1", task="vace",
    pipeline="WanVACEPipeline", inputs=("text", "video", "mask", "reference_image"),
    parameters=14 * 10**9, active_parameters=14 * 10**9,
    resolutions=_480P + _720P, frames_default=81, fps_default=16, steps_default=50,
    vae_compression=_WAN21_VAE, vae_z_dim=16, experts=1, boundary_ratio=None,
    precisions=_PRECISIONS, lora=True, output_formats=_OUTPUTS,
    vram_min_bytes=_m({}),
    size_multiple=16, guidance_default=(5.0,),
    parameters_derived=17_337_592_896,
    architecture=_m({**_GEOM_14B, "in_channels": 16, "out_channels": 16}),
    sources=(_W21, _W21_GEN, _W21_CFG, _DF_DOC, _DF_SRC, _BF16,
             _DERIVED + " (WanVACETransformer3DModel, vace_layers every 5th of 40, vace_in_channels 96)"),
    notes=("All-in-one create/edit: control video, mask (white = generate), reference images; all optional. "
           "The 8 VACE blocks add ~3.0B to the 14B backbone. No VRAM figure published. " + _FP16_NOTE),
))

# ---------------------------------------------------------------- tiny (random weights, CPU tests)

_TINY_SOURCES = ("wan_exporter.tiny (component sizes from diffusers tests/pipelines/wan/test_wan*.py)",)
_TINY_NOTES = ("Randomly initialised stand-in built offline by wan_exporter.tiny; parameters come from the "
               "checkpoint at run time. 32x32, 9 frames, 4 steps run in ~0.1 s on a CPU. ")


def _tiny(key: str, imitates: str, pipeline: str, inputs: tuple[str, ...], fps: int, experts: int = 1,
          boundary_ratio: float | None = None, ti2v: bool = False, image_encoder: bool = False) -> CatalogEntry:
    """A tiny stand-in. ``fps`` is the rate its frames are saved at, stated here for each kind: nobody
    published one for a random model, so it is a choice (the imitated model's rate), not inherited."""
    big = CATALOG[imitates]
    return CatalogEntry(
        key=key, model_id="", family="tiny", task=big.task, pipeline=pipeline, inputs=inputs,
        parameters=None, active_parameters=None,
        resolutions=((32, 32),), frames_default=9, fps_default=fps, steps_default=4,
        vae_compression=_WAN22_VAE if ti2v else _WAN21_VAE, vae_z_dim=48 if ti2v else 16,
        experts=experts, boundary_ratio=boundary_ratio,
        precisions=_TINY_PRECISIONS, lora=True, output_formats=_OUTPUTS,
        vram_min_bytes=_m({}),
        size_multiple=32 if ti2v else 16, sources=_TINY_SOURCES,
        notes=_TINY_NOTES + f"Imitates {imitates}.", tiny=True, image_encoder=image_encoder,
    )


_add(_tiny("tiny-wan2.2-t2v-a14b", "wan2.2-t2v-a14b", "WanPipeline", ("text",), fps=16, experts=2,
           boundary_ratio=0.875))
_add(_tiny("tiny-wan2.2-i2v-a14b", "wan2.2-i2v-a14b", "WanImageToVideoPipeline", ("text", "image"), fps=16,
           experts=2, boundary_ratio=0.9))
_add(_tiny("tiny-wan2.2-ti2v-5b", "wan2.2-ti2v-5b", "WanPipeline", ("text", "image"), fps=24, ti2v=True))
_add(_tiny("tiny-wan2.1-t2v", "wan2.1-t2v-14b", "WanPipeline", ("text",), fps=16))
_add(_tiny("tiny-wan2.1-i2v", "wan2.1-i2v-14b-480p", "WanImageToVideoPipeline", ("text", "image"), fps=16,
           image_encoder=True))

TINY_KEYS: tuple[str, ...] = tuple(k for k, e in CATALOG.items() if e.tiny)
