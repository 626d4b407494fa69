"""Diffusers-format directory: ``model_index.json`` names the components.

Each model component folder holds a ``config.json`` and safetensors weights (one file, or
shards listed in a ``*.safetensors.index.json`` weight map), while tokenizer, scheduler and
image-processor folders hold only their own JSON files.
"""

from __future__ import annotations

import os
import re
import stat

from ..findings import oserror_detail, oserror_kind
from .walk import Walk, safe_name

_TOKENIZER = re.compile(r"Tokeni[sz]er|TokenizersBackend")
_PROCESSOR = re.compile(r"Processor|FeatureExtractor")
INDEX_PREFERENCE = ("diffusion_pytorch_model.safetensors.index.json", "model.safetensors.index.json")


def role(name: str, cls: str) -> str:
    """What a component folder holds: "model" (config + weights), "tokenizer", "scheduler" or "processor"."""
    if "Scheduler" in cls or name.startswith("scheduler"):
        return "scheduler"
    if _TOKENIZER.search(cls) or name.startswith("tokenizer"):
        return "tokenizer"
    if _PROCESSOR.search(cls) or name in ("image_processor", "feature_extractor"):
        return "processor"
    return "model"


def read(w: Walk) -> tuple[str | None, dict[str, str]]:
    """Walk a directory that has a model_index.json; returns (pipeline class, components)."""
    w.expected.append("model_index.json")
    w.present.append("model_index.json")
    index = w.read_json("model_index.json")
    if index is None:
        return None, {}
    pipeline = index.get("_class_name") if isinstance(index.get("_class_name"), str) else None
    if pipeline is None or "Wan" not in pipeline:
        w.findings.add("not_a_model", f"model_index.json declares {pipeline or 'no pipeline class'}, not a Wan pipeline",
                       "model_index.json")
    components: dict[str, str] = {}
    for name, spec in index.items():
        if name.startswith("_") or not isinstance(spec, list):
            continue  # pipeline settings such as boundary_ratio
        if len(spec) != 2:
            w.findings.add("header_invalid", f"component {name!r} is not a [library, class] pair", "model_index.json")
            continue
        if spec[0] is None or spec[1] is None:
            continue  # declared absent, e.g. transformer_2 of a single-expert model
        if not safe_name(name):
            w.findings.add("header_invalid", f"component name {name!r} is not a plain folder name", "model_index.json")
            continue
        components[name] = str(spec[1])
    for name, cls in components.items():
        _component(w, name, cls, str(index[name][0]))
    return pipeline, components


def _component(w: Walk, name: str, cls: str, library: str) -> None:
    try:
        st = os.stat(w.root / name)
    except OSError as e:
        kind = oserror_kind(e)
        detail = f"{cls} folder declared in model_index.json is missing" if kind == "missing_file" else oserror_detail(e)
        w.expected.append(name + "/")
        w.findings.add(kind, detail, name + "/")
        return
    if not stat.S_ISDIR(st.st_mode):
        w.expected.append(name + "/")
        w.findings.add("missing_file", f"{cls} component is not a folder", name + "/")
        return
    r = role(name, cls)
    if r == "scheduler":
        w.expect(f"{name}/scheduler_config.json")
        return
    if r == "processor":
        w.expect(f"{name}/preprocessor_config.json")
        return
    if r == "tokenizer":
        w.tokenizer(name)
        return
    names = w.listdir(name)
    if names is None:
        return
    w.expect_config(f"{name}/config.json")
    default = "diffusion_pytorch_model.safetensors" if library == "diffusers" else "model.safetensors"
    w.sharded_weights(name, name, names, default, INDEX_PREFERENCE)
