"""Fault → notification → repair → resolved, through the real binaries.

The real exporter (a tiny Wan model on the CPU), the real Prometheus loading the rules
(a test variant rendered by alerting/generate.py with every ``for:`` at 0s), the real
Alertmanager with the committed config (webhooks pointed at a loopback receiver, timers
shortened), all on loopback with 1 s intervals. Faults are real: a truncated weight file,
and the benchmark fault hook (a test-only file the exporter reads) switched before a reload.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support.alerting_procs import (ALERTMANAGER, AMTOOL, PROMETHEUS, AlertmanagerProcess, PrometheusProcess,
                                    WebhookReceiver, alertmanager_test_config, binary, prometheus_test_config,
                                    render_rules, wait_until)
from support.faults_procs import FAULTS_ENV, set_faults
from support.procs import ExporterProcess, exporter_env

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(any(binary(b) is None for b in (PROMETHEUS, ALERTMANAGER, AMTOOL)),
                       reason="needs prometheus, prometheus-alertmanager and amtool (Debian packages)"),
]

MODEL = "tiny-t2v"
KIND = "tiny-wan2.1-t2v"
PROFILE = "tiny"
SHARD = Path("transformer") / "diffusion_pytorch_model.safetensors"


def exporter_config(model_dir: Path, state_dir: Path) -> str:
    return f"""\
models:
  - {{name: {MODEL}, kind: {KIND}, path: '{model_dir}', device: cpu, dtype: float32, profiles: [{PROFILE}]}}
profiles:
  {PROFILE}: {{width: 32, height: 32, frames: 9, steps: 2, timeout: 2m}}
schedules:
  gpu: {{interval: 1s}}
  host: {{interval: 1s}}
  layout: {{interval: 1s}}
  headers: {{interval: 1s}}
  hash: {{interval: 1h, enabled: false}}
  load: {{interval: 1h, enabled: false}}
  benchmark: {{interval: 5s, jitter: 0s}}
benchmark: {{kill_grace: 2s, baseline_runs: 1}}
exporter: {{state_dir: '{state_dir}'}}
"""


class Stack:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.model_dir = root / "models" / KIND
        self.config = root / "wan-exporter.yml"
        self.faults = root / "faults.json"  # the benchmark fault hook the tests switch (never the config)
        self.webhook = WebhookReceiver()
        self.exporter: ExporterProcess | None = None
        self.am: AlertmanagerProcess | None = None
        self.prom: PrometheusProcess | None = None

    def start(self) -> "Stack":
        r = subprocess.run([sys.executable, "-c", "import sys, pathlib; from wan_exporter.tiny import build; "
                            "build(sys.argv[1], pathlib.Path(sys.argv[2]))", KIND, str(self.model_dir)],
                           env=exporter_env(), capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
        assert (self.model_dir / SHARD).is_file()
        self.write_config("none")
        env = {FAULTS_ENV: str(self.faults)}
        self.webhook.start()
        am_cfg = alertmanager_test_config(self.root / "alertmanager.yml", self.webhook.url())
        self.am = AlertmanagerProcess(am_cfg, self.root / "am").start()
        self.exporter = ExporterProcess([f"--config.file={self.config}"], env=env,
                                        log_path=self.root / "exporter.log").start()
        rules = render_rules(self.root / "rules", for_all="0s")
        prom_cfg = prometheus_test_config(self.root / "prometheus" / "prometheus.yml",
                                          targets=[f"127.0.0.1:{self.exporter.port}"], rules_dir=rules,
                                          alertmanager=self.am.address)
        self.prom = PrometheusProcess(prom_cfg, self.root / "prometheus").start()
        return self

    def stop(self) -> None:
        for p in (self.prom, self.exporter, self.am):
            if p is not None:
                p.stop()
        self.webhook.stop()

    @property
    def instance(self) -> str:
        assert self.exporter is not None
        return f"127.0.0.1:{self.exporter.port}"

    def write_config(self, fault: str) -> None:
        set_faults(self.faults, {MODEL: fault} if fault != "none" else {})
        tmp = self.config.with_suffix(".tmp")
        tmp.write_text(exporter_config(self.model_dir, self.root / "state"))
        os.replace(tmp, self.config)

    def reload_exporter(self, fault: str) -> None:
        self.write_config(fault)
        assert self.exporter is not None
        self.exporter.signal(signal.SIGHUP)

    def diagnostics(self) -> str:
        assert self.prom and self.am and self.exporter
        try:
            alerts = [(a["labels"].get("alertname"), a["state"], a["labels"].get("model")) for a in self.prom.alerts()]
        except Exception as e:  # noqa: BLE001 - diagnostics only
            alerts = [repr(e)]
        seen = [(a["labels"].get("alertname"), a["status"], a["labels"].get("model")) for a in self.webhook.alerts()]
        return (f"\nPrometheus alerts: {alerts}\nwebhook saw: {seen}\n"
                f"exporter log tail:\n{self.exporter.log_tail(2000)}\nprometheus log tail:\n{self.prom.log_tail(1500)}")

    def wait(self, pred, timeout: float, what: str):
        try:
            return wait_until(pred, timeout, interval=0.25, what=what)
        except AssertionError as e:
            raise AssertionError(f"{e}{self.diagnostics()}") from None

    def notified(self, alertname: str, status: str, **labels: str) -> list[dict]:
        return self.webhook.alerts(alertname, status, instance=self.instance, **labels)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = Stack(tmp_path_factory.mktemp("alerting-e2e"))
    try:
        s.start()
        # The model is healthy and has been benchmarked before any fault is injected.
        s.wait(lambda: s.prom.query(f'wan_model_health_status{{model="{MODEL}", status="healthy"}} == 1'), 90,
               "the model to be healthy in Prometheus")
        s.wait(lambda: s.prom.query(f'wan_benchmark_last_run_success{{model="{MODEL}"}} == 1'), 120,
               "a successful benchmark")
        yield s
    finally:
        s.stop()


def assert_labels(alert: dict, **expected: str) -> None:
    for k, v in expected.items():
        assert alert["labels"].get(k) == v, (k, alert["labels"])


def test_watchdog_reaches_the_webhook(stack):
    (a, *_) = stack.wait(lambda: stack.webhook.alerts("Watchdog", "firing"), 30, "the Watchdog notification")
    assert a["labels"]["severity"] == "none"
    assert a["annotations"]["runbook_url"].endswith("runbooks.md#watchdog")
    # A GPU-less host's gpu collector fails with library_missing: no WanCollectorFailing for that.
    if stack.prom.query('wan_exporter_collector_error_info{collector="gpu", reason="library_missing"}'):
        assert not stack.prom.firing("WanCollectorFailing", collector="gpu")


def corrupt(stack: Stack) -> bytes:
    """Truncate the transformer's weights to half (the safetensors header stays readable)."""
    path = stack.model_dir / SHARD
    data = path.read_bytes()
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data[: len(data) // 2])
    os.replace(tmp, path)
    return data


def repair(stack: Stack, data: bytes) -> None:
    path = stack.model_dir / SHARD
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def test_corrupt_model_file_fires_resolves_and_a_silence_suppresses(stack):
    labels = dict(alertname="WanModelIntegrityFailure", model=MODEL)
    original = corrupt(stack)
    try:
        (fired, *_) = stack.wait(lambda: stack.notified("WanModelIntegrityFailure", "firing", model=MODEL), 60,
                                 "the WanModelIntegrityFailure notification")
        assert_labels(fired, severity="critical", job="wan-exporter", instance=stack.instance, model=MODEL)
        ann = fired["annotations"]
        assert ann["runbook_url"].endswith("runbooks.md#wanmodelintegrityfailure")
        assert f"Model {MODEL} on {stack.instance} has 1 integrity finding(s)" in ann["description"], ann
        assert ann["value"] == "1"
        assert "var-model=tiny-t2v" in ann["dashboard_url"]
        # WanModelHealthCritical fires too in Prometheus, and is inhibited by the integrity alert.
        stack.wait(lambda: stack.prom.firing("WanModelHealthCritical", model=MODEL), 30, "WanModelHealthCritical")
        stack.wait(lambda: any(a["status"]["inhibitedBy"] for a in
                               stack.am.alerts(alertname="WanModelHealthCritical", model=MODEL)), 30,
                   "WanModelHealthCritical to be inhibited in Alertmanager")
    finally:
        repair(stack, original)
    stack.wait(lambda: stack.notified("WanModelIntegrityFailure", "resolved", model=MODEL), 60,
               "the resolved notification after repair")
    stack.wait(lambda: stack.prom.query(f'wan_model_health_status{{model="{MODEL}", status="healthy"}} == 1'), 60,
               "the model to be healthy again")

    # Acknowledge with amtool, break it again: Prometheus fires, Alertmanager stays silent.
    add = stack.am.amtool("silence", "add", f"alertname={labels['alertname']}", f"model={MODEL}",
                          f"instance={stack.instance}", "--author=e2e", "--duration=10m", "--comment=acknowledged")
    assert add.returncode == 0, add.stderr
    silence_id = add.stdout.strip()
    before = len(stack.notified("WanModelIntegrityFailure", "firing", model=MODEL))
    original = corrupt(stack)
    try:
        stack.wait(lambda: stack.prom.firing("WanModelIntegrityFailure", model=MODEL), 60,
                   "WanModelIntegrityFailure firing again in Prometheus")
        stack.wait(lambda: any(silence_id in a["status"]["silencedBy"] and a["status"]["state"] == "suppressed"
                               for a in stack.am.alerts(**labels)), 30, "the silence to suppress the alert")
        time.sleep(4)  # several group intervals (1 s) and Prometheus evaluations (1 s)
        assert len(stack.notified("WanModelIntegrityFailure", "firing", model=MODEL)) == before, \
            "a silenced alert was notified" + stack.diagnostics()
    finally:
        repair(stack, original)
        stack.am.amtool("silence", "expire", silence_id)
    stack.wait(lambda: not stack.prom.firing("WanModelIntegrityFailure", model=MODEL), 60,
               "WanModelIntegrityFailure to resolve after the second repair")


def test_benchmark_fault_switch_fires_then_resolves_after_repair(stack):
    stack.reload_exporter("nan")
    try:
        (fired, *_) = stack.wait(lambda: stack.notified("WanOutputInvalid", "firing", model=MODEL), 120,
                                 "the WanOutputInvalid notification")
        assert_labels(fired, severity="critical", job="wan-exporter", instance=stack.instance, model=MODEL,
                      profile=PROFILE)
        assert fired["annotations"]["runbook_url"].endswith("runbooks.md#wanoutputinvalid")
        assert f"of {MODEL}/{PROFILE} on {stack.instance} produced invalid output" in \
            fired["annotations"]["description"]
        # The health verdict turns degraded (then critical after 3 failures in a row): notified.
        health = stack.wait(lambda: stack.notified("WanModelHealthDegraded", "firing", model=MODEL)
                            or stack.notified("WanModelHealthCritical", "firing", model=MODEL), 120,
                            "a health notification")
        assert_labels(health[0], instance=stack.instance, model=MODEL)
    finally:
        stack.reload_exporter("none")
    stack.wait(lambda: stack.prom.query(f'wan_model_health_status{{model="{MODEL}", status="healthy"}} == 1'), 120,
               "the model to be healthy after the fault switch is off")
    names = {a["labels"]["alertname"] for a in stack.webhook.alerts(status="firing", instance=stack.instance,
                                                                    model=MODEL)}
    for name in sorted(names & {"WanModelHealthDegraded", "WanModelHealthCritical"}):
        stack.wait(lambda: stack.notified(name, "resolved", model=MODEL), 30, f"the resolved {name} notification")
    assert stack.prom.query('wan_exporter_config_last_reload_successful == 1')
