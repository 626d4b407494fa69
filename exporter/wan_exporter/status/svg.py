"""Small inline SVG drawings, generated on the server: no script, no style attribute, no external asset.

Only presentation attributes and classes (styled by the page's stylesheet) are used, so the
drawings render under a Content-Security-Policy that forbids inline styles.
"""

from __future__ import annotations

from html import escape
from typing import Sequence

PHASE_CLASSES = {"load": "ph-load", "text_encode": "ph-text", "image_encode": "ph-image", "denoise": "ph-denoise",
                 "vae_decode": "ph-vae", "export": "ph-export"}


def _num(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".")


def sparkline(runs: Sequence[tuple[float | None, bool]], width: int = 160, height: int = 32, label: str = "") -> str:
    """Durations of recent runs, oldest first: a line through the successes, a red mark per failure.

    ``runs``: (duration in seconds or None, success). Empty history: empty string.
    """
    if not runs:
        return ""
    pad = 3
    vals = [d for d, ok in runs if ok and d is not None]
    lo, hi = (min(vals), max(vals)) if vals else (0.0, 1.0)
    span = (hi - lo) or 1.0
    n = len(runs)
    step = (width - 2 * pad) / max(1, n - 1)

    def y(v: float) -> float:
        return height - pad - (v - lo) / span * (height - 2 * pad) if hi != lo else height / 2

    points, marks = [], []
    for i, (d, ok) in enumerate(runs):
        x = pad + i * step if n > 1 else width / 2
        if ok and d is not None:
            points.append(f"{_num(x)},{_num(y(d))}")
            marks.append(f'<circle class="spark-ok" cx="{_num(x)}" cy="{_num(y(d))}" r="1.8"/>')
        else:
            marks.append(f'<rect class="spark-fail" x="{_num(x - 2.5)}" y="{height - 7}" width="5" height="5"/>')
    line = f'<polyline class="spark-line" fill="none" points="{" ".join(points)}"/>' if len(points) > 1 else ""
    title = escape(label)
    return (f'<svg class="spark" role="img" aria-label="{title}" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg"><title>{title}</title>'
            f'{line}{"".join(marks)}</svg>')


def phase_bar(phases: Sequence[tuple[str, float]], width: int = 240, height: int = 12) -> str:
    """One bar split by phase, each segment as wide as its share of the phases' total."""
    total = sum(v for _, v in phases if v > 0)
    if total <= 0:
        return ""
    x, parts = 0.0, []
    for name, v in phases:
        if v <= 0:
            continue
        w = v / total * width
        cls = PHASE_CLASSES.get(name, "ph-other")
        parts.append(f'<rect class="{cls}" x="{_num(x)}" y="0" width="{_num(w)}" height="{height}">'
                     f'<title>{escape(name)}: {v:.3g} s</title></rect>')
        x += w
    return (f'<svg class="bar" role="img" aria-label="phases" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">{"".join(parts)}</svg>')


def ratio_bar(ratio: float, width: int = 120, height: int = 10, warn: float = 0.9, label: str = "") -> str:
    """A filled share of a whole (memory against the GPU, utilisation); ``warn`` and above draws as warning."""
    r = max(0.0, min(1.0, ratio))
    cls = "fill-warn" if ratio >= warn else "fill"
    title = escape(label)
    return (f'<svg class="bar" role="img" aria-label="{title}" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg"><title>{title}</title>'
            f'<rect class="track" x="0" y="0" width="{width}" height="{height}"/>'
            f'<rect class="{cls}" x="0" y="0" width="{_num(r * width)}" height="{height}"/></svg>')
