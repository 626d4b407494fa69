"""What a Wan checkpoint says about itself, from the scan of its files.

A diffusers directory is read from ``model_index.json``, each component's ``config.json``
and the safetensors headers of the weight files its scan found (other forms:
:mod:`.checkpoint_forms`), so it runs in the exporter process (no torch, no diffusers, no
weights read) in milliseconds even for a 27B checkpoint. A missing or corrupt file never raises out of
:func:`derive_facts`: it becomes one line in ``problems`` and everything else that could be
derived is still returned, because a half-broken checkpoint is exactly what operators need
to see described. :func:`compare_with_catalog` turns disagreements with the published
catalog into short, human-readable findings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from ..catalog import CatalogEntry
from .model import EMPTY, MAX_PROBLEMS, CheckpointFacts, Problems  # noqa: F401 - MAX_PROBLEMS: public here too
from ..scan.unindexed import declared_components, read_json, weight_files
from ..scan.header_io import read_header
from ..scan.safetensors_header import Header, HeaderError, TensorInfo, dtype_name

DENOISERS: tuple[str, ...] = ("transformer", "transformer_2")
MAX_MISMATCHES = 16

# Components that hold no weights (their directories carry tokenizer/scheduler/processor files).
_WEIGHTLESS = re.compile(r"Tokeni[sz]er|TokenizersBackend|Scheduler|Processor|FeatureExtractor")



# ---------------------------------------------------------------- derivation


@dataclass
class _Weights:
    tensors: dict[str, TensorInfo]
    complete: bool


def derive_facts(model_dir: Any, headers: Mapping[Path, Header] | None = None, fmt: str = "auto",
                 tables: Mapping[str, Any] | None = None) -> CheckpointFacts:
    """Everything ``model_dir`` says about itself; never raises for a bad checkpoint.

    ``model_dir`` is a diffusers directory, any other form :mod:`wan_exporter.scan` reads
    (official layout, single file or files, GGUF), or a :class:`~wan_exporter.scan.Scan`.
    ``headers``/``tables``: what the caller has already read (the header check passes its
    own), so no header is parsed twice.
    """
    from .. import scan as scanning
    from . import forms as checkpoint_forms  # forms imports only .model, never this module

    sc = model_dir if isinstance(model_dir, scanning.Scan) else scanning.scan(model_dir, fmt)
    if sc.form not in (None, "diffusers"):
        return checkpoint_forms.derive(sc, tables)
    if sc.form == "diffusers" and sc.components:
        return _from_scan(sc, headers or {})
    # No readable model_index.json: guess the components from the usual folders.
    root = Path(sc.root)
    problems = Problems(root)
    if not root.is_dir():
        problems.add(f"{root}: not a directory")
        return _facts(problems=problems)
    index = read_json(root / "model_index.json", problems)
    components = declared_components(index, root, problems)
    configs: dict[str, Mapping[str, Any]] = {}
    weights: dict[str, _Weights] = {}
    for name, cls in components.items():
        d = root / name
        if not d.is_dir():
            problems.add(f"{name}: declared in model_index.json ({cls}) but the directory {name}/ is missing")
            continue
        if _WEIGHTLESS.search(cls):
            continue
        cfg = read_json(d / "config.json", problems)
        if cfg is not None:
            configs[name] = cfg
        w = _read_weights(d, name, problems, headers or {})
        if w is not None:
            weights[name] = w
    return _assemble(index, components, configs, weights, problems)


def _from_scan(sc: Any, known: Mapping[Path, Header]) -> CheckpointFacts:
    """A diffusers directory from its scan: the files the layout check found, read once each."""
    root = Path(sc.root)
    problems = Problems(root)
    for i in sc.issues:
        problems.add(f"{i.path}: {i.detail}" if i.path else i.detail)
    index = read_json(root / "model_index.json", problems)
    configs: dict[str, Mapping[str, Any]] = {}
    weights: dict[str, _Weights] = {}
    for name, cls in sc.components.items():
        if _WEIGHTLESS.search(cls):
            continue
        if f"{name}/config.json" in sc.configs:
            cfg = read_json(root / name / "config.json", problems)
            if cfg is not None:
                configs[name] = cfg
        files = [w for w in sc.weights if w.component == name]
        if not files:
            continue  # the scan's finding says why (folder missing, no safetensors weights)
        tensors: dict[str, TensorInfo] = {}
        complete = all(w.size is not None for w in files)
        for w in files:
            if w.size is None:
                continue
            path = root / w.rel
            try:
                header = known.get(path) or read_header(path)
            except HeaderError as e:
                problems.add(str(e))
                complete = False
                continue
            for issue in header.validate(w.size):
                problems.add(issue)
            tensors.update(header.tensors)
        promised = {t for idx in sc.indexes if idx.component == name for t in idx.weight_map}
        absent = promised - tensors.keys()
        if absent and complete:
            problems.add(f"{name}: {len(absent)} tensors listed in the shard index are in no shard "
                          f"(e.g. {sorted(absent)[0]!r})")
            complete = False
        weights[name] = _Weights(tensors, complete)
    return _assemble(index, sc.components, configs, weights, problems)


def _assemble(
    index: Mapping[str, Any] | None,
    components: Mapping[str, str],
    configs: Mapping[str, Mapping[str, Any]],
    weights: Mapping[str, _Weights],
    problems: Problems,
) -> CheckpointFacts:
    params = {n: sum(t.numel for t in w.tensors.values()) for n, w in weights.items() if w.complete}
    declared_denoisers = [n for n in DENOISERS if n in components]
    denoiser = (
        sum(params[n] for n in declared_denoisers)
        if declared_denoisers and all(n in params for n in declared_denoisers)
        else None
    )
    by_comp = {n: tuple(sorted({dtype_name(t.dtype) for t in w.tensors.values()})) for n, w in weights.items()}
    tcfg = configs.get("transformer", EMPTY)
    vcfg = configs.get("vae", EMPTY)
    index = index or {}
    return _facts(
        pipeline_class=_str(index.get("_class_name")),
        experts=len(declared_denoisers) if components else None,
        boundary_ratio=_float(index.get("boundary_ratio")),
        expand_timesteps=index.get("expand_timesteps") if isinstance(index.get("expand_timesteps"), bool) else None,
        parameters_by_component=MappingProxyType(params),
        denoiser_parameters=denoiser,
        dtypes=tuple(sorted({d for ds in by_comp.values() for d in ds})),
        transformer_config=MappingProxyType(dict(tcfg)),
        vae_z_dim=_int(vcfg.get("z_dim")),
        has_image_encoder="image_encoder" in components,
        problems=problems,
        components=MappingProxyType(dict(components)),
        dtypes_by_component=MappingProxyType(by_comp),
        weight_bytes=sum(t.offsets[1] - t.offsets[0] for w in weights.values() for t in w.tensors.values()),
        vae_compression=_compression(vcfg, tcfg),
        diffusers_version=_str(index.get("_diffusers_version")),
        image_tokens=image_tokens_of(configs.get("image_encoder", EMPTY)),
        vae_decoder=_vae_decoder(vcfg),
    )


def _facts(problems: Problems, **kw: Any) -> CheckpointFacts:
    base: dict[str, Any] = dict(
        pipeline_class=None, experts=None, boundary_ratio=None, expand_timesteps=None,
        parameters_by_component=EMPTY, denoiser_parameters=None, dtypes=(), transformer_config=EMPTY,
        vae_z_dim=None, has_image_encoder=False,
    )
    base.update(kw)
    return CheckpointFacts(problems=problems.result(), **base)


def _read_weights(d: Path, name: str, problems: Problems, known: Mapping[Path, Header]) -> _Weights | None:
    """Tensors of one component from its safetensors headers (sharded or not)."""
    files, expected_names, complete = weight_files(d, name, problems)
    if files is None:
        return None
    tensors: dict[str, TensorInfo] = {}
    for f in files:
        try:
            header = known.get(f) or read_header(f)
            size = f.stat().st_size
        except (HeaderError, OSError) as e:
            problems.add(str(e))
            complete = False
            continue
        for issue in header.validate(size):
            problems.add(issue)
        tensors.update(header.tensors)
    if expected_names is not None:
        missing = expected_names - tensors.keys()
        if missing and complete:
            problems.add(f"{name}: {len(missing)} tensors listed in the shard index are in no shard "
                          f"(e.g. {sorted(missing)[0]!r})")
            complete = False
    return _Weights(tensors, complete)


# ---------------------------------------------------------------- small readers


def _compression(vae: Mapping[str, Any], transformer: Mapping[str, Any]) -> tuple[int, int, int] | None:
    """(t, h, w) pixels per transformer token: VAE scale factors times the patch size."""
    st, ss = _int(vae.get("scale_factor_temporal")), _int(vae.get("scale_factor_spatial"))
    patch = transformer.get("patch_size")
    if st is None or ss is None or not (isinstance(patch, list) and len(patch) == 3 and all(_int(p) for p in patch)):
        return None
    return (st * patch[0], ss * patch[1], ss * patch[2])


def _vae_decoder(vae: Mapping[str, Any]) -> tuple[int, int] | None:
    """AutoencoderKLWan's last decoder stage: (decoder_base_dim or base_dim) x dim_mult[0] channels,
    at the full size over its patch_size (Wan2.2's VAE decodes at half size, then unpatchifies)."""
    base = _int(vae.get("decoder_base_dim")) or _int(vae.get("base_dim"))
    mult = vae.get("dim_mult")
    first = _int(mult[0]) if isinstance(mult, list) and mult else 1
    patch = _int(vae.get("patch_size")) or 1
    return (base * first, patch) if base and first and base > 0 and first > 0 and patch > 0 else None


def image_tokens_of(encoder: Mapping[str, Any]) -> int | None:
    """A CLIP vision encoder's output tokens: (image_size / patch_size)^2 patches plus the class token."""
    size, patch = _int(encoder.get("image_size")), _int(encoder.get("patch_size"))
    return (size // patch) ** 2 + 1 if size and patch and size >= patch else None


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _float(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


# ---------------------------------------------------------------- comparison


def compare_with_catalog(facts: CheckpointFacts, entry: CatalogEntry) -> tuple[str, ...]:
    """Where the checkpoint disagrees with the catalog entry, one short line each (bounded)."""
    out: list[str] = []
    indexed = facts.pipeline_class is not None  # model_index.json was read
    if indexed and facts.pipeline_class != entry.pipeline:
        out.append(f"pipeline class is {facts.pipeline_class}, {entry.key} uses {entry.pipeline}")
    if facts.experts is not None and facts.experts != entry.experts:
        out.append(f"checkpoint has {facts.experts} denoising expert(s), {entry.key} has {entry.experts}")
    if indexed and not _same_ratio(facts.boundary_ratio, entry.boundary_ratio):
        out.append(f"boundary_ratio is {facts.boundary_ratio}, {entry.key} uses {entry.boundary_ratio}")
    out.extend(_compare_parameters(facts, entry))
    if indexed and bool(facts.expand_timesteps) != (entry.task == "ti2v"):
        want = "needs expand_timesteps=True" if entry.task == "ti2v" else "does not use expand_timesteps"
        out.append(f"expand_timesteps is {facts.expand_timesteps}, {entry.key} {want}")
    if facts.vae_z_dim is not None and facts.vae_z_dim != entry.vae_z_dim:
        out.append(f"VAE z_dim is {facts.vae_z_dim}, {entry.key} uses {entry.vae_z_dim}")
    if facts.vae_compression is not None and facts.vae_compression != entry.vae_compression:
        out.append(f"compression (t,h,w) is {facts.vae_compression}, {entry.key} uses {entry.vae_compression}")
    if indexed and facts.has_image_encoder != entry.image_encoder:
        out.append(f"checkpoint has an image encoder, {entry.key} uses none" if facts.has_image_encoder
                   else f"checkpoint has no image encoder, {entry.key} needs one")
    for key, want in sorted(entry.architecture.items()):
        have = facts.transformer_config.get(key)
        if have is not None and have != want:
            out.append(f"transformer {key} is {have}, {entry.key} has {want}")
    return tuple(out[:MAX_MISMATCHES])


def _compare_parameters(facts: CheckpointFacts, entry: CatalogEntry) -> list[str]:
    """Parameter count against the exact figure when known, else the published nominal one."""
    have = facts.denoiser_parameters
    ref, what = (entry.parameters_derived, "exact") if entry.parameters_derived else (entry.parameters, "published")
    if entry.tiny or have is None or not ref:
        return []
    off = (have - ref) / ref
    if abs(off) <= entry.parameters_tolerance:
        return []
    return [f"denoiser parameters {have / 1e9:.2f}B are {off:+.0%} off the {what} "
            f"{ref / 1e9:.2f}B of {entry.key}"]


def _same_ratio(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return abs(a - b) < 1e-6


__all__ = ["CheckpointFacts", "Header", "HeaderError", "compare_with_catalog", "derive_facts"]
