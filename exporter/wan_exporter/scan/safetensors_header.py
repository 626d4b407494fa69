"""Reading safetensors headers without torch, safetensors or numpy.

A safetensors file is an 8-byte little-endian header length N, N bytes of JSON
(``{name: {"dtype", "shape", "data_offsets": [start, end]}, "__metadata__": {...}}``),
then the tensor bytes, offsets relative to the end of the header. Reading only the header
tells the exporter a checkpoint's parameter count and dtypes in microseconds, and whether the
file is truncated, without loading gigabytes of weights or importing the heavy stack.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, NamedTuple

from .. import fileio

# The safetensors format caps the header at 100 MB; anything larger is garbage, not a header.
MAX_HEADER_BYTES = 100 * 1000 * 1000
# Headers up to this size are parsed in the calling thread (a Wan 14B shard's is ~150 KB); larger
# ones in a child process (header_child), so a 99 MB header neither holds the GIL for seconds
# nor costs the exporter gigabytes of Python objects.
IN_PROCESS_MAX_BYTES = 1 << 20
# A table with more tensors is checked whole but kept as a summary (count, bytes, parameters),
# never tensor by tensor. A Wan component has a few thousand at most.
MAX_TABLE_TENSORS = 65_536
U64_MAX = (1 << 64) - 1  # safetensors reads every integer as usize

# safetensors dtype code -> (torch-style name, bits per element): exactly the codes safetensors
# 0.8 accepts; any other is refused there, so it is header_invalid here.
DTYPES: Mapping[str, tuple[str, int]] = {
    "BOOL": ("bool", 8),
    "U8": ("uint8", 8),
    "I8": ("int8", 8),
    "F8_E5M2": ("float8_e5m2", 8),
    "F8_E4M3": ("float8_e4m3fn", 8),
    "F8_E8M0": ("float8_e8m0fnu", 8),
    "F8_E4M3FNUZ": ("float8_e4m3fnuz", 8),
    "F8_E5M2FNUZ": ("float8_e5m2fnuz", 8),
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
class Summary:
    """What a table too large to keep tensor by tensor still says (``MAX_TABLE_TENSORS``)."""

    count: int
    parameters: int
    data_end: int  # the largest end offset
    dtype_bytes: Mapping[str, int]  # safetensors code -> bytes of tensor data


@dataclass(frozen=True)
class Header:
    path: str
    header_size: int  # N, the JSON length
    tensors: Mapping[str, TensorInfo]  # empty when ``summary`` is set
    metadata: Mapping[str, str]
    summary: Summary | None = None

    @property
    def data_size_expected(self) -> int:
        """The file size the header implies: 8 + N + the largest end offset."""
        if self.summary is not None:
            return 8 + self.header_size + self.summary.data_end
        end = max((t.offsets[1] for t in self.tensors.values()), default=0)
        return 8 + self.header_size + end

    def parameter_count(self) -> int:
        if self.summary is not None:
            return self.summary.parameters
        return sum(t.numel for t in self.tensors.values())

    def dtypes(self) -> tuple[str, ...]:
        """Torch-style dtype names present, sorted."""
        codes = self.summary.dtype_bytes if self.summary is not None else {t.dtype for t in self.tensors.values()}
        return tuple(sorted({dtype_name(c) for c in codes}))

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


def parse_header(raw: bytes, path: str = "<bytes>") -> Header:
    """Parse the JSON part of a header (the N bytes after the length field), in this process."""
    try:
        doc = fileio.loads(raw, object_pairs_hook=_no_duplicates)
    except fileio.JsonError as e:
        raise HeaderError(f"{path}: header is {e}") from None
    except _Duplicate as e:
        raise HeaderError(f"{path}: key {e.args[0]!r} appears twice") from None
    if not isinstance(doc, dict):
        raise HeaderError(f"{path}: header is not a JSON object")
    meta = metadata(path, doc.pop("__metadata__", None))
    tensors = {name: tensor(path, name, entry) for name, entry in doc.items()}
    if not tensors:
        raise HeaderError(f"{path}: holds no tensors")
    check_contiguous(path, ((t.offsets, name) for name, t in tensors.items()))
    return Header(path=path, header_size=len(raw), tensors=tensors, metadata=meta)


class _Duplicate(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for k, _ in pairs:
            if k in seen:
                raise _Duplicate(k)
            seen.add(k)
    return out


def metadata(path: str, meta: Any) -> dict[str, str]:
    """``__metadata__``: absent, null, or an object of strings (safetensors refuses any other value)."""
    if meta is None:
        return {}
    if not isinstance(meta, dict):
        raise HeaderError(f"{path}: __metadata__ is not an object")
    for k, v in meta.items():
        if not isinstance(v, str):
            raise HeaderError(f"{path}: __metadata__ value of {k!r} is {type(v).__name__}, not a string")
    return dict(meta)


def tensor(path: str, name: str, entry: Any) -> TensorInfo:
    """One entry, checked as safetensors checks it: known dtype, 64-bit integers, a byte size that
    neither overflows nor ends inside a byte, and a byte range of exactly that size."""
    where = f"{path}: tensor {name!r}"
    if not isinstance(entry, dict):
        raise HeaderError(f"{where}: entry is not an object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if not isinstance(dtype, str):
        raise HeaderError(f"{where}: missing dtype")
    if dtype not in DTYPES:
        raise HeaderError(f"{where}: unknown dtype {dtype[:32]!r} (safetensors knows {', '.join(DTYPES)})")
    if not isinstance(shape, list) or not all(_u64(d) for d in shape):
        raise HeaderError(f"{where}: shape must be a list of non-negative 64-bit integers")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_u64(o) for o in offsets)):
        raise HeaderError(f"{where}: data_offsets must be two non-negative 64-bit integers")
    start, end = offsets
    if end < start:
        raise HeaderError(f"{where}: data_offsets end {end} before start {start}")
    numel = 1
    for d in shape:
        numel *= d
        if numel > U64_MAX:
            raise HeaderError(f"{where}: shape {_short(shape)} overflows 64 bits (element count)")
    bits = numel * DTYPES[dtype][1]
    if bits > U64_MAX:
        raise HeaderError(f"{where}: shape {_short(shape)} of {dtype} overflows 64 bits (size in bits)")
    if bits % 8:
        raise HeaderError(f"{where}: {numel} elements of {dtype} do not end on a byte boundary")
    if end - start != bits // 8:
        raise HeaderError(f"{where}: {end - start} bytes for {dtype}{_short(shape)}, expected {bits // 8}")
    return TensorInfo(dtype, tuple(shape), (start, end))


def _short(shape: list) -> str:
    text = str(list(shape))
    return text if len(text) <= 80 else text[:77] + "..."


def check_contiguous(path: str, entries: Iterable[tuple[tuple[int, int], str]]) -> int:
    """The format packs tensors back to back from offset 0; gaps or overlaps mean a corrupt header.

    ``entries`` are ((start, end), name); returns the end of the data."""
    pos = 0
    for (start, end), name in sorted(entries):
        if start != pos:
            raise HeaderError(f"{path}: tensor {name!r} starts at {start}, expected {pos} (gap or overlap)")
        pos = end
    return pos


def _u64(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= U64_MAX


__all__ = ["DTYPES", "Header", "HeaderError", "IN_PROCESS_MAX_BYTES", "MAX_TABLE_TENSORS", "Summary", "TensorInfo",
           "dtype_name", "parse_header"]
