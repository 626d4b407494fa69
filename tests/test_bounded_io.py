"""A file that blocks, or a mount that hangs, delays only its own model; a stuck job is seen; SIGTERM ends it.

The FIFO is real, at the path of the issue that found the freeze: ``--local-dir`` download
metadata of a transformer (``open()`` on it waits for a writer for ever). A hung NFS or FUSE
mount cannot be made here, so ``tests/support/hung_mount`` stands in for one at the narrowest
boundary (every stat/open/listing under one path blocks for ever in the exporter process); the
threads, the deadline and the abandoning are the real ones. The stuck job is real too: a hash
run rate-limited to outlive its deadline.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.numpy import save_file

from support.faults_procs import ScrapeLoad, assert_served, value, wait_metric
from support.procs import REPO, ExporterProcess, exporter_env, http_get, sample, samples_named, wait_for
from test_health_fixtures import _tensors, write_model

pytestmark = pytest.mark.e2e

FIFO_REL = ".cache/huggingface/download/transformer/diffusion_pytorch_model.safetensors.metadata"


def single_transformer_model(root: Path) -> Path:
    """The fixture model with one transformer file instead of two shards (the issue's layout)."""
    write_model(root)
    t = root / "transformer"
    for f in t.glob("diffusion_pytorch_model*"):
        f.unlink()
    save_file(_tensors("blocks.0", 2, 8192, seed=3), str(t / "diffusion_pytorch_model.safetensors"))
    return root


def hung_env(path: Path) -> dict[str, str]:
    """The exporter's environment with the stand-in for a hung mount over ``path``."""
    env = exporter_env({"WAN_TEST_HUNG_PATH": str(path), "WAN_EXPORTER_NVML_MODULE": "no_such_nvml_module"})
    env["PYTHONPATH"] = str(REPO / "tests" / "support" / "hung_mount") + os.pathsep + env["PYTHONPATH"]
    return env


def status(s: dict, model: str) -> str | None:
    on = [dict(k).get("status") for k, v in samples_named(s, "wan_model_health_status").items()
          if dict(k).get("model") == model and v == 1]
    return on[0] if len(on) == 1 else None


def test_a_blocked_read_is_left_behind_and_its_model_refused_until_it_returns(tmp_path: Path) -> None:
    """The worker mechanism on a real blocking syscall: open() of a FIFO with no writer."""
    from wan_exporter.scan.bounded import IoTimeout, Lanes

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    lanes = Lanes()
    t0 = time.monotonic()
    with pytest.raises(IoTimeout) as e:
        lanes.run("m", lambda: open(fifo, "rb").read(), 0.3, "reading the FIFO")
    assert e.value.left_behind and time.monotonic() - t0 < 5
    assert "m" in lanes.stuck()
    with pytest.raises(IoTimeout) as again:  # refused at once: one blocked thread per model, not one per run
        lanes.run("m", lambda: 1, 0.3)
    assert not again.value.left_behind and "blocked for" in str(again.value)
    assert lanes.run("other", lambda: 42, 0.3) == 42  # another model is not held up
    with open(fifo, "wb") as w:  # the "mount" comes back: the left-behind read returns
        w.write(b"x")
    wait_for(lambda: not lanes.stuck(), 10, what="the left-behind read to return")
    assert lanes.run("m", lambda: 7, 0.3) == 7


def test_fifo_and_hung_mount_delay_only_their_model_stuck_job_seen_sigterm_bounded(tmp_path: Path) -> None:
    good = single_transformer_model(tmp_path / "good")
    fifo = single_transformer_model(tmp_path / "fifo")
    (fifo / FIFO_REL).parent.mkdir(parents=True)
    os.mkfifo(fifo / FIFO_REL)
    hung = single_transformer_model(tmp_path / "hung")
    weights = sum(f.stat().st_size for f in good.rglob("*.safetensors"))
    cfg = tmp_path / "wan.yaml"
    model = "{{name: {0}, kind: tiny-wan2.2-ti2v-5b, path: '{1}', device: cpu, profiles: []}}"
    # The hash job reads the good model at 1/12 of its size per second: a run lasts ~12 s, longer
    # than its 2 s deadline, so it is stuck for real while the other jobs keep their schedule.
    cfg.write_text("\n".join([
        "models:",
        *(f"  - {model.format(n, p)}" for n, p in (("good", good), ("fifo", fifo), ("hung", hung))),
        "schedules:",
        "  layout: {interval: 1s}",
        "  headers: {interval: 2s}",
        "  hash: {interval: 1s, deadline: 2s}",
        f"hashing: {{chunk_bytes: 4096, rate_limit_bytes_per_second: {weights // 12}}}",
        f"exporter: {{state_dir: '{tmp_path / 'state'}', io_timeout: 1s}}",
    ]) + "\n")
    exp = ExporterProcess(["--config.file", str(cfg)], env=hung_env(hung), log_path=tmp_path / "exporter.log")
    with exp, ScrapeLoad(exp.url, rate=4.0) as load:
        # The fixture is not the catalogued checkpoint, so every model has catalog_mismatch (degraded).
        s = wait_metric(exp, lambda s: status(s, "good") == "degraded" and status(s, "fifo") == "critical"
                        and status(s, "hung") == "degraded", 60, "each model's own verdict")
        assert value(s, "wan_model_health_issues", model="fifo", issue="not_regular_file") == 1
        assert value(s, "wan_model_health_issues", model="hung", issue="io_timeout") >= 1
        good_issues = {dict(k)["issue"] for k, v in samples_named(s, "wan_model_health_issues").items()
                       if dict(k)["model"] == "good" and v}
        assert good_issues == {"catalog_mismatch"}, good_issues
        # The good model's checks run on schedule while the hung one's reads stay blocked.
        before = sample(s, "wan_health_check_last_success_timestamp_seconds", model="good", check="layout")
        s = wait_metric(exp, lambda s: (sample(s, "wan_health_check_last_success_timestamp_seconds", model="good",
                                               check="layout") or 0) >= before + 2, 20, "the good model's next checks")
        for job in ("health.layout", "health.headers", "collector.checkpoint"):
            assert value(s, "wan_exporter_job_stuck", task=job) == 0, job

        # The rate-limited hash run outlives its deadline: stuck, skipped runs counted, /-/ready says so.
        s = wait_metric(exp, lambda s: value(s, "wan_exporter_job_stuck", task="health.hash") == 1, 30,
                        "health.hash to be stuck")
        assert value(s, "wan_exporter_job_deadline_seconds", task="health.hash") == 2
        code, body = http_get(exp.url + "/-/ready")
        assert code == 503 and b"health.hash" in body, (code, body)
        assert http_get(exp.url + "/-/healthy")[0] == 200
        code, body = http_get(exp.url + "/api/v1/status")
        jobs = {j["job"]: j for j in json.loads(body)["jobs"]}
        assert jobs["health.hash"]["stuck"] and jobs["health.hash"]["running_since"] is not None
        assert jobs["health.hash"]["runbooks"] and not jobs["health.layout"]["stuck"]
        assert b"stuck: running for" in http_get(exp.url + "/")[1]
        wait_metric(exp, lambda s: value(s, "wan_exporter_job_skipped_runs_total", task="health.hash") >= 1, 20,
                    "a skipped hash run to be counted")
        assert_served(load, "scrapes with a FIFO, a hung mount and a stuck job")

        # SIGTERM while the hash job reads and the hung model's workers are blocked in the "kernel".
        t0 = time.monotonic()
        exp.signal(signal.SIGTERM)
        exp.proc.wait(30)
        took = time.monotonic() - t0
    assert took < 10, f"SIGTERM took {took:.1f}s; log: {exp.log_tail()}"


def test_check_model_returns_on_a_fifo_and_on_a_hung_mount(tmp_path: Path) -> None:
    fifo = single_transformer_model(tmp_path / "fifo")
    (fifo / FIFO_REL).parent.mkdir(parents=True)
    os.mkfifo(fifo / FIFO_REL)
    hung = single_transformer_model(tmp_path / "hung")
    cmd = [sys.executable, "-m", "wan_exporter", "check-model", "--no-load", "--json"]
    r = subprocess.run([*cmd, str(fifo)], env=exporter_env(), capture_output=True, text=True, timeout=60)
    doc = json.loads(r.stdout)
    assert r.returncode == 1 and doc["status"] == "critical", r.stderr
    kinds = {(i["kind"], i["path"]) for c in doc["checks"] for i in c["issues"]}
    assert ("not_regular_file", FIFO_REL) in kinds
    r = subprocess.run([*cmd, "--io-timeout", "1", str(hung)], env=hung_env(hung), capture_output=True, text=True,
                       timeout=60)
    doc = json.loads(r.stdout)
    assert r.returncode == 1 and doc["status"] == "degraded", r.stderr
    assert [i["kind"] for i in doc["checks"][0]["issues"]] == ["io_timeout"]
    cfg = tmp_path / "wan.yaml"
    cfg.write_text(f"models:\n  - {{name: hung, kind: tiny-wan2.2-ti2v-5b, path: '{hung}', profiles: []}}\n"
                   "exporter: {io_timeout: 1s}\n")
    r = subprocess.run([sys.executable, "-m", "wan_exporter", "check-config", str(cfg)], env=hung_env(hung),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "did not answer within exporter.io_timeout (1s)" in r.stdout + r.stderr, r
