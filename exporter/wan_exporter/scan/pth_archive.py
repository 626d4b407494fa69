"""``.pth`` files as ``torch.save`` writes them: zip archives, read with the standard library.

The zip's central directory sits at the end of the file, so a copy cut short loses it and
is named truncated; every member's local header and data must lie before the directory.
A legacy pickle (``torch.save`` before 1.6, no zip) has no structure to check and passes.
The pickle inside (``data.pkl``) is never loaded: unpickling runs code. So a ``.pth``
table counts archive members, not tensors; a flipped byte inside a member is found by the
hash check against a published digest, not here.
"""

from __future__ import annotations

from ..fileio import open_regular

import os
import struct
import zipfile
from pathlib import Path

from .model import TableError, TensorTable

_LOCAL = b"PK\x03\x04"
MAX_MEMBERS = 1 << 20


def read_pth(path: Path) -> TensorTable:
    with open_regular(path) as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(4)
        try:
            zf = zipfile.ZipFile(f)
        except (zipfile.BadZipFile, UnicodeDecodeError, ValueError, struct.error, EOFError,
                NotImplementedError) as e:
            # A damaged directory fails in many ways inside zipfile (a name flagged UTF-8
            # that is not, a field out of range): each is a finding, never a crash.
            if head == _LOCAL and isinstance(e, zipfile.BadZipFile):
                raise TableError(f"the zip directory at the end is missing ({e}): the file was cut short",
                                 truncated=True) from None
            if head[:1] == b"\x80":  # a pickle: torch.save before 1.6 wrote no zip
                return TensorTable(str(path), "pth", {}, {}, 0, size,
                                   notes=("legacy (pre-zip) torch.save format: its structure is not checked",))
            raise TableError(f"not a zip archive: {e}") from None
        with zf:
            infos = zf.infolist()
            if len(infos) > MAX_MEMBERS:
                raise TableError(f"{len(infos)} members: not a torch.save archive")
            if not any(i.filename.endswith("/data.pkl") or i.filename == "data.pkl" for i in infos):
                raise TableError("no data.pkl: not a torch.save archive")
            directory = zf.start_dir
            end = 0
            for i in infos:
                f.seek(i.header_offset)
                local = f.read(30)
                if len(local) < 30 or local[:4] != _LOCAL:
                    raise TableError(f"member {i.filename!r}: no local header at byte {i.header_offset}")
                name_len, extra_len = struct.unpack("<HH", local[26:30])
                data_end = i.header_offset + 30 + name_len + extra_len + i.compress_size
                if data_end > directory:
                    raise TableError(f"member {i.filename!r} runs into the zip directory (byte {data_end} > "
                                     f"{directory})")
                end = max(end, data_end)
    return TensorTable(str(path), "pth", {}, {}, 0, size, entries=len(infos))
