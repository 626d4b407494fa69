"""Model health checks and the verdict."""

from __future__ import annotations

from . import labels
from .family import Family

SOURCE = "health"

HEALTH_CHECK_SUCCESS = Family(
    "wan_health_check_success", "gauge",
    "1 when the last run of the health check found nothing wrong (catalog mismatches aside). Checks run "
    "in the background on their own schedules.",
    labels=("model", "check"), source=SOURCE,
    bounded={"check": labels.CHECKS})
HEALTH_CHECK_DURATION_SECONDS = Family(
    "wan_health_check_duration_seconds", "gauge",
    "Duration of the last run of the health check.",
    labels=("model", "check"), source=SOURCE,
    bounded={"check": labels.CHECKS})
HEALTH_CHECK_LAST_SUCCESS_TIMESTAMP_SECONDS = Family(
    "wan_health_check_last_success_timestamp_seconds", "gauge",
    "When the health check last passed (Unix time).",
    labels=("model", "check"), source=SOURCE,
    bounded={"check": labels.CHECKS})
MODEL_FILES_EXPECTED = Family(
    "wan_model_files_expected", "gauge",
    "Files the model's layout promises (last layout check).",
    labels=("model",), source=SOURCE)
MODEL_FILES_PRESENT = Family(
    "wan_model_files_present", "gauge",
    "Promised files found (last layout check).",
    labels=("model",), source=SOURCE)
MODEL_SIZE_BYTES = Family(
    "wan_model_size_bytes", "gauge",
    "Bytes of the weight files found (stat, last layout check).",
    labels=("model",), source=SOURCE)
MODEL_HEALTH_ISSUES = Family(
    "wan_model_health_issues", "gauge",
    "Current health findings of the model, by kind.",
    labels=("model", "issue"), source=SOURCE,
    bounded={"issue": labels.ISSUE_KINDS})
MODEL_HEALTH_STATUS = Family(
    "wan_model_health_status", "gauge",
    "Health of the model: exactly one of healthy, degraded, critical, missing is 1.",
    labels=("model", "status"), source=SOURCE,
    bounded={"status": labels.STATUSES})
MODEL_CATALOG_MISMATCHES = Family(
    "wan_model_catalog_mismatches", "gauge",
    "Disagreements between the checkpoint and its published catalog entry (last header check).",
    labels=("model",), source=SOURCE)

FAMILIES: tuple[Family, ...] = (
    HEALTH_CHECK_SUCCESS,
    HEALTH_CHECK_DURATION_SECONDS,
    HEALTH_CHECK_LAST_SUCCESS_TIMESTAMP_SECONDS,
    MODEL_FILES_EXPECTED,
    MODEL_FILES_PRESENT,
    MODEL_SIZE_BYTES,
    MODEL_HEALTH_ISSUES,
    MODEL_HEALTH_STATUS,
    MODEL_CATALOG_MISMATCHES,
)
