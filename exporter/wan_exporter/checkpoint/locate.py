"""Where a hub model lies on this machine, without downloading it.

Looked for in order: the Hugging Face cache (:mod:`.hfcache`), then ModelScope's cache,
where ``modelscope download --model Wan-AI/Wan2.2-T2V-A14B`` (the other download the Wan
README gives) puts it: ``$MODELSCOPE_CACHE`` or ``~/.cache/modelscope/hub``, under
``models/<org>/<name>`` (recent versions, dots in the name written ``___``) or ``<org>/<name>``.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..config import Config, ModelConfig
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

def resolve_model_dir(m: ModelConfig, cfg: Config) -> "Path | tuple[Path, ...] | None":
    """Where the model's files are: its path (a directory, a file, or a list of files), or the
    first of its hub ids found in the HF cache or ModelScope's cache. None: not there."""
    if isinstance(m.path, tuple):
        return tuple(Path(os.path.expanduser(p)) for p in m.path)
    if m.path is not None:
        p = Path(os.path.expanduser(m.path))
        return p if p.is_dir() or p.is_file() else None
    hubs = m.hub_id if isinstance(m.hub_id, tuple) else (m.hub_id or "",)
    return resolve(hubs, m.revision, cfg.exporter.hf_cache_dir)


def model_folder(target: "Path | tuple[Path, ...] | None") -> Path | None:
    """The folder a model's files live in (for disk usage)."""
    if target is None:
        return None
    if isinstance(target, tuple):
        return target[0].parent if target else None
    return target if target.is_dir() else target.parent
