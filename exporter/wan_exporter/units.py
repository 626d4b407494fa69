"""Parsing of human-written durations ("15m") and sizes ("8GiB") used in the config."""

from __future__ import annotations

import re

_DURATION_RE = re.compile(r"^\s*((?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w))+)\s*$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}


def parse_duration(value: object) -> float:
    """Seconds from a Prometheus-style duration ("90s", "1h30m", "500ms") or a bare number of seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like 15m")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("expected a non-negative duration")
        return float(value)
    if isinstance(value, str):
        m = _DURATION_RE.match(value)
        if m:
            return sum(float(n) * _DURATION_UNITS[u] for n, u in _DURATION_PART.findall(m.group(1)))
    raise ValueError("expected a duration like 15m")


def parse_size(value: object) -> int:
    """Bytes from "8GiB", "512MB", "1024" or an integer."""
    if isinstance(value, bool):
        raise ValueError("expected a size like 8GiB")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("expected a non-negative size")
        return value
    if isinstance(value, str):
        m = _SIZE_RE.match(value)
        if m:
            unit = (m.group(2) or "B").lower()
            return int(float(m.group(1)) * _SIZE_UNITS[unit])
    raise ValueError("expected a size like 8GiB")
