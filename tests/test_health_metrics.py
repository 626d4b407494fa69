"""Health metrics as a scrape sees them: a registry over the store, read with get_sample_value."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from test_health_fixtures import SHARDS, write_model
from wan_exporter.collectors import SnapshotCollector
from wan_exporter.config import Config, ModelConfig
from wan_exporter.health import hashing, headers, layout
from wan_exporter.collectors.health import HealthFigures
from wan_exporter.findings import CHECKS, ISSUE_KINDS
from wan_exporter.health.subsystem import publish
from wan_exporter.contract.labels import STATUSES
from wan_exporter.state import Store
from wan_exporter import catalog


class Scrape:
    def __init__(self, cfg: Config) -> None:
        self.store = Store()
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(SnapshotCollector(self.store, lambda: cfg, [HealthFigures()]))

    def value(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)

    def status(self, model: str = "m") -> dict[str, float | None]:
        return {s: self.value("wan_model_health_status", model=model, status=s) for s in STATUSES}


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return write_model(tmp_path / "model")


def cfg_for(path: Path, kind: str = "tiny-wan2.1-t2v") -> Config:
    return Config(models=(ModelConfig(name="m", kind=kind, path=str(path)),))


def test_before_any_check_no_health_figure_exists(model: Path) -> None:
    s = Scrape(cfg_for(model))
    for c in CHECKS:
        assert s.value("wan_health_check_success", model="m", check=c) is None
        assert s.value("wan_health_check_duration_seconds", model="m", check=c) is None
        assert s.value("wan_health_check_last_success_timestamp_seconds", model="m", check=c) is None
    for kind in ISSUE_KINDS:  # "no findings" before anything was checked would be a claim
        assert s.value("wan_model_health_issues", model="m", issue=kind) is None
    assert s.status() == dict.fromkeys(STATUSES)
    text = generate_latest(s.registry).decode()
    assert "wan_model_integrity_ratio{" not in text and "wan_model_content_digest_info{" not in text
    for name in ("wan_model_files_expected", "wan_model_size_bytes", "wan_model_catalog_mismatches"):
        assert s.value(name, model="m") is None


def test_healthy_model_after_checks(model: Path, tmp_path: Path) -> None:
    s = Scrape(cfg_for(model))
    entry = catalog.CATALOG.get("tiny-wan2.1-t2v")
    for r in (layout.check("m", model), headers.check("m", model, entry), hashing.check("m", model, tmp_path / "st")):
        publish(s.store, r)
    for c in ("layout", "headers", "hash"):
        assert s.value("wan_health_check_success", model="m", check=c) == 1
        r = s.store.snapshot.checks[("m", c)]
        assert s.value("wan_health_check_duration_seconds", model="m", check=c) == r.duration_seconds
        assert s.value("wan_health_check_last_success_timestamp_seconds", model="m", check=c) == r.finished_at
    assert s.value("wan_health_check_success", model="m", check="load") is None
    # Outside the HF cache and without download metadata the first run can only record.
    assert s.value("wan_model_integrity_ratio", model="m", reference="recorded") == 1.0
    assert s.value("wan_model_integrity_ratio", model="m", reference="published") is None
    digest = s.store.snapshot.checks[("m", "hash")].facts["content_digest"]
    assert s.value("wan_model_content_digest_info", model="m", digest=digest) == 1
    assert s.value("wan_model_checkpoint_form", model="m", form="diffusers") == 1
    assert s.value("wan_model_checkpoint_form", model="m", form="gguf") == 0
    assert s.value("wan_model_files_expected", model="m") == 12
    assert s.value("wan_model_files_present", model="m") == 12
    assert s.value("wan_model_size_bytes", model="m") == s.store.snapshot.checks[("m", "layout")].facts["size_bytes"]
    assert s.value("wan_model_catalog_mismatches", model="m") == 0
    assert s.status() == {"healthy": 1, "degraded": 0, "critical": 0, "missing": 0}
    text = generate_latest(s.registry).decode()
    assert 'wan_model_health_status{model="m",status="healthy"} 1.0' in text


def test_corruption_shows_in_every_family(model: Path, tmp_path: Path) -> None:
    s = Scrape(cfg_for(model))
    publish(s.store, hashing.check("m", model, tmp_path / "st"))
    ok_at = s.value("wan_health_check_last_success_timestamp_seconds", model="m", check="hash")
    p = model / SHARDS[0]
    data = bytearray(p.read_bytes())
    data[-10] ^= 0x80
    p.write_bytes(bytes(data))
    (model / SHARDS[1]).unlink()
    publish(s.store, layout.check("m", model))
    publish(s.store, hashing.check("m", model, tmp_path / "st"))
    assert s.value("wan_health_check_success", model="m", check="hash") == 0
    assert s.value("wan_health_check_last_success_timestamp_seconds", model="m", check="hash") == ok_at
    ratio = s.value("wan_model_integrity_ratio", model="m", reference="recorded")
    assert 0 < ratio < 1
    assert 'wan_model_content_digest_info{' not in generate_latest(s.registry).decode()  # not while mismatched
    assert s.value("wan_model_files_present", model="m") == 11
    assert s.value("wan_model_health_issues", model="m", issue="hash_mismatch") == 1
    assert s.value("wan_model_health_issues", model="m", issue="missing_file") == 1  # layout + hash: one finding
    assert s.value("wan_model_health_issues", model="m", issue="truncated") == 0
    assert s.status() == {"healthy": 0, "degraded": 0, "critical": 1, "missing": 0}


def test_catalog_mismatch_is_counted_and_degrades(model: Path) -> None:
    s = Scrape(cfg_for(model, kind="wan2.1-t2v-1.3b"))  # a 1.3B catalog entry, a tiny checkpoint
    publish(s.store, layout.check("m", model))
    publish(s.store, headers.check("m", model, catalog.CATALOG["wan2.1-t2v-1.3b"]))
    n = s.value("wan_model_catalog_mismatches", model="m")
    assert n and n >= 1
    assert s.value("wan_model_health_issues", model="m", issue="catalog_mismatch") == n
    assert s.value("wan_health_check_success", model="m", check="headers") == 1
    assert s.status()["degraded"] == 1


def test_missing_model_dir(tmp_path: Path) -> None:
    s = Scrape(cfg_for(tmp_path / "gone"))
    publish(s.store, layout.check("m", tmp_path / "gone"))
    assert s.status() == {"healthy": 0, "degraded": 0, "critical": 0, "missing": 1}
    assert s.value("wan_model_health_issues", model="m", issue="missing_model") == 1
    assert s.value("wan_model_files_expected", model="m") is None  # nothing there promised anything


def test_unconfigured_models_are_not_exported(model: Path) -> None:
    s = Scrape(Config())
    publish(s.store, layout.check("m", model))
    assert s.value("wan_health_check_success", model="m", check="layout") is None


def test_a_mismatch_against_the_recorded_manifest_is_labelled_recorded(model: Path, tmp_path: Path) -> None:
    """Every file mismatching its first-sight record is still a comparison with a recorded reference."""
    s = Scrape(cfg_for(model))
    publish(s.store, hashing.check("m", model, tmp_path / "st"))
    for rel in SHARDS:
        p = model / rel
        data = bytearray(p.read_bytes())
        data[-10] ^= 0x80
        p.write_bytes(bytes(data))
    publish(s.store, hashing.check("m", model, tmp_path / "st"))
    assert s.value("wan_model_integrity_ratio", model="m", reference="published") is None
    assert s.value("wan_model_integrity_ratio", model="m", reference="recorded") < 1
