"""Fault injection against the real exporter process: every fault it must survive.

For each fault the test keeps a steady scrape load running throughout and asserts three
promises: (a) /metrics keeps answering 200 and no scrape waits on the failing work, (b) the
failure shows in the metrics, with its bounded reason, (c) the exporter recovers by itself
once the fault goes away. Faults are real where this machine allows it (a spawned child
that hangs, is SIGKILLed or runs out of memory under a real cap in the real benchmark code path; a full filesystem;
a directory really removed; a wall clock really stepped for the process). NVML is the one
fake (no GPU here), at the pynvml module boundary, with faults switched live.

Where other tests already cover a fault at unit level (test_nvml.py, test_health_faults.py,
test_bench_e2e.py, test_exporter_e2e.py), these add the whole-process view: the same fault
seen through /metrics while the exporter serves, and the recovery.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from support.faults_procs import (FAULTS_ENV, build_tiny_model, FullDisk, JumpingClock, ScrapeLoad, assert_served, config_text,
                                  libfaketime, reload, set_faults, value, wait_metric, work_children, zombies)
from support.procs import ExporterProcess, sample, samples_named, wait_for, write_nvml_state

pytestmark = pytest.mark.e2e

KIND = "tiny-wan2.2-ti2v-5b"  # one transformer: the quickest real pipeline to load


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    """One build of a tiny real Wan pipeline for the whole module (in a child: no torch in the test process)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny"), KIND)


def base_env(tmp: Path) -> dict[str, str]:
    """No HF cache, no NVML: a GPU-less host, unless a test puts the fake NVML in.

    Benchmark faults come from ``tmp/faults.json`` (:func:`set_faults`), the test-only hook."""
    return {"HF_HUB_CACHE": str(tmp / "hf"), "XDG_STATE_HOME": str(tmp / "xdg"),
            "WAN_EXPORTER_NVML_MODULE": "no_such_nvml_module", FAULTS_ENV: str(tmp / "faults.json")}


def copy_model(tiny_dir: Path, dest: Path) -> Path:
    shutil.copytree(tiny_dir / KIND, dest)
    return dest


def model_line(name: str, path: Path, profiles: str = "[]", extra: str = "") -> str:
    return f"{{name: {name}, kind: {KIND}, path: '{path}', device: cpu, dtype: float32, profiles: {profiles}{extra}}}"


def status(s: dict, model: str) -> str | None:
    on = [dict(k).get("status") for k, v in samples_named(s, "wan_model_health_status").items()
          if dict(k).get("model") == model and v == 1]
    return on[0] if len(on) == 1 else None


# --------------------------------------------------------------------------- NVML

GPU = [{"name": "NVIDIA H200", "util_gpu": 12}]


@pytest.fixture
def nvml_exporter(tmp_path):
    """The exporter on the fake pynvml, polling the GPU every second with a 1s NVML call timeout."""
    state = write_nvml_state(tmp_path / "nvml.json", gpus=GPU)
    cfg = tmp_path / "wan.yaml"
    cfg.write_text(config_text(tmp_path / "state", schedules={"gpu": "{interval: 1s}"}, nvml_timeout="1s"))
    env = {**base_env(tmp_path), "WAN_EXPORTER_NVML_MODULE": "support.fake_pynvml", "FAKE_NVML_STATE": str(state)}
    with ExporterProcess([f"--config.file={cfg}"], env=env, log_path=tmp_path / "exporter.log") as exp:
        wait_metric(exp, lambda s: sample(s, "wan_gpu_devices") == 1, 20, "the fake GPU to be read")
        yield exp, state


def gpu_ok(s: dict) -> bool:
    return (sample(s, "wan_exporter_collector_success", collector="gpu") == 1 and sample(s, "wan_gpu_devices") == 1
            and sample(s, "wan_gpu_utilization_ratio", gpu="0") == pytest.approx(0.12))


def test_one_lost_gpu_keeps_the_others_series(nvml_exporter):
    """XID 79 on one of two GPUs: NVML reports that device lost; the other keeps every series."""
    exp, state = nvml_exporter
    two = [GPU[0], {"name": "NVIDIA H200", "util_gpu": 55}]
    write_nvml_state(state, gpus=two)
    s = wait_metric(exp, lambda s: sample(s, "wan_gpu_devices") == 2, 15, "two GPUs read")
    gpu0_before = _families_of_gpu(s, "0")
    with ScrapeLoad(exp.url, rate=5) as load:
        write_nvml_state(state, gpus=[GPU[0], {**two[1], "fault": "gpu_lost"}], xid_events=[[1, 79]])
        s = wait_metric(exp, lambda s: sample(s, "wan_gpu_lost", gpu="1") == 1, 15, "GPU 1 reported lost")
        assert sample(s, "wan_exporter_collector_success", collector="gpu") == 1
        assert sample(s, "wan_gpu_devices") == 2 and sample(s, "wan_gpu_lost", gpu="0") == 0
        assert _families_of_gpu(s, "0") == gpu0_before  # every series of the other GPU kept
        assert sample(s, "wan_gpu_utilization_ratio", gpu="0") == pytest.approx(0.12)
        # The lost GPU: its state, and the XID 79 that took it, named by its own gpu label.
        assert _families_of_gpu(s, "1") == {"wan_gpu_lost", "wan_gpu_xid_errors_total"}
        assert sample(s, "wan_gpu_xid_errors_total", gpu="1", xid="79") == 1
        write_nvml_state(state, gpus=two)
        wait_metric(exp, lambda s: sample(s, "wan_gpu_lost", gpu="1") == 0
                    and sample(s, "wan_gpu_utilization_ratio", gpu="1") == pytest.approx(0.55), 15, "GPU 1 back")
    assert_served(load, "one GPU lost")
    exp.alive()


def _families_of_gpu(s: dict, gpu: str) -> set[str]:
    return {name for name, labels in s if dict(labels).get("gpu") == gpu}


@pytest.mark.parametrize("fault", ["gpu_lost", "library_missing"])
def test_nvml_error_is_reported_and_the_gpu_comes_back(nvml_exporter, fault):
    exp, state = nvml_exporter
    with ScrapeLoad(exp.url, rate=5) as load:
        write_nvml_state(state, gpus=GPU, fault=fault)
        s = wait_metric(exp, lambda s: sample(s, "wan_exporter_collector_error_info", collector="gpu",
                                              reason=fault) == 1, 15, f"{fault} reported")
        assert sample(s, "wan_exporter_collector_success", collector="gpu") == 0
        # Readings nobody can vouch for any more are absent, not stale.
        assert not samples_named(s, "wan_gpu_devices") and not samples_named(s, "wan_gpu_utilization_ratio")
        runs = value(s, "wan_exporter_job_runs_total", task="collector.gpu")
        # The poller keeps trying (and re-initialises NVML) instead of giving up.
        s = wait_metric(exp, lambda s: value(s, "wan_exporter_job_runs_total", task="collector.gpu") >= runs + 2, 15,
                        "GPU polls to go on during the fault")
        assert sample(s, "wan_exporter_collector_error_info", collector="gpu", reason=fault) == 1
        write_nvml_state(state, gpus=GPU)
        s = wait_metric(exp, gpu_ok, 15, "GPU readings back")
        assert not samples_named(s, "wan_exporter_collector_error_info")
    assert_served(load, f"NVML {fault}")
    exp.alive()


def test_hung_nvml_call_never_blocks_scrape_and_the_gpu_comes_back(nvml_exporter):
    exp, state = nvml_exporter
    hang = 6.0  # the hung call returns after this; a scrape waiting on it would take as long
    with ScrapeLoad(exp.url, rate=5) as load:
        t0 = time.monotonic()
        write_nvml_state(state, gpus=GPU, fault="hang", hang_seconds=hang)
        s = wait_metric(exp, lambda s: sample(s, "wan_exporter_collector_error_info", collector="gpu",
                                              reason="timeout") == 1, hang, "the hung NVML call reported")
        runs = value(s, "wan_exporter_job_runs_total", task="collector.gpu")
        # While the call stays stuck, polls fail fast (bounded by the NVML timeout) instead of piling up.
        s = wait_metric(exp, lambda s: value(s, "wan_exporter_job_runs_total", task="collector.gpu") >= runs + 2,
                        hang, "GPU polls to go on while the call hangs")
        # Bounded by the NVML timeout, not by the hang (generous for a loaded machine).
        assert sample(s, "wan_exporter_collector_duration_seconds", collector="gpu") < hang / 2
        assert sample(s, "wan_exporter_collector_error_info", collector="gpu", reason="timeout") == 1
        threads_hung = psutil.Process(exp.proc.pid).num_threads()
        write_nvml_state(state, gpus=GPU)  # the fault goes away: the stuck call returns at t0 + hang
        s = wait_metric(exp, gpu_ok, hang + 15, "GPU readings back after the hung call returned")
        assert time.monotonic() - t0 < hang + 15
        assert psutil.Process(exp.proc.pid).num_threads() <= threads_hung + 4, "threads piled up"
    assert_served(load, "NVML call hanging")


# --------------------------------------------------------------------------- benchmark children

BENCH_PROFILE = "{width: 32, height: 32, frames: 9, steps: 2, timeout: %s}"


def bench_config(state: Path, model: Path, enabled: bool = True, timeout: str = "3m") -> str:
    # A long interval: each reload (which registers the job afresh) starts exactly one run 2s later.
    # A configured baseline far above any run: a shared machine's slow moment is not a "slowdown".
    return config_text(state, models=[model_line("m", model, "[tiny]", ", baselines: {tiny: 1h}")],
                       profiles={"tiny": BENCH_PROFILE % timeout},
                       schedules={"benchmark": f"{{interval: 1h, jitter: 0s, enabled: {str(enabled).lower()}}}",
                                  "layout": "{interval: 2s}", "headers": "{interval: 2s}",
                                  "hash": "{interval: 1h, enabled: false}"})


@pytest.fixture(scope="module")
def bench_exporter(tiny_dir, tmp_path_factory):
    """One exporter for the benchmark faults; each test switches the model's fault in the test hook's file, then
    SIGHUPs (a reload starts one run)."""
    d = tmp_path_factory.mktemp("bench")
    model = copy_model(tiny_dir, d / "model")
    cfg = d / "wan.yaml"
    cfg.write_text(bench_config(d / "state", model, enabled=False))
    with ExporterProcess([f"--config.file={cfg}"], env=base_env(d), log_path=d / "exporter.log") as exp:
        wait_metric(exp, lambda s: status(s, "m") == "healthy", 30, "the model's checks to pass")
        yield exp, cfg, lambda **kw: bench_config(d / "state", model, **kw), d / "faults.json"


LV = {"model": "m", "profile": "tiny"}


def bench_fault_then_recovery(bench_exporter, fault: str, reason: str, timeout: str = "3m",
                              fail_within: float = 180) -> dict:
    """Switch the fault on (one failed run), then off (one successful run); returns the failed-state samples."""
    exp, cfg, make, faults = bench_exporter
    s = exp.metrics()
    fails0 = value(s, "wan_benchmark_failures_total", reason=reason, **LV)
    runs0 = value(s, "wan_benchmark_runs_total", **LV)
    with ScrapeLoad(exp.url, rate=5) as load:
        t0 = time.monotonic()
        set_faults(faults, {"m": fault})
        reload(exp, cfg, make(timeout=timeout))
        failed = wait_metric(exp, lambda s: value(s, "wan_benchmark_failures_total", reason=reason, **LV) == fails0 + 1,
                             fail_within, f"the {fault} run to fail with reason {reason}")
        failed_after = time.monotonic() - t0
        assert value(failed, "wan_benchmark_runs_total", **LV) == runs0 + 1
        assert sample(failed, "wan_benchmark_last_run_success", **LV) == 0
        assert sample(failed, "wan_model_health_issues", model="m", issue="benchmark_failing") == 1
        assert status(failed, "m") == "degraded"
        # The child is gone, reaped: nothing left running or unreaped by the failed run.
        wait_for(lambda: not work_children(exp.proc.pid) and not zombies(exp.proc.pid), 10,
                 what="no child process left behind")
        set_faults(faults, {})
        reload(exp, cfg, make())
        ok = wait_metric(exp, lambda s: sample(s, "wan_benchmark_last_run_success", **LV) == 1, 180,
                         "a successful run after the fault was switched off")
        assert value(ok, "wan_benchmark_runs_total", **LV) == runs0 + 2
        assert value(ok, "wan_benchmark_failures_total", reason=reason, **LV) == fails0 + 1
        assert sample(ok, "wan_model_health_issues", model="m", issue="benchmark_failing") == 0
        assert status(ok, "m") == "healthy"
    assert_served(load, f"benchmark child {fault}")
    exp.alive()
    print(f"\n{fault}: failure published {failed_after:.1f}s after the switch")
    return failed


def test_hung_benchmark_child_is_killed_and_reported(bench_exporter):
    # The child hangs in its first denoising step (or, on a slow machine, is still loading: it does
    # not answer either way); the profile timeout (6s) and kill grace (2s) bound the run.
    bench_fault_then_recovery(bench_exporter, "hang", "timeout", timeout="6s", fail_within=6 + 2 + 20)


def test_sigkilled_benchmark_child_is_reported(bench_exporter):
    # The child SIGKILLs itself in its first denoising step: no result ever comes back.
    bench_fault_then_recovery(bench_exporter, "crash", "crash")


def test_out_of_memory_benchmark_child_is_reported(bench_exporter):
    # A real allocation failure: the child's address space is capped inside the first denoising step
    # and torch's CPU allocator fails the next allocation (ENOMEM).
    bench_fault_then_recovery(bench_exporter, "oom", "oom")


def test_sigterm_during_a_benchmark_ends_its_child_and_exits_promptly(tiny_dir, tmp_path):
    """A supervisor's stop (systemd, docker) must neither wait out a benchmark nor orphan its child.

    Before the fix the exporter's exit waited for the job thread awaiting its child (up to the
    profile timeout, 30 minutes by default); SIGKILLed then, it left the child running, holding
    its GPU.
    """
    model = copy_model(tiny_dir, tmp_path / "model")
    cfg = tmp_path / "wan.yaml"
    cfg.write_text(bench_config(tmp_path / "state", model))
    set_faults(tmp_path / "faults.json", {"m": "hang"})
    exp = ExporterProcess([f"--config.file={cfg}"], env=base_env(tmp_path), log_path=tmp_path / "exporter.log")
    kids: list[psutil.Process] = []
    try:
        exp.start()
        kids = wait_for(lambda: work_children(exp.proc.pid), 30, 0.1, "a benchmark child running")
        exp.signal(signal.SIGTERM)
        try:
            rc = exp.proc.wait(20)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the exporter did not exit within 20s of SIGTERM: {exp.log_tail()}") from None
        assert rc == 0, exp.log_tail()

        def ended() -> bool:
            return all(not k.is_running() or k.status() == psutil.STATUS_ZOMBIE for k in kids)

        wait_for(ended, 10, what="the benchmark child to end with the exporter")
    finally:
        exp.stop()
        for k in kids:  # never leave one behind, whatever failed above
            try:
                k.kill()
            except psutil.Error:
                pass


# --------------------------------------------------------------------------- disk full


def test_disk_full_while_writing_the_hash_manifest(tiny_dir, tmp_path):
    """The state directory sits on a small tmpfs that the test fills (a real ENOSPC); where
    mounting is not allowed, the exporter's RLIMIT_FSIZE makes the same write fail with EFBIG."""
    model = copy_model(tiny_dir, tmp_path / "model")
    cfg = tmp_path / "wan.yaml"
    with FullDisk(tmp_path / "state") as disk:
        print(f"\ndisk-full mode: {disk.mode}")
        cfg.write_text(config_text(disk.path, models=[model_line("m", model)],
                                   schedules={"layout": "{interval: 1s}", "headers": "{interval: 1s}",
                                              "hash": "{interval: 2s, jitter: 0s}"}))
        exp = ExporterProcess([f"--config.file={cfg}"], env=base_env(tmp_path),
                              log_path=tmp_path / "exporter.log" if disk.mounted else None)
        if disk.mounted:
            disk.fill()
        else:  # the limit must be in place before the first hash run: set it before exec
            exp.args = [sys.executable, "-c",
                        "import os, resource, sys; h = resource.getrlimit(resource.RLIMIT_FSIZE)[1]; "
                        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({FullDisk.FSIZE_LIMIT}, h)); "
                        "os.execv(sys.argv[1], sys.argv[1:])", *exp.args]
        with exp, ScrapeLoad(exp.url, rate=5) as load:
            disk.pid = exp.proc.pid
            s = wait_metric(exp, lambda s: sample(s, "wan_model_health_issues", model="m",
                                                  issue="manifest_write_failed") == 1, 30, "manifest_write_failed")
            assert sample(s, "wan_health_check_success", model="m", check="hash") == 0
            assert status(s, "m") == "degraded"
            # The verification itself was done: every byte hashed; only keeping the record failed.
            assert sample(s, "wan_model_integrity_ratio", model="m", reference="recorded") == 1
            manifests = disk.path / "manifests"
            assert not (manifests / "m.json").exists()
            leftovers = list(manifests.glob("*.tmp")) if manifests.exists() else []
            assert not leftovers, f"temporary manifest files left on the full disk: {leftovers}"
            disk.free()
            s = wait_metric(exp, lambda s: sample(s, "wan_model_health_issues", model="m",
                                                  issue="manifest_write_failed") == 0 and status(s, "m") == "healthy",
                            30, "recovery once space is free")
            assert sample(s, "wan_health_check_success", model="m", check="hash") == 1
            doc = json.loads((manifests / "m.json").read_text())
            assert doc["files"] and all(len(e["sha256"]) == 64 for e in doc["files"].values())
            exp.alive()
        assert_served(load, "disk full")


# --------------------------------------------------------------------------- garbage config

GARBAGE = {
    # test_exporter_e2e.py covers a YAML syntax error on reload; these are the other ways a file goes bad.
    "yaml_syntax": b"models: [\n  garbage",
    "not_utf8": b"\xff\xfe\x00models:\x00\x9c\x01",
    "wrong_types": b"models: 7\nschedules: {gpu: {interval: soon}}\nexporter: {nvml_timeout: -1}\n",
    "yaml_bomb": b"".join(f"{c}: &{c} [{', '.join([f'*{p}'] * 9) if p else ', '.join(['lol'] * 9)}]\n".encode()
                          for p, c in zip([""] + list("abcdefgh"), "abcdefghi")) + b"models: *i\n",
    "python_tag": b"models: !!python/object/apply:os.system ['touch /tmp/wan-exporter-pwned']\n",
    "deleted": None,
}


def test_garbage_config_on_reload_keeps_the_running_config(tmp_path):
    cfg = tmp_path / "wan.yaml"
    good = config_text(tmp_path / "state", models=["{name: first, kind: wan2.2-ti2v-5b, hub_id: a/b}"],
                       schedules={"host": "{interval: 1s}"})
    cfg.write_text(good)
    with ExporterProcess([f"--config.file={cfg}"], env=base_env(tmp_path), log_path=tmp_path / "exporter.log") as exp:
        wait_metric(exp, lambda s: value(s, "wan_exporter_job_runs_total", task="collector.host") >= 1, 15,
                    "the host job running")
        with ScrapeLoad(exp.url, rate=5) as load:
            t0 = time.monotonic()
            runs = value(exp.metrics(), "wan_exporter_job_runs_total", task="collector.host")
            for name, garbage in GARBAGE.items():
                if garbage is None:
                    cfg.unlink()
                else:
                    cfg.write_bytes(garbage)
                exp.signal(signal.SIGHUP)
                s = wait_metric(exp, lambda s: sample(s, "wan_exporter_config_last_reload_successful") == 0, 15,
                                f"the {name} reload reported failed")
                # The running config stays in force.
                assert sample(s, "wan_exporter_models_configured") == 1, name
                assert samples_named(s, "wan_model_info"), name
                s = reload(exp, cfg, good)  # and a good file is taken again
                assert sample(s, "wan_exporter_models_configured") == 1
            # Jobs stayed on their 1s schedule through every failed and good reload.
            elapsed = time.monotonic() - t0
            s = wait_metric(exp, lambda s: value(s, "wan_exporter_job_runs_total", task="collector.host") >= runs + 2,
                            10, "the host job running on")
            done = value(s, "wan_exporter_job_runs_total", task="collector.host") - runs
            assert done >= elapsed / 3, f"{done:.0f} host runs in {elapsed:.1f}s of reloads (every 1s expected)"
        assert not Path("/tmp/wan-exporter-pwned").exists(), "a YAML python tag was executed"
        exp.alive()
    assert_served(load, "garbage config reloads")


# --------------------------------------------------------------------------- model directory removed


def test_model_directory_removed_while_running_then_restored(tiny_dir, tmp_path):
    model = copy_model(tiny_dir, tmp_path / "model")
    cfg = tmp_path / "wan.yaml"
    cfg.write_text(config_text(tmp_path / "state", models=[model_line("m", model)],
                               schedules={"layout": "{interval: 1s}", "headers": "{interval: 1s}",
                                          "hash": "{interval: 2s, jitter: 0s}"}))
    with ExporterProcess([f"--config.file={cfg}"], env=base_env(tmp_path), log_path=tmp_path / "exporter.log") as exp:
        with ScrapeLoad(exp.url, rate=5) as load:
            s = wait_metric(exp, lambda s: status(s, "m") == "healthy" and
                            sample(s, "wan_model_integrity_ratio", model="m", reference="recorded") == 1, 30, "healthy and hashed")
            assert sample(s, "wan_model_present", model="m") == 1
            shutil.rmtree(model)
            s = wait_metric(exp, lambda s: status(s, "m") == "missing", 15, "missing once the directory is gone")
            assert sample(s, "wan_model_health_issues", model="m", issue="missing_model") == 1
            s = wait_metric(exp, lambda s: sample(s, "wan_model_present", model="m") == 0, 15, "present 0")
            # Put it back the way an operator would: copy beside it, then rename into place (atomic).
            incoming = copy_model(tiny_dir, tmp_path / ".model.incoming")
            os.rename(incoming, model)
            s = wait_metric(exp, lambda s: status(s, "m") == "healthy" and
                            sample(s, "wan_model_present", model="m") == 1, 30, "healthy again once restored")
            assert sample(s, "wan_model_health_issues", model="m", issue="missing_model") == 0
            # Same bytes, new inodes: the hash check reads them again and they still match the manifest.
            s = wait_metric(exp, lambda s: sample(s, "wan_health_check_success", model="m", check="hash") == 1 and
                            sample(s, "wan_model_integrity_ratio", model="m", reference="recorded") == 1 and
                            sample(s, "wan_model_health_issues", model="m", issue="hash_mismatch") == 0, 30,
                            "the restored files verified")
        exp.alive()
    assert_served(load, "model directory removed")


# --------------------------------------------------------------------------- the wall clock jumping


def test_clock_watch_detects_jumps_and_replans():
    """ClockWatch on scripted clocks: drift and load are not jumps; steps beyond the threshold are."""
    from wan_exporter.clockwatch import ClockWatch
    from wan_exporter.state import Store

    clock = {"wall": 1_000_000.0, "mono": 50.0}
    jumps: list[float] = []
    store = Store()
    w = ClockWatch(store, jumps.append, interval=1.0, threshold=5.0, wall=lambda: clock["wall"],
                   mono=lambda: clock["mono"])
    w._last = (clock["wall"], clock["mono"])

    def tick(wall_step: float, mono_step: float) -> float | None:
        clock["wall"] += wall_step
        clock["mono"] += mono_step
        return w.check()

    assert tick(1.0, 1.0) is None
    assert tick(30.0, 30.0) is None  # a tick delayed 30s by load: both clocks moved alike
    assert tick(1.5, 1.0) is None  # NTP slewing / small step: below the threshold
    assert tick(1.0 - 3600, 1.0) == pytest.approx(-3600)
    assert tick(1.0 + 7200, 1.0) == pytest.approx(7200)
    assert tick(1.0, 1.0) is None
    assert jumps == [pytest.approx(-3600), pytest.approx(7200)]
    assert dict(store.snapshot.clock_jumps) == {"backward": 1, "forward": 1}

    # The watch thread is paused for 6s right after reading the wall clock (load, a frozen cgroup):
    # both clocks moved alike, so this is no jump (read naively, it looked like two).
    pause = {"armed": False, "pending": False}

    def wall() -> float:
        if pause["armed"]:
            pause["armed"], pause["pending"] = False, True
        return clock["wall"]

    def mono() -> float:
        if pause["pending"]:
            pause["pending"] = False
            clock["wall"] += 6.0
            clock["mono"] += 6.0
        return clock["mono"]

    w._wall, w._mono = wall, mono
    clock["wall"] += 1.0
    clock["mono"] += 1.0
    pause["armed"] = True
    assert w.check() is None
    assert tick(1.0, 1.0) is None
    assert len(jumps) == 2


def test_reschedule_all_runs_jobs_pushed_out_by_a_backward_jump(tmp_path):
    """What a backward step does to APScheduler (next runs an hour further out), then the re-plan."""
    from datetime import datetime, timedelta, timezone

    from wan_exporter.config import Schedule
    from wan_exporter.scheduler import Jobs
    from wan_exporter.state import Store

    jobs = Jobs(Store())
    ran = {"fast": threading.Event(), "daily": threading.Event()}
    jobs.add("fast", ran["fast"].set, Schedule(interval=1.0), first_delay=0.5)
    jobs.add("daily", ran["daily"].set, Schedule(interval=86400.0), first_delay=3600.0)
    jobs.start()
    try:
        assert ran["fast"].wait(10)
        ran["fast"].clear()
        # Simulate the step: the fast job's next run is now an hour beyond one interval.
        later = datetime.now(timezone.utc) + timedelta(hours=1)
        jobs._sched.get_job("fast").modify(next_run_time=later)
        assert not ran["fast"].wait(2.5), "the job ran although its next run was an hour away"
        moved = jobs.reschedule_all(-3600.0)
        assert moved == ["fast"]  # the daily job's first run is within its interval: left alone
        assert ran["fast"].wait(10), "the re-planned job did not run"
        assert not ran["daily"].is_set()
        nxt = jobs._sched.get_job("fast").next_run_time
        assert nxt - datetime.now(timezone.utc) < timedelta(seconds=3)  # back on its 1s schedule
    finally:
        jobs.shutdown()


@pytest.fixture
def jumping_clock(tmp_path) -> JumpingClock:
    lib = libfaketime()
    if lib is None:
        pytest.skip("libfaketime not installed (Debian: apt-get install faketime)")
    return JumpingClock(tmp_path / "faketime-offset", lib)


def test_wall_clock_jumps_never_stall_scheduled_jobs(tmp_path, jumping_clock):
    """The exporter's wall clock steps back an hour, then forward again, under libfaketime.

    Without clockwatch, APScheduler (wall-clock triggers, monotonic sleeps) stopped every job
    for the hour after the backward step, and stepping forward again did not wake it.
    """
    clock = jumping_clock
    cfg = tmp_path / "wan.yaml"
    cfg.write_text(config_text(tmp_path / "state", schedules={"gpu": "{interval: 1s}", "host": "{interval: 1s}",
                                                              "layout": "{interval: 1s}"}))
    env = {**base_env(tmp_path), **clock.env()}
    task = "collector.host"
    with ExporterProcess([f"--config.file={cfg}"], env=env, log_path=tmp_path / "exporter.log") as exp:
        s = wait_metric(exp, lambda s: value(s, "wan_exporter_job_runs_total", task=task) >= 2, 15, "jobs running")
        assert value(s, "wan_exporter_clock_jumps_total", direction="backward") == 0
        assert value(s, "wan_exporter_clock_jumps_total", direction="forward") == 0
        with ScrapeLoad(exp.url, rate=5) as load:
            for offset, direction in ((-3600, "backward"), (0, "forward")):
                runs = value(exp.metrics(), "wan_exporter_job_runs_total", task=task)
                clock.set(offset)
                s = wait_metric(exp, lambda s: value(s, "wan_exporter_job_runs_total", task=task) >= runs + 2, 10,
                                f"jobs running on after the {direction} jump")
                s = wait_metric(exp, lambda s: value(s, "wan_exporter_clock_jumps_total", direction=direction) == 1,
                                5, f"the {direction} jump counted")
                # Timestamps come from the (new) wall clock, durations from the monotonic one.
                last = sample(s, "wan_exporter_job_last_run_timestamp_seconds", task=task)
                assert abs(last - clock.now()) < 10, (last, clock.now())
                # Monotonic: a jump of hours never shows in a duration (bound generous under load).
                assert 0 <= sample(s, "wan_exporter_job_last_duration_seconds", task=task) < 60
                assert sample(s, "wan_exporter_collector_success", collector="host") == 1
            assert value(s, "wan_exporter_clock_jumps_total", direction="backward") == 1
        log = exp.log_tail(20000)
        assert "wall clock jumped backward by 3600" in log and "wall clock jumped forward by 3600" in log
        exp.alive()
    assert_served(load, "wall clock jumps")
