"""The Prometheus and Alertmanager versions the tests run against, and where their binaries are.

Two sets: Debian's packages (Prometheus 2.42, Alertmanager 0.25: the oldest supported) and the
current releases scripts/peers.sh builds from source (Prometheus 3, Alertmanager 0.35), plus
VictoriaMetrics for the remote-write test. A test that starts Prometheus or Alertmanager takes a
``PeerSet`` from a fixture parametrized with ``PEER_SETS``; a missing binary skips with the command
that provides it, and under ``CI=true`` that skip is a failure (support.tools).

Built binaries: ``$WAN_PEER_<NAME>`` (scripts/test.sh exports them from peers.sh's output), else the
cache path peers.sh builds into, read from its PEERS table (one source for names and versions).
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PEERS_SH = REPO / "scripts" / "peers.sh"


@lru_cache(maxsize=None)
def peer_table() -> dict[str, str]:
    """name -> module version, from the PEERS table of scripts/peers.sh."""
    text = PEERS_SH.read_text()
    block = re.search(r'^PEERS="\n(.*?)^"', text, re.S | re.M)
    assert block, f"{PEERS_SH}: no PEERS table"
    out = {}
    for line in block.group(1).splitlines():
        fields = line.split("|")
        if len(fields) >= 3 and fields[0].strip():
            out[fields[0].strip()] = fields[2].strip()
    return out


def release(name: str) -> str:
    """The release a built peer reports: Prometheus 3.X.Y is published to the module proxy as v0.3XX.Y."""
    v = peer_table()[name].lstrip("v")
    major, minor, patch = v.split(".")
    if name in ("prometheus", "promtool") and major == "0" and len(minor) == 3:
        return f"{minor[0]}.{int(minor[1:])}.{patch}"
    return v


def cache_dir() -> Path:
    if os.environ.get("WAN_PEERS_DIR"):
        return Path(os.environ["WAN_PEERS_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "wan-exporter" / "peers"


def built(name: str) -> str | None:
    """Path of a peer scripts/peers.sh builds, or None when it is not built on this machine."""
    env = os.environ.get("WAN_PEER_" + name.upper().replace("-", "_"))
    path = Path(env) if env else cache_dir() / f"{name}-{peer_table()[name]}" / name
    return str(path) if path.is_file() and os.access(path, os.X_OK) else None


def require_built(name: str) -> str:
    path = built(name)
    if path is None:
        pytest.skip(f"{name} {release(name)} not built: bash scripts/peers.sh {name} builds it from source "
                    "(scripts/test.sh runs it)")
    return path


@dataclass(frozen=True)
class PeerSet:
    """One Prometheus with its promtool, one Alertmanager with its amtool."""

    id: str
    prometheus_version: str
    alertmanager_version: str
    prometheus: str | None
    promtool: str | None
    alertmanager: str | None
    amtool: str | None
    missing_hint: str

    @property
    def prometheus3(self) -> bool:
        return self.prometheus_version.startswith("3")

    def need(self, *tools: str) -> "PeerSet":
        """Skip (a failure under CI=true) unless every named tool of this set is there."""
        missing = [t for t in tools if getattr(self, t) is None]
        if missing:
            pytest.skip(f"{' and '.join(missing)} of the {self.id} peers not found: {self.missing_hint}")
        return self

    def __str__(self) -> str:
        return f"Prometheus {self.prometheus_version} + Alertmanager {self.alertmanager_version} ({self.id})"


DEBIAN = PeerSet(
    "debian", "2.42", "0.25",
    prometheus=shutil.which("prometheus"), promtool=shutil.which("promtool"),
    alertmanager=shutil.which("prometheus-alertmanager") or shutil.which("alertmanager"),
    amtool=shutil.which("amtool"),
    missing_hint="apt-get install --no-install-recommends prometheus prometheus-alertmanager (scripts/test.sh does)")
BUILT = PeerSet(
    "built", release("prometheus"), release("alertmanager"),
    prometheus=built("prometheus"), promtool=built("promtool"),
    alertmanager=built("alertmanager"), amtool=built("amtool"),
    missing_hint="bash scripts/peers.sh builds prometheus, promtool, alertmanager and amtool from source "
                 "(scripts/test.sh runs it)")
PEER_SETS = (DEBIAN, BUILT)
PEER_IDS = [p.id for p in PEER_SETS]


def available(*tools: str) -> list[PeerSet]:
    """The sets that have every named tool (what a shared stack starts; the others' tests skip)."""
    return [p for p in PEER_SETS if all(getattr(p, t) for t in tools)]
