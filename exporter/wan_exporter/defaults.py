"""The embedded default config and the demo config, shipped inside the package."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from .config import Config, parse_config


def _text(name: str) -> str:
    return resources.files("wan_exporter").joinpath("data", name).read_text(encoding="utf-8")


def default_config() -> Config:
    return parse_config(_text("default.yaml"), "<embedded default>")


def demo_config_text(tiny_dir: Path) -> str:
    return _text("demo.yaml").replace("{tiny_dir}", str(tiny_dir))


def demo_config(tiny_dir: Path) -> Config:
    return parse_config(demo_config_text(tiny_dir), "<demo>")
