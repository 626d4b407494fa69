"""The bounded, finding-making file system access every form reader shares.

Only ``stat``, directory listings and small JSON files are read. Listings are capped
(``MAX_ENTRIES``) so a path pointed at a folder of millions of files ends in
``too_many_files`` instead of a scrape-long walk.
"""

from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..findings import Findings, oserror_detail, oserror_kind
from .model import ShardIndex, WeightFile
from .references import published

MAX_ENTRIES = 10_000  # directory entries examined per scan; reaching it stops the scan
MAX_JSON_BYTES = 16 << 20  # a model_index.json or shard index larger than this is not one

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "spiece.model", "vocab.json", "special_tokens_map.json")
SHARD = re.compile(r"-(\d+)-of-(\d+)\.safetensors$")


class TooManyEntries(Exception):
    pass


def file_format(name: str) -> str | None:
    n = name.lower()
    if n.endswith(".safetensors"):
        return "safetensors"
    if n.endswith(".gguf"):
        return "gguf"
    if n.endswith((".pth", ".pt", ".ckpt")):
        return "pth"
    return None


def safe_name(s: Any) -> bool:
    return isinstance(s, str) and bool(s) and s not in (".", "..") and "/" not in s and "\\" not in s and "\0" not in s


@dataclass
class Walk:
    root: Path
    limit: int = MAX_ENTRIES
    findings: Findings = field(default_factory=Findings)
    expected: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    weights: list[WeightFile] = field(default_factory=list)
    indexes: list[ShardIndex] = field(default_factory=list)
    configs: list[str] = field(default_factory=list)
    examined: int = 0
    has_metadata: dict[Path, bool] = field(default_factory=dict)  # folder -> holds --local-dir metadata

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

    def is_dir(self, rel: str) -> bool:
        try:
            return stat.S_ISDIR(os.stat(self.root / rel).st_mode)
        except OSError:
            return False

    def expect(self, rel: str, weight_of: str | None = None, fmt: str = "safetensors") -> os.stat_result | None:
        self.expected.append(rel)
        st = self.stat(rel)
        if st is not None:
            self.present.append(rel)
        if weight_of is not None:
            ref = published(self.root, rel, self.has_metadata) if st is not None else None
            self.weights.append(WeightFile(rel, weight_of, st.st_size if st is not None else None, fmt, ref))
        return st

    def expect_config(self, rel: str) -> None:
        if self.expect(rel) is not None:
            self.configs.append(rel)

    def missing_weight(self, rel: str, component: str, detail: str, fmt: str = "safetensors",
                       kind: str = "missing_file") -> None:
        self.expected.append(rel)
        self.weights.append(WeightFile(rel, component, None, fmt))
        self.findings.add(kind, detail, rel)

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
        except RecursionError:
            self.findings.add("header_invalid", "JSON nested too deeply to read", rel)
            return None
        if not isinstance(doc, dict):
            self.findings.add("header_invalid", "not a JSON object", rel)
            return None
        return doc

    def tokenizer(self, folder: str) -> None:
        """A tokenizer folder: at least one of the usual tokenizer files."""
        names = self.listdir(folder)
        if names is None:
            return
        have = [n for n in TOKENIZER_FILES if n in names]
        if not have:
            self.expected.append(f"{folder}/tokenizer_config.json")
            self.findings.add("missing_file", "no tokenizer files (tokenizer.json, tokenizer_config.json, spiece.model)",
                              f"{folder}/")
        for n in have:
            self.expect(f"{folder}/{n}")

    def sharded_weights(self, folder: str, component: str, names: list[str], default: str,
                        index_names: tuple[str, ...]) -> None:
        """Safetensors weights of one folder: shards of an index, or the files there (shard names checked)."""
        pre = f"{folder}/" if folder else ""
        indexes = [n for n in index_names if n in names] or sorted(n for n in names if n.endswith(".safetensors.index.json"))
        if indexes:
            rel = pre + indexes[0]
            self.expected.append(rel)
            doc = self.read_json(rel)
            if doc is None:
                return
            self.present.append(rel)
            wm = doc.get("weight_map")
            if not isinstance(wm, dict) or not wm or not all(isinstance(k, str) and safe_name(v) for k, v in wm.items()):
                self.findings.add("header_invalid", "no usable weight_map", rel)
                return
            self.indexes.append(ShardIndex(rel, component, dict(wm), folder))
            for shard in sorted(set(wm.values())):
                if self.stat(pre + shard, report=False) is None and shard not in names:
                    self.missing_weight(pre + shard, component, f"shard listed in {indexes[0]} is missing")
                    continue
                self.expect(pre + shard, weight_of=component)
            return
        files = sorted(n for n in names if n.endswith(".safetensors") and n.count(".") == 1)
        files = files or sorted(n for n in names if n.endswith(".safetensors"))  # variants: model.fp16.safetensors
        if not files:
            others = sorted(n for n in names if n.endswith((".bin", ".pt", ".pth", ".ckpt", ".gguf")))
            self.expected.append(pre + default)
            self.findings.add("missing_file", f"only {others[0]} (not safetensors)" if others else "no safetensors weights",
                              pre + default)
            return
        for f in files:
            self.expect(pre + f, weight_of=component)
        # Without an index, "-0000k-of-0000N" names still tell whether a shard is missing.
        shards: dict[tuple[str, int, int], set[int]] = {}
        for f in files:
            m = SHARD.search(f)
            if m:
                shards.setdefault((f[: m.start()], int(m.group(2)), len(m.group(2))), set()).add(int(m.group(1)))
        for (stem, total, width), have in sorted(shards.items()):
            if total > self.limit:  # a damaged or hostile name, not a checkpoint: one finding, no set of that size
                first = pre + next(f for f in files if f.startswith(stem + "-") and f.endswith(f"-of-{total:0{width}d}"
                                                                                               ".safetensors"))
                self.findings.add("header_invalid", f"the name promises {total} shards, more than a scan examines "
                                  f"({self.limit})", first)
                continue
            for k in sorted(set(range(1, total + 1)) - have):
                rel = f"{pre}{stem}-{k:0{width}d}-of-{total:0{width}d}.safetensors"
                self.missing_weight(rel, component, f"shard {k} of {total} missing (no index file)")

    def read_json_quiet(self, rel: str) -> dict[str, Any] | None:
        """A small JSON object, or None without a finding (for detection)."""
        try:
            with open(self.root / rel, "rb") as f:
                doc = json.loads(f.read(MAX_JSON_BYTES).decode("utf-8"))
        except (OSError, UnicodeDecodeError, ValueError, RecursionError):
            return None
        return doc if isinstance(doc, dict) else None
