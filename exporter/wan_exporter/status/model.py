"""The status view: one plain, JSON-ready dict built from a snapshot and the config.

Everything here is read from the snapshot the collectors read, through the same functions
(:func:`~wan_exporter.health.verdict.verdict`, the benchmark collector's helpers, the
recommendation families), so the page and ``/metrics`` cannot disagree. Nothing is
measured or guessed: what the snapshot does not hold is ``None`` (JSON ``null``) or absent.
Ages are relative to the snapshot's own time, so one snapshot always gives one view.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from .. import __version__, catalog, gpuid
from ..collectors.benchmark import PHASES, effective_baseline, memory_total_for
from ..collectors.recommendation import recommendation_families
from ..config import Config, ModelConfig
from ..contract.labels import HARDWARE_THROTTLE_REASONS, NO_GPU_COLLECTOR_REASONS
from ..collectors.health import reference as integrity_reference
from ..findings import CHECKS
from ..health.verdict import CRITICAL_KINDS, DEGRADED_KINDS, STATUSES, verdict
from ..state import BenchmarkAggregate, BenchmarkResult, GpuReading, Snapshot

SCHEMA_VERSION = 1
MODEL_DASHBOARD = "wan-model-detail"  # uid of grafana/dashboards/wan-model-detail.json
TABLE_VIEW_AFTER = 12  # models; past this the page leads with a table and folds healthy cards


def runbook(cfg: Config, alert: str) -> dict[str, str]:
    """A link to the runbook section of ``alert``: the anchor alerting/generate.py gives it."""
    return {"alert": alert, "url": f"{cfg.exporter.links.runbooks}#{alert.lower()}"}


def build(snap: Snapshot, cfg: Config) -> dict[str, Any]:
    """The whole status view of ``snap`` under ``cfg``."""
    scores = _scores(snap, cfg)
    models = [_model(snap, cfg, m, scores.get(m.name, [])) for m in cfg.models]
    summary = dict.fromkeys(STATUSES, 0)
    summary["unknown"] = 0
    for m in models:
        summary[m["status"] or "unknown"] += 1
    links = cfg.exporter.links
    return {
        "schema_version": SCHEMA_VERSION,
        "exporter": {
            "version": __version__,
            "snapshot_at": snap.created_at,
            "ready": snap.ready,
            "refresh_seconds": cfg.exporter.status_refresh,
            "demo": cfg.exporter.demo,
        },
        "links": {"prometheus": links.prometheus, "grafana": links.grafana, "alertmanager": links.alertmanager,
                  "runbooks": links.runbooks},
        "config": {
            "generation": snap.config_generation,
            "last_reload_success": snap.config_last_reload_success,
            "last_reload_at": snap.config_last_reload_at,
            "models_configured": len(cfg.models),
            "runbooks": [] if snap.config_last_reload_success else [runbook(cfg, "WanConfigReloadFailed")],
        },
        "summary": summary,
        "table_view": len(models) > TABLE_VIEW_AFTER,
        "models": models,
        "gpus": _gpus(snap, cfg),
        "host": _host(snap),
        "collectors": _collectors(snap, cfg),
        "jobs": [_job(j) for _, j in sorted(snap.jobs.items())],
    }


# ----------------------------------------------------------------------------- models


def _model(snap: Snapshot, cfg: Config, m: ModelConfig, scores: list[dict]) -> dict[str, Any]:
    entry = catalog.CATALOG.get(m.kind)
    v = verdict(snap, m.name, cfg.thresholds)
    found = snap.checkpoint_facts.get(m.name)
    benchmarks = [_benchmark(snap, cfg, m, p) for p in m.profiles]
    out: dict[str, Any] = {
        "name": m.name,
        "kind": m.kind,
        "model_id": entry.model_id if entry else None,
        "family": entry.family if entry else None,
        "task": entry.task if entry else None,
        "device": m.device,
        "dtype": m.dtype,
        "offload": m.offload,
        "present": None if found is None else bool(found.get("present", False)),
        "status": v.status,
        "reasons": list(v.reasons),
        "issues": {k: n for k, n in v.issues.items() if n},
        "findings": _findings(snap, m.name),
        "checks": _checks(snap, m.name),
        "checkpoint": _checkpoint(snap, m.name, found),
        "capabilities": _capabilities(snap, entry, found, m.name),
        "benchmarks": benchmarks,
        "recommendation": scores,
    }
    out["runbooks"] = _model_runbooks(cfg, out)
    grafana = cfg.exporter.links.grafana
    out["dashboard_url"] = (f"{grafana.rstrip('/')}/d/{MODEL_DASHBOARD}/{MODEL_DASHBOARD}?var-model={quote(m.name, safe='')}"
                            if grafana else None)
    return out


def _findings(snap: Snapshot, model: str) -> list[dict[str, Any]]:
    """Every current finding of every check, with its file, the status-deciding ones first."""
    out, seen = [], set()
    for c in CHECKS:
        r = snap.checks.get((model, c))
        for i in r.issues if r is not None else ():
            key = (i.kind, i.path or i.detail)
            if key in seen:
                continue  # the same missing shard seen by two checks is one finding (as the verdict counts it)
            seen.add(key)
            severity = "critical" if i.kind in CRITICAL_KINDS else "degraded" if i.kind in DEGRADED_KINDS else "info"
            out.append({"kind": i.kind, "check": c, "path": i.path or None, "detail": i.detail or None,
                        "severity": severity})
    rank = {"critical": 0, "degraded": 1, "info": 2}
    return sorted(out, key=lambda f: rank[f["severity"]])


def _checks(snap: Snapshot, model: str) -> list[dict[str, Any]]:
    out = []
    for c in CHECKS:
        r = snap.checks.get((model, c))
        last_ok = snap.check_last_success.get((model, c))
        if r is None and last_ok is None:
            continue
        out.append({"check": c, "success": None if r is None else r.success,
                    "finished_at": None if r is None else r.finished_at,
                    "duration_seconds": None if r is None else r.duration_seconds, "last_success_at": last_ok})
    return out


def _checkpoint(snap: Snapshot, model: str, found: Any) -> dict[str, Any]:
    """Files found, the checkpoint's form, and what the integrity figure was compared against."""
    lay = snap.checks.get((model, "layout"))
    lf = lay.facts if lay is not None else {}
    h = snap.checks.get((model, "hash"))
    hf = h.facts if h is not None else {}
    form = (found or {}).get("form") or lf.get("form")
    integrity = None
    if hf.get("expected_bytes"):
        integrity = {
            "ratio": max(0.0, min(1.0, hf.get("verified_bytes", 0) / hf["expected_bytes"])),
            "verified_bytes": hf.get("verified_bytes", 0),
            "expected_bytes": hf["expected_bytes"],
            # The same reference label wan_model_integrity_ratio carries ("published" or "recorded").
            "reference": integrity_reference(hf),
            "published_files": (hf.get("hf_cache_files") or 0) + (hf.get("local_dir_files") or 0) or None,
            # Files whose reference is the manifest recorded at first sight, whether recorded in
            # this run or compared with an earlier run's record (files_recorded counts only the former).
            "recorded_files": hf.get("manifest_files"),
            "checked_at": h.finished_at,
        }
    return {
        "form": form if isinstance(form, str) else None,
        "dir": (found or {}).get("dir"),
        "files_expected": lf.get("files_expected"),
        "files_present": lf.get("files_present"),
        "size_bytes": lf.get("size_bytes"),
        "integrity": integrity,
    }


def _capabilities(snap: Snapshot, entry: Any, found: Any, model: str) -> dict[str, Any]:
    """Key published figures beside what the checkpoint says, and their disagreements."""
    f = (found or {}).get("facts")
    hd = snap.checks.get((model, "headers"))
    mismatches = [i.detail for i in hd.issues if i.kind == "catalog_mismatch"] if hd is not None else []
    return {
        "published": None if entry is None else {
            "parameters": entry.parameters,
            "active_parameters": entry.active_parameters,
            "experts": entry.experts,
            "boundary_ratio": entry.boundary_ratio,
            "resolutions": [f"{w}x{h}" for w, h in entry.resolutions],
            "frames_default": entry.frames_default,
            "fps_default": entry.fps_default,
            "steps_default": entry.steps_default,
            "inputs": list(entry.inputs),
            "vram_min_bytes": dict(sorted(entry.vram_min_bytes.items())),
        },
        "checkpoint": None if f is None else {
            "parameters": f.denoiser_parameters,
            "experts": f.experts,
            "boundary_ratio": f.boundary_ratio,
            "dtypes": list(f.dtypes),
        },
        "mismatches_checked": hd is not None and "catalog_mismatches" in hd.facts,
        "mismatches": mismatches,
    }


def _run(r: BenchmarkResult) -> dict[str, Any]:
    return {"finished_at": r.finished_at, "success": r.success, "reason": r.reason or None,
            "duration_seconds": r.duration_seconds, "seconds_per_step": r.seconds_per_step}


def _benchmark(snap: Snapshot, cfg: Config, m: ModelConfig, profile: str) -> dict[str, Any]:
    agg: BenchmarkAggregate | None = snap.benchmarks.get((m.name, profile))
    out: dict[str, Any] = {"profile": profile, "runs": 0, "last_run": None, "last_success": None,
                           "consecutive_failures": 0, "sanity_ratio": None, "reproducible": None,
                           "baseline_seconds": effective_baseline(snap, m.name, profile),
                           "performance_ratio": None, "history": []}
    if agg is None:
        return out
    out.update(runs=agg.runs, consecutive_failures=agg.consecutive_failures, reproducible=agg.reproducible,
               sanity_ratio=agg.sanity_passed / agg.sanity_checks if agg.sanity_checks else None,
               history=[_run(r) for r in agg.history])
    last = agg.last
    if last is not None:
        total = None
        if last.peak_memory_bytes is not None:
            total = memory_total_for(snap, last)
        out["last_run"] = {
            **_run(last),
            "started_at": last.started_at,
            "peak_memory_bytes": last.peak_memory_bytes,
            "peak_memory_kind": last.peak_memory_kind or None,
            "memory_total_bytes": total,
            "peak_memory_ratio": last.peak_memory_bytes / total if total and last.peak_memory_bytes is not None
            else None,
            "sanity": dict(sorted(last.sanity.items())),
            "device": last.device or None,
        }
    s = agg.last_success
    if s is not None:
        out["last_success"] = {**_run(s), "phases": {p: s.phases[p] for p in PHASES if p in s.phases},
                               "frames": s.frames, "width": s.width, "height": s.height, "steps": s.steps}
        if out["baseline_seconds"] and s.duration_seconds:
            out["performance_ratio"] = out["baseline_seconds"] / s.duration_seconds
    return out


def _scores(snap: Snapshot, cfg: Config) -> dict[str, list[dict]]:
    """Recommendation standing per model, read from the very families /metrics serves."""
    out: dict[str, list[dict]] = {}
    for fam in recommendation_families(snap, cfg):
        if fam.name != "wan_model_recommendation_score":
            continue
        for s in fam.samples:
            out.setdefault(s.labels["model"], []).append(
                {"use_case": s.labels["use_case"], "priority": s.labels["priority"], "score": s.value})
    return out


def _model_runbooks(cfg: Config, m: dict[str, Any]) -> list[dict[str, str]]:
    """Runbook sections for the alerts this card's state corresponds to (not a live alert list)."""
    names: list[str] = []
    status = m["status"]
    if status == "missing":
        names.append("WanModelMissing")
    if any(f["severity"] == "critical" for f in m["findings"]):
        names.append("WanModelIntegrityFailure")
    if status == "critical":
        names.append("WanModelHealthCritical")
    if status == "degraded":
        names.append("WanModelHealthDegraded")
    for b in m["benchmarks"]:
        last = b["last_run"]
        if last and not last["success"]:
            names.append("WanBenchmarkOOM" if last["reason"] == "oom" else "WanBenchmarkFailing")
        if last and last["sanity"] and not all(last["sanity"].values()):
            names.append("WanOutputInvalid")
        if b["performance_ratio"] and 1 / b["performance_ratio"] > cfg.thresholds.degraded_slowdown_ratio:
            names.append("WanGenerationSlow")
    return [runbook(cfg, n) for n in dict.fromkeys(names)]


# ----------------------------------------------------------------------------- machine


def _gpu(g: GpuReading, cfg: Config) -> dict[str, Any]:
    throttled = sorted(r for r in HARDWARE_THROTTLE_REASONS if g.throttle_reasons.get(r))
    ecc = sum(g.ecc_errors.values())
    names = (["WanGpuLost"] if g.lost else []) + (["WanGpuThrottling"] if throttled else []) + \
        (["WanGpuEccErrors"] if ecc else [])
    return {
        "index": g.index, "uuid": g.uuid, "name": g.name, "lost": g.lost,
        "utilization_ratio": g.utilization_ratio,
        "memory_used_bytes": g.memory_used_bytes, "memory_total_bytes": g.memory_total_bytes,
        "temperature_celsius": g.temperature_celsius, "power_watts": g.power_watts,
        "throttle_reasons": sorted(r for r, on in g.throttle_reasons.items() if on),
        "throttled": bool(throttled), "ecc_errors": ecc, "processes": g.processes,
        "runbooks": [runbook(cfg, n) for n in names],
    }


def _gpus(snap: Snapshot, cfg: Config) -> dict[str, Any]:
    """GPUs as NVML read them (a GPU it reports lost says so), plus configured CUDA devices it does not report."""
    st = snap.collectors.get("gpu")
    readable = st is not None and st.success
    rows = [_gpu(g, cfg) for g in sorted(snap.gpus, key=lambda g: g.index)]
    if readable:
        seen = {g.index for g in snap.gpus}
        wanted: dict[int, list[str]] = {}
        for m in cfg.models:
            # The gpu label wan_model_config_info gives the model (CUDA_VISIBLE_DEVICES and a run's UUID count).
            label = gpuid.gpu_label(snap.gpus, m.device, gpuid.reported_uuid(snap, m.name))
            if label.isdigit():
                wanted.setdefault(int(label), []).append(m.name)
        for idx, users in sorted(wanted.items()):
            if idx not in seen:
                rows.append({"index": idx, "uuid": None, "name": None, "lost": True, "used_by": users,
                             "runbooks": [runbook(cfg, "WanGpuLost")]})
    lost = st is not None and not st.success and st.reason not in NO_GPU_COLLECTOR_REASONS
    return {
        "readable": readable,
        "reason": None if st is None or st.success else (st.reason or "error"),
        "lost": lost,
        "devices": rows,
        "runbooks": [runbook(cfg, "WanGpuLost")] if lost else [],
    }


def _host(snap: Snapshot) -> dict[str, Any] | None:
    h = snap.host
    if h is None:
        return None
    return {"memory_total_bytes": h.memory_total_bytes, "memory_available_bytes": h.memory_available_bytes,
            "cpus": h.cpu_count, "cpu_utilization_ratio": h.cpu_utilization_ratio, "load1": h.load1}


def _collectors(snap: Snapshot, cfg: Config) -> list[dict[str, Any]]:
    out = []
    for name, st in sorted(snap.collectors.items()):
        job = snap.jobs.get(f"collector.{name}")
        failing = not st.success and not (name == "gpu" and st.reason in NO_GPU_COLLECTOR_REASONS)
        out.append({"collector": name, "success": st.success, "reason": st.reason or None,
                    "duration_seconds": st.duration_seconds,
                    "last_success_at": job.last_success_at if job is not None else None,
                    "runbooks": [runbook(cfg, "WanCollectorFailing")] if failing else []})
    return out


def _job(j: Any) -> dict[str, Any]:
    return {"job": j.job, "last_run_at": j.last_run_at, "last_success_at": j.last_success_at,
            "last_duration_seconds": j.last_duration_seconds, "interval_seconds": j.interval_seconds,
            "runs": j.runs, "failures": j.failures}
