"""Where a config comes from: a file, the demo (its tiny models built on first use), or the embedded default.

Shared by the command line and ``bench``, so neither imports the other."""

from __future__ import annotations

import subprocess
import sys
from importlib import resources
from pathlib import Path

from .config import Config, load_config, parse_config


def _text(name: str) -> str:
    return resources.files("wan_exporter").joinpath("data", name).read_text(encoding="utf-8")


def default_config() -> Config:
    return parse_config(_text("default.yaml"), "<embedded default>")


def demo_config_text(tiny_dir: Path) -> str:
    return _text("demo.yaml").replace("{tiny_dir}", str(tiny_dir))


def demo_config(tiny_dir: Path) -> Config:
    return parse_config(demo_config_text(tiny_dir), "<demo>")


def ensure_tiny_models(verbose: bool = True) -> Path:
    """Build the demo's tiny models once, in a child process (the exporter never imports torch)."""
    from .tiny import MARKER, TINY_KINDS, default_cache_dir

    root = default_cache_dir()
    if all((root / k / MARKER).exists() for k in TINY_KINDS):
        return root
    if verbose:
        print(f"building tiny demo models into {root} (first run only) ...", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "wan_exporter", "tiny-models", str(root)], check=True, timeout=600)
    return root


def resolve_config(config_file: str | None, demo: bool) -> tuple[Config, str | None]:
    """The config to run and the file to reload it from (None for the demo and the default)."""
    if config_file:
        return load_config(config_file), config_file
    if demo:
        return demo_config(ensure_tiny_models()), None
    return default_config(), None
