"""Where the alerting and Grafana files that ship with the exporter are.

A wheel carries them as package data under ``wan_exporter/assets/`` (copied there from the
checkout's ``alerting/`` and ``grafana/`` by ``setup.py`` at build time, so git holds one copy);
a checkout, or an editable install of one, reads the checkout's own directories.
``wan-exporter assets DIR`` writes them out for a Prometheus, Alertmanager or Grafana of one's own.
"""

from __future__ import annotations

import shutil
from pathlib import Path

# What a build copies into the package: (directory, glob patterns) relative to the checkout root.
# The stack needs alerting/'s configs, rules, templates and target files; operators need the
# runbooks and the dashboards. Generators and their sources stay in the checkout.
ASSETS: dict[str, tuple[str, ...]] = {
    "alerting": ("prometheus.yml", "alertmanager.yml", "thresholds.yml", "README.md", "runbooks.md",
                 "rules/*.yml", "templates/*.tmpl", "targets/*.yml", "tests/*.yml"),
    "grafana": ("README.md", "dashboards/*.json", "provisioning/*/*.yml"),
}

PACKAGE_DIR = Path(__file__).resolve().parent
INSTALLED = PACKAGE_DIR / "assets"


def checkout_root() -> Path | None:
    """The checkout this package runs from (``exporter/wan_exporter`` inside it), or None."""
    root = PACKAGE_DIR.parents[1]
    return root if (root / "alerting" / "prometheus.yml").is_file() and (root / "exporter").is_dir() else None


def root() -> Path:
    """The directory holding ``alerting/`` and ``grafana/``: the package's own copy, else the checkout."""
    if (INSTALLED / "alerting" / "prometheus.yml").is_file():
        return INSTALLED
    checkout = checkout_root()
    if checkout is not None:
        return checkout
    raise FileNotFoundError(f"the alerting and Grafana files are missing: neither {INSTALLED} (a wheel install) "
                            "nor a checkout around the package holds them; reinstall wan-exporter")


def files(base: Path) -> list[Path]:
    """Every shipped file under ``base`` (a checkout root or an assets directory), relative to it."""
    out: list[Path] = []
    for top, patterns in ASSETS.items():
        for pattern in patterns:
            out.extend(sorted(p.relative_to(base) for p in (base / top).glob(pattern) if p.is_file()))
    return out


def copy_tree(src: Path, dest: Path) -> list[Path]:
    """Copy the shipped files from ``src`` to ``dest`` keeping their layout; returns the written paths."""
    written = []
    for rel in files(src):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / rel, target)
        written.append(target)
    return written
