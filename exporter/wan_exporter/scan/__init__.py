"""One typed scan of a model's files, whatever form the checkpoint takes on disk.

:func:`scan` decides the form (or takes the one the config names), lets that form's reader
say what it promises, and returns a :class:`~.model.Scan` that the layout, header and hash
checks and the checkpoint facts all read. Only ``stat``, listings and small JSON files are
touched, so a scan is cheap enough for the layout check's 30-second schedule.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..findings import oserror_detail, oserror_kind
from ..state import frozen_map
from . import diffusers_dir, official, single
from .model import DENOISERS, FILE_FORMATS, FORMATS, FORMS, Reference, Scan, ShardIndex, WeightFile
from .walk import MAX_ENTRIES, MAX_JSON_BYTES, TooManyEntries, Walk, file_format

_SINGLE_FILE = (".safetensors", ".gguf", ".pth", ".pt", ".ckpt", ".bin")


def _paths(target: "Path | str | Sequence[Path | str]") -> list[Path]:
    if isinstance(target, (str, os.PathLike)):
        return [Path(os.path.expanduser(str(target)))]
    return [Path(os.path.expanduser(str(t))) for t in target]


def scan(target: "Path | str | Sequence[Path | str]", fmt: str = "auto", max_entries: int = MAX_ENTRIES) -> Scan:
    """Everything the files of ``target`` (a directory, a file, or a list of files) promise; never raises."""
    paths = _paths(target)
    if len(paths) > 1 or (paths and _is_file(paths[0])) or fmt in ("single_file", "gguf"):
        root = single.root_of(paths)
        w = Walk(root, max_entries)
        return _finish(w, _files(w, paths, fmt), files=tuple(str(p) for p in paths))
    w = Walk(paths[0] if paths else Path("."), max_entries)
    return _finish(w, _directory(w, fmt))


def _is_file(p: Path) -> bool:
    try:
        return stat.S_ISREG(os.stat(p).st_mode)
    except OSError:
        return p.suffix.lower() in _SINGLE_FILE  # a missing file named like a checkpoint is a file form


@dataclass
class _Found:
    """What a reader found, before it becomes the frozen :class:`Scan`."""

    found: bool = True  # the path exists
    form: str | None = None
    model_index: bool | None = None
    pipeline: str | None = None
    components: dict[str, str] = field(default_factory=dict)
    model_type: str | None = None
    experts: tuple[str, ...] = ()
    complete: bool = True




def _files(w: Walk, paths: list[Path], fmt: str) -> _Found:
    for p in paths:
        try:
            if stat.S_ISDIR(os.stat(p).st_mode):
                w.findings.add("not_a_model", f"format {fmt} names files; {p} is a directory")
                return _Found()
        except OSError:
            pass
    if len(paths) == 1 and not _exists(paths[0]):
        w.findings.add("missing_model", f"{paths[0]} not found")
        return _Found(found=False)
    components, experts, model_type = single.read(w, paths)
    formats = {wf.format for wf in w.weights}
    form = fmt if fmt in ("single_file", "gguf") else ("gguf" if formats == {"gguf"} else "single_file")
    if not components:
        form = None
    return _Found(form=form, components=components, model_type=model_type, experts=experts)


def _exists(p: Path) -> bool:
    try:
        os.stat(p)
        return True
    except OSError:
        return False


def _directory(w: Walk, fmt: str) -> _Found:
    try:
        st = os.stat(w.root)
    except OSError as e:
        kind = oserror_kind(e)
        w.findings.add("missing_model" if kind == "missing_file" else kind,
                       f"{w.root} not found" if kind == "missing_file" else oserror_detail(e))
        return _Found(found=False)
    if not stat.S_ISDIR(st.st_mode):
        w.findings.add("not_a_model", "not a directory")
        return _Found()
    try:
        return _detect(w, fmt)
    except TooManyEntries as e:
        where = f"{e.args[0]}/" if e.args and e.args[0] else ""
        if not where and not w.expected:  # stopped while looking for a form: none was recognised
            w.findings.add("not_a_model", f"no model_index.json and no official Wan layout among more than "
                           f"{w.limit} entries")
        w.findings.add("too_many_files", f"{w.limit} directory entries examined; the walk stopped there", where)
        return _Found(model_index=None if w.expected else False, complete=False)


def _detect(w: Walk, fmt: str) -> _Found:
    has_index = w.stat("model_index.json", report=False) is not None
    if fmt == "diffusers" or (fmt == "auto" and has_index):
        if not has_index:
            return _no_index(w, "format diffusers")
        pipeline, components = diffusers_dir.read(w)
        experts = tuple(c for c in ("transformer", "transformer_2") if c in components)
        return _Found(form="diffusers", model_index=True, pipeline=pipeline, components=components,
                      experts=experts)
    if fmt == "auto":
        try:  # a model_index.json that cannot be stat'ed (a loop, no permission) is not "no index"
            os.stat(w.root / "model_index.json")
        except OSError as e:
            if oserror_kind(e) != "missing_file":
                w.findings.add(oserror_kind(e), oserror_detail(e), "model_index.json")
                return _Found(form="diffusers", model_index=True)
    names = w.listdir("")
    if names is None:
        return _Found()
    if fmt == "official" or official.looks_official(w, names):
        components, model_type, experts = official.read(w, names)
        return _Found(form="official", pipeline="WanModel", components=components, model_type=model_type,
                      experts=experts)
    return _no_index(w, "", names)


def _no_index(w: Walk, why: str, names: list[str] | None = None) -> _Found:
    """Neither form: say what the directory is instead."""
    if names is None:
        names = w.listdir("")
        if names is None:
            return _Found(model_index=False)
    singles = sorted(n for n in names if n.endswith(_SINGLE_FILE))
    if singles:
        detail = (f"no model_index.json and no official Wan layout; found {singles[0]}"
                  + (f" and {len(singles) - 1} more weight files" if len(singles) > 1 else "")
                  + ": a single-file checkpoint? Name the file(s) in the model's path")
    elif not names:
        detail = "empty directory: no model_index.json and no official Wan layout"
    else:
        detail = f"no model_index.json and no official Wan layout among {len(names)} entries"
    w.findings.add("not_a_model", f"{why}: {detail}" if why else detail)
    return _Found(model_index=False)


def _finish(w: Walk, f: _Found, files: tuple[str, ...] = ()) -> Scan:
    size = sum(x.size for x in w.weights if x.size is not None)
    return Scan(root=w.root, form=f.form, found=f.found, model_index=f.model_index, pipeline=f.pipeline,
                components=frozen_map(f.components), expected=tuple(w.expected), present=tuple(w.present),
                weights=tuple(w.weights), indexes=tuple(w.indexes), configs=tuple(w.configs),
                issues=tuple(w.findings.items), complete=f.complete, size_bytes=size, model_type=f.model_type,
                experts=f.experts, files=files)


__all__ = ["DENOISERS", "FILE_FORMATS", "FORMATS", "FORMS", "MAX_ENTRIES", "MAX_JSON_BYTES", "Reference", "Scan",
           "ShardIndex", "WeightFile", "file_format", "scan"]
