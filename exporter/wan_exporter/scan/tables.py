"""Tensor tables of every weight file format, read without loading tensor data.

- safetensors: the JSON header (:mod:`wan_exporter.scan.safetensors_header`);
- GGUF: header, metadata, tensor infos and offsets (:mod:`.gguf_table`);
- ``.pth`` (``torch.save``): the zip directory (:mod:`.pth_archive`); the tensors themselves
  are in a pickle, which is never loaded, so a ``.pth`` table lists no tensors.

Each table knows the file size its own structure implies, so truncation is found by ``stat``.
"""

from __future__ import annotations

from ..fileio import open_regular
from pathlib import Path

from .model import TableError, TensorTable
from .safetensors_header import Header


def from_safetensors(h: Header) -> TensorTable:
    return TensorTable(h.path, "safetensors", h.tensors, h.metadata, 8 + h.header_size, h.data_size_expected,
                       summary=h.summary)


def read_table(path: Path, fmt: str) -> TensorTable:
    """Read the table of ``path`` as ``fmt``; raises :class:`TableError` (OSError for I/O)."""
    if fmt == "gguf":
        from .gguf_table import read_gguf

        return read_gguf(path)
    if fmt == "pth":
        from .pth_archive import read_pth

        return read_pth(path)
    from .header_io import read_header
    from .safetensors_header import HeaderError, MAX_HEADER_BYTES

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
        with open_regular(path) as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(8)
    except OSError:
        return False
    if len(head) < 8:
        return True
    (n,) = struct.unpack("<Q", head)
    return n <= max_header and 8 + n > size
