"""Keep-warm: the pipeline a long-lived benchmark worker keeps loaded between runs.

One pipeline per worker, held on purpose (that is the memory keep-warm trades for no load
time); loading another releases the previous one first.
"""

from __future__ import annotations

from typing import Any

from ..measure import phases as measure

_WARM: dict[tuple, tuple[Any, bool]] = {}


def key(req: dict[str, Any]) -> tuple:
    return (req["model_dir"], tuple(sorted((req.get("transformer_files") or {}).items())), req["pipeline"],
            req["device"], req["dtype"], req["offload"], bool(req["vae_tiling"]), bool(req["image"]))


def take(k: tuple | None) -> tuple[Any, bool] | None:
    """The kept pipeline for ``k`` with last run's phase wrappers removed, or None."""
    if k is None or k not in _WARM:
        return None
    pipe, image_mode = _WARM[k]
    measure.uninstall(pipe)
    return pipe, image_mode


def release() -> None:
    _WARM.clear()


def keep(k: tuple | None, pipe: Any, image_mode: bool) -> None:
    if k is not None:
        _WARM[k] = (pipe, image_mode)


__all__ = ["keep", "key", "release", "take"]
