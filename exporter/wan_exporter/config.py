"""Typed configuration, loaded from YAML with every error reported at once with its path.

The YAML is read with ``yaml.safe_load`` only. A generic loader walks the dataclasses
below using their type hints, so the schema lives in one place: the dataclasses.
Unknown keys are errors with a did-you-mean; cross-field rules (profiles against the
model's capabilities, unique names) run after the structural pass.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping

import yaml

from . import catalog
from .contract.thresholds import DEFAULTS as _THRESHOLDS
from .units import parse_duration, parse_size

# Label values we accept for model and profile names: short, no spaces, no paths.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
NAME_HELP = "1-64 characters of letters, digits, '_', '.', '-', starting with a letter or digit"
MAX_MODELS_DEFAULT = 64


class _Duration:  # marker for Annotated[float, DURATION]
    pass


class _Size:
    pass


DURATION = _Duration()
SIZE = _Size()
Duration = Annotated[float, DURATION]
Size = Annotated[int, SIZE]


class ConfigError(Exception):
    """Raised with every problem found; ``errors`` holds ``"path: message"`` strings."""

    def __init__(self, errors: list[str], source: str = "") -> None:
        self.errors = errors
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{len(errors)} configuration error(s):\n" + "\n".join(f"  {e}" for e in errors))


# --------------------------------------------------------------------------- schema


@dataclass(frozen=True)
class Parallel:
    """One generation across several ranks (diffusers' context parallelism): ``ulysses`` ranks, one GPU each."""

    ulysses: int = 1


@dataclass(frozen=True)
class Profile:
    """A benchmark generation's inputs. Kept small by default: a benchmark is a probe, not a job."""

    width: int = 832
    height: int = 480
    frames: int = 17
    steps: int = 4
    guidance_scale: float = 4.0
    guidance_scale_2: float | None = None
    seed: int = 42
    prompt: str = "A cat walks on the grass, realistic style."
    negative_prompt: str = ""
    # Give the pipeline a deterministic generated conditioning image. Always on for
    # image-to-video models; selects text+image mode for TI2V models.
    image: bool = False
    timeout: Duration = 1800.0
    # ``{ulysses: N}``: the benchmark runs as N ranks (NCCL on the model's GPU and the N-1 after it,
    # gloo on the CPU) and reports every rank's step times and peak memory.
    parallel: Parallel = field(default_factory=Parallel)


@dataclass(frozen=True)
class ModelConfig:
    name: str
    kind: str
    # A directory (diffusers or official layout), a single-file checkpoint, or a list of files
    # (the high- and low-noise experts of an A14B model as ComfyUI or GGUF files).
    path: str | tuple[str, ...] | None = None
    # A repo id, or several looked for in order (the -Diffusers repo, then the official one),
    # in the HF cache and then ModelScope's cache.
    hub_id: str | tuple[str, ...] | None = None
    # How the checkpoint lies on disk; "auto" recognises it (wan_exporter.scan.FORMATS).
    format: Literal["auto", "diffusers", "official", "single_file", "gguf"] = "auto"
    # Single-file and GGUF models: a diffusers-format directory whose text encoder, tokenizer,
    # VAE, scheduler and transformer configs the benchmark uses around the named files.
    base: str | None = None
    revision: str = "main"
    device: str = "cuda:0"
    dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"
    offload: Literal["none", "model", "group", "sequential"] = "none"
    vae_tiling: bool = False
    profiles: tuple[str, ...] = ()
    baselines: dict[str, Duration] = field(default_factory=dict)  # profile -> seconds


@dataclass(frozen=True)
class Schedule:
    interval: Duration
    enabled: bool = True
    jitter: Duration = 0.0
    timeout: Duration | None = None


def _sched(interval: float, **kw: Any) -> Any:
    return field(default_factory=lambda: Schedule(interval=interval, **kw))


@dataclass(frozen=True)
class Schedules:
    gpu: Schedule = _sched(10.0)
    host: Schedule = _sched(15.0)
    layout: Schedule = _sched(30.0)
    headers: Schedule = _sched(300.0)
    hash: Schedule = _sched(86400.0, jitter=600.0)
    load: Schedule = _sched(3600.0, enabled=False, timeout=300.0)
    benchmark: Schedule = _sched(3600.0, jitter=60.0)


DEFAULT_BUCKETS: tuple[float, ...] = (
    0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 90, 120, 180, 300, 450, 600, 900, 1200, 1800, 2700, 3600,
)


@dataclass(frozen=True)
class BenchmarkSettings:
    buckets: tuple[float, ...] = DEFAULT_BUCKETS
    kill_grace: Duration = 10.0
    keep_warm: bool = False
    keep_last_output: bool = False
    output_dir: str | None = None
    # Courtesy: skip a run when the GPU is doing someone else's work.
    busy_utilization_ratio: float = 0.10
    busy_foreign_memory_bytes: Size = 1 << 30
    stability_window: int = 10
    baseline_runs: int = 3  # healthy runs averaged into a recorded baseline


@dataclass(frozen=True)
class Thresholds:
    """The health verdict's thresholds; defaults, meanings and sources in :mod:`.contract.thresholds`."""

    degraded_slowdown_ratio: float = _THRESHOLDS["degraded_slowdown_ratio"]
    critical_consecutive_failures: int = int(_THRESHOLDS["critical_consecutive_failures"])
    degraded_sanity_ratio: float = _THRESHOLDS["degraded_sanity_ratio"]


@dataclass(frozen=True)
class Hashing:
    chunk_bytes: Size = 8 << 20
    rate_limit_bytes_per_second: Size = 0  # 0: unlimited


RUNBOOK_BASE = "https://github.com/wan-exporter/wan-exporter/blob/main/alerting/runbooks.md"


@dataclass(frozen=True)
class Links:
    """Where the status page links to; a site without a Prometheus, Grafana or Alertmanager leaves it out."""

    prometheus: str | None = None
    grafana: str | None = None
    alertmanager: str | None = None
    runbooks: str = RUNBOOK_BASE  # alert runbooks: <runbooks>#<alertname in lower case>


@dataclass(frozen=True)
class ExporterSettings:
    state_dir: str | None = None  # hash manifests and recorded baselines; default ~/.local/state/wan-exporter
    hf_cache_dir: str | None = None  # default: $HF_HUB_CACHE, $HF_HOME/hub, ~/.cache/huggingface/hub
    nvml_timeout: Duration = 2.0
    max_models: int = MAX_MODELS_DEFAULT
    demo: bool = False
    links: Links = field(default_factory=Links)
    status_refresh: Duration = 30.0  # the status page reloads itself this often; 0: never


@dataclass(frozen=True)
class Config:
    models: tuple[ModelConfig, ...] = ()
    profiles: dict[str, Profile] = field(default_factory=dict)
    schedules: Schedules = field(default_factory=Schedules)
    benchmark: BenchmarkSettings = field(default_factory=BenchmarkSettings)
    thresholds: Thresholds = field(default_factory=Thresholds)
    hashing: Hashing = field(default_factory=Hashing)
    exporter: ExporterSettings = field(default_factory=ExporterSettings)

    def model(self, name: str) -> ModelConfig:
        for m in self.models:
            if m.name == name:
                return m
        raise KeyError(name)


# --------------------------------------------------------------------------- generic loader


class _Loader:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def err(self, path: str, msg: str) -> None:
        self.errors.append(f"{path}: {msg}" if path else msg)

    def load(self, tp: Any, value: Any, path: str) -> Any:
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if origin is Annotated:
            base, marker = args[0], args[1]
            try:
                if marker is DURATION:
                    return parse_duration(value)
                if marker is SIZE:
                    return parse_size(value)
            except ValueError as e:
                self.err(path, str(e))
                return None
            return self.load(base, value, path)
        if origin in (typing.Union, types.UnionType):
            if value is None and type(None) in args:
                return None
            non_none = [a for a in args if a is not type(None)]
            if isinstance(value, list):  # str | tuple[str, ...]: a list picks the tuple
                tup = [a for a in non_none if typing.get_origin(a) is tuple]
                if tup:
                    return self.load(tup[0], value, path)
            return self.load(non_none[0], value, path)
        if origin is Literal:
            if value not in args:
                self.err(path, f"expected one of {', '.join(map(str, args))}, got {value!r}"
                               f"{_did_you_mean(value, args)}")
                return None  # the field keeps its default: no follow-on errors from a stand-in value
            return value
        if origin is tuple:
            if not isinstance(value, list):
                self.err(path, "expected a list")
                return ()
            return tuple(self.load(args[0], v, f"{path}[{i}]") for i, v in enumerate(value))
        if origin is dict:
            if not isinstance(value, dict):
                self.err(path, "expected a mapping")
                return {}
            out = {}
            for k, v in value.items():
                out[str(k)] = self.load(args[1], v, f"{path}.{k}")
            return out
        if dataclasses.is_dataclass(tp):
            return self.load_dataclass(tp, value, path)
        if tp is bool:
            if not isinstance(value, bool):
                self.err(path, "expected true or false")
                return False
            return value
        if tp is int:
            if isinstance(value, bool) or not isinstance(value, int):
                self.err(path, "expected an integer")
                return 0
            return value
        if tp is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                self.err(path, "expected a number")
                return 0.0
            return float(value)
        if tp is str:
            if not isinstance(value, str):
                self.err(path, "expected a string")
                return None  # as for a Literal: the field keeps its default, no follow-on errors
            return value
        raise TypeError(f"unsupported config type {tp!r}")

    def load_dataclass(self, cls: type, value: Any, path: str) -> Any:
        if value is None:
            value = {}
        if not isinstance(value, dict):
            self.err(path, "expected a mapping")
            value = {}
        hints = typing.get_type_hints(cls, include_extras=True)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        kwargs = {}
        for key in value:
            if key not in fields:
                self.err(_join(path, str(key)), f"unknown key{_did_you_mean(key, fields)}")
        for name, f in fields.items():
            sub = _join(path, name)
            if name in value:
                loaded = self.load(hints[name], value[name], sub)
                if loaded is None and value[name] is not None and not _optional(hints[name]):
                    continue  # error already recorded; keep the default
                kwargs[name] = loaded
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                self.err(sub, "required")
        try:
            return cls(**kwargs)
        except TypeError:
            return None


def _optional(tp: Any) -> bool:
    if typing.get_origin(tp) is Annotated:
        tp = typing.get_args(tp)[0]
    return typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in typing.get_args(tp)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def did_you_mean(value: Any, options: Any) -> str:
    """`` (did you mean 'x'?)`` for the closest option, else ``""``; a case slip counts as close."""
    opts = [str(o) for o in options]
    close = difflib.get_close_matches(str(value), opts, n=1) or [o for o in opts if o.lower() == str(value).lower()][:1]
    return f" (did you mean '{close[0]}'?)" if close else ""


_did_you_mean = did_you_mean


def load_typed(cls: type, raw: Mapping[str, Any], path: str = "") -> tuple[Any, list[str]]:
    """Walk ``raw`` into the dataclass ``cls`` by its type hints: (the object, every error with its path).

    The main config and the web config both go through here, so they share one error style."""
    loader = _Loader()
    return loader.load_dataclass(cls, raw, path), loader.errors


# --------------------------------------------------------------------------- semantic checks


def _validate_location(m: ModelConfig, p: str, errors: list[str], check_paths: bool) -> None:
    """path (a directory, a file or a list of files), hub_id (one or several) and format agree."""
    paths = m.path if isinstance(m.path, tuple) else (m.path,) if m.path is not None else ()
    if isinstance(m.path, tuple) and not m.path:
        errors.append(f"{p}.path: expected a directory, a file or a non-empty list of files")
    for i, f in enumerate(paths):
        where = f"{p}.path[{i}]" if isinstance(m.path, tuple) else f"{p}.path"
        if not isinstance(f, str) or not f:
            continue
        local = Path(os.path.expanduser(f))
        if isinstance(m.path, tuple) or m.format in ("single_file", "gguf"):
            if not f.endswith((".safetensors", ".gguf")):
                errors.append(f"{where}: expected a .safetensors or .gguf file, got {f!r}")
            elif check_paths and not local.is_file():
                errors.append(f"{where}: no such file: {f}")
        elif m.format in ("diffusers", "official"):
            if check_paths and not local.is_dir():
                errors.append(f"{where}: no such directory: {f}")
        elif check_paths and not (local.is_dir() or local.is_file()):
            errors.append(f"{where}: no such directory or file: {f}")
    if isinstance(m.path, tuple) and m.format in ("diffusers", "official"):
        errors.append(f"{p}.format: {m.format} is a directory form; a list of files is single_file or gguf")
    if m.base is not None and check_paths and not (Path(os.path.expanduser(m.base)) / "model_index.json").is_file():
        errors.append(f"{p}.base: not a diffusers-format directory (no model_index.json): {m.base}")
    hubs = m.hub_id if isinstance(m.hub_id, tuple) else (m.hub_id,) if m.hub_id is not None else ()
    if isinstance(m.hub_id, tuple) and not m.hub_id:
        errors.append(f"{p}.hub_id: expected 'organisation/name' or a non-empty list of them")
    for i, h in enumerate(hubs):
        where = f"{p}.hub_id[{i}]" if isinstance(m.hub_id, tuple) else f"{p}.hub_id"
        if not isinstance(h, str) or not re.match(r"^[\w.-]+/[\w.-]+$", h):
            errors.append(f"{where}: expected 'organisation/name', got {h!r}")


def _validate(cfg: Config, raw: Mapping[str, Any], errors: list[str], check_paths: bool) -> None:
    seen: dict[str, int] = {}
    if len(cfg.models) > cfg.exporter.max_models:
        errors.append(
            f"models: {len(cfg.models)} models configured, more than exporter.max_models "
            f"({cfg.exporter.max_models}); raise the cap deliberately if this is intended"
        )
    for key in ("prometheus", "grafana", "alertmanager", "runbooks"):
        url = getattr(cfg.exporter.links, key)
        if url is not None and not re.match(r"^https?://[^\s/?#]+[^\s]*$", url):
            errors.append(f"exporter.links.{key}: expected an http:// or https:// URL, got {url!r}")
    if cfg.exporter.status_refresh < 0:
        errors.append("exporter.status_refresh: expected a duration of 0 (never) or more")
    for name, prof in cfg.profiles.items():
        p = f"profiles.{name}"
        if not NAME_RE.match(name):
            errors.append(f"{p}: invalid profile name, expected {NAME_HELP}")
        if prof.frames < 1 or (prof.frames - 1) % 4:
            errors.append(f"{p}.frames: {prof.frames} frames; Wan needs 4n+1 frames (e.g. 5, 9, 17, 33, 81)")
        for dim in ("width", "height"):
            v = getattr(prof, dim)
            if v <= 0 or v % 16:
                errors.append(f"{p}.{dim}: {v} is not a positive multiple of 16")
        if prof.steps < 1:
            errors.append(f"{p}.steps: expected at least 1")
        if prof.timeout <= 0:
            errors.append(f"{p}.timeout: expected a positive duration")
        if not 1 <= prof.parallel.ulysses <= 64:
            errors.append(f"{p}.parallel.ulysses: expected 1 to 64 ranks, got {prof.parallel.ulysses}")
    for i, m in enumerate(cfg.models):
        p = f"models[{i}]"
        if not NAME_RE.match(m.name or ""):
            errors.append(f"{p}.name: invalid model name {m.name!r}, expected {NAME_HELP}")
        if m.name in seen:
            errors.append(f"{p}.name: duplicate model name '{m.name}' (also models[{seen[m.name]}])")
        seen.setdefault(m.name, i)
        entry = catalog.CATALOG.get(m.kind)
        if entry is None:
            errors.append(f"{p}.kind: unknown model kind '{m.kind}'{_did_you_mean(m.kind, catalog.CATALOG)}")
        if (m.path is None) == (m.hub_id is None):
            errors.append(f"{p}: exactly one of path or hub_id is required")
        _validate_location(m, p, errors, check_paths)
        if not re.match(r"^(cpu|cuda(:\d+)?)$", m.device):
            errors.append(f"{p}.device: expected cpu, cuda or cuda:N, got {m.device!r}")
        if m.device == "cpu" and m.offload != "none":
            errors.append(f"{p}.offload: CPU offload needs a CUDA device")
        for j, prof_name in enumerate(m.profiles):
            prof = cfg.profiles.get(prof_name)
            if prof is not None and prof.parallel.ulysses > 1 and m.offload != "none":
                errors.append(f"{p}.profiles[{j}]: profile '{prof_name}' runs {prof.parallel.ulysses} ranks, which "
                              f"offload {m.offload!r} does not support (offload: none)")
        for j, prof_name in enumerate(m.profiles):
            prof = cfg.profiles.get(prof_name)
            if prof is None:
                errors.append(f"{p}.profiles[{j}]: unknown profile '{prof_name}'{_did_you_mean(prof_name, cfg.profiles)}")
                continue
            if entry is not None:
                mult = entry.size_multiple
                for dim in ("width", "height"):
                    v = getattr(prof, dim)
                    if v % mult:
                        errors.append(
                            f"{p}.profiles[{j}]: profile '{prof_name}' {dim} {v} is not a multiple of {mult}, "
                            f"which {m.kind} needs"
                        )
                if prof.image and "image" not in entry.inputs:
                    errors.append(f"{p}.profiles[{j}]: profile '{prof_name}' gives an image, but {m.kind} takes no image input")
        for prof_name in m.baselines:
            if prof_name not in m.profiles:
                errors.append(f"{p}.baselines.{prof_name}: not one of this model's profiles")


# --------------------------------------------------------------------------- entry points


def load_yaml_mapping(text: str, source: str) -> dict:
    """``yaml.safe_load`` a file that must be a mapping (or empty); any other outcome is a ConfigError.

    Shared by the main config and the web config, so both reject object tags the same way.
    """
    try:
        raw = yaml.safe_load(text)
    except yaml.constructor.ConstructorError as e:
        mark = e.problem_mark
        where = f"line {mark.line + 1}: " if mark else ""
        raise ConfigError(
            [f"{where}YAML tag not allowed ({e.problem}); the file is plain YAML, python object tags are never loaded"],
            source,
        ) from None
    except yaml.YAMLError as e:
        raise ConfigError([f"invalid YAML: {e}"], source) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(["top level: expected a mapping"], source)
    return raw


def parse_config(text: str, source: str = "<config>", check_paths: bool = False) -> Config:
    """Parse and validate YAML text. Raises :class:`ConfigError` listing every problem."""
    raw = load_yaml_mapping(text, source)
    loader = _Loader()
    cfg = loader.load_dataclass(Config, raw, "")
    errors = list(loader.errors)
    if cfg is not None and not errors:
        _validate(cfg, raw, errors, check_paths)
    elif cfg is not None:
        # Structural errors present: still report semantic ones we can compute safely.
        try:
            _validate(cfg, raw, errors, check_paths)
        except Exception:  # noqa: BLE001 - partial config; structural errors already explain it
            pass
    if errors or cfg is None:
        raise ConfigError(errors or ["invalid configuration"], source)
    return cfg


def load_config(path: str | os.PathLike, check_paths: bool = False) -> Config:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError([f"cannot read config file: {e.strerror or e}"], str(p)) from None
    except UnicodeDecodeError as e:
        raise ConfigError([f"not UTF-8 text (byte {e.start}): a config file is plain YAML"], str(p)) from None
    return parse_config(text, str(p), check_paths=check_paths)


def state_dir(cfg: Config) -> Path:
    if cfg.exporter.state_dir:
        return Path(os.path.expanduser(cfg.exporter.state_dir))
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(base) / "wan-exporter"
