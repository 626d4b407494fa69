"""GGUF tensor tables: header, metadata, tensor infos and offsets, read in bounded steps.

The layout (GGUF v2/v3, as llama.cpp's ``gguf`` package writes it): magic ``GGUF``, version,
tensor count, metadata count, metadata key/values, tensor infos (name, dims innermost
first, ggml type, offset), then tensor data aligned to ``general.alignment`` (32 unless
set). The ``gguf`` package gives the type codes and block sizes; its ``GGUFReader`` is not
used for the check because it maps the whole file and builds an array per tensor, so a
truncated file fails with a numpy reshape error that cannot be told from corruption. Here
a file that ends inside its header, or before its last tensor's data, is named truncated.

Parameters are elements (``prod(dims)``), not bytes: a Q4_K tensor stores 4.5 bits each.
"""

from __future__ import annotations

import math
import os
import struct
from pathlib import Path
from typing import Any, BinaryIO

from .safetensors_header import TensorInfo
from .tables import TableError, TensorTable

MAGIC = b"GGUF"
MAX_STRING = 1 << 20
MAX_ARRAY = 1 << 24
MAX_TENSORS = 1 << 20
MAX_DIMS = 8
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


class _Short(Exception):
    pass


class _In:
    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.pos = 0

    def take(self, n: int) -> bytes:
        b = self.f.read(n)
        if len(b) < n:
            raise _Short()
        self.pos += n
        return b

    def skip(self, n: int) -> None:
        """Pass over ``n`` bytes without keeping them (read in steps, so a short file is still seen)."""
        while n > 0:
            b = self.f.read(min(n, 1 << 20))
            if not b:
                raise _Short()
            self.pos += len(b)
            n -= len(b)

    def unpack(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        n = self.unpack("<Q")
        if n > MAX_STRING:
            raise TableError(f"string of {n} bytes at byte {self.pos}: not a GGUF header")
        return self.take(n).decode("utf-8", "replace")

    def value(self, vtype: int, depth: int = 0) -> Any:
        if vtype in _SCALARS:
            return self.unpack(_SCALARS[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY and depth == 0:
            itype, count = self.unpack("<I"), self.unpack("<Q")
            if count > MAX_ARRAY:
                raise TableError(f"array of {count} items at byte {self.pos}: not a GGUF header")
            if count <= 8:
                return [self.value(itype, 1) for _ in range(count)]
            # Longer arrays (a tokenizer's vocabulary) are summarised: their items are passed over, not kept.
            if itype in _SCALARS:
                self.skip(count * struct.calcsize(_SCALARS[itype]))
            elif itype == _STRING:
                for _ in range(count):
                    n = self.unpack("<Q")
                    if n > MAX_STRING:
                        raise TableError(f"string of {n} bytes at byte {self.pos}: not a GGUF header")
                    self.skip(n)
            else:
                raise TableError(f"unknown GGUF value type {itype} at byte {self.pos}")
            return f"[{count} items]"
        raise TableError(f"unknown GGUF value type {vtype} at byte {self.pos}")


def quant_sizes() -> dict[int, tuple[str, int, int]]:
    """ggml type code -> (name, elements per block, bytes per block), from the gguf package."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    return {int(t): (t.name, *GGML_QUANT_SIZES[t]) for t in GGMLQuantizationType if t in GGML_QUANT_SIZES}


def read_gguf(path: Path) -> TensorTable:
    sizes = quant_sizes()
    with open(path, "rb") as f:
        file_size = os.fstat(f.fileno()).st_size
        r = _In(f)
        try:
            if r.take(4) != MAGIC:
                raise TableError("no GGUF magic: not a GGUF file")
            version = r.unpack("<I")
            if version not in (2, 3):
                raise TableError(f"GGUF version {version} (2 and 3 are read)")
            n_tensors, n_kv = r.unpack("<Q"), r.unpack("<Q")
            if n_tensors > MAX_TENSORS or n_kv > MAX_TENSORS:
                raise TableError(f"{n_tensors} tensors, {n_kv} metadata keys: not a GGUF header")
            meta: dict[str, str] = {}
            alignment = 32
            for _ in range(n_kv):
                key = r.string()
                v = r.value(r.unpack("<I"))
                if key == "general.alignment" and isinstance(v, int) and v > 0:
                    alignment = v
                meta[key] = str(v)
            infos: list[tuple[str, tuple[int, ...], int, int]] = []
            for _ in range(n_tensors):
                name = r.string()
                nd = r.unpack("<I")
                if nd > MAX_DIMS:
                    raise TableError(f"tensor {name!r}: {nd} dimensions")
                dims = tuple(r.unpack("<Q") for _ in range(nd))
                infos.append((name, dims, r.unpack("<I"), r.unpack("<Q")))
        except _Short:
            raise TableError(f"the file ends at byte {file_size}, inside its GGUF header", truncated=True) from None
    data_start = -(-r.pos // alignment) * alignment
    tensors: dict[str, TensorInfo] = {}
    end = 0
    for name, dims, code, offset in infos:
        if code not in sizes:
            raise TableError(f"tensor {name!r}: unknown ggml type {code}")
        tname, block, nbytes = sizes[code]
        n = math.prod(dims)
        if n % block:
            raise TableError(f"tensor {name!r}: {n} elements do not fill {tname} blocks of {block}")
        if offset % alignment:
            raise TableError(f"tensor {name!r}: offset {offset} is not aligned to {alignment}")
        size = n // block * nbytes
        tensors[name] = TensorInfo(tname, tuple(reversed(dims)), (offset, offset + size))
        end = max(end, offset + size)
    _check_overlap(tensors)
    meta["gguf.version"] = str(version)
    return TensorTable(str(path), "gguf", tensors, meta, data_start, data_start + end, slack=alignment - 1)


def _check_overlap(tensors: dict[str, TensorInfo]) -> None:
    pos, prev = 0, ""
    for name, t in sorted(tensors.items(), key=lambda kv: kv[1].offsets):
        if t.offsets[0] < pos:
            raise TableError(f"tensor {name!r} overlaps {prev!r}")
        pos, prev = t.offsets[1], name
