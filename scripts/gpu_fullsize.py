#!/usr/bin/env python3
"""Full-size Wan2.2 T2V-A14B and TI2V-5B on one GPU, measured by the exporter's own benchmark path.

    PYTHONPATH=exporter python3 scripts/gpu_fullsize.py --out DIR          # on a GPU (one H200: ~5 min)
    PYTHONPATH=exporter python3 scripts/gpu_fullsize.py --tiny --out DIR   # CPU dry run, tiny models

The pipelines are built from the published configs (WanTransformer3DModel x2 for A14B, the
Wan2.1 VAE; WanTransformer3DModel and the Wan2.2 VAE for TI2V-5B; a umt5-xxl-sized text
encoder) with random weights, directly on the GPU in bfloat16: nothing is downloaded, and
the speed of a matrix product does not depend on the values in it. Each run then goes
through the exporter's benchmark child (``bench.child.run_benchmark``: phase timers, CUDA
peak memory, NVML energy, output sanity) with only its loader swapped for the builder, the
request made by ``bench.runner.build_request`` from an exporter config, the result read by
``bench.runner.to_result`` and the efficiency figures computed by ``bench.efficiency``, as
the exporter publishes them. Profiles use the real frame counts (81 at 480p/720p, 121 for
TI2V-5B) and only a few steps (2 by default); seconds per step do not depend on the count.

Writes DIR/gpu_fullsize.json (every figure) and DIR/gpu_fullsize.md (rows for BENCHMARKS.md).
Needs torch, diffusers and transformers (tokenizer and text encoder classes).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from wan_exporter import catalog
from wan_exporter.bench import child, runner
from wan_exporter.measure.efficiency import compute
from wan_exporter.childproc import ChildOutcome
from wan_exporter.config import parse_config

GB = 1e9
_T0 = time.perf_counter()

# Published geometry (Wan2.2 wan/configs, diffusers convert_wan_to_diffusers.py); the rest of
# WanTransformer3DModel's defaults (patch 1x2x2, text_dim 4096, freq_dim 256, qk rms norm) are Wan's.
A14B_TRANSFORMER = dict(num_attention_heads=40, attention_head_dim=128, in_channels=16, out_channels=16,
                        ffn_dim=13824, num_layers=40)
TI2V_TRANSFORMER = dict(num_attention_heads=24, attention_head_dim=128, in_channels=48, out_channels=48,
                        ffn_dim=14336, num_layers=30)
WAN22_VAE = dict(base_dim=160, decoder_base_dim=256, z_dim=48, dim_mult=[1, 2, 4, 4], num_res_blocks=2,
                 temperal_downsample=[False, True, True], is_residual=True, in_channels=12, out_channels=12,
                 patch_size=2, scale_factor_spatial=16, scale_factor_temporal=4,
                 latents_mean=[0.0] * 48, latents_std=[1.0] * 48)
UMT5_XXL = dict(vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                relative_attention_num_buckets=32, relative_attention_max_distance=128,
                feed_forward_proj="gated-gelu", tie_word_embeddings=False)

# name -> (catalog kind, [(profile, width, height, frames)], guidance, guidance_2)
MODELS = {
    "wan2.2-t2v-a14b": ("wan2.2-t2v-a14b", [("480p", 832, 480, 81), ("720p", 1280, 720, 81)], 4.0, 3.0),
    "wan2.2-ti2v-5b": ("wan2.2-ti2v-5b", [("720p", 1280, 704, 121)], 5.0, None),
}
TINY_MODELS = {
    "tiny-wan2.2-t2v-a14b": ("tiny-wan2.2-t2v-a14b", [("tiny", 32, 32, 9), ("tiny-wide", 64, 32, 9)], 4.0, 3.0),
    "tiny-wan2.2-ti2v-5b": ("tiny-wan2.2-ti2v-5b", [("tiny", 64, 32, 9)], 5.0, None),
}


def say(msg: str) -> None:
    print(f"[{time.perf_counter() - _T0:7.1f}s] {msg}", flush=True)


# --------------------------------------------------------------------------- building


@contextlib.contextmanager
def _built_on(torch: Any, device: str, dtype: Any):
    """Parameters are created on ``device`` in ``dtype``: no CPU copy, no float32 detour."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            yield
    finally:
        torch.set_default_dtype(old)


# --tiny: the same builder with the geometry shrunk (VAEs stay full size: cheap at 32x32, and checked).
TINY_TRANSFORMER = dict(num_attention_heads=2, attention_head_dim=12, ffn_dim=32, num_layers=2, text_dim=32)
TINY_UMT5 = dict(d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4, relative_attention_num_buckets=8)


def build_pipeline(name: str, device: str, tiny: bool) -> Any:
    """The pipeline of ``name`` with random weights, every module created on ``device``."""
    import torch
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    from wan_exporter.tiny import _tokenizer

    torch.manual_seed(0)
    tokenizer = _tokenizer()
    a14b = name.endswith("t2v-a14b")
    geometry = dict(A14B_TRANSFORMER if a14b else TI2V_TRANSFORMER, **(TINY_TRANSFORMER if tiny else {}))
    umt5 = dict(UMT5_XXL, **(dict(TINY_UMT5, vocab_size=len(tokenizer)) if tiny else {}))
    with _built_on(torch, device, torch.float32 if tiny else torch.bfloat16):
        text_encoder = UMT5EncoderModel(UMT5Config(**umt5)).eval()
        experts = [WanTransformer3DModel(**geometry).eval() for _ in range(2 if a14b else 1)]
    with _built_on(torch, device, torch.float32):  # the exporter runs the VAE in float32
        vae = (AutoencoderKLWan() if a14b else AutoencoderKLWan(**WAN22_VAE)).eval()
    # Flow shift 3.0: with 2 steps the second falls below A14B's boundary, so both experts run.
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)
    common = dict(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, scheduler=scheduler)
    if a14b:
        pipe = WanPipeline(transformer=experts[0], transformer_2=experts[1], boundary_ratio=0.875, **common)
    else:
        pipe = WanPipeline(transformer=experts[0], expand_timesteps=True, **common)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def warm_up(pipe: Any, tiny: bool) -> None:
    """One small unmeasured call, so CUDA's lazy module loading and library handles are not in step 1
    (a keep-warm worker's state; a fresh benchmark child pays them in its first run)."""
    import torch

    with torch.no_grad():
        pipe(prompt="warm up", height=64, width=64, num_frames=5, num_inference_steps=1, output_type="np",
             max_sequence_length=64)


def _parameters(module: Any) -> int:
    return sum(p.numel() for p in module.parameters()) if module is not None else 0


def _drop_phase_wrappers(pipe: Any) -> None:
    """Between two runs on one pipeline, remove the child's phase timers (instance attributes
    shadowing the real methods), as its keep-warm path does, so each run installs its own."""
    for owner, names in ((pipe, ("encode_prompt", "encode_image", "prepare_latents")),
                         (getattr(pipe, "vae", None), ("decode",)),
                         (getattr(pipe, "video_processor", None), ("postprocess_video",))):
        for name in names:
            if owner is not None:
                owner.__dict__.pop(name, None)


def _count_expert_calls(pipe: Any) -> dict[str, int]:
    """Forward pre-hooks that count which expert ran (A14B switches at the boundary)."""
    calls: dict[str, int] = {}
    for attr in ("transformer", "transformer_2"):
        model = getattr(pipe, attr, None)
        if model is not None:
            calls[attr] = 0
            model.register_forward_pre_hook(lambda *_a, _k=attr: calls.__setitem__(_k, calls[_k] + 1))
    return calls


# --------------------------------------------------------------------------- measuring


def _matmul_ceiling(torch: Any, device: str) -> float | None:
    """bf16 8192^3 products on this GPU: the practical ceiling beside the datasheet's."""
    if not device.startswith("cuda"):
        return None
    n = 8192
    a, b = (torch.randn(n, n, device=device, dtype=torch.bfloat16) for _ in range(2))
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(10):
        a @ b
    torch.cuda.synchronize()
    del a, b
    return 10 * 2 * n**3 / (time.perf_counter() - t0)


def _config(models: dict, device: str, dtype: str, steps: int) -> Any:
    lines = ["models:"]
    profiles: dict[str, str] = {}
    for name, (kind, runs, g1, g2) in models.items():
        pnames = [f"{name}-{p}" for p, *_ in runs]
        lines.append(f"  - {{name: {name}, kind: {kind}, path: /nonexistent/{name}, device: '{device}', "
                     f"dtype: {dtype}, profiles: [{', '.join(pnames)}]}}")
        for (p, w, h, f), pname in zip(runs, pnames):
            g2s = f", guidance_scale_2: {g2}" if g2 is not None else ""
            profiles[pname] = (f"  {pname}: {{width: {w}, height: {h}, frames: {f}, steps: {steps}, "
                               f"guidance_scale: {g1}{g2s}, timeout: 30m}}")
    lines += ["profiles:", *profiles.values()]
    return parse_config("\n".join(lines) + "\n")


def _facts_of(pipe: Any) -> SimpleNamespace:
    """What the exporter would read off the checkpoint's config files, read off the built modules."""
    t, vae = pipe.transformer.config, pipe.vae.config
    patch = list(t.patch_size)
    return SimpleNamespace(
        transformer_config=dict(t),
        vae_compression=(vae.scale_factor_temporal * patch[0], vae.scale_factor_spatial * patch[1],
                         vae.scale_factor_spatial * patch[2]),
        image_tokens=None, expand_timesteps=bool(pipe.config.expand_timesteps))


def measure(cfg: Any, name: str, pipe: Any, build_seconds: float, ceiling: float | None) -> list[dict]:
    import torch

    m = cfg.model(name)
    entry = catalog.CATALOG[m.kind]
    calls = _count_expert_calls(pipe)
    rows = []
    original = child.load_pipeline
    child.load_pipeline = lambda *_a, **_k: pipe  # the one swap: built, not loaded from disk
    try:
        for pname in m.profiles:
            for k in calls:
                calls[k] = 0
            _drop_phase_wrappers(pipe)
            request = runner.build_request(m, cfg.profiles[pname], Path(m.path))
            say(f"{name} {pname}: generating ({request['width']}x{request['height']}x{request['frames']}, "
                f"{request['steps']} steps)")
            started = time.time()
            raw = child.run_benchmark(request)
            result = runner.to_result(m, pname, ChildOutcome(result=raw, exitcode=0), started)
            prof = cfg.profiles[pname]
            # Figures from the run whatever the sanity verdict (random weights give noise frames).
            timed = result if result.success else runner.to_result(
                m, pname, ChildOutcome(result={**raw, "success": True}, exitcode=0), started)
            eff = compute(timed, entry, _facts_of(pipe), prof.guidance_scale, m.dtype)
            row = {
                "model": name, "kind": m.kind, "profile": pname, "width": prof.width, "height": prof.height,
                "frames": timed.frames, "steps": timed.steps, "guidance_scale": prof.guidance_scale,
                "success": result.success, "reason": result.reason, "detail": result.detail,
                "sanity": dict(raw.get("sanity") or {}), "expert_forwards": dict(calls),
                "gpu_name": result.gpu_name, "device": result.device,
                "build_seconds": build_seconds, "duration_seconds": timed.duration_seconds,
                "phases": dict(timed.phases), "seconds_per_step": timed.seconds_per_step,
                "peak_memory_bytes": result.peak_memory_bytes, "peak_memory_kind": result.peak_memory_kind,
                "energy_joules": timed.energy_joules,
                "latent_tokens": eff.tokens, "flops_per_step": eff.flops_per_step,
                "flops_per_second": eff.flops_per_second, "gpu_model": eff.gpu_model,
                "peak_flops_per_second": eff.peak_flops_per_second,
                "model_flops_utilization_ratio": eff.utilization_ratio,
                "matmul_ceiling_flops_per_second": ceiling,
                "utilization_of_matmul_ceiling": (eff.flops_per_second / ceiling
                                                  if ceiling and eff.flops_per_second else None),
                "video_seconds": eff.video_seconds, "realtime_factor": eff.realtime_factor,
                "joules_per_video_second": eff.joules_per_video_second,
                "child_result": raw,  # everything the benchmark child reported, as it reported it
            }
            rows.append(row)
            say(f"{name} {pname}: {_line(row)}")
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    finally:
        child.load_pipeline = original
    return rows


def _fmt(v: Any, scale: float = 1.0, spec: str = ".3g", unit: str = "") -> str:
    return "-" if v is None else format(v / scale, spec) + unit


def _line(r: dict) -> str:
    return (f"ok={r['success']} {_fmt(r['seconds_per_step'])} s/step, denoise {_fmt(r['phases'].get('denoise'))} s, "
            f"{_fmt(r['flops_per_step'], 1e12)} TFLOP/step, {_fmt(r['flops_per_second'], 1e12)} TFLOP/s, "
            f"MFU {_fmt(r['model_flops_utilization_ratio'], 0.01, '.1f', '%')}, "
            f"peak {_fmt(r['peak_memory_bytes'], GB, '.1f')} GB, RTF {_fmt(r['realtime_factor'])}, "
            f"energy {_fmt(r['energy_joules'], 1, '.0f')} J, expert forwards {r['expert_forwards']}")


def markdown(rows: list[dict]) -> str:
    head = ("| model | width x height x frames | s/step | TFLOP/step | TFLOP/s | MFU (datasheet) | of matmul ceiling "
            "| peak GB | video s | generation s | real-time factor | J | J per video s | default-steps estimate s |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    out = []
    for r in rows:
        gen, den, sps = r["duration_seconds"], r["phases"].get("denoise"), r["seconds_per_step"]
        steps = catalog.CATALOG[r["kind"]].steps_default or r["steps"]
        # The model's default step count at the measured rate, plus what does not scale with steps.
        est = (gen - den + steps * sps) if gen and den and sps else None
        out.append(f"| {r['model']} | {r['width']}x{r['height']}x{r['frames']} | {_fmt(sps)} | "
                   f"{_fmt(r['flops_per_step'], 1e12, '.4g')} | {_fmt(r['flops_per_second'], 1e12)} | "
                   f"{_fmt(r['model_flops_utilization_ratio'], 0.01, '.1f', '%')} | "
                   f"{_fmt(r['utilization_of_matmul_ceiling'], 0.01, '.1f', '%')} | "
                   f"{_fmt(r['peak_memory_bytes'], GB, '.1f')} | {_fmt(r['video_seconds'])} | {_fmt(gen)} | "
                   f"{_fmt(r['realtime_factor'])} | {_fmt(r['energy_joules'], 1, '.0f')} | "
                   f"{_fmt(r['joules_per_video_second'], 1, '.0f')} | {_fmt(est, 1, '.0f')} ({steps} steps) |")
    return head + "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiny", action="store_true", help="CPU dry run with the tiny models (same code path)")
    ap.add_argument("--out", default=os.environ.get("OUT") or "gpu-fullsize", help="directory for the JSON and rows")
    ap.add_argument("--steps", type=int, default=2, help="denoising steps per run (default 2)")
    ap.add_argument("--only", default="", help="comma-separated model names to run (default: all)")
    args = ap.parse_args(argv)

    say("importing torch and diffusers")
    import torch

    device = "cpu" if args.tiny else "cuda:0"
    if not args.tiny and not torch.cuda.is_available():
        print("no CUDA device: use --tiny for the CPU dry run", file=sys.stderr)
        return 2
    models = TINY_MODELS if args.tiny else MODELS
    if args.only:
        models = {k: v for k, v in models.items() if k in args.only.split(",")}
    cfg = _config(models, device, "float32" if args.tiny else "bfloat16", args.steps)
    ceiling = _matmul_ceiling(torch, device)
    if ceiling:
        say(f"bf16 matmul ceiling on this GPU: {ceiling / 1e12:.0f} TFLOP/s")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    report = {"tiny": args.tiny, "steps": args.steps, "host": platform.node(), "python": platform.python_version(),
              "torch": torch.__version__, "matmul_ceiling_flops_per_second": ceiling, "runs": rows}
    for name in models:
        say(f"{name}: building with random weights on {device}")
        t0 = time.perf_counter()
        pipe = build_pipeline(name, device, args.tiny)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        build_seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        warm_up(pipe, args.tiny)
        report.setdefault("warm_up_seconds", {})[name] = time.perf_counter() - t0
        report.setdefault("parameters", {})[name] = {
            "transformer": _parameters(pipe.transformer), "transformer_2": _parameters(getattr(pipe, "transformer_2", None)),
            "text_encoder": _parameters(pipe.text_encoder), "vae": _parameters(pipe.vae)}
        say(f"{name}: built in {build_seconds:.1f}s, {report['parameters'][name]}")
        rows.extend(measure(cfg, name, pipe, build_seconds, ceiling))
        del pipe
        gc.collect()
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
        (out / "gpu_fullsize.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    (out / "gpu_fullsize.md").write_text(markdown(rows))
    say(f"wrote {out / 'gpu_fullsize.json'} and {out / 'gpu_fullsize.md'}")
    print(markdown(rows))
    return 0 if rows and all(r["seconds_per_step"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
