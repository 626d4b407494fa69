"""Per-model capabilities: published catalog figures and what the checkpoint says itself."""

from __future__ import annotations

from .family import Family

SOURCE = "models"

INFO = Family(
    "wan_model", "info",
    "Identity of each configured model (published catalog).",
    labels=("model", "model_id", "kind", "family", "task", "pipeline"), source=SOURCE)
CONFIG_INFO = Family(
    "wan_model_config", "info",
    "How the exporter runs each model: device, GPU index (empty on CPU), dtype, offload.",
    labels=("model", "device", "gpu", "dtype", "offload"), source=SOURCE)
PRESENT = Family(
    "wan_model_present", "gauge",
    "1 when the model's files were found (local path or local HF cache).",
    labels=("model",), source=SOURCE)
PARAMETERS = Family(
    "wan_model_parameters", "gauge",
    "Published total parameters of the denoiser(s).",
    labels=("model",), source=SOURCE)
ACTIVE_PARAMETERS = Family(
    "wan_model_active_parameters", "gauge",
    "Published parameters active per denoising step (MoE: one expert).",
    labels=("model",), source=SOURCE)
RESOLUTION_SUPPORTED = Family(
    "wan_model_resolution_supported", "gauge",
    "1 for each published native resolution.",
    labels=("model", "width", "height"), source=SOURCE)
FRAMES_DEFAULT = Family(
    "wan_model_frames_default", "gauge",
    "Published default frame count (Wan needs 4n+1 frames).",
    labels=("model",), source=SOURCE)
FPS_DEFAULT = Family(
    "wan_model_fps_default", "gauge",
    "Frames per second the output video is saved at: published for Wan models, chosen for tiny stand-ins.",
    labels=("model",), source=SOURCE)
STEPS_DEFAULT = Family(
    "wan_model_steps_default", "gauge",
    "Published default number of denoising steps.",
    labels=("model",), source=SOURCE)
INPUT_SUPPORTED = Family(
    "wan_model_input_supported", "gauge",
    "1 for each input the model takes.",
    labels=("model", "input"), source=SOURCE)
OUTPUT_FORMAT_SUPPORTED = Family(
    "wan_model_output_format_supported", "gauge",
    "1 for each output format the pipeline produces.",
    labels=("model", "format"), source=SOURCE)
PRECISION_SUPPORTED = Family(
    "wan_model_precision_supported", "gauge",
    "1 for each precision the model runs correctly in (float16 is absent: bf16-trained Wan weights overflow in it).",
    labels=("model", "precision"), source=SOURCE)
LORA_SUPPORTED = Family(
    "wan_model_lora_supported", "gauge",
    "1 when LoRA adapters can be loaded (WanLoraLoaderMixin) and the model's README does not advise against them.",
    labels=("model",), source=SOURCE)
EXPERTS = Family(
    "wan_model_experts", "gauge",
    "Published number of denoising experts (2 for Wan2.2 A14B MoE).",
    labels=("model",), source=SOURCE)
BOUNDARY_RATIO = Family(
    "wan_model_boundary_ratio", "gauge",
    "Published switch point between the high- and low-noise experts.",
    labels=("model",), source=SOURCE)
VRAM_MIN_BYTES = Family(
    "wan_model_vram_min_bytes", "gauge",
    "Published minimum GPU memory per offload mode.",
    labels=("model", "offload"), source=SOURCE)
SIZE_MULTIPLE = Family(
    "wan_model_size_multiple", "gauge",
    "Width and height must be multiples of this.",
    labels=("model",), source=SOURCE)
CHECKPOINT_BOUNDARY_RATIO = Family(
    "wan_model_checkpoint_boundary_ratio", "gauge",
    "boundary_ratio recorded in the checkpoint's model_index.json.",
    labels=("model",), source=SOURCE)

FAMILIES: tuple[Family, ...] = (
    INFO,
    CONFIG_INFO,
    PRESENT,
    PARAMETERS,
    ACTIVE_PARAMETERS,
    RESOLUTION_SUPPORTED,
    FRAMES_DEFAULT,
    FPS_DEFAULT,
    STEPS_DEFAULT,
    INPUT_SUPPORTED,
    OUTPUT_FORMAT_SUPPORTED,
    PRECISION_SUPPORTED,
    LORA_SUPPORTED,
    EXPERTS,
    BOUNDARY_RATIO,
    VRAM_MIN_BYTES,
    SIZE_MULTIPLE,
    CHECKPOINT_BOUNDARY_RATIO,
)
