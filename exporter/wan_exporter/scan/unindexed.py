"""A diffusers directory whose ``model_index.json`` cannot be read: its components guessed from the
usual folders (those holding a ``config.json``), and each component's weight files found from its
shard index or its file names. The checkpoint facts read a model through these when the scan found
no readable index, so that parameters and dtypes can still be reported; every problem goes to the
caller's bounded list.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Protocol

from .. import fileio
from .diffusers_dir import INDEX_PREFERENCE
from .walk import safe_name

SHARD = re.compile(r"-(\d+)-of-(\d+)\.safetensors$")
KNOWN_COMPONENTS = ("transformer", "transformer_2", "vae", "text_encoder", "image_encoder")


class _Problems(Protocol):
    def add(self, msg: str) -> None: ...


def declared_components(index: Mapping[str, Any] | None, root: Path, problems: _Problems) -> dict[str, str]:
    """name -> class of each component model_index.json declares (``[null, null]`` = absent).

    Without a readable model_index.json, fall back to the well-known subdirectories that
    hold a config.json, so parameters and dtypes can still be reported.
    """
    if index is None:
        found = {n: "?" for n in KNOWN_COMPONENTS if (root / n / "config.json").is_file()}
        if found:
            problems.add("model_index.json unreadable: components guessed from subdirectories")
        return found
    out: dict[str, str] = {}
    for name, value in index.items():
        if name.startswith("_") or not isinstance(value, list):
            continue
        if len(value) != 2:
            problems.add(f"model_index.json: component {name!r} is not a [library, class] pair")
            continue
        if value[1] is None:
            continue
        if not safe_name(name):
            problems.add(f"model_index.json: component name {name!r} is not a plain directory name")
            continue
        out[name] = str(value[1])
    return out


def weight_files(d: Path, name: str, problems: _Problems) -> tuple[list[Path] | None, set[str] | None, bool]:
    """(files, tensor names the index promises, complete) for a component directory."""
    index = pick_index(d)
    if index is not None:
        doc = read_json(index, problems)
        wm = doc.get("weight_map") if doc else None
        if isinstance(wm, dict) and all(isinstance(v, str) and safe_name(v) for v in wm.values()):
            files, complete = [], True
            for shard in sorted(set(wm.values())):
                if (d / shard).is_file():
                    files.append(d / shard)
                else:
                    problems.add(f"{name}/{shard}: shard listed in {index.name} is missing")
                    complete = False
            return files, set(wm), complete
        if doc is not None:
            problems.add(f"{name}/{index.name}: no usable weight_map")
    plain = sorted(p for p in d.glob("*.safetensors") if p.name.count(".") == 1)
    files = plain or sorted(d.glob("*.safetensors"))  # fall back to variants (model.fp16.safetensors)
    if not files:
        others = sorted({p.suffix for p in d.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt", ".gguf")})
        what = f"only {', '.join(others)} weights (not safetensors)" if others else "no weight files"
        problems.add(f"{name}: {what}; parameters not counted")
        return None, None, False
    return files, None, shards_complete(files, name, problems)


def pick_index(d: Path) -> Path | None:
    for n in INDEX_PREFERENCE:
        if (d / n).is_file():
            return d / n
    found = sorted(d.glob("*.safetensors.index.json"))
    return found[0] if found else None


def shards_complete(files: Iterable[Path], name: str, problems: _Problems) -> bool:
    """Without an index, ``-0000k-of-0000N`` names still tell whether a shard is missing."""
    seen: dict[str, set[int]] = {}
    total: dict[str, int] = {}
    for f in files:
        m = SHARD.search(f.name)
        if m:
            stem = f.name[: m.start()]
            seen.setdefault(stem, set()).add(int(m.group(1)))
            total[stem] = int(m.group(2))
    ok = True
    for stem, have in seen.items():
        missing = set(range(1, total[stem] + 1)) - have
        if missing:
            problems.add(f"{name}: {len(missing)} of {total[stem]} shards of {stem} missing and no index file")
            ok = False
    return ok


def read_json(path: Path, problems: _Problems) -> dict[str, Any] | None:
    try:
        doc = fileio.read_json(path)
    except FileNotFoundError:
        problems.add(f"{path}: missing")
        return None
    except (OSError, ValueError) as e:
        problems.add(f"{path}: unreadable: {e}")
        return None
    if not isinstance(doc, dict):
        problems.add(f"{path}: not a JSON object")
        return None
    return doc
