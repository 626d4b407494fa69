"""Collectors are registered explicitly and each can be switched off, as node_exporter's."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest

from test_metrics_golden import CONFIG, fixed_snapshot
from wan_exporter.app import App
from wan_exporter.cli import build_parser, enabled_collectors
from wan_exporter.collectors import COLLECTORS
from wan_exporter.config import parse_config


def exposition(collectors) -> str:
    app = App(parse_config(CONFIG), collectors=collectors)
    app.store.update(lambda s: fixed_snapshot())
    return generate_latest(app.registry).decode()


def test_no_collector_gpu_drops_only_the_gpu_families():
    full = exposition(None)
    without = exposition([c for c in COLLECTORS if c != "gpu"])
    assert "wan_gpu_memory_total_bytes" in full
    assert "wan_gpu_" not in without
    assert "wan_generation_duration_seconds_bucket" in without and "wan_model_health_status" in without


def test_switching_off_a_subsystem_drops_its_jobs_and_families():
    app = App(parse_config(CONFIG), collectors=[c for c in COLLECTORS if c not in ("health", "benchmark")])
    app._register_jobs()
    assert not [j for j in app.jobs.job_ids() if j.startswith(("health.", "benchmark."))]
    text = generate_latest(app.registry).decode()
    assert "wan_health_check" not in text and "wan_benchmark_runs" not in text


def test_flags_parse_node_exporter_style():
    args = build_parser().parse_args(["--no-collector.gpu", "--no-collector.host", "--collector.host"])
    assert enabled_collectors(args) == [c for c in COLLECTORS if c != "gpu"]
    assert enabled_collectors(build_parser().parse_args([])) == list(COLLECTORS)


def test_an_unknown_collector_is_an_error():
    with pytest.raises(ValueError, match="unknown collector"):
        App(parse_config(CONFIG), collectors=["gpus"])
