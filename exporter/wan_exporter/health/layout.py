"""Layout check: the files a diffusers-format Wan pipeline promises are all there.

``model_index.json`` names the components; each model component folder holds a
``config.json`` and safetensors weights (one file, or shards listed in a
``*.safetensors.index.json`` weight map), while tokenizer, scheduler and image-processor
folders hold only their own JSON files. Only ``stat`` and directory listings are used
(plus the small JSON indexes), so the check is cheap enough to run every few seconds.

:func:`scan` is shared with the header and hash checks: it tells them which weight
files exist. Listings are capped (``MAX_ENTRIES``) so a path pointed at a folder of
millions of files ends in ``too_many_files`` instead of a scrape-long walk.
"""

from __future__ import annotations

import json
import os
import re
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..state import CheckResult, HealthIssue, frozen_map
from .issues import Findings, make_result, oserror_detail, oserror_kind

MAX_ENTRIES = 10_000  # directory entries examined per scan; reaching it stops the scan
MAX_JSON_BYTES = 16 << 20  # a model_index.json or shard index larger than this is not one

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "spiece.model", "vocab.json", "special_tokens_map.json")
_TOKENIZER = re.compile(r"Tokeni[sz]er|TokenizersBackend")
_PROCESSOR = re.compile(r"Processor|FeatureExtractor")
_SHARD = re.compile(r"-(\d+)-of-(\d+)\.safetensors$")
_INDEX_PREFERENCE = ("diffusion_pytorch_model.safetensors.index.json", "model.safetensors.index.json")
_SINGLE_FILE = (".safetensors", ".gguf", ".pth", ".pt", ".ckpt", ".bin")


class TooManyEntries(Exception):
    pass


@dataclass(frozen=True)
class WeightFile:
    rel: str  # path relative to the model directory
    component: str
    size: int | None  # None: absent or unreadable (the layout finding says which)


@dataclass(frozen=True)
class ShardIndex:
    rel: str
    component: str
    weight_map: Mapping[str, str]  # tensor name -> shard file name (in the component folder)


@dataclass(frozen=True)
class Layout:
    root: Path
    found: bool  # the directory exists
    model_index: bool | None  # None: unknown (the scan stopped first)
    pipeline: str | None
    components: Mapping[str, str]  # name -> declared class
    expected: tuple[str, ...]
    present: tuple[str, ...]
    weights: tuple[WeightFile, ...]
    indexes: tuple[ShardIndex, ...]
    configs: tuple[str, ...]  # config.json files of model components, present
    issues: tuple[HealthIssue, ...]
    complete: bool = True  # False when the entry cap stopped the scan
    size_bytes: int = 0

    @property
    def usable(self) -> bool:
        """A pipeline directory whose weights the header and hash checks can look at."""
        return self.found and bool(self.model_index)


def role(name: str, cls: str) -> str:
    """What a component folder holds: "model" (config + weights), "tokenizer", "scheduler" or "processor"."""
    if "Scheduler" in cls or name.startswith("scheduler"):
        return "scheduler"
    if _TOKENIZER.search(cls) or name.startswith("tokenizer"):
        return "tokenizer"
    if _PROCESSOR.search(cls) or name in ("image_processor", "feature_extractor"):
        return "processor"
    return "model"


@dataclass
class _Scan:
    root: Path
    limit: int
    findings: Findings = field(default_factory=Findings)
    expected: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    weights: list[WeightFile] = field(default_factory=list)
    indexes: list[ShardIndex] = field(default_factory=list)
    configs: list[str] = field(default_factory=list)
    examined: int = 0
    found: bool = False
    model_index: bool | None = None
    pipeline: str | None = None
    components: dict[str, str] = field(default_factory=dict)

    def listdir(self, rel: str) -> list[str] | None:
        """Names in a folder, counting every entry against the scan's cap."""
        names: list[str] = []
        try:
            with os.scandir(self.root / rel if rel else self.root) as it:
                for entry in it:
                    self.examined += 1
                    if self.examined >= self.limit:
                        raise TooManyEntries(rel)
                    names.append(entry.name)
        except OSError as e:
            self.findings.add(oserror_kind(e), f"cannot list: {oserror_detail(e)}", rel + "/" if rel else "")
            return None
        return names

    def stat(self, rel: str, report: bool = True) -> os.stat_result | None:
        """stat (following symlinks, as the HF cache uses them); a finding when it is not a readable file."""
        try:
            st = os.stat(self.root / rel)
        except OSError as e:
            if report:
                self.findings.add(oserror_kind(e), "missing" if oserror_kind(e) == "missing_file" else oserror_detail(e), rel)
            return None
        if not stat.S_ISREG(st.st_mode):
            if report:
                self.findings.add("missing_file", "not a regular file", rel)
            return None
        return st

    def expect(self, rel: str, weight_of: str | None = None) -> os.stat_result | None:
        self.expected.append(rel)
        st = self.stat(rel)
        if st is not None:
            self.present.append(rel)
        if weight_of is not None:
            self.weights.append(WeightFile(rel, weight_of, st.st_size if st is not None else None))
        return st

    def read_json(self, rel: str) -> dict[str, Any] | None:
        try:
            with open(self.root / rel, "rb") as f:
                raw = f.read(MAX_JSON_BYTES + 1)
        except OSError as e:
            self.findings.add(oserror_kind(e), oserror_detail(e), rel)
            return None
        if len(raw) > MAX_JSON_BYTES:
            self.findings.add("header_invalid", f"larger than {MAX_JSON_BYTES} bytes", rel)
            return None
        try:
            doc = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            self.findings.add("header_invalid", f"not valid JSON: {e}", rel)
            return None
        if not isinstance(doc, dict):
            self.findings.add("header_invalid", "not a JSON object", rel)
            return None
        return doc


def _safe_name(s: Any) -> bool:
    return isinstance(s, str) and bool(s) and s not in (".", "..") and "/" not in s and "\\" not in s and "\0" not in s


def scan(root: Path, max_entries: int = MAX_ENTRIES) -> Layout:
    """Everything the layout says about ``root``; never raises for a broken or vanished directory."""
    s = _Scan(Path(root), max_entries)
    complete = True
    try:
        _scan(s)
    except TooManyEntries as e:
        complete = False
        where = f"{e.args[0]}/" if e.args and e.args[0] else ""
        s.findings.add("too_many_files", f"{max_entries} directory entries examined; the walk stopped there", where)
    size = sum(w.size for w in s.weights if w.size is not None)
    return Layout(root=s.root, found=s.found, model_index=s.model_index, pipeline=s.pipeline,
                  components=frozen_map(s.components), expected=tuple(s.expected), present=tuple(s.present),
                  weights=tuple(s.weights), indexes=tuple(s.indexes), configs=tuple(s.configs),
                  issues=tuple(s.findings.items), complete=complete, size_bytes=size)


def _scan(s: _Scan) -> None:
    try:
        st = os.stat(s.root)
    except OSError as e:
        kind = oserror_kind(e)
        if kind == "missing_file":
            s.findings.add("missing_model", f"{s.root} not found")
        else:
            s.findings.add(kind, oserror_detail(e))
        return
    if not stat.S_ISDIR(st.st_mode):
        s.findings.add("not_a_model", "not a directory")
        return
    s.found = True
    s.expected.append("model_index.json")
    if s.stat("model_index.json", report=False) is None:
        _no_index(s)
        return
    s.model_index = True
    s.present.append("model_index.json")
    index = s.read_json("model_index.json")
    if index is None:
        return
    s.pipeline = pipeline = index.get("_class_name") if isinstance(index.get("_class_name"), str) else None
    if pipeline is None or "Wan" not in pipeline:
        s.findings.add("not_a_model", f"model_index.json declares {pipeline or 'no pipeline class'}, not a Wan pipeline",
                       "model_index.json")
    components = s.components
    for name, spec in index.items():
        if name.startswith("_") or not isinstance(spec, list):
            continue  # pipeline settings such as boundary_ratio
        if len(spec) != 2:
            s.findings.add("header_invalid", f"component {name!r} is not a [library, class] pair", "model_index.json")
            continue
        if spec[0] is None or spec[1] is None:
            continue  # declared absent, e.g. transformer_2 of a single-expert model
        if not _safe_name(name):
            s.findings.add("header_invalid", f"component name {name!r} is not a plain folder name", "model_index.json")
            continue
        components[name] = str(spec[1])
    for name, cls in components.items():
        _component(s, name, cls, str(index[name][0]))


def _no_index(s: _Scan) -> None:
    """No model_index.json: say what the directory is instead."""
    try:
        os.stat(s.root / "model_index.json")
    except OSError as e:
        if oserror_kind(e) != "missing_file":  # a symlink loop or unreadable index is not "no index"
            s.model_index = True
            s.findings.add(oserror_kind(e), oserror_detail(e), "model_index.json")
            return
    s.model_index = False
    try:
        names = s.listdir("")
    except TooManyEntries:
        s.findings.add("not_a_model", f"no model_index.json among more than {s.limit} entries")
        raise
    if names is None:
        return
    singles = sorted(n for n in names if n.endswith(_SINGLE_FILE))
    if singles:
        detail = (f"no model_index.json; found {singles[0]}" + (f" and {len(singles) - 1} more weight files" if len(singles) > 1 else "")
                  + ": a single-file checkpoint? Only diffusers-format directories are checked")
    elif not names:
        detail = "empty directory: no model_index.json"
    else:
        detail = f"no model_index.json among {len(names)} entries: not a diffusers pipeline directory"
    s.findings.add("not_a_model", detail)


def _component(s: _Scan, name: str, cls: str, library: str) -> None:
    try:
        st = os.stat(s.root / name)
    except OSError as e:
        kind = oserror_kind(e)
        detail = f"{cls} folder declared in model_index.json is missing" if kind == "missing_file" else oserror_detail(e)
        s.expected.append(name + "/")
        s.findings.add(kind, detail, name + "/")
        return
    if not stat.S_ISDIR(st.st_mode):
        s.expected.append(name + "/")
        s.findings.add("missing_file", f"{cls} component is not a folder", name + "/")
        return
    r = role(name, cls)
    if r == "scheduler":
        s.expect(f"{name}/scheduler_config.json")
        return
    if r == "processor":
        s.expect(f"{name}/preprocessor_config.json")
        return
    names = s.listdir(name)
    if names is None:
        return
    if r == "tokenizer":
        have = [n for n in TOKENIZER_FILES if n in names]
        if not have:
            s.expected.append(f"{name}/tokenizer_config.json")
            s.findings.add("missing_file", "no tokenizer files (tokenizer.json, tokenizer_config.json, spiece.model)",
                           f"{name}/")
        for n in have:
            s.expect(f"{name}/{n}")
        return
    if s.expect(f"{name}/config.json") is not None:
        s.configs.append(f"{name}/config.json")
    _weights(s, name, names, library)


def _weights(s: _Scan, name: str, names: list[str], library: str) -> None:
    indexes = [n for n in _INDEX_PREFERENCE if n in names] or sorted(n for n in names if n.endswith(".safetensors.index.json"))
    if indexes:
        rel = f"{name}/{indexes[0]}"
        s.expected.append(rel)
        doc = s.read_json(rel)
        if doc is None:
            return
        s.present.append(rel)
        wm = doc.get("weight_map")
        if not isinstance(wm, dict) or not wm or not all(isinstance(k, str) and _safe_name(v) for k, v in wm.items()):
            s.findings.add("header_invalid", "no usable weight_map", rel)
            return
        s.indexes.append(ShardIndex(rel, name, frozen_map(wm)))
        for shard in sorted(set(wm.values())):
            if s.stat(f"{name}/{shard}", report=False) is None and shard not in names:
                s.expected.append(f"{name}/{shard}")
                s.weights.append(WeightFile(f"{name}/{shard}", name, None))
                s.findings.add("missing_file", f"shard listed in {indexes[0]} is missing", f"{name}/{shard}")
                continue
            s.expect(f"{name}/{shard}", weight_of=name)
        return
    files = sorted(n for n in names if n.endswith(".safetensors") and n.count(".") == 1)
    files = files or sorted(n for n in names if n.endswith(".safetensors"))  # variants: model.fp16.safetensors
    if not files:
        others = sorted(n for n in names if n.endswith((".bin", ".pt", ".pth", ".ckpt", ".gguf")))
        default = "diffusion_pytorch_model.safetensors" if library == "diffusers" else "model.safetensors"
        s.expected.append(f"{name}/{default}")
        s.findings.add("missing_file", f"only {others[0]} (not safetensors)" if others else "no safetensors weights",
                       f"{name}/{default}")
        return
    for f in files:
        s.expect(f"{name}/{f}", weight_of=name)
    # Without an index, "-0000k-of-0000N" names still tell whether a shard is missing.
    shards: dict[tuple[str, int, int], set[int]] = {}
    for f in files:
        m = _SHARD.search(f)
        if m:
            shards.setdefault((f[: m.start()], int(m.group(2)), len(m.group(2))), set()).add(int(m.group(1)))
    for (stem, total, width), have in sorted(shards.items()):
        for k in sorted(set(range(1, total + 1)) - have):
            rel = f"{name}/{stem}-{k:0{width}d}-of-{total:0{width}d}.safetensors"
            s.expected.append(rel)
            s.weights.append(WeightFile(rel, name, None))
            s.findings.add("missing_file", f"shard {k} of {total} missing (no index file)", rel)


def check(model: str, model_dir: Path | None, max_entries: int = MAX_ENTRIES) -> CheckResult:
    """Run the layout check. facts: files_expected, files_present, size_bytes (weights, by stat)."""
    t0 = time.perf_counter()
    findings = Findings()
    if model_dir is None:
        return make_result(model, "layout", t0, findings, {}, None)
    lay = scan(model_dir, max_entries)
    findings.extend(lay.issues)
    facts: dict[str, Any] = {}
    if lay.found:  # a directory that is not there promises nothing we could count
        facts.update(files_expected=len(lay.expected), files_present=len(lay.present), size_bytes=lay.size_bytes)
    if lay.model_index is not None:
        facts["model_index"] = lay.model_index
    if lay.pipeline:
        facts["pipeline"] = lay.pipeline
    if not lay.complete:
        facts["complete"] = False
    return make_result(model, "layout", t0, findings, facts, model_dir)
