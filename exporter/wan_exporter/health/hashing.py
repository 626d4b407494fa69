"""Hash check: SHA-256 of every weight file against a reference, reading each byte at most once a run.

The reference is a published digest where the download left one (the Hugging Face cache
blob name, or the etag in ``--local-dir`` download metadata; :mod:`wan_exporter.scan.references`),
so a byte flipped after the download is caught on the first run. Otherwise it is a manifest
recorded at the first verification, which proves the bytes stay the same, not that they
are the published ones; the facts keep the two apart (``published_bytes``, ``recorded_bytes``).
The manifest lives outside the model directory, in ``<state_dir>/manifests/<model>.json``, so
a process that corrupts the model cannot also "fix" its reference. It also caches digests by
``(st_dev, st_ino, st_size, st_mtime_ns)`` so a restart does not read an unchanged 60 GB
checkpoint again; a cached digest stands in for a read only when it is younger than
``max_age`` (half the hash schedule's interval: every scheduled run reads every byte, since
bit rot changes neither size nor mtime; a restart soon after a run does not) and the file was not written within ``RACY_SECONDS`` of
being hashed.

``content_digest`` is a SHA-256 over the sorted ``sha256  path`` lines of the weight files,
the same for two copies of the same model on different nodes.

Reads are chunked and can be rate limited, so a daily full hash does not starve the
benchmarks of disk bandwidth. A file that changes while it is read is reported as
``changed_during_check`` (a copy in progress is not corruption) and is read again next
run. Only one hash run goes at a time in a process; a second caller skips.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from ..scan import Scan, WeightFile, references
from ..state import CheckResult
from . import layout
from ..findings import Findings, make_result, oserror_detail, oserror_kind

log = logging.getLogger(__name__)

MANIFEST_VERSION = 1
# A cached hash is trusted only for a file whose mtime was this far in the past when it was
# read: a write in the same timestamp tick as the read would otherwise go unnoticed ("racy git").
RACY_SECONDS = 2.0
# ... and only this long by default (a scheduled run passes its interval): silent media
# corruption keeps size and mtime, so a file is read again on every scheduled run.
CACHE_MAX_AGE_SECONDS = 86400.0
_LOCK = threading.Lock()  # never two hash runs at once: they would only halve each other's bandwidth
_CARRIED = frozenset({"missing_model", "not_a_model", "too_many_files"})

OnChunk = Callable[[str, int], None]  # (relative path, bytes read so far in this file)


class Changed(Exception):
    """The file's size, mtime or inode differed after the read from before it."""


class Aborted(Exception):
    """The exporter is shutting down."""


def manifest_path(state_dir: Path, model: str) -> Path:
    return Path(state_dir) / "manifests" / f"{model}.json"


@dataclass
class Manifest:
    path: Path
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # rel -> sha256, size, recorded_at
    cache: dict[str, dict[str, Any]] = field(default_factory=dict)  # rel -> key [dev, ino, size, mtime_ns], sha256

    @classmethod
    def load(cls, path: Path) -> "Manifest":
        """Read a manifest; an unreadable one is logged and treated as absent (it will be re-recorded)."""
        m = cls(path)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return m
        except (OSError, ValueError) as e:
            log.warning("ignoring unreadable hash manifest %s: %s", path, e)
            return m
        if isinstance(doc, dict):
            files, cache = doc.get("files"), doc.get("cache")
            m.files = {k: v for k, v in files.items() if _entry_ok(v)} if isinstance(files, dict) else {}
            m.cache = {k: v for k, v in cache.items() if _entry_ok(v)} if isinstance(cache, dict) else {}
        return m

    def save(self) -> str | None:
        """Write atomically (temp file + os.replace); returns the error instead of raising."""
        doc = {"version": MANIFEST_VERSION, "files": self.files, "cache": self.cache}
        tmp = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(doc, f, indent=1, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
            tmp = None
        except OSError as e:
            return f"{self.path}: {e.strerror or e}"
        finally:
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
        return None


def _entry_ok(v: Any) -> bool:
    return isinstance(v, dict) and isinstance(v.get("sha256"), str)


class _Pacer:
    """Sleeps just enough to keep the whole run under ``rate`` bytes per second (0: unlimited)."""

    def __init__(self, rate: int, stop: threading.Event | None) -> None:
        self.rate = rate
        self.stop = stop
        self.t0 = time.perf_counter()
        self.done = 0

    def after(self, n: int) -> None:
        self.done += n
        if self.stop is not None and self.stop.is_set():
            raise Aborted()
        if self.rate <= 0:
            return
        ahead = self.done / self.rate - (time.perf_counter() - self.t0)
        if ahead > 0:
            if self.stop is not None:
                if self.stop.wait(ahead):
                    raise Aborted()
            else:
                time.sleep(ahead)


def _key(st: os.stat_result) -> list[int]:
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns]


def hash_file(path: Path, rel: str, before: os.stat_result, chunk_bytes: int, pacer: _Pacer,
              on_chunk: OnChunk | None = None) -> str:
    """SHA-256 of ``path`` in chunks; raises :class:`Changed` if the file moved under us."""
    import hashlib

    h = hashlib.sha256()
    buf = bytearray(max(4096, chunk_bytes))
    view = memoryview(buf)
    total = 0
    with open(path, "rb", buffering=0) as f:
        if _key(os.fstat(f.fileno())) != _key(before):
            raise Changed("replaced before it could be read")
        while True:
            n = f.readinto(buf)
            if not n:
                break
            h.update(view[:n])
            total += n
            if on_chunk is not None:
                on_chunk(rel, total)
            pacer.after(n)
    after = os.stat(path)
    if _key(after) != _key(before) or total != before.st_size:
        raise Changed(f"size {before.st_size} -> {after.st_size} bytes, {total} read; mtime "
                      f"{'changed' if after.st_mtime_ns != before.st_mtime_ns else 'unchanged'}")
    return h.hexdigest()


def _trusted(cached: dict[str, Any] | None, st: os.stat_result, max_age: float = CACHE_MAX_AGE_SECONDS) -> bool:
    """Whether a cached digest may stand in for reading the file again."""
    if cached is None or cached.get("key") != _key(st):
        return False
    hashed_at = cached.get("hashed_at")
    if not isinstance(hashed_at, (int, float)):
        return False
    return st.st_mtime_ns / 1e9 < hashed_at - RACY_SECONDS and time.time() - hashed_at < max_age


def _date(ts: Any) -> str:
    try:
        return datetime.fromtimestamp(float(ts), timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    except (TypeError, ValueError, OverflowError, OSError):
        return "an earlier run"


def check(model: str, model_dir: Any, state_dir: Path, chunk_bytes: int = 8 << 20,
          rate_limit_bytes_per_second: int = 0, on_chunk: OnChunk | None = None,
          stop: threading.Event | None = None, max_entries: int = layout.MAX_ENTRIES, fmt: str = "auto",
          scanned: Scan | None = None, max_age: float = CACHE_MAX_AGE_SECONDS,
          hashed: dict[str, str] | None = None) -> CheckResult | None:
    """Run the hash check; None when another hash run is in progress or ``stop`` was set.

    facts: verified_bytes (matched, or recorded now) = published_bytes (matched a published
    digest) + recorded_bytes (matched or recorded in the manifest), expected_bytes, files_read,
    files_cached, files_recorded, bytes_read, hf_cache_files, local_dir_files, manifest_files (files
    whose reference is the recorded manifest), content_digest
    (when every weight file was hashed and matched). ``hashed`` receives every digest computed
    or taken from the cache, by path relative to the scan root (for ``check-model --manifest``).
    """
    if not _LOCK.acquire(blocking=False):
        log.info("hash check of %s skipped: another hash run is in progress", model)
        return None
    try:
        return _check(model, model_dir, state_dir, chunk_bytes, rate_limit_bytes_per_second, on_chunk, stop,
                      scanned or layout.scan(model_dir, fmt, max_entries) if model_dir is not None else None, max_age,
                      hashed if hashed is not None else {})
    except Aborted:
        log.info("hash check of %s stopped (shutdown)", model)
        return None
    finally:
        _LOCK.release()


def _check(model: str, model_dir: Any, state_dir: Path, chunk_bytes: int, rate: int,
           on_chunk: OnChunk | None, stop: threading.Event | None, lay: Scan | None, max_age: float,
           hashed: dict[str, str]) -> CheckResult:
    t0 = time.perf_counter()
    findings = Findings()
    if model_dir is None or lay is None:
        return make_result(model, "hash", t0, findings, {}, None)
    root = layout.root_of(model_dir, lay)
    findings.extend(i for i in lay.issues if i.kind in _CARRIED)
    if not lay.usable:
        return make_result(model, "hash", t0, findings, {}, root)
    manifest = Manifest.load(manifest_path(state_dir, model))
    pacer = _Pacer(rate, stop)
    f: dict[str, Any] = dict(verified_bytes=0, expected_bytes=0, published_bytes=0, recorded_bytes=0, files_read=0,
                             files_cached=0, files_recorded=0, bytes_read=0, hf_cache_files=0, local_dir_files=0,
                             manifest_files=0)
    digests: dict[str, str] = {}
    dirty = False
    try:
        for w in lay.weights:
            if stop is not None and stop.is_set():
                raise Aborted()
            dirty |= _one(lay.root, w, manifest, findings, f, chunk_bytes, pacer, on_chunk, max_age, digests, hashed)
        if len(digests) == len(lay.weights) and digests and not findings.has("hash_mismatch"):
            f["content_digest"] = content_digest(digests)
        known = {w.rel for w in lay.weights}
        for rel in [r for r in manifest.cache if r not in known]:
            del manifest.cache[rel]  # forget files that left the layout; keep their reference hashes
            dirty = True
    finally:
        if dirty:
            err = manifest.save()
            if err is not None:
                log.warning("cannot write hash manifest: %s", err)
                findings.add("manifest_write_failed", err)
    return make_result(model, "hash", t0, findings, f, root)


def content_digest(digests: dict[str, str]) -> str:
    """SHA-256 over ``sha256  path`` lines (sorted by path): one value per model's content."""
    import hashlib

    lines = "".join(f"{d}  {rel}\n" for rel, d in sorted(digests.items()))
    return hashlib.sha256(lines.encode("utf-8")).hexdigest()


def _one(root: Path, w: WeightFile, manifest: Manifest, findings: Findings, f: dict[str, Any], chunk_bytes: int,
         pacer: _Pacer, on_chunk: OnChunk | None, max_age: float, digests: dict[str, str],
         hashed: dict[str, str]) -> bool:
    """Check one weight file; returns whether the manifest changed."""
    rel = w.rel
    path = root / rel
    ref = manifest.files.get(rel)
    try:
        st = os.stat(path)
    except OSError as e:
        kind = oserror_kind(e)
        findings.add(kind, "missing" if kind == "missing_file" else oserror_detail(e), rel)
        if ref and isinstance(ref.get("size"), int):
            f["expected_bytes"] += ref["size"]
        return False
    size = st.st_size
    f["expected_bytes"] += size
    published = w.reference or references.published(root, rel)
    if published:
        expected = published.sha256
        source = published.where if published.source == "hf_cache_blob" else f"the download metadata {published.where}"
    elif ref:
        expected = ref["sha256"]
        source = (f"the manifest recorded {_date(ref.get('recorded_at'))}; if the file was replaced on purpose, "
                  f"delete {manifest.path} to record it again")
    else:
        expected, source = None, ""
    if published:
        f["hf_cache_files" if published.source == "hf_cache_blob" else "local_dir_files"] += 1
    else:
        f["manifest_files"] += 1  # compared with, or recorded into, our own manifest
    dirty = False
    cached = manifest.cache.get(rel)
    if _trusted(cached, st, max_age):
        digest = cached["sha256"]
        f["files_cached"] += 1
    else:
        try:
            digest = hash_file(path, rel, st, chunk_bytes, pacer, on_chunk)
        except Changed as e:
            findings.add("changed_during_check", f"changed while being hashed ({e}); checked again next run", rel)
            return manifest.cache.pop(rel, None) is not None
        except OSError as e:
            findings.add(oserror_kind(e), oserror_detail(e), rel)
            return False
        manifest.cache[rel] = {"key": _key(st), "sha256": digest, "hashed_at": time.time()}
        f["files_read"] += 1
        f["bytes_read"] += size
        dirty = True
    hashed[rel] = digest
    if expected is None:
        manifest.files[rel] = {"sha256": digest, "size": size, "recorded_at": time.time()}
        f["files_recorded"] += 1
        f["verified_bytes"] += size
        f["recorded_bytes"] += size
        digests[rel] = digest
        return True
    if digest == expected:
        f["verified_bytes"] += size
        f["published_bytes" if published else "recorded_bytes"] += size
        digests[rel] = digest
    else:
        findings.add("hash_mismatch", f"sha256 {digest[:12]}... differs from {expected[:12]}... of {source}", rel)
    return dirty
