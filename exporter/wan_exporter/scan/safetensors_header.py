"""Reading safetensors headers without torch, safetensors or numpy.

A safetensors file is an 8-byte little-endian header length N, N bytes of JSON
(``{name: {"dtype", "shape", "data_offsets": [start, end]}, "__metadata__": {...}}``),
then the tensor bytes, offsets relative to the end of the header. Reading only the header
tells the exporter a checkpoint's parameter count and dtypes in microseconds, and whether the
file is truncated, without loading gigabytes of weights or importing the heavy stack.
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, NamedTuple

# The safetensors format caps the header at 100 MB; anything larger is garbage, not a header.
MAX_HEADER_BYTES = 100 * 1000 * 1000

# safetensors dtype code -> (torch-style name, bits per element)
DTYPES: Mapping[str, tuple[str, int]] = {
    "BOOL": ("bool", 8),
    "U8": ("uint8", 8),
    "I8": ("int8", 8),
    "F8_E5M2": ("float8_e5m2", 8),
    "F8_E4M3": ("float8_e4m3fn", 8),
    "F8_E8M0": ("float8_e8m0fnu", 8),
    "I16": ("int16", 16),
    "U16": ("uint16", 16),
    "F16": ("float16", 16),
    "BF16": ("bfloat16", 16),
    "I32": ("int32", 32),
    "U32": ("uint32", 32),
    "F32": ("float32", 32),
    "I64": ("int64", 64),
    "U64": ("uint64", 64),
    "F64": ("float64", 64),
    "C64": ("complex64", 64),
    "F4": ("float4_e2m1fn_x2", 4),
    "F6_E2M3": ("float6_e2m3fn", 6),
    "F6_E3M2": ("float6_e3m2fn", 6),
}


class HeaderError(ValueError):
    """The file is not a readable safetensors file; the message says why and where."""


class TensorInfo(NamedTuple):
    dtype: str  # safetensors code, e.g. "BF16"
    shape: tuple[int, ...]
    offsets: tuple[int, int]  # (start, end) relative to the end of the header

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def dtype_name(code: str) -> str:
    """Torch-style name for a safetensors dtype code ("BF16" -> "bfloat16"); unknown codes pass through lower-cased."""
    known = DTYPES.get(code)
    return known[0] if known else code.lower()


@dataclass(frozen=True)
class Header:
    path: str
    header_size: int  # N, the JSON length
    tensors: Mapping[str, TensorInfo]
    metadata: Mapping[str, str]

    @property
    def data_size_expected(self) -> int:
        """The file size the header implies: 8 + N + the largest end offset."""
        end = max((t.offsets[1] for t in self.tensors.values()), default=0)
        return 8 + self.header_size + end

    def parameter_count(self) -> int:
        return sum(t.numel for t in self.tensors.values())

    def dtypes(self) -> tuple[str, ...]:
        """Torch-style dtype names present, sorted."""
        return tuple(sorted({dtype_name(t.dtype) for t in self.tensors.values()}))

    def validate(self, file_size: int) -> list[str]:
        """Problems of this header against a file of ``file_size`` bytes (truncation first)."""
        problems: list[str] = []
        expected = self.data_size_expected
        if file_size < expected:
            problems.append(
                f"{self.path}: truncated: tensor data ends at byte {expected} but the file has {file_size} bytes"
            )
        elif file_size > expected:
            problems.append(f"{self.path}: {file_size - expected} unexpected trailing bytes after the tensor data")
        return problems


def read_header(path: str | os.PathLike[str]) -> Header:
    """Parse and check the header of ``path``; raises :class:`HeaderError` on anything malformed.

    Checks the file can hold the header, the JSON, every entry's dtype/shape/offsets and that
    each tensor's byte range matches its shape. Whether the data is all there (truncation) is
    :meth:`Header.validate`, so callers can still count parameters of a truncated file.
    """
    p = Path(path)
    try:
        with p.open("rb") as f:
            file_size = os.fstat(f.fileno()).st_size
            head = f.read(8)
            if len(head) < 8:
                raise HeaderError(f"{p}: too short for a safetensors file ({file_size} bytes, need at least 8)")
            (n,) = struct.unpack("<Q", head)
            if n > MAX_HEADER_BYTES:
                raise HeaderError(f"{p}: header length {n} exceeds the 100 MB safetensors limit (not safetensors?)")
            if 8 + n > file_size:
                raise HeaderError(
                    f"{p}: truncated: header length {n} is larger than the {file_size - 8} bytes after the length field"
                )
            raw = f.read(n)
    except OSError as e:
        raise HeaderError(f"{p}: cannot read: {e.strerror or e}") from e
    return parse_header(raw, str(p))


def parse_header(raw: bytes, path: str = "<bytes>") -> Header:
    """Parse the JSON part of a header (the N bytes after the length field)."""
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise HeaderError(f"{path}: header is not valid JSON: {e}") from e
    if not isinstance(doc, dict):
        raise HeaderError(f"{path}: header is not a JSON object")
    meta = doc.pop("__metadata__", None) or {}
    if not isinstance(meta, dict):
        raise HeaderError(f"{path}: __metadata__ is not an object")
    tensors = {name: _tensor(path, name, entry) for name, entry in doc.items()}
    _check_contiguous(path, tensors)
    return Header(path=path, header_size=len(raw), tensors=tensors, metadata={str(k): str(v) for k, v in meta.items()})


def _tensor(path: str, name: str, entry: Any) -> TensorInfo:
    where = f"{path}: tensor {name!r}"
    if not isinstance(entry, dict):
        raise HeaderError(f"{where}: entry is not an object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if not isinstance(dtype, str):
        raise HeaderError(f"{where}: missing dtype")
    if not isinstance(shape, list) or not all(_nonneg_int(d) for d in shape):
        raise HeaderError(f"{where}: shape must be a list of non-negative integers")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_nonneg_int(o) for o in offsets)):
        raise HeaderError(f"{where}: data_offsets must be two non-negative integers")
    start, end = offsets
    if end < start:
        raise HeaderError(f"{where}: data_offsets end {end} before start {start}")
    info = TensorInfo(dtype, tuple(shape), (start, end))
    bits = DTYPES.get(dtype, (None, None))[1]
    if bits is not None:
        want = (info.numel * bits + 7) // 8
        if end - start != want:
            raise HeaderError(f"{where}: {end - start} bytes for {dtype}{list(shape)}, expected {want}")
    return info


def _check_contiguous(path: str, tensors: Mapping[str, TensorInfo]) -> None:
    """The format packs tensors back to back from offset 0; gaps or overlaps mean a corrupt header."""
    pos = 0
    for name, t in sorted(tensors.items(), key=lambda kv: kv[1].offsets):
        if t.offsets[0] != pos:
            raise HeaderError(f"{path}: tensor {name!r} starts at {t.offsets[0]}, expected {pos} (gap or overlap)")
        pos = t.offsets[1]


def _nonneg_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


__all__ = ["DTYPES", "Header", "HeaderError", "TensorInfo", "dtype_name", "parse_header", "read_header"]
