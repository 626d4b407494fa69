"""Headers and JSON files crafted to break the parser are findings, never tracebacks or "healthy".

Each safetensors case is also given to the installed safetensors library (0.8): what it refuses
is ``header_invalid`` here (checked both ways, so the list cannot drift from the library), with
one deliberate difference, named in ``STRICTER``. Large headers take the child-process path
(:mod:`wan_exporter.scan.header_child`) and must agree with the in-process one.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors import safe_open

from support.faults_procs import value, wait_metric
from support.procs import ExporterProcess, exporter_env, samples_named
from test_health_fixtures import VAE, write_model
from wan_exporter.findings import Findings
from wan_exporter.health.headers import check_file
from wan_exporter.scan.safetensors_header import IN_PROCESS_MAX_BYTES, MAX_TABLE_TENSORS

F32x2 = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
DEEP = b"[" * 100_000 + b"]" * 100_000
HUGE = b"9" * 5000


def raw(doc: dict) -> bytes:
    return json.dumps(doc).encode()


# name -> (header JSON bytes, tensor data bytes)
CASES: dict[str, tuple[bytes, bytes]] = {
    "plain": (raw({"a": F32x2}), b"\0" * 8),
    "metadata_of_strings": (raw({"__metadata__": {"format": "pt"}, "a": F32x2}), b"\0" * 8),
    "metadata_null": (raw({"__metadata__": None, "a": F32x2}), b"\0" * 8),
    "extra_entry_key": (raw({"a": {**F32x2, "extra": 1}}), b"\0" * 8),
    "space_padding": (raw({"a": F32x2}) + b"        ", b"\0" * 8),
    "f4_whole_bytes": (raw({"a": {"dtype": "F4", "shape": [16], "data_offsets": [0, 8]}}), b"\0" * 8),
    "fnuz_dtype": (raw({"a": {"dtype": "F8_E4M3FNUZ", "shape": [8], "data_offsets": [0, 8]}}), b"\0" * 8),
    "unknown_dtype": (raw({"a": {**F32x2, "dtype": "Q4"}}), b"\0" * 8),
    "lower_case_dtype": (raw({"a": {**F32x2, "dtype": "f32"}}), b"\0" * 8),
    "metadata_int_value": (raw({"__metadata__": {"x": 1}, "a": F32x2}), b"\0" * 8),
    "metadata_list": (raw({"__metadata__": ["x"], "a": F32x2}), b"\0" * 8),
    "negative_dim": (raw({"a": {**F32x2, "shape": [-2]}}), b"\0" * 8),
    "float_dim": (raw({"a": {**F32x2, "shape": [2.0]}}), b"\0" * 8),
    "dim_beyond_u64": (raw({"a": {**F32x2, "shape": [2 ** 64]}}), b"\0" * 8),
    "shape_product_overflows": (raw({"a": {**F32x2, "shape": [2 ** 62, 16]}}), b"\0" * 8),
    "size_in_bits_overflows": (raw({"a": {**F32x2, "shape": [2 ** 62]}}), b"\0" * 8),
    "f4_half_byte": (raw({"a": {"dtype": "F4", "shape": [3], "data_offsets": [0, 2]}}), b"\0" * 2),
    "missing_shape": (raw({"a": {"dtype": "F32", "data_offsets": [0, 8]}}), b"\0" * 8),
    "gap": (raw({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}), b"\0" * 8),
    "trailing_bytes": (raw({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}), b"\0" * 8),
    "duplicate_name": (b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
                       b'"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', b"\0" * 8),
    "not_an_object": (b"[]", b""),
    "entry_not_an_object": (b'{"a":1}', b""),
    "empty_header": (b"", b""),
    "nested_100000_deep": (b'{"a":' + DEEP + b"}", b""),
    "nested_in_metadata": (b'{"__metadata__":{"x":' + DEEP + b'},"a":' + raw(F32x2) + b"}", b"\0" * 8),
    "integer_of_5000_digits": (b'{"a":{"dtype":"F32","shape":[' + HUGE + b'],"data_offsets":[0,8]}}', b"\0" * 8),
    "no_tensors": (b"{}", b""),
    "only_metadata": (raw({"__metadata__": {"x": "y"}}), b""),
}
# Accepted by safetensors 0.8, refused here on purpose: a weight file with no tensors holds no Wan component.
STRICTER = {"no_tensors", "only_metadata"}


def write(path: Path, header: bytes, data: bytes) -> Path:
    path.write_bytes(struct.pack("<Q", len(header)) + header + data)
    return path


def library_accepts(path: Path) -> bool:
    try:
        with safe_open(str(path), "np") as f:
            list(f.keys())
    except Exception:  # noqa: BLE001 - SafetensorError and friends: refused
        return False
    return True


def findings_of(path: Path) -> list[str]:
    f = Findings()
    check_file(path, path.name, f)
    return sorted({i.kind for i in f.items})


@pytest.mark.parametrize("case", sorted(CASES))
def test_refused_by_safetensors_iff_header_invalid(case: str, tmp_path: Path) -> None:
    p = write(tmp_path / "x.safetensors", *CASES[case])
    ours = findings_of(p)
    assert ours in ([], ["header_invalid"]), ours
    accepted_here = not ours
    if case in STRICTER:
        assert library_accepts(p) and not accepted_here
    else:
        assert library_accepts(p) == accepted_here, (case, ours)


def big_header(n: int, shuffle: bool = False, gap_at: int | None = None) -> tuple[bytes, bytes]:
    order = list(range(n))
    if shuffle:
        order = order[::2] + order[1::2]
    parts = [f'"t{i:07d}":{{"dtype":"U8","shape":[],"data_offsets":[{i + (gap_at is not None and i >= gap_at)},'
             f'{i + 1 + (gap_at is not None and i >= gap_at)}]}}' for i in order]
    h = ("{" + ",".join(parts) + "}").encode()
    return h, b"\0" * (n + (gap_at is not None))


def test_large_headers_are_read_in_a_child_and_agree_with_the_library(tmp_path: Path) -> None:
    from wan_exporter.scan.tables import read_table

    n = IN_PROCESS_MAX_BYTES // 50  # just over the in-process limit, under the table cap
    p = write(tmp_path / "kept.safetensors", *big_header(n, shuffle=True))
    assert p.stat().st_size > IN_PROCESS_MAX_BYTES and library_accepts(p)
    t = read_table(p, "safetensors")
    assert t.summary is None and t.tensor_count == n and t.parameter_count() == n and t.size_problem(p.stat().st_size) is None
    n = MAX_TABLE_TENSORS + 10
    p = write(tmp_path / "summary.safetensors", *big_header(n, shuffle=True))
    t = read_table(p, "safetensors")
    assert t.summary is not None and not t.tensors and t.tensor_count == n and t.parameter_count() == n
    assert t.dtype_bytes() == {"U8": n} and t.size_problem(p.stat().st_size) is None
    p = write(tmp_path / "gap.safetensors", *big_header(n, shuffle=True, gap_at=n // 2))
    assert not library_accepts(p) and findings_of(p) == ["header_invalid"]
    header, data = big_header(n)
    p = write(tmp_path / "deep.safetensors", header[:-1] + b',"z":' + DEEP + b"}", data)
    assert not library_accepts(p) and findings_of(p) == ["header_invalid"]


def status(s: dict, model: str) -> str | None:
    on = [dict(k).get("status") for k, v in samples_named(s, "wan_model_health_status").items()
          if dict(k).get("model") == model and v == 1]
    return on[0] if len(on) == 1 else None


def test_hostile_files_turn_the_verdict_in_the_running_exporter_and_in_check_model(tmp_path: Path) -> None:
    """A model already degraded goes critical when a header turns hostile; hostile JSON is header_invalid."""
    turned = write_model(tmp_path / "turned")
    index = write_model(tmp_path / "index")
    text = (index / "model_index.json").read_text()
    (index / "model_index.json").write_text(text.replace('"expand_timesteps": false', '"expand_timesteps": '
                                                         + HUGE.decode()))
    config = write_model(tmp_path / "config")
    (config / "transformer" / "config.json").write_bytes(b'{"num_layers": ' + DEEP + b"}")
    cfg = tmp_path / "wan.yaml"
    model = "{{name: {0}, kind: tiny-wan2.2-ti2v-5b, path: '{1}', device: cpu, profiles: []}}"
    cfg.write_text("\n".join([
        "models:", *(f"  - {model.format(p.name, p)}" for p in (turned, index, config)),
        "schedules:", "  layout: {interval: 1s}", "  headers: {interval: 1s}", "  hash: {interval: 1h, enabled: false}",
        f"exporter: {{state_dir: '{tmp_path / 'state'}'}}",
    ]) + "\n")
    exp = ExporterProcess(["--config.file", str(cfg)], env={"WAN_EXPORTER_NVML_MODULE": "no_such_nvml_module"},
                          log_path=tmp_path / "exporter.log")
    with exp:
        # The fixture is not the catalogued checkpoint: catalog_mismatch makes the intact model degraded.
        s = wait_metric(exp, lambda s: status(s, "turned") == "degraded" and status(s, "index") == "critical"
                        and status(s, "config") == "critical", 60, "the first verdicts")
        assert value(s, "wan_model_health_issues", model="index", issue="header_invalid") >= 1
        assert value(s, "wan_model_health_issues", model="config", issue="header_invalid") >= 1
        header = b'{"a":' + DEEP + b"}"
        (turned / VAE).write_bytes(struct.pack("<Q", len(header)) + header)
        s = wait_metric(exp, lambda s: status(s, "turned") == "critical", 30, "the degraded model to go critical")
        assert value(s, "wan_model_health_issues", model="turned", issue="header_invalid") == 1
        for m in ("turned", "index", "config"):
            assert value(s, "wan_health_check_success", model=m, check="headers") == 0, m
    assert "Traceback" not in exp.log_tail(200_000)
    for d in (turned, index, config):
        r = subprocess.run([sys.executable, "-m", "wan_exporter", "check-model", "--no-load", "--no-hash", str(d)],
                           env=exporter_env(), capture_output=True, text=True, timeout=120)
        assert r.returncode == 1 and "verdict: critical" in r.stdout and "Traceback" not in r.stderr, (d, r.stderr)
        assert "header_invalid" in r.stdout


def test_a_number_of_5000_digits_in_the_config_is_an_error_with_its_line(tmp_path: Path) -> None:
    cfg = tmp_path / "wan.yaml"
    cfg.write_text("models: []\nexporter: {max_models: " + HUGE.decode() + "}\n")
    r = subprocess.run([sys.executable, "-m", "wan_exporter", "check-config", str(cfg)], env=exporter_env(),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "Traceback" not in r.stderr + r.stdout
    assert "line 2: a number of more than 4,300 digits" in r.stdout + r.stderr


def test_gguf_dims_whose_product_overflows_are_header_invalid(tmp_path: Path) -> None:
    name = b"blocks.0.weight"
    info = struct.pack("<Q", len(name)) + name + struct.pack("<I", 2) + struct.pack("<QQ", 1 << 40, 1 << 40) \
        + struct.pack("<IQ", 0, 0)  # ggml type 0 (F32), offset 0
    f = tmp_path / "Wan2.2-T2V-A14B-HighNoise-F32.gguf"
    f.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 1, 0) + info + b"\0" * 64)
    got = Findings()
    check_file(f, f.name, got, "gguf")
    assert [(i.kind, "overflow" in i.detail) for i in got.items] == [("header_invalid", True)], got.items
