"""The health subsystem inside the real App: jobs registered per schedule, results published to
the store and visible on the app's registry, stale models forgotten after a reload."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from test_health_fixtures import write_model
from wan_exporter.app import App
from wan_exporter.config import Config, ExporterSettings, ModelConfig, Schedule, Schedules
from wan_exporter.health.subsystem import HealthSubsystem


def make_app(tmp_path: Path, **kw) -> tuple[App, HealthSubsystem]:  # noqa: ANN003
    d = write_model(tmp_path / "model")
    cfg = Config(
        models=(ModelConfig(name="m", kind="tiny-wan2.1-t2v", path=str(d), device="cpu"),
                ModelConfig(name="hub", kind="wan2.2-ti2v-5b", hub_id="Wan-AI/Wan2.2-TI2V-5B-Diffusers")),
        exporter=ExporterSettings(state_dir=str(tmp_path / "state"), hf_cache_dir=str(tmp_path / "hf")),
        **kw,
    )
    app = App(cfg)
    sub = next(s for s in app.subsystems if isinstance(s, HealthSubsystem))
    return app, sub


def status(app: App, model: str) -> str | None:
    for s in ("healthy", "degraded", "critical", "missing"):
        if app.registry.get_sample_value("wan_model_health_status", {"model": model, "status": s}) == 1:
            return s
    return None


def test_jobs_follow_the_schedules(tmp_path: Path) -> None:
    app, sub = make_app(tmp_path)
    app._register_jobs()
    ids = app.jobs.job_ids()
    assert {"health.layout", "health.headers", "health.hash"} <= set(ids)
    assert "health.load" not in ids  # disabled by default
    cfg = replace(app.config(), schedules=Schedules(load=Schedule(interval=3600, enabled=True, timeout=60)))
    app._config = cfg
    app._register_jobs()
    assert "health.load" in app.jobs.job_ids()


def test_runs_publish_results_visible_on_the_registry(tmp_path: Path) -> None:
    app, sub = make_app(tmp_path)
    sub.run_layout()
    sub.run_headers()
    sub.run_hash()
    snap = app.store.snapshot
    assert snap.checks[("m", "hash")].success
    assert (tmp_path / "state" / "manifests" / "m.json").is_file()
    assert [i.kind for i in snap.checks[("hub", "layout")].issues] == ["missing_model"]
    assert status(app, "m") == "healthy"
    assert status(app, "hub") == "missing"
    assert app.registry.get_sample_value("wan_model_integrity_ratio", {"model": "m", "reference": "recorded"}) == 1.0
    assert app.registry.get_sample_value("wan_model_catalog_mismatches", {"model": "m"}) == 0


def test_reload_forgets_models_no_longer_configured(tmp_path: Path) -> None:
    app, sub = make_app(tmp_path)
    sub.run_layout()
    app._config = replace(app.config(), models=app.config().models[:1])
    app._register_jobs()
    assert ("hub", "layout") not in app.store.snapshot.checks
    assert ("m", "layout") in app.store.snapshot.checks


def test_scheduled_layout_check_runs_and_is_recorded_as_a_job(tmp_path: Path) -> None:
    app, sub = make_app(tmp_path)
    app._register_jobs()
    app.jobs.start()
    try:
        deadline = time.monotonic() + 10
        while ("m", "layout") not in app.store.snapshot.checks and time.monotonic() < deadline:
            time.sleep(0.05)
        assert app.store.snapshot.checks[("m", "layout")].success
        while "health.layout" not in app.store.snapshot.jobs and time.monotonic() < deadline:
            time.sleep(0.05)
        assert app.store.snapshot.jobs["health.layout"].failures == 0
    finally:
        app.jobs.shutdown()
        sub.shutdown()


def test_a_cycle_walks_each_model_once(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """The layout job scans; the header and hash jobs and the checkpoint facts read its scan."""
    from wan_exporter import scan as scanning
    from wan_exporter.scan import cache

    calls: list = []
    real = scanning.scan

    def counting(target, fmt="auto", max_entries=scanning.MAX_ENTRIES):  # noqa: ANN001, ANN202
        calls.append(str(target))
        return real(target, fmt, max_entries)

    monkeypatch.setattr(cache, "scan", counting)
    app, sub = make_app(tmp_path)
    sub.run_layout()
    sub.run_headers()
    sub.run_hash()
    app.checkpoint_poller.poll()
    assert calls == [str(tmp_path / "model")]  # the hub model is not on disk: nothing to scan
    assert app.store.snapshot.checkpoint_facts["m"]["facts"].experts == 1
    sub.run_layout()  # the next cycle scans afresh
    assert len(calls) == 2


def test_a_round_is_published_in_batches_and_a_slow_model_holds_back_nobody(tmp_path: Path) -> None:
    """Each publication re-renders every model's health series: a round of quick checks is one
    store update, and a result finished before a slow check is out within PUBLISH_WITHIN."""
    import threading

    from wan_exporter.findings import timed_out
    from wan_exporter.health import subsystem

    models = tuple(ModelConfig(name=f"m{i}", kind="wan2.2-ti2v-5b", hub_id="Wan-AI/Wan2.2-TI2V-5B-Diffusers")
                   for i in range(20))
    cfg = Config(models=models, exporter=ExporterSettings(state_dir=str(tmp_path / "state"),
                                                          hf_cache_dir=str(tmp_path / "hf")))
    app = App(cfg)
    sub = next(s for s in app.subsystems if isinstance(s, HealthSubsystem))
    updates: list[frozenset] = []
    real_update = app.store.update

    def counting(fn):  # noqa: ANN001, ANN202
        before = app.store.snapshot.checks
        real_update(fn)
        after = app.store.snapshot.checks
        if after is not before:
            updates.append(frozenset(k for k in after if after[k] is not before.get(k)))

    app.store.update = counting
    sub.run_layout()
    assert sum(len(u) for u in updates) == 20 and len(updates) <= 2, [len(u) for u in updates]

    # m0 finishes at once; m1's check takes 3 s: m0's result is out long before m1's.
    release = threading.Event()

    def check(c, m, d):  # noqa: ANN001, ANN202
        if m.name == "m1":
            release.wait(3.0)
        return timed_out(m.name, "layout", "", 0.0) if m.name in ("m0", "m1") else None

    updates.clear()
    t = threading.Thread(target=sub._each, args=("layout", check))
    t0 = time.monotonic()
    t.start()
    while not any(("m0", "layout") in u for u in updates) and time.monotonic() - t0 < 5:
        time.sleep(0.02)
    waited = time.monotonic() - t0
    assert any(("m0", "layout") in u for u in updates) and not any(("m1", "layout") in u for u in updates)
    assert waited < subsystem.PUBLISH_WITHIN + 1.0, waited
    release.set()
    t.join(10)
    assert any(("m1", "layout") in u for u in updates)
