"""Soak: the real exporter under steady concurrent scrapes while benchmarks run back to back.

Bounded for CI: ``WAN_SOAK_SECONDS`` (default 90) of load in two phases, a quiet one
(no benchmarks) and a busy one (tiny real pipelines benchmarked on a 2s interval, so a
child is nearly always running). Five threads scrape ten times a second each (50/s, far
below the server's cap of 16 requests at once).

Asserted: no scrape fails; the exporter's RSS, open file descriptors and threads stay flat
(the second half of the busy phase against the first, after a warm-up run; small slack);
benchmarks really ran and succeeded. Reported, not asserted beyond a very loose bound:
scrape latency while a benchmark child runs against the quiet phase. The latency ratio
goal belongs to the benchmark suite; a shared 2-core machine cannot hold it honestly.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import pytest

from support.faults_procs import (build_tiny_model, ProcWatch, ScrapeLoad, config_text, describe, pct, reload, value, wait_metric)
from support.procs import ExporterProcess, http_get, sample, wait_for, write_nvml_state

SOAK_SECONDS = max(20.0, float(os.environ.get("WAN_SOAK_SECONDS", "90")))
THREADS, RATE = 5, 10.0  # 50 scrapes a second in all
KIND = "tiny-wan2.2-ti2v-5b"
MIB = 1 << 20

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.timeout(int(SOAK_SECONDS) + 300)]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    """One tiny real Wan pipeline for the module, built in a child (the test process never imports torch)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny"), KIND)


def soak_config(tmp: Path, tiny_dir: Path, benchmarks: bool) -> str:
    models = [f"{{name: {n}, kind: {KIND}, path: '{tiny_dir / KIND}', device: cpu, dtype: float32, "
              f"profiles: [tiny]}}" for n in ("a", "b")]
    return config_text(tmp / "state", models=models,
                       profiles={"tiny": "{width: 32, height: 32, frames: 9, steps: 2, timeout: 2m}"},
                       schedules={"gpu": "{interval: 1s}", "host": "{interval: 1s}", "layout": "{interval: 2s}",
                                  "headers": "{interval: 5s}", "hash": "{interval: 5s, jitter: 0s}",
                                  "benchmark": f"{{interval: 2s, jitter: 0s, enabled: {str(benchmarks).lower()}}}"})


def flat(name: str, series: list[float], slack: float) -> str:
    """Second half's peak against the first half's: growth beyond ``slack`` is a leak."""
    half = len(series) // 2
    first, second = max(series[:half]), max(series[half:])
    msg = f"{name}: first half max {first:g}, second half max {second:g} (slack {slack:g})"
    assert second <= first + slack, msg
    return msg


def test_soak_concurrent_scrapes_while_benchmarks_run(tiny_dir, tmp_path):
    quiet_s, busy_s = 0.3 * SOAK_SECONDS, 0.7 * SOAK_SECONDS
    cfg = tmp_path / "wan.yaml"
    cfg.write_text(soak_config(tmp_path, tiny_dir, benchmarks=False))
    nvml = write_nvml_state(tmp_path / "nvml.json", gpus=[{"util_gpu": 3}, {"temperature": 60}])
    # glibc gives each thread that first allocates its own malloc arena (several MiB of touched
    # pages): a request thread first used in the second half reads as an 8 MiB step that is no
    # leak (seen once in 90 s runs; flat at 77.4 MiB over 200 s). Two arenas keep RSS a measure
    # of what the exporter retains.
    env = {"HF_HUB_CACHE": str(tmp_path / "hf"), "XDG_STATE_HOME": str(tmp_path / "xdg"), "MALLOC_ARENA_MAX": "2",
           "WAN_EXPORTER_NVML_MODULE": "support.fake_pynvml", "FAKE_NVML_STATE": str(nvml)}
    with ExporterProcess([f"--config.file={cfg}"], env=env, log_path=tmp_path / "exporter.log") as exp:
        wait_for(lambda: http_get(exp.url + "/-/ready", 1)[0] == 200, 30, what="ready")
        watch = ProcWatch(exp.proc.pid, interval=0.5).start()
        load = ScrapeLoad(exp.url, threads=THREADS, rate=RATE, timeout=10.0).start()
        try:
            t_quiet = time.monotonic()
            time.sleep(quiet_s)
            t_busy = time.monotonic()
            reload(exp, cfg, soak_config(tmp_path, tiny_dir, benchmarks=True))
            # The first run warms what benchmarks need in the exporter (spawn machinery, pipes);
            # growth is judged from there on.
            first = wait_metric(exp, lambda s: value(s, "wan_benchmark_runs_total", model="a", profile="tiny") >= 1
                                and sample(s, "wan_benchmark_last_run_success", model="a", profile="tiny") is not None,
                                max(busy_s, 120.0), "the first benchmark run")
            t_warm = time.monotonic()
            # At least 15s of resource samples after the warm-up, however short the soak was set.
            time.sleep(max(0.0, t_busy + busy_s - time.monotonic(), t_warm + 15.0 - time.monotonic()))
            t_end = time.monotonic()
        finally:
            load.stop()
            watch.stop()
        s = exp.metrics()
        exp.alive()

    # -- no failed scrape, and the load was really applied
    results = load.snapshot()
    failures = load.failures()
    assert not failures, f"{len(failures)} of {len(results)} scrapes failed; first: {failures[0]}"
    achieved = len(results) / (t_end - t_quiet)
    print(f"\nsoak {SOAK_SECONDS:.0f}s: {len(results)} scrapes, {achieved:.1f}/s (target {THREADS * RATE:.0f}/s)")
    assert achieved >= 0.25 * THREADS * RATE, "the scrape load never got going"

    # -- benchmarks ran, and succeeded, while we scraped
    runs = sum(value(s, "wan_benchmark_runs_total", model=m, profile="tiny") for m in "ab")
    fails = sum(v for (n, lv), v in s.items() if n == "wan_benchmark_failures_total")
    print(f"benchmark runs: {runs:.0f}, failures: {fails:.0f}; first run done {t_warm - t_busy:.1f}s into the busy phase")
    assert runs >= 2 and fails == 0
    assert value(first, "wan_benchmark_runs_total", model="a", profile="tiny") >= 1

    # -- flat resources over the busy phase, after the warm-up run
    busy = [u for u in watch.samples if u.t >= t_warm]
    assert len(busy) >= 10, f"only {len(busy)} resource samples after warm-up"
    rss = [u.rss / MIB for u in busy]
    base_rss = statistics.median(u.rss / MIB for u in watch.samples if u.t < t_busy)
    print(f"RSS: quiet median {base_rss:.1f} MiB; busy min {min(rss):.1f} max {max(rss):.1f} MiB")
    # Slack: allocator noise. A leak of ~2 KiB per scrape (thousands per half) would exceed it.
    print(flat("RSS MiB", rss, slack=max(6.0, 0.05 * max(rss[: len(rss) // 2]))))
    # Scrapers keep their connections alive, so descriptors only move with a run in flight (a pipe
    # and a sentinel); the floor, sampled between runs, must not rise at all beyond one: a leak of
    # one descriptor per benchmark run shows there.
    fds = [u.fds for u in busy]
    print(flat("open fds", fds, slack=4))
    half = len(fds) // 2
    assert min(fds[half:]) <= min(fds[:half]) + 1, f"open fds floor rose: {min(fds[:half])} -> {min(fds[half:])}"
    # The job pool may still grow to its 8 workers; one thread per scrape would be thousands.
    print(flat("threads", [u.threads for u in busy], slack=8))

    # -- latency while a benchmark child runs against the quiet phase (reported, not asserted)
    quiet = load.latencies(since=t_quiet + 2, until=t_busy)
    spans = watch.busy_intervals()
    during = [x.seconds for x in results if any(a <= x.t < b for a, b in spans)]
    print(f"scrape latency, no benchmark:        {describe(quiet)}")
    print(f"scrape latency, benchmark child up:  {describe(during)}")
    assert quiet and during, "no scrapes in one of the phases"
    ratio = pct(during, .5) / max(pct(quiet, .5), 1e-3)
    print(f"p50 ratio during/without: {ratio:.2f}  p95 ratio: {pct(during, .95) / max(pct(quiet, .95), 1e-3):.2f}")
    # A scrape never waits on work: while a benchmark child is alive, scrapes start and finish.
    # (An event, not a latency bound: how fast belongs in the benchmark suite.)
    a, b = max(spans, key=lambda s: s[1] - s[0])
    inside = [x for x in results if a <= x.t and x.t + x.seconds < b]
    assert inside, f"no scrape both started and finished during the {b - a:.1f}s benchmark run: {describe(during)}"
