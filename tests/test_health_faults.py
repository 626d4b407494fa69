"""Each fault a model directory can have, on a real directory, and the finding it must produce."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import struct
import tempfile
import time
from pathlib import Path

import pytest

from test_health_fixtures import SHARDS, VAE, WEIGHTS, kinds, write_model
from wan_exporter.config import Thresholds
from wan_exporter.health import hashing, headers, layout
from wan_exporter.health.verdict import verdict
from wan_exporter.state import Snapshot, frozen_map


# "Bounded" here means it finishes instead of hanging or walking forever; the bound is generous
# for a loaded 2-core machine. How fast is measured in the benchmark suite, not here.
BOUNDED = 30.0

def status_of(*results) -> str | None:  # noqa: ANN002
    snap = Snapshot(checks=frozen_map({(r.model, r.check): r for r in results}))
    return verdict(snap, results[0].model, Thresholds()).status


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return write_model(tmp_path / "model")


def test_deleted_shard_is_missing_file(model: Path, tmp_path: Path) -> None:
    (model / SHARDS[1]).unlink()
    lay = layout.check("m", model)
    assert kinds(lay) == ["missing_file"]
    assert [i.path for i in lay.issues] == [SHARDS[1]]
    assert lay.facts["files_expected"] == 12 and lay.facts["files_present"] == 11
    hd = headers.check("m", model)
    assert hd.success, "headers of the files present are fine; the layout check owns the missing one"
    h = hashing.check("m", model, tmp_path / "state")
    assert kinds(h) == ["missing_file"]
    assert h.facts["verified_bytes"] == h.facts["expected_bytes"]  # nothing recorded for it: size unknown
    assert status_of(lay, hd, h) == "critical"


def test_deleted_shard_counts_against_integrity_once_recorded(model: Path, tmp_path: Path) -> None:
    first = hashing.check("m", model, tmp_path / "state")
    size = (model / SHARDS[1]).stat().st_size
    (model / SHARDS[1]).unlink()
    h = hashing.check("m", model, tmp_path / "state")
    assert kinds(h) == ["missing_file"]
    assert h.facts["expected_bytes"] == first.facts["expected_bytes"]
    assert h.facts["verified_bytes"] == first.facts["expected_bytes"] - size


def test_truncated_file_is_found_by_headers_from_stat(model: Path) -> None:
    p = model / SHARDS[0]
    os.truncate(p, p.stat().st_size - 100)
    assert layout.check("m", model).success  # sizes are the header check's business
    hd = headers.check("m", model)
    assert kinds(hd) == ["truncated"]
    assert hd.issues[0].path == SHARDS[0]
    assert "the file has" in hd.issues[0].detail


def test_truncated_inside_header_is_truncated_not_invalid(model: Path) -> None:
    os.truncate(model / VAE, 20)
    hd = headers.check("m", model)
    assert kinds(hd) == ["truncated"]


def test_header_promising_16_gb_in_a_tiny_file_is_truncated_without_reading(model: Path) -> None:
    doc = json.dumps({"w": {"dtype": "F32", "shape": [1 << 30, 4], "data_offsets": [0, 16 << 30]}}).encode()
    (model / VAE).write_bytes(struct.pack("<Q", len(doc)) + doc + b"\0" * 64)
    t0 = time.perf_counter()
    hd = headers.check("m", model)
    assert time.perf_counter() - t0 < BOUNDED  # nothing like 16 GB is read
    assert kinds(hd) == ["truncated"]


def test_garbage_header_is_header_invalid(model: Path) -> None:
    p = model / VAE
    (model / VAE).write_bytes(struct.pack("<Q", 10) + b"not json!!" + b"\0" * 32)
    hd = headers.check("m", model)
    assert kinds(hd) == ["header_invalid"] and hd.issues[0].path == VAE
    assert status_of(hd) == "critical"
    assert p.exists()


def test_shard_saved_in_another_dtype_is_header_invalid(model: Path) -> None:
    import numpy as np
    from safetensors.numpy import load_file, save_file

    t = load_file(str(model / SHARDS[1]))
    save_file({k: v.astype(np.float16) for k, v in t.items()}, str(model / SHARDS[1]))
    hd = headers.check("m", model)
    assert kinds(hd) == ["header_invalid"]
    assert "F16" in hd.issues[0].detail and hd.issues[0].path == SHARDS[1]


def test_shard_not_matching_its_index_is_header_invalid(model: Path) -> None:
    from safetensors.numpy import load_file, save_file

    t = load_file(str(model / SHARDS[1]))
    save_file({k.replace("blocks", "other"): v for k, v in t.items()}, str(model / SHARDS[1]))
    hd = headers.check("m", model)
    assert kinds(hd) == ["header_invalid"]
    assert "index" in hd.issues[0].detail


def test_flipped_byte_passes_headers_but_fails_the_hash(model: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    assert hashing.check("m", model, state).success  # first verification records the manifest
    p = model / SHARDS[0]
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0x01
    p.write_bytes(bytes(data))
    hd = headers.check("m", model)
    assert hd.success and hd.issues == ()
    h = hashing.check("m", model, state)
    assert kinds(h) == ["hash_mismatch"]
    assert h.issues[0].path == SHARDS[0]
    assert h.facts["verified_bytes"] == h.facts["expected_bytes"] - p.stat().st_size
    assert status_of(hd, h) == "critical"


def _run_as_nobody(fn, *args):  # noqa: ANN001, ANN002
    """Run ``fn(*args)`` in a forked child that dropped root, so file permissions apply."""
    ctx = mp.get_context("fork")
    q = ctx.Queue()

    def child() -> None:
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            q.put(fn(*args))
        except BaseException as e:  # noqa: BLE001
            q.put(e)

    p = ctx.Process(target=child)
    p.start()
    out = q.get(timeout=30)
    p.join(10)
    if isinstance(out, BaseException):
        raise out
    return out


def _unreadable_checks(model: Path, state: Path) -> dict[str, list[str]]:
    return {
        "layout": kinds(layout.check("m", model)),
        "headers": kinds(headers.check("m", model)),
        "hash": kinds(hashing.check("m", model, state)),
    }


def test_unreadable_file_is_permission_denied() -> None:
    # Root reads through chmod 000, so as root the checks run in a child that drops to nobody.
    base = Path(tempfile.mkdtemp(prefix="wan-health-perm-"))
    try:
        os.chmod(base, 0o755)
        model = write_model(base / "model")
        for d, dirs, files in os.walk(base):
            os.chmod(d, 0o755)
            for f in files:
                os.chmod(os.path.join(d, f), 0o644)
        state = base / "state"
        state.mkdir(mode=0o777)
        os.chmod(state, 0o777)
        os.chmod(model / SHARDS[0], 0)
        if os.geteuid() == 0:
            got = _run_as_nobody(_unreadable_checks, model, state)
        else:
            got = _unreadable_checks(model, state)
        assert got["layout"] == []  # stat works without read permission
        assert got["headers"] == ["permission_denied"]
        assert got["hash"] == ["permission_denied"]
        os.chmod(model / SHARDS[0], 0o644)
        os.chmod(model / "vae", 0)  # an unlistable component folder
        got = _run_as_nobody(_unreadable_checks, model, state) if os.geteuid() == 0 else _unreadable_checks(model, state)
        assert "permission_denied" in got["layout"]
    finally:
        for d, dirs, files in os.walk(base):
            for x in dirs:
                os.chmod(os.path.join(d, x), 0o755)
        shutil.rmtree(base, ignore_errors=True)


def test_symlink_loops_are_reported_without_hanging(model: Path, tmp_path: Path) -> None:
    shard = model / SHARDS[1]
    shard.unlink()
    os.symlink(shard.name, shard)  # points at itself
    shutil.rmtree(model / "vae")
    os.symlink("vae_b", model / "vae")
    os.symlink("vae", model / "vae_b")  # vae -> vae_b -> vae
    t0 = time.perf_counter()
    lay = layout.check("m", model)
    h = hashing.check("m", model, tmp_path / "state")
    hd = headers.check("m", model)
    assert time.perf_counter() - t0 < BOUNDED
    assert kinds(lay) == ["symlink_loop"]
    assert {i.path for i in lay.issues} == {SHARDS[1], "vae/"}
    assert kinds(h) == ["symlink_loop"]
    assert hd.success
    assert status_of(lay, hd, h) == "critical"


def test_model_dir_that_is_a_symlink_loop(tmp_path: Path) -> None:
    loop = tmp_path / "loop"
    os.symlink("loop", loop)
    assert kinds(layout.check("m", loop)) == ["symlink_loop"]


def test_model_dir_removed_while_hashing_is_missing_model(model: Path, tmp_path: Path) -> None:
    def remove(rel: str, done: int) -> None:
        if model.exists():
            shutil.rmtree(model)

    r = hashing.check("m", model, tmp_path / "state", chunk_bytes=4096, on_chunk=remove)
    assert r is not None
    assert [i.kind for i in r.issues] == ["missing_model"]
    assert status_of(r) == "missing"


def test_model_dir_removed_while_reading_headers_is_missing_model(model: Path) -> None:
    def remove(rel: str) -> None:
        if model.exists():
            shutil.rmtree(model)

    r = headers.check("m", model, on_file=remove)
    assert [i.kind for i in r.issues] == ["missing_model"]


def test_absent_model_dir_is_missing_model(tmp_path: Path) -> None:
    for check in (lambda d: layout.check("m", d), lambda d: headers.check("m", d),
                  lambda d: hashing.check("m", d, tmp_path / "state")):
        r = check(tmp_path / "nowhere")
        assert [i.kind for i in r.issues] == ["missing_model"]
        assert "files_expected" not in r.facts
    r = layout.check("m", None)
    assert [i.kind for i in r.issues] == ["missing_model"]
    assert status_of(r) == "missing"


def _many_files(d: Path, n: int) -> None:
    d.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (d / f"f{i:05d}.txt").touch()


def test_directory_of_10000_files_is_bounded(tmp_path: Path) -> None:
    d = tmp_path / "dump"
    _many_files(d, 10_000)
    t0 = time.perf_counter()
    lay = layout.check("m", d)
    assert time.perf_counter() - t0 < BOUNDED
    assert kinds(lay) == ["not_a_model", "too_many_files"]


def test_component_folder_with_10000_files_stops_the_walk(model: Path, tmp_path: Path) -> None:
    _many_files(model / "transformer", 10_000)
    t0 = time.perf_counter()
    lay = layout.check("m", model)
    hd = headers.check("m", model)
    h = hashing.check("m", model, tmp_path / "state")
    assert time.perf_counter() - t0 < BOUNDED
    assert "too_many_files" in kinds(lay)
    assert lay.facts["complete"] is False
    assert "too_many_files" in kinds(hd) and "too_many_files" in kinds(h)
    assert status_of(lay) == "degraded"


def test_directory_that_is_not_a_model(tmp_path: Path) -> None:
    d = tmp_path / "photos"
    d.mkdir()
    (d / "README.md").write_text("holiday pictures")
    (d / "a.jpg").write_bytes(b"\xff\xd8")
    lay = layout.check("m", d)
    assert kinds(lay) == ["not_a_model"]
    assert lay.facts["model_index"] is False
    assert status_of(lay) == "missing"  # no model_index.json: nothing here is the model
    assert kinds(headers.check("m", d)) == ["not_a_model"]


def test_single_file_checkpoint_is_not_a_model(tmp_path: Path) -> None:
    from safetensors.numpy import save_file
    import numpy as np

    d = tmp_path / "single"
    d.mkdir()
    save_file({"w": np.zeros(4, np.float32)}, str(d / "wan2.1_t2v_1.3B_bf16.safetensors"))
    lay = layout.check("m", d)
    assert kinds(lay) == ["not_a_model"]
    assert "single-file" in lay.issues[0].detail


def test_other_pipeline_is_not_a_wan_model(model: Path) -> None:
    idx = json.loads((model / "model_index.json").read_text())
    idx["_class_name"] = "StableDiffusionPipeline"
    (model / "model_index.json").write_text(json.dumps(idx))
    lay = layout.check("m", model)
    assert kinds(lay) == ["not_a_model"]
    assert status_of(lay) == "critical"


def test_corrupt_model_index_is_header_invalid(model: Path) -> None:
    (model / "model_index.json").write_text('{"_class_name": "WanPipe')
    lay = layout.check("m", model)
    assert kinds(lay) == ["header_invalid"]


def test_missing_component_folder_and_config(model: Path) -> None:
    shutil.rmtree(model / "text_encoder")
    (model / "scheduler" / "scheduler_config.json").unlink()
    lay = layout.check("m", model)
    assert kinds(lay) == ["missing_file"]
    assert {i.path for i in lay.issues} == {"text_encoder/", "scheduler/scheduler_config.json"}


def test_shard_missing_without_an_index_is_named(model: Path) -> None:
    (model / "transformer" / "diffusion_pytorch_model.safetensors.index.json").unlink()
    (model / SHARDS[1]).unlink()
    lay = layout.check("m", model)
    assert [(i.kind, i.path) for i in lay.issues] == [("missing_file", SHARDS[1])]


def test_file_changing_while_hashed_is_changed_during_check(model: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    target = SHARDS[0]

    def grow(rel: str, done: int) -> None:
        if rel == target and done == 4096:  # after the first chunk, deterministically
            with open(model / rel, "ab") as f:
                f.write(b"more")

    r = hashing.check("m", model, state, chunk_bytes=4096, on_chunk=grow)
    assert [(i.kind, i.path) for i in r.issues] == [("changed_during_check", target)]
    assert status_of(r) == "degraded"
    doc = json.loads(hashing.manifest_path(state, "m").read_text())
    assert target not in doc["files"] and target not in doc["cache"]  # not recorded: read again next run
    assert set(doc["files"]) == set(WEIGHTS) - {target}
    again = hashing.check("m", model, state, chunk_bytes=4096)
    assert again.success and again.facts["files_recorded"] == 1
