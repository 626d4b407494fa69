"""Reading a safetensors header from a file: opened only when it is a regular file, its length
checked against the file, small headers parsed here and large ones in a child
(:mod:`.header_child`), so a 99 MB header neither holds the GIL for seconds nor the exporter's memory.
The format itself is :mod:`.safetensors_header`."""

from __future__ import annotations

import os
import struct
from pathlib import Path

from ..fileio import open_regular
from .safetensors_header import IN_PROCESS_MAX_BYTES, MAX_HEADER_BYTES, Header, HeaderError, parse_header


def read_header(path: str | os.PathLike[str]) -> Header:
    """Parse and check the header of ``path``; raises :class:`HeaderError` on anything malformed.

    Checks the file can hold the header, the JSON, every entry's dtype/shape/offsets and that
    each tensor's byte range matches its shape, as the safetensors library does. Whether the
    data is all there (truncation) is :meth:`Header.validate`, so callers can still count
    parameters of a truncated file. The file is opened only if it is a regular file
    (:mod:`wan_exporter.fileio`); a header above ``IN_PROCESS_MAX_BYTES`` is parsed in a child.
    """
    p = Path(path)
    try:
        with open_regular(p) as f:
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
            if n > IN_PROCESS_MAX_BYTES:
                from .header_child import parse_in_child

                return parse_in_child(p, n)
            raw = f.read(n)
    except OSError as e:
        raise HeaderError(f"{p}: cannot read: {e.strerror or e}") from e
    return parse_header(raw, str(p))
