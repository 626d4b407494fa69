"""``wan-exporter check-model DIR``: every health check once, as a readable report.

The exporter's own state is not touched: the hash manifest goes to a temporary directory.
For a directory outside the Hugging Face cache there is then no reference hash, so this
run records one and can only find files that are unreadable or change while read; the
report says so instead of implying the content was verified.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

from .. import catalog
from ..config import Thresholds
from ..state import CheckResult, Snapshot, frozen_map
from . import hashing, headers, layout, loadcheck
from .verdict import verdict


def _name(path: Path) -> str:
    """A model name for the manifest and the report, from the directory's name."""
    n = re.sub(r"[^A-Za-z0-9_.-]", "_", path.resolve().name if path.name in ("", ".", "..") else path.name)
    return n.lstrip("._-")[:64] or "model"


def _seconds(d: float) -> str:
    return f"{d * 1000:.0f} ms" if d < 1 else f"{d:.2f} s"


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


def _progress() -> Any:
    if not sys.stderr.isatty():
        return None
    state = {"rel": ""}

    def on_chunk(rel: str, done: int) -> None:
        if rel != state["rel"]:
            state["rel"] = rel
            print(f"\r\033[Khashing {rel}", end="", file=sys.stderr, flush=True)

    return on_chunk


def _summary(r: CheckResult) -> str:
    f = r.facts
    if r.check == "layout" and "files_expected" in f:
        return f"{f['files_present']}/{f['files_expected']} files, {_size(f['size_bytes'])} of weights"
    if r.check == "headers" and "files_checked" in f:
        return f"{f['files_checked']} safetensors headers, {f['tensors']} tensors"
    if r.check == "hash" and f.get("expected_bytes"):
        return f"{_size(f['verified_bytes'])} of {_size(f['expected_bytes'])} verified"
    if r.check == "load" and "load_seconds" in f:
        v = f.get("versions") or {}
        return f"built on the meta device (diffusers {v.get('diffusers', '?')})"
    return ""


def cmd_check_model(args: Any) -> int:
    """Run the checks on ``args.path``; exit 0 when healthy, 1 when not, 2 on a usage error."""
    path = Path(os.path.expanduser(args.path))
    kind = getattr(args, "kind", None)
    entry = None
    if kind:
        entry = catalog.CATALOG.get(kind)
        if entry is None:
            print(f"unknown --kind {kind!r}; known kinds: {', '.join(sorted(catalog.CATALOG))}", file=sys.stderr)
            return 2
    name = _name(path)
    results: list[CheckResult] = [layout.check(name, path), headers.check(name, path, entry)]
    skipped: dict[str, str] = {}
    notes: list[str] = []
    usable = results[0].facts.get("model_index") is True and not any(
        i.kind in ("missing_model", "not_a_model") for i in results[0].issues)
    if getattr(args, "no_hash", False):
        skipped["hash"] = "--no-hash"
    else:
        with tempfile.TemporaryDirectory(prefix="wan-exporter-check-") as tmp:
            r = hashing.check(name, path, Path(tmp), on_chunk=_progress())
        if sys.stderr.isatty():
            print("\r\033[K", end="", file=sys.stderr, flush=True)
        if r is None:
            skipped["hash"] = "another hash run is in progress"
        else:
            results.append(r)
            if r.facts.get("files_recorded"):
                notes.append(
                    f"{r.facts['files_recorded']} weight file(s) are not in the Hugging Face cache, so there is no "
                    "reference hash: this first verification recorded their SHA-256 in a temporary manifest. "
                    "It proves every byte is readable and stable, not that it is the published content; the "
                    "exporter keeps its manifest and compares every later run with it.")
            if r.facts.get("hf_cache_files"):
                notes.append(f"{r.facts['hf_cache_files']} weight file(s) compared with the sha256 the Hugging Face "
                             "cache recorded for them.")
    if getattr(args, "no_load", False):
        skipped["load"] = "--no-load"
    elif not usable:
        skipped["load"] = "not a pipeline directory"
    else:
        pipeline = entry.pipeline if entry else results[0].facts.get("pipeline")
        results.append(loadcheck.check(name, path, kind=kind, pipeline=pipeline))
    snap = Snapshot(checks=frozen_map({(name, r.check): r for r in results}))
    v = verdict(snap, name, Thresholds())
    status = v.status or "missing"
    if getattr(args, "json", False):
        doc = {
            "path": str(path), "model": name, "kind": kind, "status": status, "reasons": list(v.reasons),
            "checks": [{"check": r.check, "success": r.success, "duration_seconds": r.duration_seconds,
                        "issues": [{"kind": i.kind, "path": i.path, "detail": i.detail} for i in r.issues],
                        "facts": dict(r.facts)} for r in results],
            "skipped": skipped, "issues": {k: n for k, n in v.issues.items() if n}, "notes": notes,
        }
        print(json.dumps(doc, indent=2, sort_keys=True, default=str))
    else:
        print(f"{path}" + (f" (kind {kind})" if kind else ""))
        for r in results:
            mark = "OK" if r.success else "FAIL"
            print(f"  {r.check:<8} {mark:<4} {_seconds(r.duration_seconds):>9}  {_summary(r)}".rstrip())
            for i in r.issues:
                where = f"{i.path}: " if i.path else ""
                print(f"      {i.kind:<22} {where}{i.detail}")
        for check, why in skipped.items():
            print(f"  {check:<8} SKIP            ({why})")
        for n in notes:
            print(f"note: {n}")
        print(f"verdict: {status}" + (f" ({'; '.join(v.reasons)})" if v.reasons else ""))
    return 0 if status == "healthy" else 1
