"""The exporter's own health: build, collectors, scheduled jobs, config reloads."""

from __future__ import annotations

import platform
from typing import Iterable, Mapping

from prometheus_client.core import Metric

from ..config import Config
from ..state import Snapshot
from ._families import bool_value, counter, gauge, info


class ExporterSelf:
    name = "exporter"

    def __init__(self, build: Mapping[str, str]) -> None:
        self.build = dict(build)

    def families(self, snap: Snapshot, cfg: Config) -> Iterable[Metric]:
        b = dict(self.build)
        b.update({f"{k}_version": v for k, v in snap.versions.items() if f"{k}_version" in b})
        build = info("wan_exporter_build", "Exporter version and the library versions benchmarks run with.", sorted(b))
        build.add_metric([b[k] for k in sorted(b)], {})
        ok = gauge("wan_exporter_collector_success", "1 when the collector's last background cycle succeeded.", ["collector"])
        dur = gauge("wan_exporter_collector_duration_seconds", "Duration of the collector's last background cycle.", ["collector"])
        err = gauge("wan_exporter_collector_error_info", "1 with the bounded reason while a collector fails.",
                    ["collector", "reason"])
        for name, st in sorted(snap.collectors.items()):
            ok.add_metric([name], bool_value(st.success))
            dur.add_metric([name], st.duration_seconds)
            if not st.success:
                err.add_metric([name, st.reason or "error"], 1)
        j_run = gauge("wan_exporter_job_last_run_timestamp_seconds", "When the scheduled task last finished.", ["task"])
        j_ok = gauge("wan_exporter_job_last_success_timestamp_seconds", "When the scheduled task last finished without error.", ["task"])
        j_dur = gauge("wan_exporter_job_last_duration_seconds", "How long the scheduled task's last run took.", ["task"])
        j_int = gauge("wan_exporter_job_interval_seconds", "Configured interval of the scheduled task.", ["task"])
        j_runs = counter("wan_exporter_job_runs", "Runs of the scheduled task.", ["task"])
        j_fail = counter("wan_exporter_job_failures", "Runs of the scheduled task that raised an error.", ["task"])
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
        reload_ok = gauge("wan_exporter_config_last_reload_successful", "1 when the last config (re)load succeeded.")
        reload_ok.add_metric([], bool_value(snap.config_last_reload_success))
        reload_ts = gauge("wan_exporter_config_last_reload_success_timestamp_seconds", "When the config was last loaded successfully.")
        if snap.config_last_reload_at is not None:
            reload_ts.add_metric([], snap.config_last_reload_at)
        models = gauge("wan_exporter_models_configured", "Models in the running config.")
        models.add_metric([], len(cfg.models))
        jumps = counter("wan_exporter_clock_jumps",
                        "Steps of the wall clock against the monotonic clock (more than 5s over 1s; a host suspend "
                        "counts as forward). Scheduled tasks are re-planned after each; timestamps around one are suspect.",
                        ["direction"])
        for direction in ("backward", "forward"):
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
