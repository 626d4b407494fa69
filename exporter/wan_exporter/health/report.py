"""``wan-exporter check-model PATH...``: every health check once, as a readable report.

The exporter's own state is not touched: the hash manifest goes to a temporary directory.
Files with a published digest (HF cache blob name, ``--local-dir`` download metadata) are
compared with it; for the others there is no reference, so this run records one and can
only find files that are unreadable or change while read, and the report says so instead
of implying the content was verified. ``--manifest FILE`` writes the digests as a
``sha256sum`` file, or verifies the model against one written on a known-good node.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from .. import catalog
from ..config import Thresholds
from ..state import CheckResult, Snapshot, frozen_map
from ..textsafe import terminal_safe
from . import hashing, headers, layout, loadcheck, manifest_file
from ..scan.bounded import IoTimeout, Lanes, beat
from ..findings import timed_out
from .verdict import verdict


def _name(path: Path) -> str:
    """A model name for the manifest and the report, from the directory's name."""
    # abspath, not resolve(): no file system call, which could block on a hung mount
    n = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(os.path.abspath(path)).name if path.name in ("", ".", "..") else path.name)
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
            print(f"\r\033[Khashing {terminal_safe(rel)}", end="", file=sys.stderr, flush=True)

    return on_chunk


def _summary(r: CheckResult) -> str:
    f = r.facts
    if r.check == "layout" and "files_expected" in f:
        return (f"{f.get('form', 'unrecognised')}: {f['files_present']}/{f['files_expected']} files, "
                f"{_size(f['size_bytes'])} of weights")
    if r.check == "headers" and "files_checked" in f:
        extra = f", {f['parameters']:,} denoiser parameters" if "parameters" in f else ""
        dt = f" ({f['dtypes']})" if f.get("dtypes") else ""
        return f"{f['files_checked']} weight file tables, {f['tensors']} tensors{extra}{dt}"
    if r.check == "hash" and f.get("expected_bytes"):
        return f"{_size(f['verified_bytes'])} of {_size(f['expected_bytes'])} verified"
    if r.check == "load" and "load_seconds" in f:
        v = f.get("versions") or {}
        return f"built on the meta device (diffusers {v.get('diffusers', '?')})"
    return ""


def _hash_notes(f: Any, manifest_checked: bool = False) -> list[str]:
    notes = []
    if f.get("files_recorded") and not manifest_checked:
        notes.append(
            f"{f['files_recorded']} weight file(s) have no published digest (not in the Hugging Face cache, no "
            "--local-dir download metadata), so there is no reference hash: this first verification recorded "
            "their SHA-256 in a temporary manifest. It proves every byte is readable and stable, not that it is "
            "the published content; the exporter keeps its manifest and compares every later run with it.")
    if f.get("hf_cache_files"):
        notes.append(f"{f['hf_cache_files']} weight file(s) compared with the sha256 the Hugging Face "
                     "cache recorded for them.")
    if f.get("local_dir_files"):
        notes.append(f"{f['local_dir_files']} weight file(s) compared with the sha256 in their --local-dir "
                     "download metadata.")
    if f.get("content_digest"):
        notes.append(f"content digest {f['content_digest']} (the same on every node with the same files).")
    return notes


def cmd_check_model(args: Any) -> int:
    """Run the checks on ``args.path``; exit 0 when healthy, 1 when not, 2 on a usage error."""
    paths = args.path if isinstance(args.path, list) else [args.path]
    targets = [Path(os.path.expanduser(p)) for p in paths]
    fmt = getattr(args, "format", "auto") or "auto"
    kind = getattr(args, "kind", None)
    entry = None
    if kind:
        entry = catalog.CATALOG.get(kind)
        if entry is None:
            print(f"unknown --kind {kind!r}; known kinds: {', '.join(sorted(catalog.CATALOG))}", file=sys.stderr)
            return 2
    target: Any = targets[0] if len(targets) == 1 else targets
    path = targets[0] if len(targets) == 1 else targets[0].parent
    name = _name(path)
    lanes, deadline = Lanes(), float(getattr(args, "io_timeout", 30.0) or 30.0)

    def bounded(check: str, fn: Any, seconds: float = deadline) -> Any:
        """``fn()`` under the deadline; a timed-out check becomes its io_timeout result (scan.bounded)."""
        t0 = time.perf_counter()
        try:
            return lanes.run(name, fn, seconds, f"the {check} check")
        except IoTimeout as e:
            return timed_out(name, check, str(e), time.perf_counter() - t0)

    sc = bounded("layout", lambda: layout.scan(target, fmt))
    if isinstance(sc, CheckResult):  # the scan itself blocked: nothing else can be read either
        results: list[CheckResult] = [sc]
        return _report(args, targets, kind, name, None, results, {"headers": "the layout scan timed out",
                                                                  "hash": "the layout scan timed out",
                                                                  "load": "the layout scan timed out"}, [])
    results = [layout.check(name, target, scanned=sc),
               bounded("headers", lambda: headers.check(name, target, entry, scanned=sc))]
    skipped: dict[str, str] = {}
    notes: list[str] = []
    manifest = Path(os.path.expanduser(args.manifest)) if getattr(args, "manifest", None) else None
    listed: dict[str, str] | None = None
    if manifest is not None and manifest.exists():
        try:
            listed = manifest_file.read(manifest)
        except (OSError, UnicodeDecodeError, manifest_file.ManifestError) as e:
            print(f"--manifest: {e}", file=sys.stderr)
            return 2
    if getattr(args, "no_hash", False):
        skipped["hash"] = "--no-hash"
        if manifest is not None:
            print("--manifest needs the hash check; drop --no-hash", file=sys.stderr)
            return 2
    else:
        hashed: dict[str, str] = {}
        progress = _progress()

        def on_chunk(rel: str, done: int) -> None:
            beat()
            if progress is not None:
                progress(rel, done)

        with tempfile.TemporaryDirectory(prefix="wan-exporter-check-") as tmp:
            r = bounded("hash", lambda: hashing.check(name, target, Path(tmp), on_chunk=on_chunk, scanned=sc,
                                                      hashed=hashed))
        if sys.stderr.isatty():
            print("\r\033[K", end="", file=sys.stderr, flush=True)
        if r is None:
            skipped["hash"] = "another hash run is in progress"
        else:
            if listed is not None:
                extra = manifest_file.verify(listed, hashed, [w.rel for w in sc.weights], str(manifest))
                r = replace(r, issues=r.issues + tuple(extra), success=r.success and not extra)
                notes.append(f"{len(listed)} weight file(s) compared with the manifest {manifest}.")
            elif manifest is not None:
                if r.success and len(hashed) == len(sc.weights):
                    manifest_file.write(manifest, hashed)
                    notes.append(f"wrote the SHA-256 of {len(hashed)} weight file(s) to {manifest}.")
                else:
                    notes.append(f"{manifest} not written: the hash check did not pass.")
            results.append(r)
            notes.extend(_hash_notes(r.facts, manifest_checked=listed is not None))
    if getattr(args, "no_load", False):
        skipped["load"] = "--no-load"
    elif sc.form != "diffusers" or any(i.kind in ("missing_model", "not_a_model") for i in results[0].issues):
        skipped["load"] = ("not a pipeline directory" if sc.form in (None, "diffusers")
                           else f"the load check builds diffusers pipeline directories, not the {sc.form} form")
    else:
        pipeline = entry.pipeline if entry else results[0].facts.get("pipeline")
        # the load check's child has its own timeout (300 s); only a blocked read outlives it
        results.append(bounded("load", lambda: loadcheck.check(name, path, kind=kind, pipeline=pipeline),
                               max(deadline, 320.0)))
    return _report(args, targets, kind, name, sc.form, results, skipped, notes)


def _report(args: Any, targets: list[Path], kind: str | None, name: str, form: str | None,
            results: list[CheckResult], skipped: dict[str, str], notes: list[str]) -> int:
    snap = Snapshot(checks=frozen_map({(name, r.check): r for r in results}))
    v = verdict(snap, name, Thresholds())
    status = v.status or "missing"
    if getattr(args, "json", False):
        doc = {
            "path": " ".join(str(t) for t in targets), "form": form, "model": name, "kind": kind, "status": status, "reasons": list(v.reasons),
            "checks": [{"check": r.check, "success": r.success, "duration_seconds": r.duration_seconds,
                        "issues": [{"kind": i.kind, "path": i.path, "detail": i.detail} for i in r.issues],
                        "facts": dict(r.facts)} for r in results],
            "skipped": skipped, "issues": {k: n for k, n in v.issues.items() if n}, "notes": notes,
        }
        print(json.dumps(doc, indent=2, sort_keys=True, default=str))
    else:
        # Names and details come from the files: control characters are shown escaped, never sent raw.
        out = [" ".join(str(t) for t in targets) + (f" (kind {kind})" if kind else "")]
        for r in results:
            mark = "OK" if r.success else "FAIL"
            out.append(f"  {r.check:<8} {mark:<4} {_seconds(r.duration_seconds):>9}  {_summary(r)}".rstrip())
            for i in r.issues:
                where = f"{i.path}: " if i.path else ""
                out.append(f"      {i.kind:<22} {where}{i.detail}")
        for check, why in skipped.items():
            out.append(f"  {check:<8} SKIP            ({why})")
        out += [f"note: {n}" for n in notes]
        out.append(f"verdict: {status}" + (f" ({'; '.join(v.reasons)})" if v.reasons else ""))
        for line in out:
            print(terminal_safe(line))
    return 0 if status == "healthy" else 1
