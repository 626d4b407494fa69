"""Health metrics, translated from the snapshot only (the checks run in the background).

A check that has not run yet has no success/duration series: absent, not a made-up 0.
Issue counts are exported as 0 for every kind of every configured model, so alerts and
``increase()`` see the first finding; the status state set appears once something about
the model has been measured.
"""

from __future__ import annotations

from typing import Iterable

from prometheus_client.core import Metric

from ..collectors._families import bool_value, gauge
from ..config import Config
from ..state import Snapshot
from .issues import CHECKS, ISSUE_KINDS
from .verdict import STATUSES, verdict


class HealthFigures:
    name = "health"

    def families(self, snap: Snapshot, cfg: Config) -> Iterable[Metric]:
        ok = gauge("wan_health_check_success",
                   "1 when the last run of the health check found nothing wrong (catalog mismatches aside). "
                   "Checks run in the background on their own schedules.", ["model", "check"])
        dur = gauge("wan_health_check_duration_seconds", "Duration of the last run of the health check.",
                    ["model", "check"])
        last_ok = gauge("wan_health_check_last_success_timestamp_seconds",
                        "When the health check last passed (Unix time).", ["model", "check"])
        integrity = gauge("wan_model_integrity_ratio",
                          "Weight bytes whose SHA-256 matched the reference over weight bytes expected, "
                          "as of the last hash check (runs rarely: it reads every byte).", ["model"])
        expected = gauge("wan_model_files_expected", "Files the model's layout promises (last layout check).", ["model"])
        present = gauge("wan_model_files_present", "Promised files found (last layout check).", ["model"])
        size = gauge("wan_model_size_bytes", "Bytes of the weight files found (stat, last layout check).", ["model"])
        issues = gauge("wan_model_health_issues", "Current health findings of the model, by kind.", ["model", "issue"])
        status = gauge("wan_model_health_status",
                       "Health of the model: exactly one of healthy, degraded, critical, missing is 1.",
                       ["model", "status"])
        mismatches = gauge("wan_model_catalog_mismatches",
                           "Disagreements between the checkpoint and its published catalog entry (last header check).",
                           ["model"])
        for m in cfg.models:
            n = m.name
            for c in CHECKS:
                r = snap.checks.get((n, c))
                if r is not None:
                    ok.add_metric([n, c], bool_value(r.success))
                    dur.add_metric([n, c], r.duration_seconds)
                t = snap.check_last_success.get((n, c))
                if t is not None:
                    last_ok.add_metric([n, c], t)
            h = snap.checks.get((n, "hash"))
            if h is not None and h.facts.get("expected_bytes"):
                ratio = h.facts.get("verified_bytes", 0) / h.facts["expected_bytes"]
                integrity.add_metric([n], max(0.0, min(1.0, ratio)))
            lay = snap.checks.get((n, "layout"))
            if lay is not None:
                for fam, key in ((expected, "files_expected"), (present, "files_present"), (size, "size_bytes")):
                    if isinstance(lay.facts.get(key), (int, float)):
                        fam.add_metric([n], lay.facts[key])
            hd = snap.checks.get((n, "headers"))
            if hd is not None and "catalog_mismatches" in hd.facts:
                mismatches.add_metric([n], sum(1 for i in hd.issues if i.kind == "catalog_mismatch"))
            v = verdict(snap, n, cfg.thresholds)
            for kind in ISSUE_KINDS:
                issues.add_metric([n, kind], v.issues.get(kind, 0))
            if v.status is not None:
                for s in STATUSES:
                    status.add_metric([n, s], bool_value(s == v.status))
        return [ok, dur, last_ok, integrity, expected, present, size, issues, status, mismatches]
