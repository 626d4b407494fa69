"""The typed result of scanning a model's files: what every check and the checkpoint facts read.

One scan per model and cycle replaces the walks each check used to make on its own. A
:class:`Scan` says which form the checkpoint takes (:data:`FORMS`), which files that form
promises (``expected``) and which are there (``present``), every weight file with the
format its header check reads and the published hash a download left for it, and the
findings the walk itself made.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from ..state import HealthIssue
from .safetensors_header import Summary, TensorInfo

# How a Wan checkpoint lies on disk; the ``format`` key of a model's config names one of them.
from ..contract.labels import FORMS  # noqa: E402 - one list for the config, the scan and the metrics
FORMATS: tuple[str, ...] = ("auto",) + FORMS
# What a weight file is, which decides how its header is read.
FILE_FORMATS: tuple[str, ...] = ("safetensors", "gguf", "pth")
# Denoiser components of each form, in pipeline order (high noise first for two experts).
DENOISERS: tuple[str, ...] = ("transformer", "transformer_2", "high_noise_model", "low_noise_model")


@dataclass(frozen=True)
class Reference:
    """A published SHA-256 for a file, and where it was read."""

    sha256: str
    source: str  # "hf_cache_blob" | "local_dir_metadata"
    where: str  # a readable place: the blob path or the metadata file


@dataclass(frozen=True)
class WeightFile:
    rel: str  # path relative to the scan root
    component: str  # transformer, transformer_2, high_noise_model, text_encoder, vae, ...
    size: int | None  # None: absent or unreadable (a layout finding says which)
    format: str = "safetensors"  # one of FILE_FORMATS
    reference: Reference | None = None


@dataclass(frozen=True)
class ShardIndex:
    rel: str
    component: str
    weight_map: Mapping[str, str]  # tensor name -> shard file name (in the index's folder)
    folder: str = ""  # the index's folder relative to the root ("" for the root itself)


@dataclass(frozen=True)
class Scan:
    root: Path  # the directory, or the folder holding the named single files
    form: str | None  # one of FORMS; None when nothing usable was found
    found: bool  # the path exists
    model_index: bool | None  # diffusers form: model_index.json is there; None when it does not apply
    pipeline: str | None  # the diffusers pipeline class, or WanModel for the official layout
    components: Mapping[str, str]  # name -> declared class (or the file format for single files)
    expected: tuple[str, ...]
    present: tuple[str, ...]
    weights: tuple[WeightFile, ...]
    indexes: tuple[ShardIndex, ...]
    configs: tuple[str, ...]  # JSON config files present, relative to root
    issues: tuple[HealthIssue, ...]
    complete: bool = True  # False when the entry cap stopped the scan
    size_bytes: int = 0
    model_type: str | None = None  # t2v | i2v | ti2v, from config.json or the tensor table
    experts: tuple[str, ...] = ()  # denoiser components, high noise first
    files: tuple[str, ...] = field(default=())  # the single files named by the config, as given

    @property
    def usable(self) -> bool:
        """Whether there are weights the header and hash checks can look at."""
        return self.found and self.form is not None


__all__ = ["DENOISERS", "FILE_FORMATS", "FORMATS", "FORMS", "Reference", "Scan", "ShardIndex", "TableError", "TensorTable", "WeightFile"]


# ---------------------------------------------------------------- tensor tables
# What every weight-file reader (scan.tables, gguf_table, pth_archive) returns.


class TableError(ValueError):
    """The file does not parse as its format; ``truncated`` says whether it ends too early."""

    def __init__(self, msg: str, truncated: bool = False) -> None:
        super().__init__(msg)
        self.truncated = truncated


@dataclass(frozen=True)
class TensorTable:
    path: str
    format: str  # safetensors | gguf | pth
    tensors: Mapping[str, TensorInfo]  # dtype codes: safetensors codes, GGML type names for GGUF
    metadata: Mapping[str, str]
    data_start: int  # where tensor data begins
    size_expected: int  # the file size the structure implies (exact for safetensors)
    slack: int = 0  # bytes the file may exceed size_expected by (GGUF alignment padding)
    entries: int = 0  # archive members (.pth)
    notes: tuple[str, ...] = field(default=())
    summary: Summary | None = None  # a table too large to keep tensor by tensor (tensors is then empty)

    @property
    def data_bytes(self) -> int:
        return self.size_expected - self.data_start

    @property
    def tensor_count(self) -> int:
        return self.summary.count if self.summary is not None else len(self.tensors)

    def parameter_count(self) -> int:
        if self.summary is not None:
            return self.summary.parameters
        return sum(t.numel for t in self.tensors.values())

    def dtype_bytes(self) -> dict[str, int]:
        """Bytes of tensor data per dtype code."""
        if self.summary is not None:
            return dict(self.summary.dtype_bytes)
        out: dict[str, int] = {}
        for t in self.tensors.values():
            out[t.dtype] = out.get(t.dtype, 0) + t.offsets[1] - t.offsets[0]
        return out

    def size_problem(self, size: int) -> tuple[str, str] | None:
        """(kind, detail) when a file of ``size`` bytes does not fit the table."""
        if size < self.size_expected:
            return "truncated", f"tensor data ends at byte {self.size_expected}, the file has {size} bytes"
        if size > self.size_expected + self.slack:
            return "header_invalid", f"{size - self.size_expected} unexpected bytes after the tensor data"
        return None
