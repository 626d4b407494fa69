"""One generation across two real ranks: gloo processes running diffusers' own context parallelism.

Each rank is a process started with torchrun's environment (:mod:`support.rank_worker`): the
tiny Wan2.2 A14B pipeline with ``ContextParallelConfig(ulysses_degree=2)`` on ``transformer``
and ``transformer_2``, instrumented on every rank. Faults are real: a rank sleeps inside a
step (in the transformer's forward, after its collectives), a rank is killed with SIGKILL
mid-request. The stall goes through a real Prometheus and Alertmanager to a webhook. A
benchmark profile with ``parallel: {ulysses: 2}`` runs through the real benchmark child as two
ranks, and its per-rank figures reach the exporter's /metrics. The loop API (a request block and
a step call) runs in threads standing for ranks, with explicit ranks.
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from support.alerting_procs import (ALERTMANAGER, PROMETHEUS, AlertmanagerProcess, PrometheusProcess,
                                    WebhookReceiver, alertmanager_test_config, binary, prometheus_test_config,
                                    render_rules, wait_until)
from support.procs import free_port, parse_metrics, sample, samples_named
from support.rank_worker import launch, results
from wan_exporter.instrument.multiprocess import collector

STEPS = 2


def test_a_loop_that_is_not_a_pipeline_gets_the_same_families_from_a_request_block_and_a_step_call():
    """Wan's generate.py or xDiT: ``with track.request(...) as req`` around the loop, ``req.step(total=N)`` in it."""
    import threading

    from wan_exporter.instrument import track

    reg = CollectorRegistry()
    seen_stalled = []
    seen_collectives: set[str] = set()

    def rank_loop(rank: int) -> None:
        # xDiT returns the video on the last rank: output_rank=-1.
        with track.request(model="xdit", registry=reg, rank=rank, world_size=2, output_rank=-1,
                           stall_after=0.3) as req:
            for i in range(3):
                # rank 0 stalls once (long enough to be seen on a loaded machine), then moves on
                time.sleep(1.5 if (rank, i) == (0, 1) else 0.01)
                req.step(total=3)
            time.sleep(0.6)  # after the last step (decode, barrier): not a stall
            req.output(frames=5, width=832, height=480, fps=16)

    def watch() -> None:
        for _ in range(80):
            # Rank 0's series under whatever collective this process's flight recorder names: "unknown"
            # without one, "none" where an earlier process group in this process left entries.
            mine = [x for fam in reg.collect() if fam.name == "wan_rank_stalled" for x in fam.samples
                    if x.labels.get("model") == "xdit" and x.labels.get("rank") == "0"]
            seen_stalled.append(max((x.value for x in mine), default=None))
            seen_collectives.update(x.labels["collective"] for x in mine if x.value == 1)
            time.sleep(0.05)

    threads = [threading.Thread(target=rank_loop, args=(r,)) for r in (0, 1)] + [threading.Thread(target=watch)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    m = scrape(reg)
    assert sample(m, "wan_requests_total", model="xdit", outcome="ok") == 1  # counted on rank 1 alone
    assert sample(m, "wan_request_frames_total", model="xdit") == 5
    assert {r: sample(m, "wan_rank_step_duration_seconds_count", model="xdit", rank=r) for r in ("0", "1")} == \
        {"0": 3, "1": 3}
    assert sample(m, "wan_request_step_duration_seconds_count", model="xdit", resolution="480p") == 3
    assert 1.0 in seen_stalled, seen_stalled  # rank 0's long step was seen
    assert seen_collectives <= {"unknown", "none"}, seen_collectives  # no collective in flight in a plain loop
    assert not any(v for v in samples_named(m, "wan_rank_stalled").values())  # and cleared; the decode wait never
    assert {r: sample(m, "wan_rank_last_step", model="xdit", rank=r) for r in ("0", "1")} == {"0": 3, "1": 3}


def test_explicit_ranks_are_checked_and_the_output_rank_may_count_from_the_end():
    from wan_exporter.instrument import resolve, track

    assert resolve(1, 4, -1).is_output is False and resolve(3, 4, -1).is_output is True
    assert resolve().rank == 0 and resolve().world_size == 1  # no torch.distributed: one process
    for kw, msg in (({"rank": 2, "world_size": 2}, "not below world_size"),
                    ({"world_size": 2, "output_rank": 2}, "not a rank"), ({"rank": -1}, ">= 0"),
                    ({"world_size": 0}, "world_size must be")):
        with pytest.raises(ValueError, match=msg):
            track.request(model="x", registry=CollectorRegistry(), **kw)


def scrape(reg: CollectorRegistry) -> dict:
    return parse_metrics(generate_latest(reg).decode())


def test_two_ranks_count_each_generation_once_and_a_killed_rank_leaves_nothing_in_flight(tmp_path: Path):
    """Request 1: rank 1 slowed by 0.4 s in every forward. Request 2: rank 1 killed in step 2."""
    mp = tmp_path / "prom"
    mp.mkdir()
    procs = launch(["--requests", "2", "--steps", str(STEPS), "--on-rank", "1", "--sleep", "0.4",
                    "--kill-at-step", "1", "--kill-in", "1", "--timeout", "30"],
                   env={"PROMETHEUS_MULTIPROC_DIR": str(mp)}, log_dir=tmp_path)
    rank0, rank1 = results(procs)
    logs = "".join((tmp_path / f"rank{r}.log").read_text()[-1500:] for r in (0, 1))
    assert rank1 is None and procs[1].returncode == -9, logs  # killed: no line printed
    assert rank0 is not None and [s["ok"] for s in rank0["seen"]] == [True, False], (rank0, logs)

    # Without the sweep, the killed rank's request stays in flight for ever (torchrun never marks it dead).
    raw = CollectorRegistry()
    MultiProcessCollector(raw, path=str(mp))
    assert sample(scrape(raw), "wan_rank_requests_in_flight", model="tiny", rank="1") == 1
    reg = CollectorRegistry()
    collector(reg, mp)
    m = scrape(reg)
    # One request per generation, on the output rank: the ok one and the one that failed when its peer died.
    assert sample(m, "wan_requests_total", model="tiny", outcome="ok") == 1
    assert sample(m, "wan_requests_total", model="tiny", outcome="error") == 1
    assert sample(m, "wan_request_duration_seconds_count", model="tiny", resolution="below_480p") == 1
    assert sample(m, "wan_request_frames_total", model="tiny") == 5
    # Every rank's steps: 2 x 2 of the first request; rank 0's one finished step of the second.
    counts = {r: sample(m, "wan_rank_step_duration_seconds_count", model="tiny", rank=r) for r in ("0", "1")}
    assert counts == {"0": STEPS + 1, "1": STEPS}
    assert sample(m, "wan_request_step_duration_seconds_count", model="tiny", resolution="below_480p") == STEPS + 1
    # Nothing stays in flight: the dead ranks' live gauges are swept.
    for name in ("wan_requests_in_flight", "wan_rank_requests_in_flight", "wan_rank_stalled"):
        assert not any(v for v in samples_named(m, name).values()), (name, samples_named(m, name))
    # The slowed rank ends the same step later than its peer (lockstep: the peer waits inside the next step).
    ts = {r: sample(m, "wan_rank_last_step_timestamp_seconds", model="tiny", rank=r) for r in ("0", "1")}
    last = {r: sample(m, "wan_rank_last_step", model="tiny", rank=r) for r in ("0", "1")}
    assert last == {"0": 1, "1": 1}
    assert ts["1"] - ts["0"] >= 0.3, ts


needs_peers = pytest.mark.skipif(any(binary(b) is None for b in (PROMETHEUS, ALERTMANAGER)),
                                 reason="needs prometheus and prometheus-alertmanager (Debian packages)")


@pytest.mark.e2e
@needs_peers
def test_a_rank_asleep_in_a_step_pages_as_stalled_naming_its_collective_and_resolves_when_it_moves(tmp_path: Path):
    stall_after, sleep = 2.0, 12.0
    ports = [free_port(), free_port()]
    webhook = WebhookReceiver().start()
    started: list = []
    procs = []
    try:
        am = AlertmanagerProcess(alertmanager_test_config(tmp_path / "alertmanager.yml", webhook.url()),
                                 tmp_path / "am").start()
        started.append(am)
        rules = render_rules(tmp_path / "rules", for_all="1s")
        cfg = prometheus_test_config(tmp_path / "prometheus" / "prometheus.yml", targets=[], rules_dir=rules,
                                     alertmanager=am.address, serve_targets=[f"127.0.0.1:{p}" for p in ports])
        prom = PrometheusProcess(cfg, tmp_path / "prometheus").start()
        started.append(prom)
        procs = launch(["--requests", "1", "--steps", "3", "--on-rank", "1", "--sleep", str(sleep), "--at-step", "1",
                        "--stall-after", str(stall_after), "--ports", ",".join(map(str, ports)), "--linger", "120"],
                       log_dir=tmp_path)

        def diagnostics() -> str:
            return (f"\nalerts: {[(a['labels'], a['state']) for a in prom.alerts()]}"
                    f"\nstalled: {prom.query('wan_rank_stalled')}\n"
                    + "".join((tmp_path / f"rank{r}.log").read_text()[-1500:] for r in (0, 1)))

        def firing():
            got = {a["labels"]["rank"]: a for a in webhook.alerts("WanGenerationStalled", "firing", job="wan-serve")}
            return got if {"0", "1"} <= set(got) else None

        try:
            fired = wait_until(firing, 240, interval=0.5, what="WanGenerationStalled for both ranks")
        except AssertionError as e:
            raise AssertionError(f"{e}{diagnostics()}") from None
        # The sleeper waits in nothing; its peer waits in the Ulysses all-to-all, one collective ahead.
        assert fired["1"]["labels"]["collective"] == "none", diagnostics()
        assert fired["0"]["labels"]["collective"] == "all_to_all", diagnostics()
        assert fired["1"]["labels"]["severity"] == "critical"
        assert fired["1"]["annotations"]["runbook_url"].endswith("#wangenerationstalled")
        seq = {s["metric"]["rank"]: float(s["value"][1])
               for s in prom.query('wan_rank_collective_sequence{job="wan-serve"}')}
        assert seq["1"] < seq["0"], seq  # the stuck rank's sequence number lags
        # Reported within stall_after plus a scrape, an evaluation and the test's for: of 1 s (and the watch's tick).
        beat = prom.query('wan_rank_last_step_timestamp_seconds{rank="1"}')
        started_at = datetime.fromisoformat(fired["1"]["startsAt"].replace("Z", "+00:00")).timestamp()
        assert started_at - float(beat[0]["value"][1]) <= stall_after + 5, (started_at, beat)
        try:
            wait_until(lambda: {a["labels"]["rank"] for a in webhook.alerts("WanGenerationStalled", "resolved")}
                       >= {"0", "1"}, sleep + 60, interval=0.5, what="WanGenerationStalled resolved")
        except AssertionError as e:
            raise AssertionError(f"{e}{diagnostics()}") from None
        # Resolved because the ranks moved on (still serving), not because their targets went away.
        assert all(p.poll() is None for p in procs)
        done = prom.query('wan_rank_last_step{job="wan-serve"}')
        assert {s["metric"]["rank"]: float(s["value"][1]) for s in done} == {"0": 3.0, "1": 3.0}
        assert prom.query('wan_requests_total{job="wan-serve", outcome="ok"} == 1')
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.communicate(timeout=30)
            except Exception:  # noqa: BLE001
                p.kill()
        for s in reversed(started):
            s.stop()
        webhook.stop()


def test_a_parallel_profile_benchmarks_as_two_ranks_and_reports_every_ranks_steps_and_memory(tiny_dir):
    """``parallel: {ulysses: 2}``: the real benchmark child (spawned, daemonic) is rank 0 and starts rank 1."""
    from wan_exporter.bench.parallel import devices
    from wan_exporter.bench.runner import CHILD_TARGET
    from wan_exporter.childproc import run_in_child
    from wan_exporter.config import ConfigError, parse_config

    request = {"model_dir": str(tiny_dir / "tiny-wan2.2-t2v-a14b"), "kind": "tiny-wan2.2-t2v-a14b",
               "pipeline": "WanPipeline", "device": "cpu", "dtype": "float32", "width": 32, "height": 32,
               "frames": 5, "steps": STEPS, "ulysses": 2}
    out = run_in_child(CHILD_TARGET, request, timeout=400)
    r = out.result or {}
    assert r.get("success"), (r.get("reason"), r.get("detail"), out.exitcode)
    ranks = r["ranks"]
    assert [x["rank"] for x in ranks] == [0, 1] and not any(x.get("error") for x in ranks), ranks
    assert all(len(x["step_seconds"]) == STEPS and x["peak_memory_bytes"] > 0 for x in ranks), ranks
    assert r["rank_step_skew_seconds"] >= 0 and r["rank_step_end_skew_seconds"] >= 0
    # Both ranks started the call together (a barrier before it): rank 0's first step holds no load time.
    assert r["seconds_per_step"] < 10 * min(min(x["step_seconds"]) for x in ranks), r
    # The exporter's result, then its series: every rank's step time and peak, and the step-end skew.
    from types import SimpleNamespace

    from prometheus_client import generate_latest as render

    from dataclasses import replace

    from wan_exporter.app import App
    from wan_exporter.bench import aggregate
    from wan_exporter.bench.runner import to_result
    from wan_exporter.state import BenchmarkAggregate, frozen_map

    res = to_result(SimpleNamespace(name="t2v", device="cpu", dtype="float32"), "two", out, time.time())
    assert set(res.rank_seconds_per_step) == {"0", "1"} and set(res.rank_peak_memory_bytes) == {"0", "1"}
    assert res.rank_step_end_skew_seconds == r["rank_step_end_skew_seconds"]
    cfg = parse_config(f"models:\n  - {{name: t2v, kind: tiny-wan2.2-t2v-a14b, path: {tiny_dir}, device: cpu, "
                       "profiles: [two]}\nprofiles:\n  two: {width: 32, height: 32, frames: 5, steps: 2, "
                       "parallel: {ulysses: 2}}\n")
    app = App(cfg)
    agg = aggregate.fold(BenchmarkAggregate(), res, cfg.benchmark.buckets, 5)
    app.store.update(lambda snap: replace(snap, benchmarks=frozen_map({("t2v", "two"): agg})))
    m = parse_metrics(render(app.registry).decode())
    assert sample(m, "wan_generation_rank_seconds_per_step", model="t2v", profile="two", rank="1") == \
        res.rank_seconds_per_step["1"]
    assert sample(m, "wan_generation_rank_step_end_skew_seconds", model="t2v", profile="two") is not None
    # The busy-GPU skip looks at every GPU the ranks occupy; a config says how many.
    assert devices("cuda:1", 3) == ["cuda:1", "cuda:2", "cuda:3"] and devices("cpu", 2) == ["cpu", "cpu"]
    assert parse_config("profiles:\n  two: {parallel: {ulysses: 2}}\n").profiles["two"].parallel.ulysses == 2
    with pytest.raises(ConfigError) as bad:
        parse_config("profiles:\n  bad: {parallel: {ulysses: 0, ring: 2}}\n")
    assert "profiles.bad.parallel.ulysses: expected 1 to 64 ranks, got 0" in str(bad.value)
    assert "profiles.bad.parallel.ring: unknown key" in str(bad.value)


def test_a_shorter_stall_after_is_watched_at_once_while_the_watch_sleeps_a_longer_tick(monkeypatch):
    """The watch thread sleeping the 5 s tick of a request with the default stall_after must not
    hold back the check of a later request with a shorter one."""
    import threading

    from wan_exporter.instrument import ranks, request, track

    watch = ranks.Watch()
    monkeypatch.setattr(request, "WATCH", watch)
    reg = CollectorRegistry()
    slow_started = threading.Event()

    def long_request() -> None:  # stall_after 60 s: the watch ticks every 5 s
        with track.request(model="first", registry=reg, rank=0, world_size=1) as req:
            slow_started.set()
            time.sleep(3.0)
            req.step(total=1)

    t = threading.Thread(target=long_request)
    t.start()
    slow_started.wait(5)
    time.sleep(0.2)  # the watch thread is in its 5 s wait now
    seen = []
    with track.request(model="second", registry=reg, rank=0, world_size=1, stall_after=0.3) as req:
        req.step(total=2)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 2.0:
            fam = [x for f in reg.collect() if f.name == "wan_rank_stalled" for x in f.samples
                   if x.labels.get("model") == "second" and x.value == 1]
            if fam:
                seen.append(time.monotonic() - t0)
                break
            time.sleep(0.02)
        req.step(total=2)
        req.output(frames=1, width=16, height=16, fps=16)
    t.join(10)
    assert seen and seen[0] < 1.5, seen  # 0.3 s plus the short tick, not the 5 s one
