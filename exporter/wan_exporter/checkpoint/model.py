"""What a checkpoint says about itself, as data: :class:`CheckpointFacts` and the bounded
:class:`Problems` list, shared by the diffusers reader (:mod:`.facts`) and the other forms'
(:mod:`.forms`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

MAX_PROBLEMS = 32

EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True)
class CheckpointFacts:
    pipeline_class: str | None  # model_index.json _class_name
    experts: int | None  # declared denoisers (transformer, transformer_2); None without a readable layout
    boundary_ratio: float | None
    expand_timesteps: bool | None  # None: not recorded in model_index.json
    parameters_by_component: Mapping[str, int]  # only components whose weights were counted completely
    denoiser_parameters: int | None  # transformer + transformer_2; None unless every declared one was counted
    dtypes: tuple[str, ...]  # torch-style names over all components, sorted
    transformer_config: Mapping[str, Any]
    vae_z_dim: int | None
    has_image_encoder: bool
    problems: tuple[str, ...]
    # ---- extras ----
    components: Mapping[str, str] = field(default_factory=lambda: EMPTY)  # name -> class, as declared
    dtypes_by_component: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: EMPTY)
    weight_bytes: int = 0  # tensor data bytes the headers describe, all components
    vae_compression: tuple[int, int, int] | None = None  # (t, h, w): VAE scale factors x transformer patch
    diffusers_version: str | None = None
    image_tokens: int | None = None  # tokens the CLIP image encoder hands the transformer (patches + class)
    form: str | None = "diffusers"  # how the checkpoint lies on disk (wan_exporter.scan.FORMS)
    model_type: str | None = None  # t2v | i2v | ti2v where the checkpoint says so
    # (channels, spatial divisor) of the VAE decoder's last stage: the memory guard's decode estimate
    vae_decoder: tuple[int, int] | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (for reports and the state snapshot)."""
        return {
            "pipeline_class": self.pipeline_class,
            "experts": self.experts,
            "boundary_ratio": self.boundary_ratio,
            "expand_timesteps": self.expand_timesteps,
            "parameters_by_component": dict(self.parameters_by_component),
            "denoiser_parameters": self.denoiser_parameters,
            "dtypes": list(self.dtypes),
            "transformer_config": dict(self.transformer_config),
            "vae_z_dim": self.vae_z_dim,
            "has_image_encoder": self.has_image_encoder,
            "problems": list(self.problems),
            "components": dict(self.components),
            "dtypes_by_component": {k: list(v) for k, v in self.dtypes_by_component.items()},
            "weight_bytes": self.weight_bytes,
            "vae_compression": list(self.vae_compression) if self.vae_compression else None,
            "diffusers_version": self.diffusers_version,
            "image_tokens": self.image_tokens,
            "form": self.form,
            "model_type": self.model_type,
            "vae_decoder": list(self.vae_decoder) if self.vae_decoder else None,
        }


class Problems:
    """A bounded list of problem lines, so a directory of 10,000 broken shards stays readable."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.items: list[str] = []
        self.dropped = 0

    def add(self, msg: str) -> None:
        msg = msg.replace(f"{self.root}{os.sep}", "")
        if len(self.items) < MAX_PROBLEMS:
            self.items.append(msg)
        else:
            self.dropped += 1

    def result(self) -> tuple[str, ...]:
        more = (f"... and {self.dropped} more problems",) if self.dropped else ()
        return tuple(self.items) + more
