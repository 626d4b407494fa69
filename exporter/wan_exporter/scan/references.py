"""Published SHA-256 digests that a download left beside a model's files.

Two places hold one, both written by ``huggingface_hub``:

- the Hugging Face cache: a snapshot file is a symlink to ``blobs/<sha256>`` for LFS files;
- a ``--local-dir`` download: ``<dir>/.cache/huggingface/download/<path>.metadata``, three
  lines (commit, etag, Unix time); for an LFS file the etag is the sha256 of its content.

A file without either is checked against a manifest recorded at first sight, which proves
the bytes stay the same, not that they are the published ones. Small git-tracked files carry
a 40-hex sha1 etag or blob name; those are not content hashes of the file and are ignored.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..fileio import NotRegularFile, read_regular
from .model import Reference

MAX_METADATA_BYTES = 4096
MAX_LEVELS = 6  # how far above a file a --local-dir root is looked for
_HEX = frozenset("0123456789abcdef")


def _sha256(s: str) -> bool:
    return len(s) == 64 and set(s) <= _HEX


def blob_sha256(path: Path) -> str | None:
    """The sha256 the HF cache recorded for a snapshot file (its blob's name), if this is one."""
    try:
        if not path.is_symlink():
            return None
        target = Path(os.path.realpath(path))
    except OSError:
        return None
    if target.parent.name == "blobs" and _sha256(target.name):
        return target.name
    return None


def metadata_sha256(local_dir: Path, rel: str) -> tuple[str, Path] | None:
    """The etag of ``rel`` in ``local_dir``'s download metadata, when it is a sha256.

    A metadata path that is not a regular file (a FIFO would block ``open`` for ever) raises
    :class:`~wan_exporter.fileio.NotRegularFile`, for the scan to report; any other error
    means there is no published digest.
    """
    meta = local_dir / ".cache" / "huggingface" / "download" / f"{rel}.metadata"
    try:
        raw = read_regular(meta, MAX_METADATA_BYTES)
    except NotRegularFile:
        raise
    except OSError:
        return None
    lines = raw.decode("utf-8", "replace").splitlines()
    if len(lines) < 2:
        return None
    etag = lines[1].strip().strip('"').lower()
    return (etag, meta) if _sha256(etag) else None


def published(root: Path, rel: str, has_metadata: dict[Path, bool] | None = None) -> Reference | None:
    """The published sha256 of ``root/rel``: its cache blob name, else the nearest download metadata.

    ``has_metadata`` remembers which folders hold ``.cache/huggingface/download`` across the
    files of one scan, so each folder is looked at once, not once per file.
    """
    path = root / rel
    blob = blob_sha256(path)
    if blob:
        return Reference(blob, "hf_cache_blob", "the Hugging Face cache blob name")
    # The --local-dir root may be the model root or a folder above it (a single file in
    # split_files/diffusion_models/ of a repackaged repo).
    seen = has_metadata if has_metadata is not None else {}
    base = root
    tail = list(Path(rel).parts)
    for _ in range(MAX_LEVELS):
        if base not in seen:
            seen[base] = os.path.isdir(base / ".cache" / "huggingface" / "download")
        if seen[base]:
            hit = metadata_sha256(base, "/".join(tail))
            if hit is not None:
                return Reference(hit[0], "local_dir_metadata", str(hit[1]))
        if base.parent == base:
            break
        tail.insert(0, base.name)
        base = base.parent
    return None


__all__ = ["blob_sha256", "metadata_sha256", "published"]
