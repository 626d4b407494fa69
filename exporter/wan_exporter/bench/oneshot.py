"""``wan-exporter bench``: run one benchmark generation now, with progress, and print its figures."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, fields
from typing import Mapping

from ..config import ConfigError
from ..checkpoint.locate import resolve_model_dir
from ..state import Efficiency
from . import memory
from ..load.forms import form_of, skip_reason
from .runner import run_once


def _progress(ev: dict) -> None:
    if ev.get("event") == "step":
        n, total = ev.get("step", 0), ev.get("steps", 0)
        width = 30
        done = int(width * n / total) if total else 0
        print(f"\r  denoise [{'#' * done}{'.' * (width - done)}] step {n}/{total}", end="", file=sys.stderr, flush=True)
        if total and n >= total:
            print(file=sys.stderr)
    elif ev.get("event") == "phase":
        print(f"  {ev.get('phase')} ...", file=sys.stderr, flush=True)


def _efficiency_rows(e: Efficiency) -> list[tuple[str, str]]:
    rows = []
    if e.flops_per_step is not None:
        rows.append(("FLOPs per step", f"{e.flops_per_step:.4g} ({e.tokens:,} tokens)"))
    if e.flops_per_second is not None:
        rows.append(("achieved FLOP/s (denoise)", f"{e.flops_per_second:.4g}"))
    if e.utilization_ratio is not None:
        rows.append(("model FLOPs utilisation", f"{e.utilization_ratio:.1%} of {e.peak_flops_per_second:.4g} "
                                                f"({e.gpu_model} datasheet)"))
    if e.realtime_factor is not None:
        rows.append(("real-time factor", f"{e.realtime_factor:.4g} ({e.video_seconds:.3g} s of video)"))
    if e.joules_per_video_second is not None:
        rows.append(("joules per video second", f"{e.joules_per_video_second:.1f}"))
    if e.projected_duration_seconds is not None:
        rows.append((f"projected at {e.projected_steps} steps", f"{e.projected_duration_seconds:.4g} s"
                     + (f", real-time factor {e.projected_realtime_factor:.4g}"
                        if e.projected_realtime_factor is not None else "")))
    return rows


def _report(url: str, document: dict) -> int:
    """Job mode: hand the result to the exporter that created this Job (token and CA from the env)."""
    import os

    from ..kube.jobs import post_result

    probe_id = os.environ.get("WAN_PROBE_ID", "")
    token_file = os.environ.get("WAN_PROBE_TOKEN_FILE", "")
    if not probe_id or not token_file:
        print("--report-to needs WAN_PROBE_ID and WAN_PROBE_TOKEN_FILE", file=sys.stderr)
        return 2
    try:
        status = post_result(url, token_file, probe_id, document, os.environ.get("WAN_PROBE_REPORT_CA") or None)
    except OSError as e:
        print(f"could not hand the result to {url}: {e}", file=sys.stderr)
        return 1
    if status != 202:
        print(f"{url} refused the result: HTTP {status}", file=sys.stderr)
        return 1
    return 0  # handed back: the exporter publishes it, success or failure


def cmd_bench(args) -> int:
    from ..defaults import resolve_config

    try:
        cfg, _ = resolve_config(args.config_file, args.demo)
        m = cfg.model(args.model)
        if getattr(args, "device", None):
            from dataclasses import replace

            m = replace(m, device=args.device)
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 2
    except KeyError:
        print(f"no model named {args.model!r}; configured: {', '.join(x.name for x in cfg.models) or 'none'}",
              file=sys.stderr)
        return 2
    profile = args.profile or (m.profiles[0] if m.profiles else None)
    if profile is None or profile not in cfg.profiles:
        print(f"model {m.name!r} has no profile {profile!r}; profiles: {', '.join(cfg.profiles) or 'none'}",
              file=sys.stderr)
        return 2
    model_dir = resolve_model_dir(m, cfg)
    if model_dir is None:
        print(f"model {m.name!r}: files not found (path or local Hugging Face cache)", file=sys.stderr)
        return 1
    if skip_reason(model_dir, m) == "unsupported_format":
        from ..load.forms import why_not

        why = why_not(m, model_dir, form_of(model_dir, m.format) or "")
        print(f"model {m.name!r}: its checkpoint form cannot be benchmarked here (unsupported_format)"
              + (f": {why}" if why else "; see the README's checkpoint forms"), file=sys.stderr)
        return 1
    estimate = memory.estimate(m, cfg.profiles[profile], memory.facts_on_disk(cfg, m),
                               memory.offline_device_memory(m.device, memory.read_gpus(cfg)))
    refused = memory.refusal(m.name, profile, estimate, m.device)
    if refused:
        print(f"{refused} (would_not_fit)", file=sys.stderr)
        return 1
    print(f"benchmark {m.name} / {profile} on {m.device} ...", file=sys.stderr, flush=True)
    result, versions = run_once(cfg, m, profile, model_dir, on_progress=None if args.json else _progress,
                                estimate=estimate)
    eff = result.efficiency or Efficiency()  # computed with the run, from what it loaded
    if args.json:
        d = {f.name: getattr(result, f.name) for f in fields(result) if f.name not in ("efficiency", "memory_estimate")}
        for key, value in d.items():  # the result's read-only mappings (phases, sanity, per-rank figures)
            if isinstance(value, Mapping):
                d[key] = dict(value)
        d["versions"] = versions
        d["efficiency"] = asdict(eff)
        d["memory_estimate"] = asdict(result.memory_estimate) if result.memory_estimate else None
        print(json.dumps(d, indent=2, sort_keys=True))
        if getattr(args, "report_to", None):
            return _report(args.report_to, d)
    else:
        rows = [("success", str(result.success))]
        if not result.success:
            rows += [("reason", result.reason), ("detail", result.detail[:200])]
        if result.duration_seconds is not None:
            rows.append(("generation seconds", f"{result.duration_seconds:.4f}"))
        if result.process_start_seconds is not None:
            rows.append(("process start seconds", f"{result.process_start_seconds:.2f}"))
        for ph, v in result.phases.items():
            rows.append((f"  phase {ph}", f"{v:.4f}"))
        if result.seconds_per_step is not None:
            rows.append(("seconds per step", f"{result.seconds_per_step:.4f}"))
        if result.frames and result.width and result.height:
            rows.append(("output", f"{result.frames} frames of {result.width}x{result.height}"))
            if result.duration_seconds:
                px = result.frames * result.width * result.height / result.duration_seconds
                rows.append(("pixels per second", f"{px:,.0f}"))
        if result.peak_memory_bytes is not None:
            rows.append((f"peak memory ({result.peak_memory_kind})", f"{result.peak_memory_bytes / 2**20:,.1f} MiB"))
        if result.memory_estimate is not None:
            rows.append(("estimated peak memory", f"{result.memory_estimate.bytes / 2**20:,.1f} MiB"
                         + ("" if result.memory_estimate.weights_known else " (lower bound: no parameter count)")))
        if result.energy_joules is not None:
            rows.append(("energy", f"{result.energy_joules:.1f} J"))
        if result.form:
            rows.append(("weights", f"{result.form}, stored {result.weight_format}, computed in {result.compute_dtype}"))
        if result.compared_with and result.output_max_abs_difference is not None:
            psnr = result.output_psnr_decibels
            rows.append((f"vs {result.compared_with}", f"max abs difference {result.output_max_abs_difference:.4f}, "
                         f"PSNR {'inf' if psnr is None or psnr == float('inf') else f'{psnr:.1f}'} dB "
                         "(8-bit frames, same seed and inputs)"))
        rows += _efficiency_rows(eff)
        for k, ok in result.sanity.items():
            rows.append((f"  sanity {k}", "pass" if ok else "FAIL"))
        rows.append(("device", result.device + (f" ({result.gpu_name})" if result.gpu_name else "")))
        w = max(len(k) for k, _ in rows)
        for k, v in rows:
            print(f"{k:<{w}}  {v}")
    return 0 if result.success else 1
