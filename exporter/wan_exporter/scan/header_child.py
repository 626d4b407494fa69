"""Large safetensors headers, parsed in a child process by a streaming reader.

A header may be up to 100 MB of JSON: 1.44 million tensors. ``json.loads`` of that holds the
GIL for seconds (every scrape waits) and builds ~3 GB of Python objects. So a header above
``IN_PROCESS_MAX_BYTES`` is read by ``python -m wan_exporter.scan.header_child PATH``: it walks
the top-level object entry by entry (``raw_decode`` of one small entry at a time), checks each
as :func:`~wan_exporter.scan.safetensors_header.tensor` does in process, and keeps only what the
checks need: the tensors themselves up to ``MAX_TABLE_TENSORS``, else a summary (count,
parameters, bytes by dtype, the end of the data). Offsets are kept in two ``array('Q')`` for
the gap/overlap check, so the child's peak stays within about twice the header's size.

The child prints progress lines while it works (each one is progress for the caller's
deadline, :func:`wan_exporter.scan.bounded.beat`), then one JSON line with the result; it dies
with its parent (``PR_SET_PDEATHSIG``), runs at nice 10 (the exporter's scrapes go first on a
busy host) and is killed after ``CHILD_MAX_SECONDS`` regardless.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from array import array
from pathlib import Path
from typing import Any

from ..childproc import die_with_parent
from .safetensors_header import DTYPES, MAX_TABLE_TENSORS, Header, HeaderError, Summary, TensorInfo, metadata, tensor

CHILD_MAX_SECONDS = 300.0
PROGRESS_EVERY = 5_000  # entries between two progress lines (each one is progress for the deadline)
_WS = re.compile(r"[ \t\n\r]*")


_CACHE_SIZE = 16
_cache: dict[tuple, "Header | HeaderError"] = {}  # (path, dev, inode, size, mtime) -> the outcome
_inflight: dict[tuple, threading.Event] = {}
_lock = threading.Lock()


def parse_in_child(path: Path, header_size: int) -> Header:
    """Parse ``path``'s header in a child; :class:`HeaderError` for anything the child refused.

    The outcome is kept per (device, inode, size, mtime), as the hash check keeps digests: the
    header check and the checkpoint facts read the same large file, and a file that did not
    change is not parsed again. A second reader of a file being parsed waits for that parse.
    """
    from .bounded import beat

    st = os.stat(path)
    key = (str(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    while True:
        with _lock:
            if key in _cache:
                got = _cache[key]
                break
            running = _inflight.get(key)
            if running is None:
                running = _inflight[key] = threading.Event()
                got = None
                break
        while not running.wait(1.0):
            beat()  # the other reader's parse is progress for this one too
    if got is not None:
        if isinstance(got, HeaderError):
            raise HeaderError(str(got))  # a fresh one: the kept one is never re-raised from many threads
        return got
    try:
        try:
            got = _parse(path, header_size)
        except HeaderError as e:
            got = e
        with _lock:
            if not (isinstance(got, HeaderError) and "ended with status" in str(got)):  # killed: try again later
                _cache[key] = got
                while len(_cache) > _CACHE_SIZE:
                    del _cache[next(iter(_cache))]
    finally:
        with _lock:
            _inflight.pop(key, None)
        running.set()
    if isinstance(got, HeaderError):
        raise HeaderError(str(got))
    return got


def _parse(path: Path, header_size: int) -> Header:
    from .bounded import beat

    env = dict(os.environ)
    pkg = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = pkg + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.Popen([sys.executable, "-m", "wan_exporter.scan.header_child", str(path)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
                            close_fds=True)
    killer = threading.Timer(CHILD_MAX_SECONDS, proc.kill)
    killer.daemon = True
    killer.start()
    last = b""
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            beat()
            last = line
    finally:
        killer.cancel()
        proc.wait()
    if proc.returncode != 0 or not last.startswith(b"{"):
        raise HeaderError(f"{path}: the header reader ended with status {proc.returncode} (header of "
                          f"{header_size} bytes)")
    doc = json.loads(last)
    if doc.get("error"):
        raise HeaderError(f"{path}: {doc['error']}")
    s = doc.get("summary")
    summary = Summary(s["count"], s["parameters"], s["data_end"], s["dtype_bytes"]) if s else None
    tensors = {k: TensorInfo(v[0], tuple(v[1]), (v[2], v[3])) for k, v in (doc.get("tensors") or {}).items()}
    return Header(path=str(path), header_size=header_size, tensors=tensors, metadata=doc.get("metadata") or {},
                  summary=summary)


# ----------------------------------------------------------------------------- the child


class _Reader:
    """The streaming walk of one header's top-level object."""

    def __init__(self, path: str, text: str) -> None:
        self.path, self.s = path, text
        self.decoder = json.JSONDecoder()
        self.count = self.parameters = 0
        self.dtype_bytes: dict[str, int] = {}
        self.kept: dict[str, TensorInfo] | None = {}
        self.starts, self.ends = array("Q"), array("Q")
        self.in_order, self.pos = True, 0  # entries so far tile [0, pos) in the order written
        self.meta: dict[str, str] = {}
        self.seen_meta = False

    def _ws(self, i: int) -> int:
        return _WS.match(self.s, i).end()  # type: ignore[union-attr]

    def _expect(self, i: int, ch: str) -> int:
        if i >= len(self.s) or self.s[i] != ch:
            got = repr(self.s[i]) if i < len(self.s) else "the end"
            raise HeaderError(f"{self.path}: header is not valid JSON: expected {ch!r} at char {i}, found {got}")
        return i + 1

    def run(self) -> None:
        s = self.s
        i = self._expect(self._ws(0), "{")
        i = self._ws(i)
        if i < len(s) and s[i] == "}":
            i += 1
        else:
            while True:
                i = self._expect(i, '"')
                try:
                    key, i = json.decoder.scanstring(s, i, True)
                    i = self._expect(self._ws(i), ":")
                    value, i = self.decoder.raw_decode(s, self._ws(i))
                except json.JSONDecodeError as e:
                    raise HeaderError(f"{self.path}: header is not valid JSON: {e}") from None
                except RecursionError:
                    raise HeaderError(f"{self.path}: header is JSON nested too deeply to read") from None
                except ValueError as e:  # an integer of more than 4,300 digits
                    raise HeaderError(f"{self.path}: header is not a JSON document this exporter reads: {e}") from None
                self.entry(key, value)
                i = self._ws(i)
                if i < len(s) and s[i] == ",":
                    i = self._ws(i + 1)
                    continue
                i = self._expect(i, "}")
                break
        if self._ws(i) != len(s):
            raise HeaderError(f"{self.path}: header is not valid JSON: extra data at char {self._ws(i)}")
        if not self.count:
            raise HeaderError(f"{self.path}: holds no tensors")

    def entry(self, key: str, value: Any) -> None:
        if key == "__metadata__":
            if self.seen_meta:
                raise HeaderError(f"{self.path}: key '__metadata__' appears twice")
            self.seen_meta = True
            self.meta = metadata(self.path, value)
            return
        t = tensor(self.path, key, value)
        if self.kept is not None:
            if key in self.kept:
                raise HeaderError(f"{self.path}: key {key!r} appears twice")
            self.kept[key] = t
            if len(self.kept) > MAX_TABLE_TENSORS:
                self.kept = None  # from here on a summary; duplicates then show as overlapping ranges
        self.count += 1
        self.parameters += t.numel
        self.dtype_bytes[t.dtype] = self.dtype_bytes.get(t.dtype, 0) + t.offsets[1] - t.offsets[0]
        start, end = t.offsets
        self.starts.append(start)
        self.ends.append(end)
        if self.in_order:
            if start == self.pos:
                self.pos = end
            else:
                self.in_order = False
        if self.count % PROGRESS_EVERY == 0:
            sys.stdout.write(".\n")
            sys.stdout.flush()

    def data_end(self) -> int:
        if self.in_order:
            return self.pos
        # Written out of order: sort the entry numbers by start (an int each, not a tuple: a
        # summary's names are not kept, so the ordinal names the entry).
        starts, ends = self.starts, self.ends
        pos = 0
        for k in sorted(range(len(starts)), key=starts.__getitem__):
            if starts[k] != pos:
                raise HeaderError(f"{self.path}: tensor #{k + 1} starts at {starts[k]}, expected {pos} (gap or overlap)")
            pos = ends[k]
        return pos


def _peak_rss() -> int | None:
    """This process image's peak RSS: VmHWM, not ``ru_maxrss``, which keeps the forking parent's peak
    across exec (a child of a 300 MB process would report 300 MB before reading a byte)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def main(argv: list[str]) -> int:
    die_with_parent()
    try:  # background work: on a busy host the exporter's scrapes go first
        os.nice(10)
    except OSError:
        pass
    from ..fileio import open_regular

    path = argv[0]
    out: dict[str, Any] = {}
    try:
        with open_regular(path) as f:
            n = int.from_bytes(f.read(8), "little")
            raw = f.read(n)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise HeaderError(f"{path}: header is not valid JSON (not UTF-8): {e}") from None
        del raw
        r = _Reader(path, text)
        r.run()
        del text
        r.s = ""
        end = r.data_end()
        out["metadata"] = r.meta
        if r.kept is not None:
            out["tensors"] = {k: [t.dtype, list(t.shape), t.offsets[0], t.offsets[1]] for k, t in r.kept.items()}
        else:
            out["summary"] = {"count": r.count, "parameters": r.parameters, "data_end": end,
                              "dtype_bytes": r.dtype_bytes}
    except HeaderError as e:
        out = {"error": str(e).removeprefix(f"{path}: ")}
    except OSError as e:
        out = {"error": f"cannot read: {e.strerror or e}"}
    out["max_rss_bytes"] = _peak_rss()
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


__all__ = ["CHILD_MAX_SECONDS", "DTYPES", "main", "parse_in_child"]
