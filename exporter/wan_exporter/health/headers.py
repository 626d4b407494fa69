"""Header check: every safetensors header parses and fits its file, without reading tensor data.

Truncation is found by comparing the size the header promises with ``stat`` (a download
cut short, a full disk during a copy); a corrupt header, a shard whose tensors disagree
with the index, or shards of one component stored in different precisions are
``header_invalid``. The checkpoint is also compared with its catalog entry: a
disagreement (``catalog_mismatch``) is reported but does not fail the check, since a
fine-tuned or re-packaged checkpoint may differ on purpose.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

from ..catalog import CatalogEntry
from ..safetensors_header import MAX_HEADER_BYTES, Header, HeaderError, read_header
from ..state import CheckResult
from . import layout
from .issues import Findings, make_result, oserror_detail, oserror_kind

log = logging.getLogger(__name__)

# Layout findings that also stop or concern this check; missing files are the layout check's.
_CARRIED = frozenset({"missing_model", "not_a_model", "too_many_files", "header_invalid"})
_FLOAT = frozenset({"F16", "BF16", "F32", "F64", "F8_E5M2", "F8_E4M3", "F8_E8M0", "F4", "F6_E2M3", "F6_E3M2"})


def check(model: str, model_dir: Path | None, catalog_entry: CatalogEntry | None = None,
          max_entries: int = layout.MAX_ENTRIES, on_file: Callable[[str], None] | None = None) -> CheckResult:
    """Run the header check. facts: files_checked, tensors, data_bytes, catalog_mismatches."""
    t0 = time.perf_counter()
    findings = Findings()
    if model_dir is None:
        return make_result(model, "headers", t0, findings, {}, None)
    lay = layout.scan(model_dir, max_entries)
    findings.extend(i for i in lay.issues if i.kind in _CARRIED)
    facts: dict[str, Any] = {}
    if lay.usable:
        headers = _check_weights(lay, findings, on_file)
        _check_indexes(lay, headers, findings)
        _check_dtypes(lay, headers, findings)
        for rel in lay.configs:
            _check_json(lay.root, rel, findings)
        facts.update(files_checked=len(headers), tensors=sum(len(h.tensors) for h in headers.values()),
                     data_bytes=sum(h.data_size_expected - 8 - h.header_size for h in headers.values()))
        if catalog_entry is not None:
            facts["catalog_mismatches"] = _compare(lay.root, catalog_entry, findings,
                                                   {lay.root / rel: h for rel, h in headers.items()})
    return make_result(model, "headers", t0, findings, facts, model_dir)


def _check_weights(lay: layout.Layout, findings: Findings, on_file: Callable[[str], None] | None) -> dict[str, Header]:
    headers: dict[str, Header] = {}
    for w in lay.weights:
        if w.size is None:
            continue  # absent or unreadable: the layout check's finding
        if on_file is not None:
            on_file(w.rel)
        h = check_file(lay.root / w.rel, w.rel, findings)
        if h is not None:
            headers[w.rel] = h
    return headers


def check_file(path: Path, rel: str, findings: Findings) -> Header | None:
    """One file: header parses, and the file is exactly as long as the header says (stat, not read)."""
    try:
        header = read_header(path)
        size = os.stat(path).st_size
    except OSError as e:
        findings.add(oserror_kind(e), oserror_detail(e), rel)
        return None
    except HeaderError as e:
        cause = e.__cause__
        if isinstance(cause, OSError):
            findings.add(oserror_kind(cause), oserror_detail(cause), rel)
        else:
            kind = "truncated" if _short_header(path) else "header_invalid"
            findings.add(kind, _strip(str(e), path), rel)
        return None
    expected = header.data_size_expected
    if size < expected:
        findings.add("truncated", f"tensor data ends at byte {expected}, the file has {size} bytes", rel)
    elif size > expected:
        findings.add("header_invalid", f"{size - expected} unexpected bytes after the tensor data", rel)
    return header


def _short_header(path: Path) -> bool:
    """Whether the file ends before its length field or its header does (truncation, not garbage)."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(8)
    except OSError:
        return False
    if len(head) < 8:
        return True
    (n,) = struct.unpack("<Q", head)
    return n <= MAX_HEADER_BYTES and 8 + n > size


def _strip(msg: str, path: Path) -> str:
    prefix = f"{path}: "
    return msg[len(prefix):] if msg.startswith(prefix) else msg


def _check_indexes(lay: layout.Layout, headers: dict[str, Header], findings: Findings) -> None:
    """Each tensor the index places in a shard is in that shard's header."""
    for idx in lay.indexes:
        by_shard: dict[str, list[str]] = {}
        for tensor, shard in idx.weight_map.items():
            by_shard.setdefault(shard, []).append(tensor)
        for shard, names in sorted(by_shard.items()):
            rel = f"{idx.component}/{shard}"
            h = headers.get(rel)
            if h is None:
                continue
            absent = sorted(n for n in names if n not in h.tensors)
            if absent:
                findings.add("header_invalid", f"{len(absent)} tensors the index places here are not in the header "
                             f"(e.g. {absent[0]!r})", rel)


def _dominant_dtype(h: Header) -> str | None:
    """The floating dtype holding most bytes (norms kept in float32 do not count against a bf16 shard)."""
    by_bytes: Counter[str] = Counter()
    for t in h.tensors.values():
        if t.dtype in _FLOAT:
            by_bytes[t.dtype] += t.offsets[1] - t.offsets[0]
    return by_bytes.most_common(1)[0][0] if by_bytes else None


def _check_dtypes(lay: layout.Layout, headers: dict[str, Header], findings: Findings) -> None:
    """Shards of one component share their precision; one re-saved in another dtype is a broken mix."""
    by_comp: dict[str, dict[str, str]] = {}
    for w in lay.weights:
        h = headers.get(w.rel)
        d = _dominant_dtype(h) if h is not None else None
        if d is not None:
            by_comp.setdefault(w.component, {})[w.rel] = d
    for comp, per_file in sorted(by_comp.items()):
        counts = Counter(per_file.values())
        if len(counts) > 1:
            main = counts.most_common(1)[0][0]
            for rel, d in sorted(per_file.items()):
                if d != main:
                    findings.add("header_invalid", f"stores {d} while the other {comp} shards store {main}", rel)


def _check_json(root: Path, rel: str, findings: Findings) -> None:
    try:
        with open(root / rel, "rb") as f:
            raw = f.read(layout.MAX_JSON_BYTES + 1)
    except OSError as e:
        findings.add(oserror_kind(e), oserror_detail(e), rel)
        return
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        findings.add("header_invalid", f"not valid JSON: {e}", rel)
        return
    if not isinstance(doc, dict):
        findings.add("header_invalid", "not a JSON object", rel)


def _compare(root: Path, entry: CatalogEntry, findings: Findings, known: dict[Path, Header]) -> int:
    from .. import checkpoint

    try:
        facts = checkpoint.derive_facts(root, headers=known)
        mismatches = checkpoint.compare_with_catalog(facts, entry)
    except Exception:  # noqa: BLE001 - a comparison bug must not hide the header findings
        log.exception("catalog comparison of %s failed", root)
        return 0
    for m in mismatches:
        findings.add("catalog_mismatch", m)
    return len(mismatches)
