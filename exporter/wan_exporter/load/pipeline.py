"""Building and placing a Wan pipeline: the real ``from_pretrained``, dtypes, device, offloading.

Used by the benchmark child and by the reference generation in the benchmark suite, so both
load the same weights the same way. torch and diffusers are imported inside the functions:
importing this module costs nothing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..measure.phases import is_cuda

# Components run in float32 whatever the requested dtype, as the diffusers Wan examples do:
# the VAE and the CLIP image encoder are small and lose quality (or overflow) in half precision.
FP32_COMPONENTS: tuple[str, ...] = ("vae", "image_encoder")


class CudaUnavailable(RuntimeError):
    """A CUDA device was requested but this process cannot use one."""


def offline_env() -> None:
    """Never reach a hub: huggingface_hub reads these once, at its first import."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def device_order_env() -> None:
    """Number CUDA devices as NVML does (by PCI bus id), before CUDA starts: ``cuda:N`` is then
    the GPU the exporter's courtesy check looked at (:mod:`wan_exporter.gpuid`)."""
    from ..gpuid import CHILD_ENV

    os.environ.update(CHILD_ENV)


def torch_dtype(torch: Any, name: str) -> Any:
    try:
        return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[name]
    except KeyError:
        raise ValueError(f"unsupported dtype {name!r}") from None


def _dtype_map(torch: Any, dtype: Any) -> dict[str, Any]:
    return {"default": dtype, **{name: torch.float32 for name in FP32_COMPONENTS}}


def _preload_fp32_pinned(model_dir: Path, dtype: Any, skip: Any = ()) -> dict[str, Any]:
    """Load diffusers models that pin modules to fp32 without ``accelerate``.

    diffusers 0.42 refuses ``from_pretrained`` for such models (WanTransformer3DModel keeps
    rope/time_embedder/norms in fp32) unless accelerate is installed. This mirrors its
    casting rule and hands the models to the pipeline loader, which loads the rest.
    """
    import diffusers
    import torch
    from safetensors.torch import load_file

    index = json.loads((model_dir / "model_index.json").read_text(encoding="utf-8"))
    out: dict[str, Any] = {}
    for name, spec in index.items():
        if name.startswith("_") or not isinstance(spec, list) or spec[0] != "diffusers" or name in skip:
            continue
        cls = getattr(diffusers, spec[1], None)
        keep = getattr(cls, "_keep_in_fp32_modules", None)
        if cls is None or not keep:
            continue
        sub = model_dir / name
        model = cls.from_config(cls.load_config(str(sub)))
        files = sorted(sub.glob("*.safetensors"))
        if not files:
            raise FileNotFoundError(f"no safetensors weights in {sub}")
        state: dict[str, Any] = {}
        for f in files:
            state.update(load_file(str(f)))
        model.load_state_dict(state, strict=True)
        with torch.no_grad():
            for pname, p in list(model.named_parameters()) + list(model.named_buffers()):
                if torch.is_floating_point(p) and not any(k in pname.split(".") for k in keep):
                    p.data = p.data.to(dtype)
        out[name] = model.eval()
    return out


def pipeline_class(name: str) -> Any:
    import diffusers

    cls = getattr(diffusers, name, None)
    if cls is None:
        raise ImportError(f"this diffusers ({diffusers.__version__}) has no pipeline class {name}")
    return cls


def load_pipeline(req: dict[str, Any], model_dir: Path | None = None) -> Any:
    """Load ``req["model_dir"]`` (or ``model_dir``) with the real ``from_pretrained``, offline.

    With ``req["transformer_files"]`` the denoisers come from those single-file or GGUF
    checkpoints (:mod:`.single_file`) and the rest of the pipeline from ``model_dir``.
    """
    import torch

    from .single_file import load_transformers
    from diffusers.utils import is_accelerate_available
    from diffusers.utils.logging import disable_progress_bar

    from transformers.utils import logging as tf_logging

    disable_progress_bar()  # the parent shows progress from our events, not tqdm on stderr
    tf_logging.disable_progress_bar()
    cls = pipeline_class(req["pipeline"])
    model_dir = Path(req["model_dir"]) if model_dir is None else model_dir
    dtype = torch_dtype(torch, req["dtype"])
    kwargs: dict[str, Any] = {"dtype": _dtype_map(torch, dtype), "local_files_only": True}
    given = load_transformers(req, dtype)  # denoisers from single-file or GGUF checkpoints, if any
    if not is_accelerate_available() and (model_dir / "model_index.json").is_file():
        kwargs.update(_preload_fp32_pinned(model_dir, dtype, skip=given))
    kwargs.update(given)
    pipe = cls.from_pretrained(str(model_dir), **kwargs)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def as_image_pipeline(pipe: Any) -> Any:
    """TI2V text+image mode: diffusers 0.42 runs it with WanImageToVideoPipeline and
    ``expand_timesteps=True`` (the image is VAE-encoded into the first latent frame;
    no CLIP encoder). WanPipeline has no ``image`` argument, so rebuild from its parts."""
    from diffusers import WanImageToVideoPipeline, WanPipeline

    if isinstance(pipe, WanImageToVideoPipeline) or not isinstance(pipe, WanPipeline):
        return pipe
    if not pipe.config.expand_timesteps:
        raise ValueError("an image was requested, but this text-to-video pipeline takes none")
    new = WanImageToVideoPipeline(
        **pipe.components, boundary_ratio=pipe.config.boundary_ratio, expand_timesteps=True
    )
    new.set_progress_bar_config(disable=True)
    return new


def place(pipe: Any, req: dict[str, Any]) -> None:
    """Move to the device or set up the requested offloading, then VAE tiling."""
    import torch

    device, offload = str(req["device"]), str(req["offload"])
    if is_cuda(device) and not torch.cuda.is_available():
        raise CudaUnavailable(f"device {device} requested, but torch.cuda.is_available() is False")
    if offload != "none" and not is_cuda(device):
        raise ValueError(f"offload {offload!r} needs a CUDA device, got {device}")
    if offload == "none":
        pipe.to(device)
    elif offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    elif offload == "group":
        pipe.enable_group_offload(
            onload_device=torch.device(device), offload_device=torch.device("cpu"),
            offload_type="block_level", num_blocks_per_group=1, use_stream=True,
        )
    else:
        raise ValueError(f"unknown offload mode {offload!r}")
    if req["vae_tiling"]:
        pipe.vae.enable_tiling()


__all__ = ["FP32_COMPONENTS", "CudaUnavailable", "as_image_pipeline", "device_order_env", "load_pipeline", "offline_env",
           "pipeline_class",
           "place", "torch_dtype"]
