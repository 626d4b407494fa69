"""The official Wan layout: what Wan-AI's own repos hold and generate.py, LightX2V, DiffSynth load.

- A14B (Wan2.2 T2V/I2V): ``high_noise_model/`` and ``low_noise_model/``, each with a
  ``config.json`` (``_class_name: WanModel``, ``model_type``, ``dim``, ``num_layers`` ...) and
  safetensors shards listed in ``diffusion_pytorch_model.safetensors.index.json``.
- TI2V-5B and Wan2.1: one DiT at the root, same files.
- Beside it: ``models_t5_umt5-xxl-enc-bf16.pth`` (T5), ``Wan2.1_VAE.pth`` or ``Wan2.2_VAE.pth``,
  ``configuration.json`` and the tokenizer folder ``google/umt5-xxl/``; Wan2.1 I2V adds the
  CLIP ``models_clip_*.pth`` and ``xlm-roberta-large/``.

The ``.pth`` files are zip archives written by ``torch.save``.
"""

from __future__ import annotations

from .walk import Walk

EXPERTS = ("high_noise_model", "low_noise_model")
T5 = "models_t5_umt5-xxl-enc-bf16.pth"
VAES = ("Wan2.1_VAE.pth", "Wan2.2_VAE.pth")
CLIP = "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth"
T5_TOKENIZER = "google/umt5-xxl"
CLIP_TOKENIZER = "xlm-roberta-large"
INDEX = ("diffusion_pytorch_model.safetensors.index.json",)
MODEL_TYPES = ("t2v", "i2v", "ti2v", "flf2v", "vace", "s2v", "animate")


def looks_official(w: Walk, names: list[str]) -> bool:
    """Expert folders, a root config.json of class WanModel, or the T5 .pth beside a DiT config."""
    if any(e in names and w.is_dir(e) for e in EXPERTS):
        return True
    if "config.json" in names:
        doc = w.read_json_quiet("config.json")
        if doc is not None and doc.get("_class_name") == "WanModel":
            return True
    return T5 in names and "config.json" in names


def read(w: Walk, names: list[str]) -> tuple[dict[str, str], str | None, tuple[str, ...]]:
    """Walk the official layout; returns (components, model_type, experts)."""
    components: dict[str, str] = {}
    model_type: str | None = None
    experts: tuple[str, ...] = ()
    if any(e in names for e in EXPERTS):
        experts = EXPERTS
        for e in EXPERTS:
            components[e] = "WanModel"
            if not w.is_dir(e):
                w.expected.append(e + "/")
                w.findings.add("missing_file", "expert folder of the two-expert layout is missing", e + "/")
                continue
            model_type = _dit(w, e, e) or model_type
    else:
        experts = ("transformer",)
        components["transformer"] = "WanModel"
        model_type = _dit(w, "", "transformer")
    components["text_encoder"] = "T5 (.pth)"
    w.expect(T5, weight_of="text_encoder", fmt="pth")
    vae = next((v for v in VAES if v in names), VAES[1] if model_type == "ti2v" else VAES[0])
    components["vae"] = "WanVAE (.pth)"
    w.expect(vae, weight_of="vae", fmt="pth")
    if "configuration.json" in names:
        w.expect_config("configuration.json")
    components["tokenizer"] = "umt5-xxl tokenizer"
    if w.is_dir(T5_TOKENIZER):
        w.tokenizer(T5_TOKENIZER)
    else:
        w.expected.append(T5_TOKENIZER + "/")
        w.findings.add("missing_file", "the T5 tokenizer folder is missing", T5_TOKENIZER + "/")
    if CLIP in names or (model_type == "i2v" and len(experts) == 1):  # Wan2.1 I2V conditions on CLIP
        components["image_encoder"] = "CLIP (.pth)"
        w.expect(CLIP, weight_of="image_encoder", fmt="pth")
        if w.is_dir(CLIP_TOKENIZER):
            w.tokenizer(CLIP_TOKENIZER)
        else:
            w.expected.append(CLIP_TOKENIZER + "/")
            w.findings.add("missing_file", "the CLIP tokenizer folder is missing", CLIP_TOKENIZER + "/")
    return components, model_type, experts


def _dit(w: Walk, folder: str, component: str) -> str | None:
    """One DiT folder: config.json of class WanModel, and its safetensors shards."""
    pre = f"{folder}/" if folder else ""
    names = w.listdir(folder)
    if names is None:
        return None
    w.expect_config(pre + "config.json")
    doc = w.read_json(pre + "config.json") if "config.json" in names else None
    model_type = None
    if doc is not None:
        cls = doc.get("_class_name")
        if cls != "WanModel":
            w.findings.add("not_a_model", f"config.json declares {cls or 'no class'}, not WanModel", pre + "config.json")
        mt = doc.get("model_type")
        model_type = mt if isinstance(mt, str) and mt in MODEL_TYPES else None
    w.sharded_weights(folder, component, names, "diffusion_pytorch_model.safetensors", INDEX)
    return model_type
