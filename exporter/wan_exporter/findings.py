"""Small helpers every health check shares: bounded findings and the frozen result.

Finding kinds become the ``issue`` label of ``wan_model_health_issues``, so the set is closed
(:data:`wan_exporter.contract.labels.ISSUE_KINDS`): a new kind is a deliberate change there,
never a string made up at the call site.
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

from .contract.labels import CHECKS, INFORMATIONAL_KINDS, ISSUE_KINDS
from .state import CheckResult, HealthIssue, frozen_map

__all__ = ["CHECKS", "ISSUE_KINDS", "INFORMATIONAL", "Findings", "make_result", "oserror_kind", "oserror_detail", "gone"]

# The kinds, the checks and which kinds are informational are declared in the contract.
INFORMATIONAL: frozenset[str] = frozenset(INFORMATIONAL_KINDS)

MAX_ISSUES = 64  # per check: a directory of 10,000 broken files stays a readable report


def oserror_kind(e: OSError) -> str:
    """Map an OS error to a finding kind; anything unusual reads as an absent file."""
    if e.errno in (errno.EACCES, errno.EPERM):
        return "permission_denied"
    if e.errno == errno.ELOOP:
        return "symlink_loop"
    return "missing_file"


def oserror_detail(e: OSError) -> str:
    return e.strerror or str(e)


def gone(path: Path | None) -> bool:
    """True when the model directory does not exist (any more); a loop or a file there is not "gone"."""
    if path is None:
        return True
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return True
    except (OSError, ValueError):
        return False
    return False


class Findings:
    """An ordered, de-duplicated, bounded list of :class:`HealthIssue`."""

    def __init__(self) -> None:
        self.items: list[HealthIssue] = []
        self._seen: set[tuple[str, str, str]] = set()
        self.dropped = 0

    def add(self, kind: str, detail: str = "", path: str = "") -> None:
        if kind not in ISSUE_KINDS:
            raise ValueError(f"unknown issue kind {kind!r}")
        key = (kind, path, detail)
        if key in self._seen:
            return
        self._seen.add(key)
        if len(self.items) >= MAX_ISSUES:
            self.dropped += 1
            return
        self.items.append(HealthIssue(kind, detail, path))

    def extend(self, issues: Iterable[HealthIssue]) -> None:
        for i in issues:
            self.add(i.kind, i.detail, i.path)

    def has(self, kind: str) -> bool:
        return any(i.kind == kind for i in self.items)

    def __len__(self) -> int:
        return len(self.items)


def make_result(model: str, check: str, t0: float, findings: Findings, facts: Mapping[str, Any],
                model_dir: Path | None) -> CheckResult:
    """Build the frozen result; a directory that is gone by now reduces every finding to missing_model.

    Files "missing" because their whole directory was removed mid-check say nothing about
    the files, so they are replaced by the one finding that is true.
    """
    issues = tuple(findings.items)
    if gone(model_dir):
        where = (f"{model_dir} not found" if model_dir is not None
                 else "model directory not found (no such path, or the hub model is not in the local HF cache)")
        issues = (HealthIssue("missing_model", where),)
    elif findings.dropped:
        facts = {**facts, "issues_dropped": findings.dropped}
    success = all(i.kind in INFORMATIONAL for i in issues)
    return CheckResult(model=model, check=check, success=success, duration_seconds=time.perf_counter() - t0,
                       finished_at=time.time(), issues=issues, facts=frozen_map(facts))
