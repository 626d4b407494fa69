"""Where a hub model lies on this machine, without downloading it.

Looked for in order: the Hugging Face cache (:mod:`.hfcache`), then ModelScope's cache,
where ``modelscope download --model Wan-AI/Wan2.2-T2V-A14B`` (the other download the Wan
README gives) puts it: ``$MODELSCOPE_CACHE`` or ``~/.cache/modelscope/hub``, under
``models/<org>/<name>`` (recent versions, dots in the name written ``___``) or ``<org>/<name>``.
"""

from __future__ import annotations

import os
from pathlib import Path

from . import hfcache


def modelscope_roots(override: str | None = None) -> list[Path]:
    if override:
        return [Path(os.path.expanduser(override))]
    env = os.environ.get("MODELSCOPE_CACHE")
    if env:
        return [Path(env), Path(env) / "hub"]
    return [Path(os.path.expanduser("~/.cache/modelscope/hub"))]


def modelscope_dir(repo_id: str, cache: str | None = None) -> Path:
    """Where recent ModelScope versions put ``repo_id`` (the first candidate)."""
    org, _, name = repo_id.partition("/")
    return modelscope_roots(cache)[0] / "models" / org / name.replace(".", "___")


def modelscope(repo_id: str, cache: str | None = None) -> Path | None:
    org, _, name = repo_id.partition("/")
    for root in modelscope_roots(cache):
        for sub in ("models", ""):
            for n in (name.replace(".", "___"), name):
                d = root / sub / org / n if sub else root / org / n
                if d.is_dir():
                    return d
    return None


def resolve(hub_ids: tuple[str, ...], revision: str = "main", hf_cache: str | None = None,
            modelscope_cache: str | None = None) -> Path | None:
    """The first of ``hub_ids`` found in the HF cache, else in ModelScope's cache."""
    for hub_id in hub_ids:
        d = hfcache.resolve(hub_id, revision, hf_cache)
        if d is not None:
            return d
    for hub_id in hub_ids:
        d = modelscope(hub_id, modelscope_cache)
        if d is not None:
            return d
    return None
