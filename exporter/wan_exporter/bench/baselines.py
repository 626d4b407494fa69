"""Baseline durations per model + profile + GPU name: set in config or recorded from healthy runs.

A recorded baseline is the mean of the first ``baseline_runs`` healthy runs (success and
every sanity check passed) and is kept in ``<state_dir>/baselines.json`` so it survives
restarts. A baseline from config always wins.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)


class Baselines:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._recorded: dict[str, float] = {}
        self._pending: dict[str, list[float]] = {}
        self._load()

    @staticmethod
    def key(model: str, profile: str, gpu: str) -> str:
        return f"{model}|{profile}|{gpu}"

    def _load(self) -> None:
        try:
            data = json.loads(self.path.read_text())
            self._recorded = {k: float(v) for k, v in data.get("recorded", {}).items()}
            self._pending = {k: [float(x) for x in v] for k, v in data.get("pending", {}).items()}
        except FileNotFoundError:
            pass
        except (OSError, ValueError, AttributeError) as e:
            log.warning("ignoring unreadable baselines file %s: %s", self.path, e)

    def _save(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".baselines.")
            with os.fdopen(fd, "w") as f:
                json.dump({"recorded": self._recorded, "pending": self._pending}, f, indent=1, sort_keys=True)
            os.replace(tmp, self.path)
        except OSError as e:  # disk full, read-only: baselines stay in memory
            log.warning("could not save baselines to %s: %s", self.path, e)

    def get(self, model: str, profile: str, gpu: str) -> float | None:
        return self._recorded.get(self.key(model, profile, gpu))

    def observe(self, model: str, profile: str, gpu: str, seconds: float, runs_needed: int) -> float | None:
        """Count a healthy run towards the recorded baseline; returns it once it exists."""
        k = self.key(model, profile, gpu)
        if k in self._recorded:
            return self._recorded[k]
        pending = self._pending.setdefault(k, [])
        pending.append(seconds)
        if len(pending) >= max(1, runs_needed):
            self._recorded[k] = sum(pending) / len(pending)
            del self._pending[k]
        self._save()
        return self._recorded.get(k)
