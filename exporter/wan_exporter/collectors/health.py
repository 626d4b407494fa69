"""Health metrics, translated from the snapshot only (the checks run in the background).

A check that has not run yet has no success/duration series: absent, not a made-up 0.
Issue counts and the status state set appear once something about the model has been
measured (a check or a benchmark run), then with 0 for every kind not found, so a later
finding shows as a change; before that "no findings" would be a claim nobody checked.
"""

from __future__ import annotations

from typing import Iterable

from prometheus_client.core import Metric

from .families import bool_value, new
from ..contract import checkpoint, health
from ..contract.labels import CHECKS, FORMS, ISSUE_KINDS, STATUSES
from ..config import Config
from ..state import Snapshot
from ..health.verdict import verdict


class HealthFigures:
    name = "health"
    reads = ("checks", "check_last_success", "benchmarks", "baselines")  # the last two for the verdict

    def families(self, snap: Snapshot, cfg: Config) -> Iterable[Metric]:
        ok = new(health.HEALTH_CHECK_SUCCESS)
        dur = new(health.HEALTH_CHECK_DURATION_SECONDS)
        last_ok = new(health.HEALTH_CHECK_LAST_SUCCESS_TIMESTAMP_SECONDS)
        integrity = new(checkpoint.MODEL_INTEGRITY_RATIO)
        digest = new(checkpoint.MODEL_CONTENT_DIGEST)
        form = new(checkpoint.CHECKPOINT_FORM)
        expected = new(health.MODEL_FILES_EXPECTED)
        present = new(health.MODEL_FILES_PRESENT)
        size = new(health.MODEL_SIZE_BYTES)
        issues = new(health.MODEL_HEALTH_ISSUES)
        status = new(health.MODEL_HEALTH_STATUS)
        mismatches = new(health.MODEL_CATALOG_MISMATCHES)
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
                integrity.add_metric([n, reference(h.facts)], max(0.0, min(1.0, ratio)))
                if isinstance(h.facts.get("content_digest"), str):
                    digest.add_metric([n], {"digest": h.facts["content_digest"]})
            lay = snap.checks.get((n, "layout"))
            if lay is not None:
                for fam, key in ((expected, "files_expected"), (present, "files_present"), (size, "size_bytes")):
                    if isinstance(lay.facts.get(key), (int, float)):
                        fam.add_metric([n], lay.facts[key])
                if lay.facts.get("form") in FORMS:
                    for f in FORMS:
                        form.add_metric([n, f], bool_value(f == lay.facts["form"]))
            hd = snap.checks.get((n, "headers"))
            if hd is not None and "catalog_mismatches" in hd.facts:
                mismatches.add_metric([n], sum(1 for i in hd.issues if i.kind == "catalog_mismatch"))
            v = verdict(snap, n, cfg.thresholds)
            if v.status is not None:
                for kind in ISSUE_KINDS:
                    issues.add_metric([n, kind], v.issues.get(kind, 0))
                for s in STATUSES:
                    status.add_metric([n, s], bool_value(s == v.status))
        return [ok, dur, last_ok, integrity, digest, form, expected, present, size, issues, status, mismatches]


def reference(facts: object) -> str:
    """published when every file was compared with a published digest; recorded when any file's
    reference is the manifest recorded at first sight (or the result predates the distinction)."""
    f = facts if hasattr(facts, "get") else {}
    if f.get("manifest_files") is None:  # type: ignore[union-attr]
        return "recorded"
    return "recorded" if f.get("manifest_files") else "published"  # type: ignore[union-attr]
