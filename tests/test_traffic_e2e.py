"""Real traffic → Prometheus → burn-rate alert → Alertmanager → webhook, then resolved.

The example service (examples/serve/) serves a tiny Wan pipeline through
``wan_exporter.instrument``; its bounded load generator sends real requests, every third with
a width that is not a multiple of 16 (the pipeline rejects it: ``invalid_input``). A real
Prometheus scrapes the service every second with the rules alerting/generate.py renders in a
test variant: one burn-rate tier over 20 s and 10 s instead of 1 h and 5 m, a latency
threshold of 0.5 s (a bucket bound of wan_request_duration_seconds), every ``for:`` at 2 s.
The real Alertmanager (the committed config, webhooks pointed at a loopback receiver) notifies.

Slow requests (128x128, 33 frames, 40 steps: about 1.5 s on an idle 2-core CPU, three times the
threshold; the test checks the first one is over it) spend the latency budget
and page; fast ones (32x32, one frame, one step) resolve it. Bad input never burns the
availability budget.
"""

from __future__ import annotations

import pytest
import yaml

from support.alerting_procs import (ALERTMANAGER, PROMETHEUS, AlertmanagerProcess, PrometheusProcess,
                                    WebhookReceiver, alertmanager_test_config, binary, prometheus_test_config,
                                    render_rules, wait_until)
from support.procs import ServeProcess

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(any(binary(b) is None for b in (PROMETHEUS, ALERTMANAGER)),
                       reason="needs prometheus and prometheus-alertmanager (Debian packages)"),
]

MODEL = "tiny-t2v"
THRESHOLD = 0.5
OVERRIDE = {"slo": {"latency_threshold_seconds": THRESHOLD,
                    "burn_rates": [{"severity": "critical", "factor": 14.4, "long": "20s", "short": "10s"}]}}
SLOW = ("--size=128x128", "--frames=33", "--steps=40")
FAST = ("--size=32x32", "--frames=1", "--steps=1", "--interval=0.05")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    root = tmp_path_factory.mktemp("traffic-e2e")
    override = root / "slo.yml"
    override.write_text(yaml.safe_dump(OVERRIDE))
    started = []
    webhook = WebhookReceiver().start()
    try:
        serve = ServeProcess(log_path=root / "serve.log", model=MODEL).start()
        started.append(serve)
        am = AlertmanagerProcess(alertmanager_test_config(root / "alertmanager.yml", webhook.url()), root / "am").start()
        started.append(am)
        rules = render_rules(root / "rules", for_all="2s", overrides=[override])
        prom_cfg = prometheus_test_config(root / "prometheus" / "prometheus.yml", targets=[], rules_dir=rules,
                                          alertmanager=am.address, serve_targets=[serve.address])
        prom = PrometheusProcess(prom_cfg, root / "prometheus").start()
        started.append(prom)
        yield {"serve": serve, "am": am, "prom": prom, "webhook": webhook, "root": root}
    finally:
        for p in reversed(started):
            p.stop()
        webhook.stop()


def notified(stack, status: str) -> list[dict]:
    return stack["webhook"].alerts("WanTrafficLatencyBudgetBurn", status, job="wan-serve", model=MODEL)


def test_slow_requests_page_and_fast_ones_resolve_while_bad_input_never_burns(stack):
    prom, root = stack["prom"], stack["root"]

    def diagnostics() -> str:
        alerts = [(a["labels"].get("alertname"), a["state"]) for a in prom.alerts()]
        return (f"\nPrometheus alerts: {alerts}\nlatency SLI: {prom.query('job_model:wan_request_duration_seconds_within_objective:ratio_rate10s')}"
                f"\nservice log:\n{stack['serve'].log_tail(1500)}")

    def wait(pred, timeout: float, what: str):
        try:
            return wait_until(pred, timeout, interval=0.5, what=what)
        except AssertionError as e:
            raise AssertionError(f"{e}{diagnostics()}") from None

    seconds = stack["serve"].generate(*SLOW)
    assert seconds > THRESHOLD, f"a slow request took {seconds:.2f}s, under the {THRESHOLD}s threshold it must miss"
    slow = stack["serve"].load(*SLOW, "--invalid-every=3", "--interval=0", "--count=200", "--duration=120",
                               log_path=root / "load-slow.log")
    try:
        (fired, *_) = wait(lambda: notified(stack, "firing"), 90, "the WanTrafficLatencyBudgetBurn notification")
    finally:
        slow.stop()
    assert fired["labels"]["severity"] == "critical"
    assert "instance" not in fired["labels"], "an SLO is the service's, over every replica"
    ann = fired["annotations"]
    assert f"Model {MODEL} served by job wan-serve finishes too few requests within {THRESHOLD:g}s" in ann["description"]
    assert float(ann["value"]) > 14.4
    assert ann["runbook_url"].endswith("runbooks.md#wantrafficlatencybudgetburn")
    assert "/d/wan-traffic/" in ann["dashboard_url"] and "var-model=tiny-t2v" in ann["dashboard_url"]

    # The bad input reached Prometheus as invalid_input, and did not count against availability.
    invalid = prom.query(f'wan_requests_total{{job="wan-serve", model="{MODEL}", outcome="invalid_input"}}')
    assert invalid and float(invalid[0]["value"][1]) >= 1, diagnostics()
    failures = prom.query(f'wan_request_failures_total{{job="wan-serve", outcome="invalid_input", phase="other"}}')
    assert failures and float(failures[0]["value"][1]) >= 1, diagnostics()
    ratio = prom.query(f'job_model:wan_requests_success:ratio_rate20s{{model="{MODEL}"}}')
    assert ratio and float(ratio[0]["value"][1]) == 1.0, diagnostics()
    assert not prom.firing("WanTrafficErrorBudgetBurn")

    fast = stack["serve"].load(*FAST, "--invalid-every=3", "--count=2000", "--duration=90",
                               log_path=root / "load-fast.log")
    try:
        wait(lambda: notified(stack, "resolved"), 60, "the resolved WanTrafficLatencyBudgetBurn notification")
    finally:
        fast.stop()
    assert not stack["webhook"].alerts("WanTrafficErrorBudgetBurn"), "bad input must not burn the error budget"
