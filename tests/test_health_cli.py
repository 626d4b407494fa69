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


def test_single_files_and_official_layout_are_checked_with_facts(tmp_path: Path) -> None:
    from wan_exporter import tiny_forms

    files = tiny_forms.gguf_files(tmp_path / "gguf")
    p = check_model(*map(str, files), "--kind", "tiny-wan2.2-t2v-a14b", "--json")
    assert p.returncode == 0, p.stdout + p.stderr
    doc = json.loads(p.stdout)
    assert doc["status"] == "healthy" and doc["form"] == "gguf"
    facts = {c["check"]: c["facts"] for c in doc["checks"]}
    assert facts["headers"]["parameters"] == 2 * tiny_forms.parameter_count() and "q8_0" in facts["headers"]["dtypes"]
    assert "load" in doc["skipped"]


def test_manifest_is_written_then_verifies_a_copy(tmp_path: Path) -> None:
    from wan_exporter import tiny_forms

    files = tiny_forms.single_files(tmp_path / "a", "fp8_scaled")
    manifest = tmp_path / "known-good.sha256"
    p = check_model(*map(str, files), "--manifest", str(manifest))
    assert p.returncode == 0 and manifest.is_file(), p.stdout + p.stderr
    lines = manifest.read_text().splitlines()
    assert len(lines) == 2 and all(len(line.split("  ")[0]) == 64 for line in lines)
    p = check_model(*map(str, files), "--manifest", str(manifest))
    assert p.returncode == 0 and "compared with the manifest" in p.stdout, p.stdout
    with open(files[1], "r+b") as f:  # a copy on another node that differs by one byte
        f.seek(-50, os.SEEK_END)
        b = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([b[0] ^ 1]))
    p = check_model(*map(str, files), "--manifest", str(manifest))
    assert p.returncode == 1 and "verdict: critical" in p.stdout
    finding = next(line for line in p.stdout.splitlines() if "hash_mismatch" in line)
    assert files[1].name in finding and str(manifest) in finding


def test_every_form_tiny_models_writes_is_healthy_and_checked_against_its_download_metadata(tmp_path: Path) -> None:
    from wan_exporter import tiny_forms

    built = tiny_forms.build_forms(tmp_path / "forms")
    for name, where in built.items():
        args = [str(where)] if name.startswith("official") else sorted(str(f) for f in where.iterdir() if f.suffix in (".safetensors", ".gguf"))
        p = check_model(*args, "--no-load", "--json")
        doc = json.loads(p.stdout)
        assert p.returncode == 0 and doc["status"] == "healthy", (name, p.stdout)
        hashed = next(c for c in doc["checks"] if c["check"] == "hash")["facts"]
        assert hashed["published_bytes"] == hashed["expected_bytes"] and hashed["recorded_bytes"] == 0, name
        assert any("download metadata" in n for n in doc["notes"]), name
