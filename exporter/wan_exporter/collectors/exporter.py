"""The exporter's own health: build, collectors, scheduled jobs, config reloads."""

from __future__ import annotations

import platform
from typing import Iterable, Mapping

from prometheus_client.core import Metric

from ..config import Config
from ..state import Snapshot
from ..contract import exporter, labels
from .families import bool_value, new


class ExporterSelf:
    name = "exporter"
    reads = ("versions", "collectors", "jobs", "config_last_reload_success", "config_last_reload_at", "clock_jumps")

    def __init__(self, build: Mapping[str, str]) -> None:
        self.build = dict(build)

    def families(self, snap: Snapshot, cfg: Config) -> Iterable[Metric]:
        b = dict(self.build)
        b.update({f"{k}_version": v for k, v in snap.versions.items() if f"{k}_version" in b})
        build = new(exporter.BUILD_INFO)
        build.add_metric([b[k] for k in sorted(b)], {})
        ok = new(exporter.COLLECTOR_SUCCESS)
        dur = new(exporter.COLLECTOR_DURATION_SECONDS)
        err = new(exporter.COLLECTOR_ERROR_INFO)
        for name, st in sorted(snap.collectors.items()):
            ok.add_metric([name], bool_value(st.success))
            dur.add_metric([name], st.duration_seconds)
            if not st.success:
                err.add_metric([name, st.reason or "error"], 1)
        j_run = new(exporter.JOB_LAST_RUN_TIMESTAMP_SECONDS)
        j_ok = new(exporter.JOB_LAST_SUCCESS_TIMESTAMP_SECONDS)
        j_dur = new(exporter.JOB_LAST_DURATION_SECONDS)
        j_int = new(exporter.JOB_INTERVAL_SECONDS)
        j_runs = new(exporter.JOB_RUNS)
        j_fail = new(exporter.JOB_FAILURES)
        for name, js in sorted(snap.jobs.items()):
            if js.last_run_at is not None:
                j_run.add_metric([name], js.last_run_at)
            if js.last_success_at is not None:
                j_ok.add_metric([name], js.last_success_at)
            if js.last_duration_seconds is not None:
                j_dur.add_metric([name], js.last_duration_seconds)
            if js.interval_seconds is not None:
                j_int.add_metric([name], js.interval_seconds)
            j_runs.add_metric([name], js.runs)
            j_fail.add_metric([name], js.failures)
        reload_ok = new(exporter.CONFIG_LAST_RELOAD_SUCCESSFUL)
        reload_ok.add_metric([], bool_value(snap.config_last_reload_success))
        reload_ts = new(exporter.CONFIG_LAST_RELOAD_SUCCESS_TIMESTAMP_SECONDS)
        if snap.config_last_reload_at is not None:
            reload_ts.add_metric([], snap.config_last_reload_at)
        models = new(exporter.MODELS_CONFIGURED)
        models.add_metric([], len(cfg.models))
        jumps = new(exporter.CLOCK_JUMPS)
        for direction in labels.CLOCK_DIRECTIONS:
            jumps.add_metric([direction], snap.clock_jumps.get(direction, 0))
        return [build, ok, dur, err, j_run, j_ok, j_dur, j_int, j_runs, j_fail, reload_ok, reload_ts, models, jumps]


def build_labels(version: str) -> dict[str, str]:
    """Versions from package metadata: known without importing torch in this process."""
    from importlib import metadata

    def v(pkg: str) -> str:
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return "unknown"

    return {
        "version": version,
        "python_version": platform.python_version(),
        "diffusers_version": v("diffusers"),
        "torch_version": v("torch"),
        "transformers_version": v("transformers"),
        "prometheus_client_version": v("prometheus-client"),
    }
