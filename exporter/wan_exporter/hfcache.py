"""Find a hub model in the local Hugging Face cache, never downloading it.

The cache layout is ``models--{org}--{name}/snapshots/{commit}`` with ``refs/{revision}``
holding the commit hash; blobs are named by their sha256, which the hash check reuses.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root(override: str | None = None) -> Path:
    """``exporter.hf_cache_dir`` when set, else the cache huggingface_hub itself uses.

    huggingface_hub's constants follow every variable it honours (``HF_HUB_CACHE``, the older
    ``HUGGINGFACE_HUB_CACHE``, ``HF_HOME``, ``XDG_CACHE_HOME``), read when it is first imported.
    """
    if override:
        return Path(os.path.expanduser(override))
    from huggingface_hub import constants

    return Path(os.path.expanduser(constants.HF_HUB_CACHE))


def repo_dir(hub_id: str, cache: str | None = None) -> Path:
    return cache_root(cache) / ("models--" + hub_id.replace("/", "--"))


def resolve(hub_id: str, revision: str = "main", cache: str | None = None) -> Path | None:
    """The snapshot directory of ``hub_id`` at ``revision`` (a ref or a commit), or None."""
    base = repo_dir(hub_id, cache)
    ref = base / "refs" / revision
    try:
        commit = ref.read_text().strip() if ref.is_file() else revision
    except OSError:
        return None
    snap = base / "snapshots" / commit
    return snap if snap.is_dir() else None


def blob_sha256(path: Path) -> str | None:
    """The sha256 the cache recorded for a snapshot file (its blob's name), if this is one.

    Only 64-hex blob names are LFS sha256 digests; small git-tracked files use a sha1.
    """
    try:
        if not path.is_symlink():
            return None
        target = Path(os.path.realpath(path))
    except OSError:
        return None
    name = target.name
    if target.parent.name == "blobs" and len(name) == 64 and all(c in "0123456789abcdef" for c in name):
        return name
    return None
