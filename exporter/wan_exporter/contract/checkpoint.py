"""What a checkpoint is on disk, whatever its form, and whether its bytes are the ones expected."""

from __future__ import annotations

from . import labels
from .family import Family

CHECKPOINT_PARAMETERS = Family(
    "wan_model_checkpoint_parameters", "gauge",
    "Denoiser parameters counted from the checkpoint's own tensor tables (safetensors headers, GGUF "
    "tensor infos): elements, not bytes, without quantisation scale tensors.",
    labels=("model",), source="models")
CHECKPOINT_EXPERTS = Family(
    "wan_model_checkpoint_experts", "gauge",
    "Denoising experts found in the checkpoint: model_index.json, the official layout's expert folders, or "
    "the single files configured.",
    labels=("model",), source="models")
CHECKPOINT_DTYPE = Family(
    "wan_model_checkpoint_dtype", "gauge",
    "1 for each tensor dtype stored in the checkpoint (torch names such as bfloat16 or float8_e4m3fn; GGUF "
    "quantisation types such as q4_k).",
    labels=("model", "dtype"), source="models")
CHECKPOINT_FORM = Family(
    "wan_model_checkpoint_form", "gauge",
    "1 for the form the checkpoint takes on disk: diffusers directory, official Wan layout, single "
    "safetensors file(s), GGUF file(s) (last layout check).",
    labels=("model", "form"), source="health",
    bounded={"form": labels.FORMS})
MODEL_INTEGRITY_RATIO = Family(
    "wan_model_integrity_ratio", "gauge",
    "Weight bytes whose SHA-256, read by the last hash check, matched the reference, over weight bytes "
    "expected. reference=published: every file was compared with a digest its download published (HF "
    "cache blob name, --local-dir metadata); recorded: at least one only with the manifest recorded at first "
    "sight, which proves the bytes have not changed, not that they are the published ones. Each scheduled "
    "run reads every byte; a run within half a hash interval of the last (after a restart) reuses its "
    "digests.",
    labels=("model", "reference"), source="health",
    bounded={"reference": labels.INTEGRITY_REFERENCES})
MODEL_CONTENT_DIGEST = Family(
    "wan_model_content_digest", "info",
    "SHA-256 over the per-file SHA-256 of the model's weight files (last hash check that read every file "
    "without a mismatch): the same on every node holding the same files, so copies that differ show up as "
    "more than one digest per model.",
    labels=("model", "digest"), source="health")

FAMILIES: tuple[Family, ...] = (
    CHECKPOINT_PARAMETERS,
    CHECKPOINT_EXPERTS,
    CHECKPOINT_DTYPE,
    CHECKPOINT_FORM,
    MODEL_INTEGRITY_RATIO,
    MODEL_CONTENT_DIGEST,
)
