"""The exporter's own health: build, collectors, scheduled jobs, config reloads."""

from __future__ import annotations

from . import labels
from .family import Family

SOURCE = "exporter"

BUILD_INFO = Family(
    "wan_exporter_build", "info",
    "Exporter version and the library versions benchmarks run with.",
    labels=("diffusers_version", "prometheus_client_version", "python_version", "torch_version", "transformers_version", "version"), source=SOURCE)
COLLECTOR_SUCCESS = Family(
    "wan_exporter_collector_success", "gauge",
    "1 when the collector's last background cycle succeeded.",
    labels=("collector",), source=SOURCE)
COLLECTOR_DURATION_SECONDS = Family(
    "wan_exporter_collector_duration_seconds", "gauge",
    "Duration of the collector's last background cycle.",
    labels=("collector",), source=SOURCE)
COLLECTOR_ERROR_INFO = Family(
    "wan_exporter_collector_error_info", "gauge",
    "1 with the bounded reason while a collector fails.",
    labels=("collector", "reason"), source=SOURCE,
    bounded={"reason": labels.COLLECTOR_ERROR_REASONS})
JOB_LAST_RUN_TIMESTAMP_SECONDS = Family(
    "wan_exporter_job_last_run_timestamp_seconds", "gauge",
    "When the scheduled task last finished.",
    labels=("task",), source=SOURCE)
JOB_LAST_SUCCESS_TIMESTAMP_SECONDS = Family(
    "wan_exporter_job_last_success_timestamp_seconds", "gauge",
    "When the scheduled task last finished without error.",
    labels=("task",), source=SOURCE)
JOB_LAST_DURATION_SECONDS = Family(
    "wan_exporter_job_last_duration_seconds", "gauge",
    "How long the scheduled task's last run took.",
    labels=("task",), source=SOURCE)
JOB_INTERVAL_SECONDS = Family(
    "wan_exporter_job_interval_seconds", "gauge",
    "Configured interval of the scheduled task.",
    labels=("task",), source=SOURCE)
JOB_RUNS = Family(
    "wan_exporter_job_runs", "counter",
    "Runs of the scheduled task.",
    labels=("task",), source=SOURCE)
JOB_FAILURES = Family(
    "wan_exporter_job_failures", "counter",
    "Runs of the scheduled task that raised an error.",
    labels=("task",), source=SOURCE)
JOB_DEADLINE_SECONDS = Family(
    "wan_exporter_job_deadline_seconds", "gauge",
    "A run of the scheduled task still in progress after this long is stuck (schedules.<task>.deadline, by "
    "default the interval).",
    labels=("task",), source=SOURCE)
JOB_STUCK = Family(
    "wan_exporter_job_stuck", "gauge",
    "1 while the scheduled task's run in progress has outlived its deadline: its figures are not being "
    "refreshed (checked every second in the background).",
    labels=("task",), source=SOURCE)
JOB_SKIPPED_RUNS = Family(
    "wan_exporter_job_skipped_runs", "counter",
    "Runs of the scheduled task not started because the previous run was still in progress.",
    labels=("task",), source=SOURCE)
CONFIG_LAST_RELOAD_SUCCESSFUL = Family(
    "wan_exporter_config_last_reload_successful", "gauge",
    "1 when the last config (re)load succeeded.",
    labels=(), source=SOURCE)
CONFIG_LAST_RELOAD_SUCCESS_TIMESTAMP_SECONDS = Family(
    "wan_exporter_config_last_reload_success_timestamp_seconds", "gauge",
    "When the config was last loaded successfully.",
    labels=(), source=SOURCE)
MODELS_CONFIGURED = Family(
    "wan_exporter_models_configured", "gauge",
    "Models in the running config.",
    labels=(), source=SOURCE)
CLOCK_JUMPS = Family(
    "wan_exporter_clock_jumps", "counter",
    "Steps of the wall clock against the monotonic clock (more than 5s over 1s; a host suspend counts as "
    "forward). Scheduled tasks are re-planned after each; timestamps around one are suspect.",
    labels=("direction",), source=SOURCE,
    bounded={"direction": labels.CLOCK_DIRECTIONS})

FAMILIES: tuple[Family, ...] = (
    BUILD_INFO,
    COLLECTOR_SUCCESS,
    COLLECTOR_DURATION_SECONDS,
    COLLECTOR_ERROR_INFO,
    JOB_LAST_RUN_TIMESTAMP_SECONDS,
    JOB_LAST_SUCCESS_TIMESTAMP_SECONDS,
    JOB_LAST_DURATION_SECONDS,
    JOB_INTERVAL_SECONDS,
    JOB_RUNS,
    JOB_FAILURES,
    JOB_DEADLINE_SECONDS,
    JOB_STUCK,
    JOB_SKIPPED_RUNS,
    CONFIG_LAST_RELOAD_SUCCESSFUL,
    CONFIG_LAST_RELOAD_SUCCESS_TIMESTAMP_SECONDS,
    MODELS_CONFIGURED,
    CLOCK_JUMPS,
)
