"""Every form a Wan checkpoint takes on disk: intact is healthy with facts; a truncated, flipped
or deleted file is the right finding. Fixtures are built offline by wan_exporter.tiny_forms."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from wan_exporter import tiny_forms
from wan_exporter.config import Thresholds
from wan_exporter.health import hashing, headers, layout
from wan_exporter.health.verdict import verdict
from wan_exporter.state import Snapshot, frozen_map

PARAMS_2X = 2 * tiny_forms.parameter_count("t2v")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("forms")
    return {
        "official": tiny_forms.official_layout(base / "Wan2.2-T2V-A14B"),
        "official_5b": tiny_forms.official_layout(base / "Wan2.2-TI2V-5B", model_type="ti2v", experts=False),
        "fp16": tiny_forms.single_files(base / "comfy-fp16", "fp16"),
        "fp8_scaled": tiny_forms.single_files(base / "comfy-fp8", "fp8_scaled"),
        "gguf": tiny_forms.gguf_files(base / "gguf"),
    }


def _copy(src: Any, dest: Path) -> Any:
    """A private copy of a built form (a directory, or a list of files)."""
    if isinstance(src, list):
        dest.mkdir(parents=True)
        return [Path(shutil.copy2(p, dest / p.name)) for p in src]
    shutil.copytree(src, dest)
    return dest


def run(target: Any, state: Path) -> tuple[str | None, dict[str, Any]]:
    results = [layout.check("m", target), headers.check("m", target), hashing.check("m", target, state)]
    v = verdict(Snapshot(checks=frozen_map({("m", r.check): r for r in results})), "m", Thresholds())
    return v.status, {r.check: r for r in results}


def kinds(r: Any) -> set[str]:
    return {i.kind for i in r.issues}


def flip(path: Path, at: int = -100) -> None:
    with open(path, "r+b") as f:
        f.seek(at, os.SEEK_END)
        b = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([b[0] ^ 0xFF]))


FORMS = ("official", "official_5b", "fp16", "fp8_scaled", "gguf")


@pytest.mark.parametrize("form", FORMS)
def test_intact_form_is_healthy_with_facts(built: dict, form: str, tmp_path: Path) -> None:
    target = _copy(built[form], tmp_path / "m")
    status, r = run(target, tmp_path / "state")
    assert status == "healthy", {c: x.issues for c, x in r.items()}
    want_form = {"official_5b": "official", "fp8_scaled": "single_file", "fp16": "single_file"}.get(form, form)
    assert r["layout"].facts["form"] == want_form
    assert r["layout"].facts["files_present"] == r["layout"].facts["files_expected"]
    experts = 1 if form == "official_5b" else 2
    assert r["layout"].facts["experts"] == experts
    params = tiny_forms.parameter_count("ti2v") if form == "official_5b" else PARAMS_2X
    assert r["headers"].facts["parameters"] == params  # scale tensors and GGUF bytes do not count
    dtypes = r["headers"].facts["dtypes"]
    assert {"fp8_scaled": "float8_e4m3fn", "gguf": "q8_0", "fp16": "float16"}.get(form, "float32") in dtypes
    assert r["hash"].facts["verified_bytes"] == r["hash"].facts["expected_bytes"] > 0
    assert len(r["hash"].facts["content_digest"]) == 64


def _weight(target: Any, form: str) -> Path:
    if isinstance(target, list):
        return target[1]
    return target / ("high_noise_model" if form == "official" else "") / \
        "diffusion_pytorch_model-00002-of-00002.safetensors"


@pytest.mark.parametrize("form", FORMS)
def test_truncated_weight_is_named_truncated(built: dict, form: str, tmp_path: Path) -> None:
    target = _copy(built[form], tmp_path / "m")
    w = _weight(target, form)
    os.truncate(w, w.stat().st_size - 64)
    status, r = run(target, tmp_path / "state")
    assert status == "critical"
    assert "truncated" in kinds(r["headers"]) and any(w.name in i.path for i in r["headers"].issues)


@pytest.mark.parametrize("form", FORMS)
def test_deleted_weight_is_a_missing_file(built: dict, form: str, tmp_path: Path) -> None:
    target = _copy(built[form], tmp_path / "m")
    w = _weight(target, form)
    w.unlink()
    status, r = run(target, tmp_path / "state")
    assert status == "critical"
    assert kinds(r["layout"]) == {"missing_file"} and any(w.name in i.path for i in r["layout"].issues)


@pytest.mark.parametrize("form", ("official", "gguf"))
def test_truncated_pth_and_gguf_header_are_truncated(built: dict, form: str, tmp_path: Path) -> None:
    target = _copy(built[form], tmp_path / "m")
    w = target / "models_t5_umt5-xxl-enc-bf16.pth" if form == "official" else target[0]
    os.truncate(w, 200 if form == "gguf" else w.stat().st_size - 300)
    r = headers.check("m", target)
    assert kinds(r) == {"truncated"}, r.issues


@pytest.mark.parametrize("form", FORMS)
def test_flipped_byte_after_a_local_dir_download_is_caught_on_the_first_run(built: dict, form: str,
                                                                            tmp_path: Path) -> None:
    target = _copy(built[form], tmp_path / "m")
    root = target if not isinstance(target, list) else target[0].parent
    tiny_forms.local_dir_metadata(root)
    w = _weight(target, form)
    flip(w)
    r = hashing.check("m", target, tmp_path / "state")
    assert kinds(r) == {"hash_mismatch"}
    [issue] = r.issues
    assert issue.path.endswith(w.name) and "download metadata" in issue.detail
    assert r.facts["local_dir_files"] == len(layout.scan(target).weights)
    assert r.facts["recorded_bytes"] == 0 and "content_digest" not in r.facts


def test_single_file_in_a_local_dir_repo_finds_metadata_above_it(built: dict, tmp_path: Path) -> None:
    """ComfyUI's repackaged repo: split_files/diffusion_models/<file>, metadata at the repo root."""
    repo = tmp_path / "Wan_2.2_ComfyUI_Repackaged"
    files = _copy(built["fp8_scaled"], repo / "split_files" / "diffusion_models")
    tiny_forms.local_dir_metadata(repo)
    r = hashing.check("m", files, tmp_path / "state")
    assert r.success and r.facts["published_bytes"] == r.facts["expected_bytes"] and r.facts["local_dir_files"] == 2
    flip(files[0])
    r = hashing.check("m", files, tmp_path / "state2")
    assert kinds(r) == {"hash_mismatch"}


def test_hf_cache_layout_of_the_official_repo_is_checked_against_blob_names(built: dict, tmp_path: Path) -> None:
    snap = tiny_forms.hf_cache(tmp_path / "hub", "Wan-AI/Wan2.2-T2V-A14B", built["official"])
    status, r = run(snap, tmp_path / "state")
    assert status == "healthy" and r["layout"].facts["form"] == "official"
    assert r["hash"].facts["published_bytes"] == r["hash"].facts["expected_bytes"]
    assert r["hash"].facts["hf_cache_files"] == len(layout.scan(snap).weights)


def test_modelscope_layout_is_found_and_recorded(built: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from wan_exporter.checkpoint import locate

    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "ms"))
    d = tiny_forms.modelscope_cache(tmp_path / "ms", "Wan-AI/Wan2.2-T2V-A14B", built["official"])
    assert locate.resolve(("Wan-AI/Wan2.2-T2V-A14B-Diffusers", "Wan-AI/Wan2.2-T2V-A14B"),
                          hf_cache=str(tmp_path / "no-hub")) == d
    status, r = run(d, tmp_path / "state")
    assert status == "healthy" and r["layout"].facts["form"] == "official"
    assert r["hash"].facts["recorded_bytes"] == r["hash"].facts["expected_bytes"]  # no published digest there


def test_one_a14b_file_is_a_catalog_mismatch_not_a_failure(built: dict, tmp_path: Path) -> None:
    from wan_exporter import catalog

    [high, _] = _copy(built["fp16"], tmp_path / "m")
    r = headers.check("m", [high], catalog.get("tiny-wan2.2-t2v-a14b"))
    assert r.success and kinds(r) == {"catalog_mismatch"}
    assert any("1 denoising expert" in i.detail for i in r.issues)


@pytest.mark.parametrize("form", ("fp16", "fp8_scaled", "gguf", "official"))
def test_quantised_and_official_forms_match_their_catalog_entry(built: dict, form: str) -> None:
    from wan_exporter import catalog

    r = headers.check("m", built[form], catalog.get("tiny-wan2.2-t2v-a14b"))
    assert r.success and r.issues == (), r.issues


def test_a_directory_of_single_files_says_to_name_them(built: dict, tmp_path: Path) -> None:
    d = tmp_path / "m"
    _copy(built["fp16"], d)
    status, r = run(d, tmp_path / "state")
    assert status == "missing"
    assert "single-file" in r["layout"].issues[0].detail


@pytest.mark.parametrize("name, component, model_type", [
    ("wan2.2_i2v_high_noise_14B_fp8_scaled.safetensors", "transformer", "i2v"),
    ("wan2.2_t2v_low_noise_14B_fp16.safetensors", "transformer_2", "t2v"),
    ("Wan2_2-I2V-A14B-HIGH_fp8_e4m3fn_scaled_KJ.safetensors", "transformer", "i2v"),
    ("Wan2_2-I2V-A14B-LOW_fp8_e4m3fn_scaled_KJ.safetensors", "transformer_2", "i2v"),
    ("Wan2.2-I2V-A14B-HighNoise-Q4_K_S.gguf", "transformer", "i2v"),
    ("wan2.2_i2v_low_noise_14B_Q4_K_M.gguf", "transformer_2", "i2v"),
    ("wan2.2_ti2v_5B_fp16.safetensors", "transformer", "ti2v"),
])
def test_published_file_names_say_which_expert_and_task(name: str, component: str, model_type: str) -> None:
    from wan_exporter.scan import single

    assert single.component_names([name]) == [component]
    assert single.model_type_from_names([name]) == model_type


def test_wan21_i2v_official_layout_expects_its_clip_encoder(tmp_path: Path) -> None:
    d = tiny_forms.official_layout(tmp_path / "Wan2.1-I2V-14B-480P", model_type="i2v", experts=False)
    status, r = run(d, tmp_path / "state")
    assert status == "healthy" and r["layout"].facts["model_type"] == "i2v"
    clip = d / "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth"
    clip.unlink()
    r = layout.check("m", d)
    assert kinds(r) == {"missing_file"} and r.issues[0].path == clip.name


@pytest.mark.parametrize("content, kind", [
    (b"GGUF" + b"\x03\x00\x00\x00" + b"\xff" * 16, "header_invalid"),  # absurd tensor and key counts
    (b"GGUF" + b"\x03\x00\x00\x00" + (1).to_bytes(8, "little") + (0).to_bytes(8, "little") + b"\x05", "truncated"),
    (b"GGUF" + b"\x09\x00\x00\x00" + b"\x00" * 16, "header_invalid"),  # an unknown version
    (b"not a gguf file at all", "header_invalid"),
])
def test_broken_gguf_files_are_findings_never_crashes(content: bytes, kind: str, tmp_path: Path) -> None:
    f = tmp_path / "Wan2.2-T2V-A14B-HighNoise-Q4_K_S.gguf"
    f.write_bytes(content)
    r = headers.check("m", f)
    assert kinds(r) == {kind}, r.issues


@pytest.mark.parametrize("content, kind", [
    (b"PK\x03\x04" + b"\x00" * 100, "truncated"),  # a zip whose directory never arrived
    (b"\x80\x02}q\x00.", None),  # a legacy pickle: no structure to check, so nothing to report
    (b"garbage", "header_invalid"),
])
def test_broken_pth_files_are_findings_never_crashes(built: dict, content: bytes, kind: str, tmp_path: Path) -> None:
    d = _copy(built["official"], tmp_path / "m")
    (d / "Wan2.1_VAE.pth").write_bytes(content)
    r = headers.check("m", d)
    assert kinds(r) == ({kind} if kind else set()), r.issues
    assert all(i.path == "Wan2.1_VAE.pth" for i in r.issues)


def _zip_with_undecodable_name() -> bytes:
    """A torch.save-like zip whose directory flags a member name UTF-8 that is not."""
    import io
    import zipfile

    b = io.BytesIO()
    with zipfile.ZipFile(b, "w") as z:
        z.writestr("archive/data.pkl", b"x")
        z.writestr("archive/ab", b"y")
    raw = bytearray(b.getvalue().replace(b"archive/ab", b"archive/\xff\xfe"))
    i = raw.find(b"PK\x01\x02")
    while i >= 0:
        raw[i + 9] |= 0x08  # general purpose flag bit 11: the name is UTF-8
        i = raw.find(b"PK\x01\x02", i + 4)
    return bytes(raw)


def test_pth_with_undecodable_member_name_is_header_invalid(built: dict, tmp_path: Path) -> None:
    d = _copy(built["official"], tmp_path / "m")
    (d / "Wan2.1_VAE.pth").write_bytes(_zip_with_undecodable_name())
    r = headers.check("m", d)
    assert kinds(r) == {"header_invalid"}, r.issues
    assert all(i.path == "Wan2.1_VAE.pth" for i in r.issues)


@pytest.mark.parametrize("form", ("official", "fp16", "gguf"))
def test_single_files_give_the_geometry_a_flops_count_needs(built: dict, form: str) -> None:
    from wan_exporter.measure import flops
    from wan_exporter.checkpoint.facts import derive_facts

    shape = flops.shape_from_config(derive_facts(built[form]).transformer_config)
    assert shape is not None and (shape.dim, shape.ffn_dim, shape.num_layers) == (24, 32, 2)
    assert shape.patch_size == (1, 2, 2) and shape.in_channels == 16


def test_deeply_nested_json_is_header_invalid_not_a_crash(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    d = tmp_path / "m"
    d.mkdir()
    (d / "model_index.json").write_text("[" * 200_000 + "]" * 200_000)
    for check in (layout, headers):
        r = check.check("m", d)
        assert ("header_invalid", "model_index.json") in {(i.kind, i.path) for i in r.issues}, r.issues
    assert "Traceback" not in caplog.text and not [x for x in caplog.records if x.exc_info]


def _gguf_with_arrays(n_bytes_items: int) -> bytes:
    """A GGUF v3 header with no tensors and three arrays: long scalars, long strings, short ints."""
    import struct

    def s(text: str) -> bytes:
        return struct.pack("<Q", len(text)) + text.encode()

    kv = [s("t.bytes") + struct.pack("<IIQ", 9, 0, n_bytes_items) + b"\x07" * n_bytes_items,
          s("t.tokens") + struct.pack("<IIQ", 9, 8, 20) + b"".join(s(f"tok{i}") for i in range(20)),
          s("t.short") + struct.pack("<IIQ", 9, 5, 3) + struct.pack("<iii", 1, 2, 3)]
    return b"GGUF" + struct.pack("<IQQ", 3, 0, len(kv)) + b"".join(kv)


def test_long_gguf_arrays_are_summarised_without_keeping_their_items(tmp_path: Path) -> None:
    import tracemalloc

    from wan_exporter.scan.gguf_table import read_gguf
    from wan_exporter.scan.tables import TableError

    f = tmp_path / "m.gguf"
    f.write_bytes(_gguf_with_arrays(4 << 20))
    tracemalloc.start()
    try:
        t = read_gguf(f)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (t.metadata["t.bytes"], t.metadata["t.tokens"], t.metadata["t.short"]) == \
        (f"[{4 << 20} items]", "[20 items]", "[1, 2, 3]")
    assert peak < 8 << 20, peak  # one read step, not an object per item
    f.write_bytes(_gguf_with_arrays(4 << 20)[: 1 << 20])  # ends inside the long array
    with pytest.raises(TableError) as e:
        read_gguf(f)
    assert e.value.truncated


def test_a_shard_name_promising_more_shards_than_a_scan_examines_is_one_finding(built: dict, tmp_path: Path) -> None:
    d = _copy(built["official"], tmp_path / "m")
    h = d / "high_noise_model"
    (h / "diffusion_pytorch_model.safetensors.index.json").unlink()
    hostile = "diffusion_pytorch_model-00001-of-99999999.safetensors"
    (h / "diffusion_pytorch_model-00001-of-00002.safetensors").rename(h / hostile)
    r = layout.check("m", d)
    assert [(i.kind, i.path) for i in r.issues if "99999999" in i.path] == [("header_invalid", f"high_noise_model/{hostile}")]
    assert len(r.issues) < 5
