"""Opening a model's files without letting one of them freeze the reader.

``open()`` on a FIFO waits for a writer, for ever; a character device may never answer. So a
file is opened only after ``stat`` says it is a regular file, and then without blocking
(``O_NONBLOCK``), and ``fstat`` of the open descriptor checks again (a file swapped for a FIFO
between the two calls is caught too). A path that is something else raises
:class:`NotRegularFile`, an ``OSError`` whose finding kind is ``not_regular_file``.

This does not help against a hung NFS or FUSE mount, where ``stat`` itself blocks: that is
what :mod:`wan_exporter.scan.bounded` is for.
"""

from __future__ import annotations

import errno
import io
import json
import os
import stat
from typing import Any

_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a directory"))


class NotRegularFile(OSError):
    """The path is a FIFO, a socket, a device or a directory where a file was expected."""


def what(mode: int) -> str:
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


def _refuse(path: Any, mode: int) -> NotRegularFile:
    return NotRegularFile(errno.EINVAL, f"not a regular file ({what(mode)})", str(path))


def open_regular(path: "str | os.PathLike[str]", buffering: int = -1) -> io.BufferedReader:
    """Open ``path`` for binary reading, only if it is a regular file; never blocks on opening."""
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise _refuse(path, st.st_mode)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _refuse(path, st.st_mode)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb", buffering=buffering)  # type: ignore[return-value]
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: "str | os.PathLike[str]", limit: int) -> bytes:
    """Up to ``limit`` bytes of a regular file."""
    with open_regular(path) as f:
        return f.read(limit)


def read_json(path: "str | os.PathLike[str]", limit: int = 16 << 20) -> Any:
    """A small JSON document from a regular file; ``ValueError`` for anything that is not one.

    Python's parser raises ``RecursionError`` on deep nesting and a plain ``ValueError`` on an
    integer of more than 4,300 digits; both are turned into :class:`JsonError` with the reason.
    """
    raw = read_regular(path, limit + 1)
    if len(raw) > limit:
        raise JsonError(f"larger than {limit} bytes")
    return loads(raw)


class JsonError(ValueError):
    """Bytes that are not a JSON document this exporter will read (the message says why)."""


def loads(raw: bytes, **kw: Any) -> Any:
    """``json.loads`` whose every failure is a :class:`JsonError`: bad UTF-8, bad JSON, deep nesting, huge integers."""
    try:
        return json.loads(raw.decode("utf-8"), **kw)
    except UnicodeDecodeError as e:
        raise JsonError(f"not valid JSON (not UTF-8): {e}") from None
    except json.JSONDecodeError as e:
        raise JsonError(f"not valid JSON: {e}") from None
    except RecursionError:
        raise JsonError("JSON nested too deeply to read") from None
    except ValueError as e:  # int() beyond sys.get_int_max_str_digits()
        raise JsonError(f"not a JSON document this exporter reads: {e}") from None


__all__ = ["JsonError", "NotRegularFile", "loads", "open_regular", "read_json", "read_regular", "what"]
