"""The latest scan of each model, shared by everything that reads a model's files in a cycle.

The layout job scans afresh on its schedule; the header, hash and load jobs and the checkpoint
facts read that scan while it is younger than the layout interval, so a cycle walks each
model's files once instead of once per reader.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from . import Scan, scan
from .bounded import Lanes


class ScanCache:
    def __init__(self) -> None:
        self._scans: dict[str, tuple[float, Any, str, Scan]] = {}  # model -> (monotonic time, target, format, scan)
        self._lock = threading.Lock()
        self.lanes = Lanes()  # every reader of a model's files reads on that model's worker (scan.bounded)

    def get(self, model: str, target: Any, fmt: str, max_age: float, fresh: bool = False) -> Scan | None:
        """The model's scan: the kept one while younger than ``max_age`` for the same target, else a new one."""
        if target is None:
            return None
        now = time.monotonic()
        with self._lock:
            kept = self._scans.get(model)
        if (not fresh and kept is not None and kept[1] == target and kept[2] == fmt
                and now - kept[0] < max_age):
            return kept[3]
        sc = scan(target, fmt)
        with self._lock:
            self._scans[model] = (now, target, fmt, sc)
        return sc

    def forget(self, keep: set[str]) -> None:
        """Drop the scans of models no longer configured."""
        with self._lock:
            for name in [n for n in self._scans if n not in keep]:
                del self._scans[name]
