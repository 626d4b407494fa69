"""prometheus_client's multiprocess mode for the ranks of one node, with dead ranks swept.

Under ``torchrun`` each rank is a process writing its own files into ``PROMETHEUS_MULTIPROC_DIR``;
one process (a rank's HTTP thread, or a sidecar) serves them all through :func:`collector`.
The recipe:

- set ``PROMETHEUS_MULTIPROC_DIR`` in the launcher's environment, before any rank imports
  prometheus_client (the mode is chosen at import);
- the launcher empties the directory before it starts the ranks, never a rank (a rank that wipes
  it deletes its peers' files);
- one local directory per node (the files are mmap'd: not on NFS); every node serves its own.

Per-rank gauges carry an explicit ``rank`` label, so no ``pid`` label is added and a restart adds
no series. What describes a rank now (in flight, stalled) is a ``live*`` gauge: prometheus_client
drops a dead process's live files only when someone calls ``mark_process_dead(pid)``, which
torchrun never does, so :func:`sweep` does it for every pid in the directory that no longer runs
on this node. Counters and histograms of a dead rank stay: what it did still happened.
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path
from typing import Any

_PID = re.compile(r"^gauge_live[a-z]+_(\d+)\.db$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as e:
        return e.errno == errno.EPERM  # someone else's process: alive
    return True


def sweep(path: str | os.PathLike[str]) -> list[int]:
    """Drop the live gauges of processes that no longer run (this node only); the pids swept."""
    from prometheus_client.multiprocess import mark_process_dead

    dead = set()
    try:
        names = os.listdir(path)
    except OSError:
        return []
    for name in names:
        m = _PID.match(name)
        if m and not _alive(int(m.group(1))):
            dead.add(int(m.group(1)))
    for pid in sorted(dead):
        mark_process_dead(pid, str(path))
    return sorted(dead)


def collector(registry: Any, path: str | os.PathLike[str] | None = None) -> Any:
    """A MultiProcessCollector on ``registry`` that sweeps dead ranks' live gauges before each collection."""
    from prometheus_client.multiprocess import MultiProcessCollector

    where = str(path or os.environ.get("PROMETHEUS_MULTIPROC_DIR") or "")
    if not where or not Path(where).is_dir():
        raise ValueError(f"multiprocess directory {where!r} is not a directory (set PROMETHEUS_MULTIPROC_DIR)")

    class _Swept(MultiProcessCollector):
        def collect(self) -> Any:
            sweep(where)
            return super().collect()

    return _Swept(registry, path=where)


__all__ = ["collector", "sweep"]
