"""``wan-exporter bench``: run one benchmark generation now, with progress, and print its figures."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, fields

from .. import catalog
from ..checkpoint import facts as checkpoint
from ..config import ConfigError
from ..pollers import resolve_model_dir
from ..measure.efficiency import Efficiency, compute
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


def _efficiency(cfg, m, profile: str, model_dir, result) -> Efficiency:
    """The figures the exporter publishes for this run (FLOPs, utilisation, real-time factor)."""
    try:
        facts = checkpoint.derive_facts(model_dir)
    except Exception:  # noqa: BLE001 - a checkpoint we cannot read costs the FLOPs, not the run's figures
        facts = None
    return compute(result, catalog.CATALOG.get(m.kind), facts, cfg.profiles[profile].guidance_scale, m.dtype)


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
    return rows


def cmd_bench(args) -> int:
    from ..cli import resolve_config

    try:
        cfg, _ = resolve_config(args.config_file, args.demo)
        m = cfg.model(args.model)
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
        from ..load.single_file import why_not

        why = why_not(m, model_dir, form_of(model_dir, m.format) or "") if m.format != "official" else None
        print(f"model {m.name!r}: its checkpoint form cannot be benchmarked here (unsupported_format)"
              + (f": {why}" if why else "; see the README's checkpoint forms"), file=sys.stderr)
        return 1
    print(f"benchmark {m.name} / {profile} on {m.device} ...", file=sys.stderr, flush=True)
    result, versions = run_once(cfg, m, profile, model_dir, on_progress=None if args.json else _progress)
    eff = _efficiency(cfg, m, profile, model_dir, result)
    if args.json:
        d = {f.name: getattr(result, f.name) for f in fields(result)}
        d["phases"] = dict(result.phases)
        d["sanity"] = dict(result.sanity)
        d["versions"] = versions
        d["efficiency"] = asdict(eff)
        print(json.dumps(d, indent=2, sort_keys=True))
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
        if result.energy_joules is not None:
            rows.append(("energy", f"{result.energy_joules:.1f} J"))
        rows += _efficiency_rows(eff)
        for k, ok in result.sanity.items():
            rows.append((f"  sanity {k}", "pass" if ok else "FAIL"))
        rows.append(("device", result.device + (f" ({result.gpu_name})" if result.gpu_name else "")))
        w = max(len(k) for k, _ in rows)
        for k, v in rows:
            print(f"{k:<{w}}  {v}")
    return 0 if result.success else 1
