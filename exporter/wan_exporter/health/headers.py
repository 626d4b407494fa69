"""Header check: every weight file's table parses and fits its file, without reading tensor data.

Safetensors headers, GGUF tensor tables and the zip directories of ``.pth`` files
(:mod:`wan_exporter.scan.tables`) each imply a file size; comparing it with ``stat`` finds
truncation (a download cut short, a full disk during a copy). A corrupt table, a shard whose
tensors disagree with the index, or shards of one component stored in different precisions
are ``header_invalid``. The checkpoint is also compared with its catalog entry: a
disagreement (``catalog_mismatch``) is reported but does not fail the check, since a
fine-tuned or re-packaged checkpoint may differ on purpose.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

from ..catalog import CatalogEntry
from ..scan import Scan
from ..scan.tables import TableError, TensorTable, read_table
from ..state import CheckResult
from . import layout
from ..findings import Findings, make_result, oserror_detail, oserror_kind

log = logging.getLogger(__name__)

# Layout findings that also stop or concern this check; missing files are the layout check's.
_CARRIED = frozenset({"missing_model", "not_a_model", "too_many_files", "header_invalid"})
_FLOAT = frozenset({"F16", "BF16", "F32", "F64", "F8_E5M2", "F8_E4M3", "F8_E8M0", "F4", "F6_E2M3", "F6_E3M2"})


def check(model: str, model_dir: Any, catalog_entry: CatalogEntry | None = None,
          max_entries: int = layout.MAX_ENTRIES, on_file: Callable[[str], None] | None = None, fmt: str = "auto",
          scanned: Scan | None = None) -> CheckResult:
    """Run the header check. facts: files_checked, tensors, data_bytes, parameters, catalog_mismatches."""
    t0 = time.perf_counter()
    findings = Findings()
    if model_dir is None:
        return make_result(model, "headers", t0, findings, {}, None)
    lay = scanned or layout.scan(model_dir, fmt, max_entries)
    findings.extend(i for i in lay.issues if i.kind in _CARRIED)
    facts: dict[str, Any] = {}
    if lay.usable:
        tables = _check_weights(lay, findings, on_file)
        _check_indexes(lay, tables, findings)
        _check_dtypes(lay, tables, findings)
        for rel in lay.configs:
            _check_json(lay.root, rel, findings)
        facts.update(files_checked=len(tables), tensors=sum(len(t.tensors) for t in tables.values()),
                     data_bytes=sum(t.data_bytes for t in tables.values() if t.format != "pth"))
        derived = _facts(lay, tables)
        if derived is not None:
            if derived.denoiser_parameters is not None:
                facts["parameters"] = derived.denoiser_parameters
            if derived.dtypes:
                facts["dtypes"] = ",".join(derived.dtypes)
            if catalog_entry is not None:
                facts["catalog_mismatches"] = _compare(lay, catalog_entry, findings, derived)
    return make_result(model, "headers", t0, findings, facts, layout.root_of(model_dir, lay))


def _check_weights(lay: Scan, findings: Findings, on_file: Callable[[str], None] | None) -> dict[str, TensorTable]:
    tables: dict[str, TensorTable] = {}
    for w in lay.weights:
        if w.size is None:
            continue  # absent or unreadable: the layout check's finding
        if on_file is not None:
            on_file(w.rel)
        t = check_file(lay.root / w.rel, w.rel, findings, w.format)
        if t is not None:
            tables[w.rel] = t
    return tables


def check_file(path: Path, rel: str, findings: Findings, fmt: str = "safetensors") -> TensorTable | None:
    """One file: its table parses, and the file is as long as the table says (stat, not read)."""
    try:
        table = read_table(path, fmt)
        size = os.stat(path).st_size
    except OSError as e:
        findings.add(oserror_kind(e), oserror_detail(e), rel)
        return None
    except TableError as e:
        findings.add("truncated" if e.truncated else "header_invalid", str(e), rel)
        return None
    problem = table.size_problem(size)
    if problem is not None:
        findings.add(problem[0], problem[1], rel)
    return table


def _check_indexes(lay: Scan, headers: dict[str, TensorTable], findings: Findings) -> None:
    """Each tensor the index places in a shard is in that shard's header."""
    for idx in lay.indexes:
        by_shard: dict[str, list[str]] = {}
        for tensor, shard in idx.weight_map.items():
            by_shard.setdefault(shard, []).append(tensor)
        for shard, names in sorted(by_shard.items()):
            rel = f"{idx.folder}/{shard}" if idx.folder else shard
            h = headers.get(rel)
            if h is None:
                continue
            absent = sorted(n for n in names if n not in h.tensors)
            if absent:
                findings.add("header_invalid", f"{len(absent)} tensors the index places here are not in the header "
                             f"(e.g. {absent[0]!r})", rel)


def _dominant_dtype(h: TensorTable) -> str | None:
    """The floating dtype holding most bytes (norms kept in float32 do not count against a bf16 shard)."""
    by_bytes: Counter[str] = Counter()
    for t in h.tensors.values():
        if t.dtype in _FLOAT or h.format == "gguf":
            by_bytes[t.dtype] += t.offsets[1] - t.offsets[0]
    return by_bytes.most_common(1)[0][0] if by_bytes else None


def _check_dtypes(lay: Scan, headers: dict[str, TensorTable], findings: Findings) -> None:
    """Shards of one component share their precision; one re-saved in another dtype is a broken mix."""
    by_comp: dict[str, dict[str, str]] = {}
    for w in lay.weights:
        h = headers.get(w.rel)
        d = _dominant_dtype(h) if h is not None and h.format != "pth" else None
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


def _facts(lay: Scan, tables: dict[str, TensorTable]) -> Any:
    from ..checkpoint import facts as checkpoint
    from ..scan.safetensors_header import Header

    try:
        if lay.form == "diffusers":
            known = {lay.root / rel: Header(t.path, t.data_start - 8, t.tensors, t.metadata)
                     for rel, t in tables.items() if t.format == "safetensors"}
            return checkpoint.derive_facts(lay, headers=known)
        return checkpoint.derive_facts(lay, tables=tables)
    except Exception:  # noqa: BLE001 - a facts bug must not hide the header findings
        log.exception("checkpoint facts of %s failed", lay.root)
        return None


def _compare(lay: Scan, entry: CatalogEntry, findings: Findings, facts: Any) -> int:
    from ..checkpoint import facts as checkpoint

    try:
        mismatches = checkpoint.compare_with_catalog(facts, entry)
    except Exception:  # noqa: BLE001 - a comparison bug must not hide the header findings
        log.exception("catalog comparison of %s failed", lay.root)
        return 0
    for m in mismatches:
        findings.add("catalog_mismatch", m)
    return len(mismatches)
