"""``wan-exporter check-model``: the real command in a subprocess, its report and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from test_health_fixtures import SHARDS, write_model

ROOT = Path(__file__).resolve().parents[1]


def check_model(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "exporter")}
    return subprocess.run([sys.executable, "-m", "wan_exporter", "check-model", *args], capture_output=True,
                          text=True, timeout=60, env=env)


def test_healthy_model_exits_0_and_says_the_hash_was_recorded(tmp_path: Path) -> None:
    d = write_model(tmp_path / "model")
    p = check_model(str(d), "--no-load", "--kind", "tiny-wan2.1-t2v")
    assert p.returncode == 0, p.stdout + p.stderr
    lines = p.stdout.splitlines()
    for check in ("layout", "headers", "hash"):
        assert any(line.split()[:2] == [check, "OK"] for line in lines), p.stdout
    assert any(line.split()[:2] == ["load", "SKIP"] for line in lines)
    assert "not in the Hugging Face cache" in p.stdout and "first verification" in p.stdout
    assert lines[-1] == "verdict: healthy"
    assert not list(d.rglob("*.json.tmp"))


def test_broken_model_exits_1_naming_the_file(tmp_path: Path) -> None:
    d = write_model(tmp_path / "model")
    os.truncate(d / SHARDS[1], 200)
    p = check_model(str(d), "--no-load", "--no-hash")
    assert p.returncode == 1, p.stdout + p.stderr
    assert any(line.split()[:2] == ["headers", "FAIL"] for line in p.stdout.splitlines())
    finding = next(line for line in p.stdout.splitlines() if "truncated" in line)
    assert SHARDS[1] in finding and str(d) not in finding  # relative path
    assert "verdict: critical" in p.stdout
    assert "(--no-hash)" in p.stdout


def test_json_report_and_missing_dir(tmp_path: Path) -> None:
    p = check_model(str(tmp_path / "absent"), "--no-load", "--json")
    assert p.returncode == 1
    doc = json.loads(p.stdout)
    assert doc["status"] == "missing"
    assert doc["issues"] == {"missing_model": 1}
    assert {c["check"] for c in doc["checks"]} == {"layout", "headers", "hash"}


def test_unknown_kind_is_a_usage_error(tmp_path: Path) -> None:
    p = check_model(str(tmp_path), "--kind", "wan9-t2v", "--no-load")
    assert p.returncode == 2
    assert "unknown --kind" in p.stderr
