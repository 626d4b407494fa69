"""Real traffic → Prometheus → burn-rate alert → Alertmanager → webhook, then resolved.

The example service (examples/serve/) serves a tiny Wan pipeline through
``wan_exporter.instrument``; its bounded load generator sends real requests, every third with
a width that is not a multiple of 16 (the pipeline rejects it: ``invalid_input``). A real
Prometheus scrapes the service every second with the rules alerting/generate.py renders in a
test variant: one burn-rate tier over 20 s and 10 s instead of 1 h and 5 m, a latency
threshold of 0.5 s (a bucket bound of wan_request_duration_seconds), every ``for:`` at 2 s.
The real Alertmanager (the committed config, webhooks pointed at a loopback receiver) notifies.
One Prometheus + Alertmanager + receiver per peer set (tests/support/peers.py: Debian's 2.42/0.25
and the current ones built from source) watch the same service side by side; every assertion
holds for each.

Slow requests (128x128, 33 frames, 40 steps: about 1.5 s on an idle 2-core CPU, three times the
threshold; the test checks the first one is over it) spend the latency budget
and page; fast ones (32x32, one frame, one step) resolve it. Bad input never burns the
availability budget.
"""

from __future__ import annotations

import time

import pytest
import yaml

from support.alerting_procs import (AlertmanagerProcess, PrometheusProcess, WebhookReceiver, alertmanager_test_config,
                                    prometheus_test_config, render_rules, wait_until)
from support.peers import PEER_IDS, PEER_SETS, available
from support.procs import ServeProcess

pytestmark = [pytest.mark.e2e]
TOOLS = ("prometheus", "alertmanager")

MODEL = "tiny-t2v"
THRESHOLD = 0.5
OVERRIDE = {"slo": {"latency_threshold_seconds": THRESHOLD,
                    "burn_rates": [{"severity": "critical", "factor": 14.4, "long": "20s", "short": "10s"}]}}
SLOW = ("--size=128x128", "--frames=33", "--steps=40")
FAST = ("--size=32x32", "--frames=1", "--steps=1", "--interval=0.05")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    sets = available(*TOOLS)  # a set that is missing skips in test_every_peer_set_runs (fails under CI)
    if not sets:
        PEER_SETS[0].need(*TOOLS)
    root = tmp_path_factory.mktemp("traffic-e2e")
    override = root / "slo.yml"
    override.write_text(yaml.safe_dump(OVERRIDE))
    started, webhooks, pairs = [], [], []
    try:
        serve = ServeProcess(log_path=root / "serve.log", model=MODEL).start()
        started.append(serve)
        rules = render_rules(root / "rules", for_all="2s", overrides=[override])
        for peers in sets:
            webhook = WebhookReceiver().start()
            webhooks.append(webhook)
            work = root / peers.id
            work.mkdir(parents=True, exist_ok=True)
            am = AlertmanagerProcess(alertmanager_test_config(work / "alertmanager.yml", webhook.url()), work / "am",
                                     peers=peers).start()
            started.append(am)
            prom_cfg = prometheus_test_config(work / "prometheus" / "prometheus.yml", targets=[], rules_dir=rules,
                                              alertmanager=am.address, serve_targets=[serve.address])
            prom = PrometheusProcess(prom_cfg, work / "prometheus", peers=peers).start()
            started.append(prom)
            pairs.append({"peers": peers, "am": am, "prom": prom, "webhook": webhook})
        yield {"serve": serve, "pairs": pairs, "root": root}
    finally:
        for p in reversed(started):
            p.stop()
        for w in webhooks:
            w.stop()


@pytest.mark.parametrize("peers", PEER_SETS, ids=PEER_IDS)
def test_every_peer_set_runs(peers, stack):
    """Each peer set has its pair in the stack (a set whose binaries are missing skips here; fails under CI)."""
    peers.need(*TOOLS)
    assert peers.id in {p["peers"].id for p in stack["pairs"]}


def notified(pair, status: str) -> list[dict]:
    return pair["webhook"].alerts("WanTrafficLatencyBudgetBurn", status, job="wan-serve", model=MODEL)


def test_slow_requests_page_and_fast_ones_resolve_while_bad_input_never_burns(stack):
    root = stack["root"]

    def diagnostics(pair) -> str:
        prom = pair["prom"]
        alerts = [(a["labels"].get("alertname"), a["state"]) for a in prom.alerts()]
        return (f"\n{pair['peers']}: Prometheus alerts: {alerts}\nlatency SLI: "
                f"{prom.query('job_model:wan_request_duration_seconds_within_objective:ratio_rate10s')}"
                f"\nservice log:\n{stack['serve'].log_tail(1500)}")

    def wait_all(pred, timeout: float, what: str) -> list:
        deadline = time.monotonic() + timeout
        out = []
        for pair in stack["pairs"]:
            try:
                out.append(wait_until(lambda: pred(pair), max(1.0, deadline - time.monotonic()), interval=0.5,
                                      what=f"{what} ({pair['peers']})"))
            except AssertionError as e:
                raise AssertionError(f"{e}{diagnostics(pair)}") from None
        return out

    seconds = stack["serve"].generate(*SLOW)
    assert seconds > THRESHOLD, f"a slow request took {seconds:.2f}s, under the {THRESHOLD}s threshold it must miss"
    slow = stack["serve"].load(*SLOW, "--invalid-every=3", "--interval=0", "--count=200", "--duration=120",
                               log_path=root / "load-slow.log")
    try:
        fired_all = wait_all(lambda p: notified(p, "firing"), 90, "the WanTrafficLatencyBudgetBurn notification")
    finally:
        slow.stop()
    for pair, (fired, *_) in zip(stack["pairs"], fired_all):
        prom, why = pair["prom"], diagnostics(pair)
        assert fired["labels"]["severity"] == "critical", why
        assert "instance" not in fired["labels"], "an SLO is the service's, over every replica"
        ann = fired["annotations"]
        assert f"Model {MODEL} served by job wan-serve finishes too few requests within {THRESHOLD:g}s" \
            in ann["description"], why
        assert float(ann["value"]) > 14.4, why
        assert ann["runbook_url"].endswith("runbooks.md#wantrafficlatencybudgetburn"), why
        assert "/d/wan-traffic/" in ann["dashboard_url"] and "var-model=tiny-t2v" in ann["dashboard_url"], why

        # The bad input reached Prometheus as invalid_input, and did not count against availability.
        invalid = prom.query(f'wan_requests_total{{job="wan-serve", model="{MODEL}", outcome="invalid_input"}}')
        assert invalid and float(invalid[0]["value"][1]) >= 1, why
        failures = prom.query(f'wan_request_failures_total{{job="wan-serve", outcome="invalid_input", phase="other"}}')
        assert failures and float(failures[0]["value"][1]) >= 1, why
        ratio = prom.query(f'job_model:wan_requests_success:ratio_rate20s{{model="{MODEL}"}}')
        assert ratio and float(ratio[0]["value"][1]) == 1.0, why
        assert not prom.firing("WanTrafficErrorBudgetBurn"), why

    fast = stack["serve"].load(*FAST, "--invalid-every=3", "--count=2000", "--duration=90",
                               log_path=root / "load-fast.log")
    try:
        wait_all(lambda p: notified(p, "resolved"), 60, "the resolved WanTrafficLatencyBudgetBurn notification")
    finally:
        fast.stop()
    for pair in stack["pairs"]:
        assert not pair["webhook"].alerts("WanTrafficErrorBudgetBurn"), \
            f"bad input must not burn the error budget ({pair['peers']})"
