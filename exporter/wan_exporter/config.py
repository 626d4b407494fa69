"""Typed configuration, loaded from YAML with every error reported at once with its path.

The YAML is read with ``yaml.safe_load`` only. A generic loader walks the dataclasses
below using their type hints, so the schema lives in one place: the dataclasses.
Unknown keys are errors with a did-you-mean; cross-field rules (profiles against the
model's capabilities, unique names) run after the structural pass.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, Mapping

from . import catalog
from .contract.thresholds import DEFAULTS as _THRESHOLDS
from .loader import (ConfigError, Duration, Loader, Size, did_you_mean, load_typed,  # noqa: F401 - load_typed:
                     load_yaml_mapping)  # the web config and check-config read it from here

# Label values we accept for model and profile names: short, no spaces, no paths.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
NAME_HELP = "1-64 characters of letters, digits, '_', '.', '-', starting with a letter or digit"
MAX_MODELS_DEFAULT = 64


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
    # Another configured model holding the same weights in another form (the bf16 run): each run
    # of this one is compared with that model's last output of the same profile and inputs.
    compare_to: str | None = None
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
    # A run still in progress after this long is stuck (wan_exporter_job_stuck); default: the interval,
    # or the timeout when that is longer.
    deadline: Duration | None = None

    @property
    def deadline_seconds(self) -> float:
        return self.deadline if self.deadline is not None else max(self.interval, self.timeout or 0.0)


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
    # A read of a model's files that makes no progress this long is left behind (io_timeout finding).
    io_timeout: Duration = 30.0


@dataclass(frozen=True)
class PodResources:
    """The kubelet's pod-resources API: which GPUs the kubelet gave to which pod (never probed)."""

    enabled: bool = False
    socket: str = "/var/lib/kubelet/pod-resources/kubelet.sock"
    resource: str = "nvidia.com/gpu"  # the device plugin's resource name
    timeout: Duration = 2.0
    # Publish wan_gpu_allocation_info{gpu, uuid, namespace, pod, container}: opt-in, as pod names
    # are workload identity; one series per allocated GPU and container, so bounded by the GPUs.
    publish_pods: bool = False


JOB_TTL_FLOOR = 30  # seconds; see ProbeJobs.ttl_seconds_after_finished


@dataclass(frozen=True)
class ProbeJobs:
    """Job mode: each due benchmark becomes a Kubernetes Job that asks the scheduler for its GPUs.

    The exporter's own pod, node and namespace come from the downward API (POD_NAME, POD_UID,
    POD_NAMESPACE, NODE_NAME); the API server and credentials from the pod's service account.
    """

    enabled: bool = False
    image: str | None = None  # default: the exporter's own image (IMAGE env, set by the chart)
    priority_class: str = "wan-exporter-probe"
    # A backstop: the exporter deletes each Job once it has read its fate. The TTL controller
    # deletes it after this long if the exporter could not (restarted); a TTL shorter than a few
    # polls could delete a failed Job before the exporter saw why it failed.
    ttl_seconds_after_finished: int = 300
    token_file: str = "/var/run/secrets/wan-exporter/probe/token"  # the Secret both sides mount
    token_secret: str = "wan-exporter-probe"  # its name, for the Job's volume
    config_map: str | None = None  # the ConfigMap holding the exporter's config.yml, mounted by the Job
    report_url: str | None = None  # where the Job's pod posts its result; default: this pod's IP and port
    # With the exporter's TLS on: a Secret whose ca.crt verifies its certificate (for report_url's host).
    report_ca_secret: str | None = None
    poll_interval: Duration = 2.0
    # How long a Job may wait Pending (unschedulable, image pull) before it is given up.
    pending_timeout: Duration = 600.0
    models_volume: dict[str, Any] = field(default_factory=dict)  # the DaemonSet's models volume source
    resources: dict[str, Any] = field(default_factory=dict)  # the Job container's requests/limits, GPUs added
    extra_env: dict[str, str] = field(default_factory=dict)
    api_server: str | None = None  # default: https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT
    api_token_file: str = "/var/run/secrets/kubernetes.io/serviceaccount/token"  # re-read: tokens rotate
    api_ca_file: str = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"


@dataclass(frozen=True)
class KubernetesSettings:
    pod_resources: PodResources = field(default_factory=PodResources)
    jobs: ProbeJobs = field(default_factory=ProbeJobs)


@dataclass(frozen=True)
class Config:
    models: tuple[ModelConfig, ...] = ()
    profiles: dict[str, Profile] = field(default_factory=dict)
    schedules: Schedules = field(default_factory=Schedules)
    benchmark: BenchmarkSettings = field(default_factory=BenchmarkSettings)
    thresholds: Thresholds = field(default_factory=Thresholds)
    hashing: Hashing = field(default_factory=Hashing)
    exporter: ExporterSettings = field(default_factory=ExporterSettings)
    kubernetes: KubernetesSettings = field(default_factory=KubernetesSettings)

    def model(self, name: str) -> ModelConfig:
        for m in self.models:
            if m.name == name:
                return m
        raise KeyError(name)


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
    kj = cfg.kubernetes.jobs
    if kj.ttl_seconds_after_finished < max(JOB_TTL_FLOOR, 3 * kj.poll_interval):
        errors.append(
            f"kubernetes.jobs.ttl_seconds_after_finished: expected at least {JOB_TTL_FLOOR} s and 3 poll intervals "
            f"(got {kj.ttl_seconds_after_finished}); the exporter deletes each Job once it has read its fate, and "
            "a shorter TTL can delete a failed Job before it is read")
    if not kj.poll_interval > 0:
        errors.append("kubernetes.jobs.poll_interval: expected a duration above 0")
    if kj.report_url is not None and not re.match(r"^https?://[^\s/?#]+[^\s]*$", kj.report_url):
        errors.append(f"kubernetes.jobs.report_url: expected an http:// or https:// URL, got {kj.report_url!r}")
    for f in fields(Schedules):
        sch = getattr(cfg.schedules, f.name)
        if sch.deadline is not None and not sch.deadline > 0:
            errors.append(f"schedules.{f.name}.deadline: expected a duration above 0")
    if not cfg.exporter.io_timeout > 0:
        errors.append("exporter.io_timeout: expected a duration above 0")
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
            errors.append(f"{p}.kind: unknown model kind '{m.kind}'{did_you_mean(m.kind, catalog.CATALOG)}")
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
                errors.append(f"{p}.profiles[{j}]: unknown profile '{prof_name}'{did_you_mean(prof_name, cfg.profiles)}")
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
    by_name = {m.name: m for m in cfg.models}
    for i, m in enumerate(cfg.models):
        if m.compare_to is None:
            continue
        ref = by_name.get(m.compare_to)
        p = f"models[{i}].compare_to"
        if ref is None:
            errors.append(f"{p}: no model named '{m.compare_to}'{did_you_mean(m.compare_to, by_name)}")
        elif ref is m:
            errors.append(f"{p}: a model cannot be compared with itself")
        elif ref.kind != m.kind:
            errors.append(f"{p}: '{ref.name}' is a {ref.kind}, this model a {m.kind}; only forms of one model compare")
        elif not set(m.profiles) & set(ref.profiles):
            errors.append(f"{p}: '{ref.name}' runs none of this model's profiles")


# --------------------------------------------------------------------------- entry points


def parse_config(text: str, source: str = "<config>", check_paths: bool = False) -> Config:
    """Parse and validate YAML text. Raises :class:`ConfigError` listing every problem."""
    raw = load_yaml_mapping(text, source)
    loader = Loader()
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
