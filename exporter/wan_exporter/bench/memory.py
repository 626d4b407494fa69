"""The memory guard: a benchmark run's peak memory, estimated before its child starts.

A profile that cannot fit its device (GPU memory, or host RAM on CPU) would spend minutes
loading and then die of OOM, or on a CPU take the host's swap with it; it is refused before
the child starts (``reason="would_not_fit"``) and named by ``check-config`` and at start-up.

The estimate, in bytes, of what the run's measured peak counts (CUDA ``max_memory_allocated``
on a GPU, the child's peak RSS on CPU)::

    weights      parameters x bytes per parameter (the run's dtype; VAE and CLIP image encoder
                 in float32, as the child loads them), as many as the offload mode keeps on the
                 device: every component (none, and always on CPU), the largest (model),
                 one transformer block, two with prefetch (group), one block (sequential)
    activations  one transformer forward at the run's L tokens, inference only: about six
                 L x d hidden states plus the feed-forward's two L x ffn tensors, in the dtype
    VAE decode   the output video in float32 twice (decoded tensor, numpy frames) plus one
                 causal chunk (4 frames) at the decoder's last stage, 6 tensors of its width
                 (from the VAE config; by default Wan2.1's 96 channels at full size,
                 Wan2.2's 256 at half size)
    runtime      on CPU the Python, torch and diffusers the child imports (RUNTIME_RSS_BYTES)

Stdlib only, from the checkpoint facts the exporter already read (or the catalog's published
parameter counts). Where no parameter count is known the weights are left out and the
estimate says it is a lower bound (``weights_known``): a lower bound that exceeds the device
is still a refusal. BENCHMARKS.md holds its error against every measured run.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

from .. import catalog
from ..measure import flops
from ..state import MemoryEstimate

DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}
FP32_COMPONENTS = ("vae", "image_encoder")  # as bench.pipeline loads them (no torch import here)
DENOISERS = ("transformer", "transformer_2")
# Peak RSS of a CPU benchmark child beside its model: Python, torch, diffusers, transformers, the
# tokenizer. Measured: the tiny kinds at 32x32x9, where weights, activations and decode are under
# 10 MiB, peak at 776-790 MiB (torch 2.13, diffusers 0.42.1; BENCHMARKS.md "Memory guard").
RUNTIME_RSS_BYTES = 770 << 20
_HIDDEN_STATES = 6  # live L x d tensors in a block: residual, normed input, Q, K, V, attention output
_FFN_TENSORS = 2  # the feed-forward's L x ffn input and activation
_VAE_CHUNK_FRAMES = 4  # the causal decoder makes 4 frames per latent frame
_VAE_LIVE_TENSORS = 6
# (channels, spatial divisor) of the decoder's last stage, by the VAE's spatial compression.
_VAE_LAST_STAGE = {8: (96, 1), 16: (256, 2)}


def device_memory(snap: Any, device: str) -> int | None:
    """What the run's device has: the GPU's memory (by NVML's reading), or the host's RAM."""
    from .. import gpuid

    if gpuid.cuda_ordinal(device) is None:
        host = getattr(snap, "host", None)
        return getattr(host, "memory_total_bytes", None) or host_memory()
    g = gpuid.find(getattr(snap, "gpus", ()), device)
    return g.memory_total_bytes if g is not None and not g.lost else None


def host_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def read_gpus(cfg: Any) -> tuple:
    """NVML's GPUs, for the CLI (no exporter running); empty when NVML cannot be read or no model uses a GPU."""
    from .. import gpuid

    if not any(gpuid.cuda_ordinal(m.device) is not None for m in cfg.models):
        return ()
    try:
        from ..nvml import NvmlReader

        return tuple(NvmlReader(timeout=cfg.exporter.nvml_timeout).read()[0])
    except Exception:  # noqa: BLE001 - no NVML here: the device's memory is unknown
        return ()


def offline_device_memory(device: str, gpus: tuple) -> int | None:
    from .. import gpuid

    if gpuid.cuda_ordinal(device) is None:
        return host_memory()
    g = gpuid.find(gpus, device)
    return g.memory_total_bytes if g is not None and not g.lost else None


def facts_on_disk(cfg: Any, m: Any) -> Any:
    """The checkpoint's facts read now (CLI); None when its files are not here or unreadable."""
    from ..checkpoint import facts as checkpoint
    from ..checkpoint.locate import resolve_model_dir

    found = resolve_model_dir(m, cfg)
    if found is None or isinstance(found, tuple):
        return None
    try:
        return checkpoint.derive_facts(found)
    except Exception:  # noqa: BLE001 - an unreadable checkpoint is the health checks' finding
        return None


def _weights(params: Mapping[str, int], dtype_bytes: int, offload: str, on_cuda: bool, layers: int | None) -> int:
    per = {n: p * (4 if n in FP32_COMPONENTS else dtype_bytes) for n, p in params.items()}
    if not on_cuda or offload == "none":
        return sum(per.values())
    if offload == "model":
        return max(per.values(), default=0)
    block = max((per[n] for n in DENOISERS if n in per), default=0) // max(layers or 1, 1)
    return 2 * block if offload == "group" else block


def estimate(m: Any, profile: Any, facts: Any = None, device_bytes: int | None = None) -> MemoryEstimate:
    """The estimated peak of running ``profile`` on model ``m`` (a ModelConfig), from ``facts``
    (the checkpoint's :class:`~wan_exporter.checkpoint.facts.CheckpointFacts`, when read) or the catalog."""
    entry = catalog.CATALOG.get(m.kind)
    on_cuda = str(m.device).startswith("cuda")
    b = DTYPE_BYTES.get(m.dtype, 2)
    params = dict(getattr(facts, "parameters_by_component", None) or {})
    weights_known = bool(params) and any(n in params for n in DENOISERS)
    if not weights_known and entry is not None and (entry.parameters_derived or entry.parameters):
        # The catalog counts the denoisers only: the estimate stays a lower bound.
        params = {"transformer": entry.parameters_derived or entry.parameters or 0}
    tcfg = getattr(facts, "transformer_config", None) or (entry.architecture if entry is not None else {})
    shape = flops.shape_from_config(tcfg) if tcfg else None
    weights = _weights(params, b, m.offload, on_cuda, shape.num_layers if shape else None)

    compression = getattr(facts, "vae_compression", None) or (entry.vae_compression if entry is not None else None)
    patch = shape.patch_size if shape is not None else (1, 2, 2)
    activations = 0
    if compression is not None:
        stride = flops.vae_stride_from_compression(tuple(compression), patch)
        tokens = flops.latent_tokens(profile.width, profile.height, profile.frames, stride, patch)
        if shape is not None:
            activations = tokens * (_HIDDEN_STATES * shape.dim + _FFN_TENSORS * shape.ffn_dim) * b
        spatial = stride[1]
    else:
        spatial = 8
    pixels = profile.width * profile.height
    channels, divisor = getattr(facts, "vae_decoder", None) or _VAE_LAST_STAGE.get(spatial, _VAE_LAST_STAGE[8])
    vae = 2 * profile.frames * pixels * 3 * 4
    vae += _VAE_LIVE_TENSORS * min(_VAE_CHUNK_FRAMES, profile.frames) * (pixels // divisor ** 2) * channels * 4
    runtime = 0 if on_cuda else RUNTIME_RSS_BYTES
    return MemoryEstimate(bytes=weights + activations + vae + runtime, weights_bytes=weights,
                          activations_bytes=activations, vae_decode_bytes=vae, runtime_bytes=runtime,
                          device_bytes=device_bytes, kind="cuda" if on_cuda else "rss",
                          weights_known=weights_known)


def refusal(name: str, profile_name: str, e: MemoryEstimate, device: str) -> str | None:
    """A one-line reason when ``e`` does not fit its device, else None."""
    if e.fits:
        return None
    bound = "at least " if not e.weights_known else ""
    what = "host RAM" if e.kind == "rss" else f"memory of {device}"
    return (f"model {name} profile {profile_name}: would not fit: estimated peak {bound}{_gib(e.bytes)} "
            f"(weights {_gib(e.weights_bytes)}, activations {_gib(e.activations_bytes)}, "
            f"VAE decode {_gib(e.vae_decode_bytes)}) > {_gib(e.device_bytes or 0)} {what}")


def _gib(n: int) -> str:
    return f"{n / 2**30:,.1f} GiB"
