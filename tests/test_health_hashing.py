"""The hash check's promises: unchanged files are not read again, one run at a time, the
manifest lives outside the model and a failure to write it is a finding, never a crash."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import threading
import time
from pathlib import Path

import pytest

from test_health_fixtures import SHARDS, WEIGHTS, kinds, write_model
from wan_exporter.health import hashing


def _age(model: Path, seconds: float = 3600.0) -> None:
    """Model files are old in real life; a file written just now is re-read (racy mtime)."""
    t = time.time() - seconds
    for w in WEIGHTS:
        os.utime(model / w, (t, t))


class Reads:
    def __init__(self) -> None:
        self.files: list[str] = []

    def __call__(self, rel: str, done: int) -> None:
        if not self.files or self.files[-1] != rel:
            self.files.append(rel)


@pytest.fixture
def model(tmp_path: Path) -> Path:
    d = write_model(tmp_path / "model")
    _age(d)
    return d


def test_unchanged_files_are_not_read_again(model: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    first, second = Reads(), Reads()
    r1 = hashing.check("m", model, state, on_chunk=first)
    assert sorted(first.files) == sorted(WEIGHTS)
    assert r1.facts["files_read"] == 4 and r1.facts["files_recorded"] == 4
    r2 = hashing.check("m", model, state, on_chunk=second)
    assert second.files == []  # every digest came from the manifest's cache
    assert r2.success and r2.facts["files_cached"] == 4 and r2.facts["bytes_read"] == 0
    assert r2.facts["verified_bytes"] == r2.facts["expected_bytes"] == r1.facts["expected_bytes"]
    # A touched file (new mtime) is read again; the others still come from the cache.
    t = time.time() - 600
    os.utime(model / SHARDS[1], (t, t))
    third = Reads()
    r3 = hashing.check("m", model, state, on_chunk=third)
    assert third.files == [SHARDS[1]] and r3.success


def test_manifest_is_outside_the_model_and_records_sha256(model: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    before = sorted(p.name for p in model.rglob("*"))
    hashing.check("m", model, state)
    assert sorted(p.name for p in model.rglob("*")) == before
    doc = json.loads((state / "manifests" / "m.json").read_text())
    want = hashlib.sha256((model / SHARDS[0]).read_bytes()).hexdigest()
    assert doc["files"][SHARDS[0]]["sha256"] == want
    assert doc["cache"][SHARDS[0]]["key"][2] == (model / SHARDS[0]).stat().st_size
    assert not [p for p in (state / "manifests").iterdir() if p.name != "m.json"]  # no temp file left


def test_file_written_in_the_same_tick_as_its_hash_is_read_again(tmp_path: Path) -> None:
    model = write_model(tmp_path / "fresh")  # mtimes: now
    state = tmp_path / "state"
    hashing.check("m", model, state)
    again = Reads()
    hashing.check("m", model, state, on_chunk=again)
    assert sorted(again.files) == sorted(WEIGHTS)


def test_manifest_write_failure_is_a_finding(model: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "manifests").write_text("a file where the folder should be")
    r = hashing.check("m", model, state)
    assert kinds(r) == ["manifest_write_failed"]
    assert r.facts["verified_bytes"] == r.facts["expected_bytes"]  # the hashing itself worked


def test_disk_full_while_saving_the_manifest_is_a_finding(model: Path, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    def full(*a, **k):  # noqa: ANN002, ANN003
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(hashing.os, "replace", full)
    r = hashing.check("m", model, tmp_path / "state")
    assert kinds(r) == ["manifest_write_failed"]
    assert "No space left" in r.issues[0].detail
    assert list((tmp_path / "state" / "manifests").iterdir()) == []  # temp file cleaned up


def test_unreadable_manifest_is_recorded_again(model: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / "manifests").mkdir(parents=True)
    (state / "manifests" / "m.json").write_text("{not json")
    r = hashing.check("m", model, state)
    assert r.success and r.facts["files_recorded"] == 4


def test_second_hash_run_skips_while_one_is_running(model: Path, tmp_path: Path) -> None:
    entered, release = threading.Event(), threading.Event()
    results: list = []

    def hold(rel: str, done: int) -> None:
        entered.set()
        release.wait(5)

    t = threading.Thread(target=lambda: results.append(hashing.check("m", model, tmp_path / "a", on_chunk=hold)))
    t.start()
    try:
        assert entered.wait(5)
        assert hashing.check("m", model, tmp_path / "b") is None
    finally:
        release.set()
        t.join(10)
    assert results and results[0].success


def test_stop_event_ends_a_run_without_a_result(model: Path, tmp_path: Path) -> None:
    stop = threading.Event()

    def stop_now(rel: str, done: int) -> None:
        stop.set()

    assert hashing.check("m", model, tmp_path / "s", chunk_bytes=4096, on_chunk=stop_now, stop=stop) is None
    stop.clear()
    assert hashing.check("m", model, tmp_path / "s").success  # and the lock was released


def test_rate_limit_paces_reads(model: Path, tmp_path: Path) -> None:
    total = sum((model / w).stat().st_size for w in WEIGHTS)
    rate = int(total / 0.4)  # about 0.4 s for everything
    t0 = time.perf_counter()
    r = hashing.check("m", model, tmp_path / "s", chunk_bytes=8192, rate_limit_bytes_per_second=rate)
    elapsed = time.perf_counter() - t0
    assert r.success
    # Paced: never faster than the limit allows (load only slows it); the upper bound only
    # catches a limiter gone wrong, generous for a loaded machine (speed is the benchmarks' job).
    assert 0.3 < elapsed < 30.0


def test_hf_cache_blob_name_is_the_reference(tmp_path: Path) -> None:
    """In the HF cache a snapshot file links to blobs/<sha256>: a corrupt blob is a mismatch at once."""
    src = write_model(tmp_path / "src")
    repo = tmp_path / "hub" / "models--org--m"
    snap = repo / "snapshots" / "abc"
    blobs = repo / "blobs"
    blobs.mkdir(parents=True)
    for p in sorted(src.rglob("*")):
        rel = p.relative_to(src)
        if p.is_dir():
            (snap / rel).mkdir(parents=True, exist_ok=True)
            continue
        data = p.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if str(rel) == SHARDS[0]:
            data = data[:-1] + bytes([data[-1] ^ 0xFF])  # the blob rotted after download
        (blobs / digest).write_bytes(data)
        (snap / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(blobs / digest, (snap / rel).parent), snap / rel)
    r = hashing.check("m", snap, tmp_path / "state")
    assert [(i.kind, i.path) for i in r.issues] == [("hash_mismatch", SHARDS[0])]
    assert r.facts["hf_cache_files"] == 4 and r.facts["files_recorded"] == 0
    assert "Hugging Face cache" in r.issues[0].detail


def test_a_cached_digest_older_than_max_age_is_read_again(model: Path, tmp_path: Path) -> None:
    """Bit rot keeps size and mtime: a scheduled run reads every byte once the cache is older
    than the age the schedule allows (half the hash interval), whatever the stat key says."""
    state = tmp_path / "state"
    hashing.check("m", model, state)
    again = Reads()
    r = hashing.check("m", model, state, on_chunk=again, max_age=0.0)
    assert sorted(again.files) == sorted(WEIGHTS) and r.facts["files_cached"] == 0 and r.success


def test_scheduled_hash_runs_allow_half_the_interval(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from test_health_subsystem import make_app

    seen: dict = {}
    real = hashing.check

    def spy(*args, **kw):  # noqa: ANN002, ANN003
        seen.update(kw)
        return real(*args, **kw)

    app, sub = make_app(tmp_path)
    monkeypatch.setattr(hashing, "check", spy)
    sub.run_hash()
    assert seen["max_age"] == app.config().schedules.hash.interval / 2
