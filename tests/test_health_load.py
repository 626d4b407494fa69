"""The load check runs in a spawned child: a hang, a crash or the child's findings all become
bounded findings, and the real child builds the fixture pipeline with the installed diffusers."""

from __future__ import annotations

import os
import time
from pathlib import Path

from test_health_fixtures import kinds, write_model
from wan_exporter.health import loadcheck

HERE = "test_health_load"


# -- child targets (module level: the spawned child imports them by name) -------------------
def hang(request: dict, progress) -> dict:  # noqa: ANN001
    time.sleep(60)
    return {"success": True}


def skewed(request: dict, progress) -> dict:  # noqa: ANN001
    return {"success": False, "versions": {"diffusers": "0.30.0"}, "duration_seconds": 0.5,
            "issues": [{"kind": "version_skew", "detail": "model_index.json names 'transformer_2'"},
                       {"kind": "not_diffusers_layout", "detail": "no model_index.json"}]}


def crash(request: dict, progress) -> dict:  # noqa: ANN001
    os._exit(3)


def raises(request: dict, progress) -> dict:  # noqa: ANN001
    raise ImportError("No module named 'ftfy'")


# -- tests ----------------------------------------------------------------------------------
def test_real_load_check_builds_the_pipeline(tmp_path: Path) -> None:
    d = write_model(tmp_path / "model")
    r = loadcheck.check("m", d, kind="tiny-wan2.1-t2v", pipeline="WanPipeline", timeout=120)
    assert r.success, r.issues
    assert r.facts["versions"]["diffusers"]
    assert r.facts["load_seconds"] > 0


def test_hanging_child_is_a_finding_within_its_timeout(tmp_path: Path) -> None:
    t0 = time.perf_counter()
    r = loadcheck.check("m", tmp_path, timeout=1.0, kill_grace=1.0, target=f"{HERE}:hang")
    assert time.perf_counter() - t0 < 10
    assert kinds(r) == ["load_failed"] and "timed out" in r.issues[0].detail


def test_child_findings_map_to_bounded_kinds(tmp_path: Path) -> None:
    r = loadcheck.check("m", tmp_path, timeout=30, target=f"{HERE}:skewed")
    assert [i.kind for i in r.issues] == ["version_skew", "load_failed"]
    assert r.facts["versions"] == {"diffusers": "0.30.0"} and r.facts["load_seconds"] == 0.5


def test_crashing_or_raising_child_is_load_failed(tmp_path: Path) -> None:
    r = loadcheck.check("m", tmp_path, timeout=30, kill_grace=1.0, target=f"{HERE}:crash")
    assert kinds(r) == ["load_failed"] and "exit code 3" in r.issues[0].detail
    r = loadcheck.check("m", tmp_path, timeout=30, target=f"{HERE}:raises")
    assert kinds(r) == ["load_failed"] and "ftfy" in r.issues[0].detail


def test_missing_dir_starts_no_child(tmp_path: Path) -> None:
    t0 = time.perf_counter()
    r = loadcheck.check("m", tmp_path / "gone", target=f"{HERE}:hang")
    assert time.perf_counter() - t0 < 1
    assert [i.kind for i in r.issues] == ["missing_model"]
