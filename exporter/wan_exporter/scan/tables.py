"""Tensor tables of every weight file format, read without loading tensor data.

- safetensors: the JSON header (:mod:`wan_exporter.scan.safetensors_header`);
- GGUF: header, metadata, tensor infos and offsets (:mod:`.gguf_table`);
- ``.pth`` (``torch.save``): the zip directory (:mod:`.pth_archive`); the tensors themselves
  are in a pickle, which is never loaded, so a ``.pth`` table lists no tensors.

Each table knows the file size its own structure implies, so truncation is found by ``stat``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from .safetensors_header import Header, TensorInfo


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

    @property
    def data_bytes(self) -> int:
        return self.size_expected - self.data_start

    def parameter_count(self) -> int:
        return sum(t.numel for t in self.tensors.values())

    def size_problem(self, size: int) -> tuple[str, str] | None:
        """(kind, detail) when a file of ``size`` bytes does not fit the table."""
        if size < self.size_expected:
            return "truncated", f"tensor data ends at byte {self.size_expected}, the file has {size} bytes"
        if size > self.size_expected + self.slack:
            return "header_invalid", f"{size - self.size_expected} unexpected bytes after the tensor data"
        return None


def from_safetensors(h: Header) -> TensorTable:
    return TensorTable(h.path, "safetensors", h.tensors, h.metadata, 8 + h.header_size, h.data_size_expected)


def read_table(path: Path, fmt: str) -> TensorTable:
    """Read the table of ``path`` as ``fmt``; raises :class:`TableError` (OSError for I/O)."""
    if fmt == "gguf":
        from .gguf_table import read_gguf

        return read_gguf(path)
    if fmt == "pth":
        from .pth_archive import read_pth

        return read_pth(path)
    from .safetensors_header import HeaderError, MAX_HEADER_BYTES, read_header

    try:
        return from_safetensors(read_header(path))
    except HeaderError as e:
        if isinstance(e.__cause__, OSError):
            raise e.__cause__ from None
        raise TableError(_strip(str(e), path), truncated=_short_safetensors(path, MAX_HEADER_BYTES)) from None


def _strip(msg: str, path: Path) -> str:
    prefix = f"{path}: "
    return msg[len(prefix):] if msg.startswith(prefix) else msg


def _short_safetensors(path: Path, max_header: int) -> bool:
    """Whether the file ends before its length field or its header does (truncation, not garbage)."""
    import os
    import struct

    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(8)
    except OSError:
        return False
    if len(head) < 8:
        return True
    (n,) = struct.unpack("<Q", head)
    return n <= max_header and 8 + n > size
