"""The Alertmanager side of alerting/: config valid, every routing decision checked with
amtool, every inhibition checked against a running Alertmanager, templates rendered,
and the amtool silence (acknowledge) workflow.

Every test runs under both peer sets (tests/support/peers.py): Debian's Alertmanager 0.25 and
the current one built from source, whose matcher parser is the UTF-8 one."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import yaml

from support.alerting_procs import (ALERTING, AlertmanagerProcess, WebhookReceiver, alertmanager_test_config, run,
                                    wait_until)
from support.peers import PEER_IDS, PEER_SETS

CONFIG = ALERTING / "alertmanager.yml"
ALERT_RULES = [r for g in yaml.safe_load((ALERTING / "rules" / "wan-alerts.rules.yml").read_text())["groups"]
               for r in g["rules"]]



@pytest.fixture(params=PEER_SETS, ids=PEER_IDS)
def amtool(request) -> str:
    return request.param.need("amtool").amtool


def routes_test(amtool: str, labels: dict[str, str], receiver: str) -> tuple[bool, str]:
    args = [amtool, "config", "routes", "test", f"--config.file={CONFIG}", f"--verify.receivers={receiver}"]
    args += [f"{k}={v}" for k, v in labels.items()]
    r = run(args)
    return r.returncode == 0, r.stdout.strip()


# --------------------------------------------------------------------------- config and routes


def test_amtool_check_config(amtool):
    r = run([amtool, "check-config", str(CONFIG)])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "templates" in r.stdout


def test_config_groups_by_alertname_instance_model_and_uses_matchers():
    cfg = yaml.safe_load(CONFIG.read_text())
    assert cfg["route"]["group_by"] == ["alertname", "instance", "model"]
    text = CONFIG.read_text()
    for deprecated in ("\n    match:", "match_re:", "source_match:", "target_match:", "source_match_re:"):
        assert deprecated not in text, f"deprecated {deprecated.strip()} in alertmanager.yml"
    kinds = {k for r in cfg["receivers"] for k in r if k.endswith("_configs")}
    assert {"webhook_configs", "email_configs"} <= kinds


EXPECTED_RECEIVER = {"critical": "wan-critical", "warning": "wan-warning", "none": "wan-watchdog"}


@pytest.mark.parametrize("rule", ALERT_RULES, ids=[f'{r["alert"]}-{r["labels"]["severity"]}' for r in ALERT_RULES])
def test_every_alert_routes_by_its_severity(rule, amtool):
    labels = {"alertname": rule["alert"], **rule["labels"], "instance": "gpu-host-1:9834", "model": "wan22-t2v"}
    ok, got = routes_test(amtool, labels, EXPECTED_RECEIVER[rule["labels"]["severity"]])
    assert ok, f"{labels} routed to {got}"


@pytest.mark.parametrize("labels, receiver", [
    ({"alertname": "Watchdog", "severity": "none"}, "wan-watchdog"),
    # The Watchdog goes to the dead man's switch whatever its severity says.
    ({"alertname": "Watchdog", "severity": "critical"}, "wan-watchdog"),
    ({"alertname": "WanSomethingNew", "severity": "info"}, "wan-default"),
    ({"alertname": "WanSomethingNew"}, "wan-default"),
    ({"alertname": "WanGpuHot", "severity": "warning", "instance": "gpu-host-1:9834", "gpu": "0"}, "wan-warning"),
    ({"alertname": "WanExporterAbsent", "severity": "critical", "job": "wan-exporter"}, "wan-critical"),
])
def test_routing_decisions(labels, receiver, amtool):
    ok, got = routes_test(amtool, labels, receiver)
    assert ok, f"{labels} routed to {got}, expected {receiver}"


def test_notification_templates_name_model_gpu_value_and_runbook(tmp_path, amtool):
    now = "2024-05-01T10:00:00Z"
    data = {
        "receiver": "wan-critical", "status": "firing", "externalURL": "http://alertmanager.example:9093",
        "groupLabels": {"alertname": "WanGpuEccErrors", "instance": "gpu-host-1:9834"},
        "commonLabels": {"alertname": "WanGpuEccErrors", "instance": "gpu-host-1:9834", "severity": "critical"},
        "commonAnnotations": {},
        "alerts": [
            {"status": "firing", "startsAt": now, "endsAt": "0001-01-01T00:00:00Z",
             "labels": {"alertname": "WanGpuEccErrors", "severity": "critical", "instance": "gpu-host-1:9834",
                        "gpu": "0", "name": "NVIDIA H200", "uuid": "GPU-0b6f2a8e"},
             "annotations": {"summary": "A GPU has uncorrected ECC memory errors.", "description": "GPU 0 has 2.",
                             "value": "2", "runbook_url": "https://runbooks.example/runbooks.md#wangpueccerrors",
                             "dashboard_url": "http://grafana.example/d/wan-overview/wan-overview"}},
            {"status": "firing", "startsAt": now, "endsAt": "0001-01-01T00:00:00Z",
             "labels": {"alertname": "WanOutputInvalid", "severity": "critical", "instance": "gpu-host-1:9834",
                        "model": "wan22-t2v", "profile": "480p"},
             "annotations": {"summary": "Invalid video.", "description": "1 run produced NaN.", "value": "1",
                             "runbook_url": "https://runbooks.example/runbooks.md#wanoutputinvalid"}},
        ],
    }
    path = tmp_path / "data.json"
    path.write_text(json.dumps(data))

    def render(name: str, kind: str = "text") -> str:
        r = run([amtool, "template", "render", f"--template.glob={ALERTING / 'templates' / '*.tmpl'}",
                 f"--template.type={kind}", f'--template.text={{{{ template "{name}" . }}}}',
                 f"--template.data={path}"])
        assert r.returncode == 0, r.stdout + r.stderr
        return r.stdout

    text = render("wan.text")
    assert "GPU:       0 NVIDIA H200 (GPU-0b6f2a8e)" in text
    assert "model:     wan22-t2v" in text and "profile:   480p" in text
    assert "value:     2" in text and "value:     1" in text
    assert "runbook:   https://runbooks.example/runbooks.md#wangpueccerrors" in text
    assert "instance:  gpu-host-1:9834" in text
    assert render("wan.title").startswith("[FIRING:2] WanGpuEccErrors on gpu-host-1:9834")
    html = render("wan.email.html", "html")
    assert "wan22-t2v" in html and "NVIDIA H200" in html and 'href="https://runbooks.example/runbooks.md#wanoutputinvalid"' in html


# --------------------------------------------------------------------------- a running Alertmanager


@pytest.fixture(scope="module", params=PEER_SETS, ids=PEER_IDS)
def alertmanager(request, tmp_path_factory):
    """A running Alertmanager of each peer set (one after the other), each with its own webhook receiver."""
    peers = request.param.need("alertmanager", "amtool")
    work = tmp_path_factory.mktemp(f"alertmanager-{peers.id}")
    with WebhookReceiver() as webhook:
        cfg = alertmanager_test_config(work / "alertmanager.yml", webhook.url())
        with AlertmanagerProcess(cfg, work, peers=peers) as am:
            am.webhook = webhook
            yield am


@pytest.fixture
def webhook(alertmanager):
    return alertmanager.webhook


def _alert(alertname: str, severity: str, **labels: str) -> dict:
    now = dt.datetime.now(dt.timezone.utc)
    return {
        "labels": {"alertname": alertname, "severity": severity, "job": "wan-exporter", **labels},
        "annotations": {"summary": f"{alertname} test", "description": "test"},
        "startsAt": now.isoformat(),
        "endsAt": (now + dt.timedelta(hours=1)).isoformat(),
        "generatorURL": "http://prometheus.test/graph",
    }


# (alert, inhibited by another alert of this set?)
INHIBITION_CASES = [
    # A critical alert inhibits the warning of the same alert, instance, model and profile ...
    (_alert("WanBenchmarkFailing", "critical", instance="i1:9834", model="m1", profile="480p"), False),
    (_alert("WanBenchmarkFailing", "warning", instance="i1:9834", model="m1", profile="480p"), True),
    # ... not another model's, nor another profile's.
    (_alert("WanBenchmarkFailing", "warning", instance="i1:9834", model="m2", profile="480p"), False),
    (_alert("WanBenchmarkFailing", "warning", instance="i1:9834", model="m1", profile="720p"), False),
    # Health critical inhibits health degraded of the same model and instance only.
    (_alert("WanModelHealthCritical", "critical", instance="i1:9834", model="m3", status="critical"), False),
    (_alert("WanModelHealthDegraded", "warning", instance="i1:9834", model="m3", status="degraded"), True),
    (_alert("WanModelHealthDegraded", "warning", instance="i1:9834", model="m4", status="degraded"), False),
    (_alert("WanModelHealthDegraded", "warning", instance="i9:9834", model="m3", status="degraded"), False),
    # An integrity failure inhibits the health alert it causes.
    (_alert("WanModelIntegrityFailure", "critical", instance="i1:9834", model="m5"), False),
    (_alert("WanModelHealthCritical", "critical", instance="i1:9834", model="m5", status="critical"), True),
    # A missing model inhibits its benchmark alerts, not the GPU's.
    (_alert("WanModelMissing", "warning", instance="i1:9834", model="m6"), False),
    (_alert("WanBenchmarkStale", "warning", instance="i1:9834", model="m6", profile="480p"), True),
    (_alert("WanOutputInvalid", "critical", instance="i1:9834", model="m6", profile="480p"), True),
    (_alert("WanGpuHot", "warning", instance="i1:9834", gpu="0"), False),
    # Exporter down inhibits every model alert of that instance; not GPU alerts, not other instances.
    (_alert("WanExporterDown", "critical", instance="i2:9834"), False),
    (_alert("WanModelHealthCritical", "critical", instance="i2:9834", model="m1", status="critical"), True),
    (_alert("WanBenchmarkOOM", "warning", instance="i2:9834", model="m1", profile="480p", reason="oom"), True),
    (_alert("WanGpuThrottling", "warning", instance="i2:9834", gpu="0", reason="hw_slowdown"), False),
    (_alert("WanModelHealthCritical", "critical", instance="i3:9834", model="m1", status="critical"), False),
    # GPUs gone from NVML (the count dropped, or NVML stopped answering) inhibit the model alerts of the instance.
    (_alert("WanGpuLost", "critical", instance="i4:9834"), False),
    (_alert("WanOutputInvalid", "critical", instance="i4:9834", model="m1", profile="480p"), True),
    (_alert("WanGenerationSlow", "warning", instance="i4:9834", model="m2", profile="480p"), True),
    # One GPU of several reported lost inhibits nothing: the models on the other GPUs still page.
    (_alert("WanGpuLost", "critical", instance="i5:9834", gpu="1"), False),
    (_alert("WanBenchmarkFailing", "critical", instance="i5:9834", model="m1", profile="480p"), False),
]


def _key(labels: dict) -> tuple:
    return tuple(sorted(labels.items()))


def test_inhibitions_in_a_running_alertmanager(alertmanager):
    alertmanager.post_alerts([a for a, _ in INHIBITION_CASES])
    want = {_key(a["labels"]): inhibited for a, inhibited in INHIBITION_CASES}

    def settled():
        got = {_key(a["labels"]): a for a in alertmanager.alerts(job="wan-exporter")}
        if not set(want) <= set(got):
            return None
        if any(bool(got[k]["status"]["inhibitedBy"]) != v for k, v in want.items()):
            return None
        return got

    try:
        got = wait_until(settled, timeout=15, what="Alertmanager to settle the inhibitions")
    except AssertionError:
        got = {_key(a["labels"]): a for a in alertmanager.alerts(job="wan-exporter")}
        wrong = [f"{dict(k)}: inhibitedBy={got[k]['status']['inhibitedBy'] if k in got else 'absent'}, want {v}"
                 for k, v in want.items() if k not in got or bool(got[k]["status"]["inhibitedBy"]) != v]
        raise AssertionError("wrong inhibitions:\n" + "\n".join(wrong)) from None
    for k, inhibited in want.items():
        assert got[k]["status"]["state"] == ("suppressed" if inhibited else "active"), (dict(k), got[k]["status"])


def test_amtool_silence_acknowledges_an_alert(alertmanager):
    """The documented workflow: query, silence (ack) one alert, see it suppressed, expire it."""
    alert = _alert("WanGpuHot", "warning", instance="ack-host:9834", gpu="1")
    alertmanager.post_alerts([alert])
    wait_until(lambda: alertmanager.alerts(instance="ack-host:9834"), 10, what="the alert to arrive")
    q = alertmanager.amtool("alert", "query", "alertname=WanGpuHot", "instance=ack-host:9834")
    assert q.returncode == 0 and "WanGpuHot" in q.stdout, q.stdout + q.stderr

    add = alertmanager.amtool("silence", "add", "alertname=WanGpuHot", "instance=ack-host:9834", "gpu=1",
                              "--author=oncall", "--duration=2h", "--comment=fan replaced, watching it")
    assert add.returncode == 0, add.stderr
    silence_id = add.stdout.strip()
    assert silence_id

    def suppressed():
        (a,) = alertmanager.alerts(instance="ack-host:9834")
        return a["status"]["state"] == "suppressed" and silence_id in a["status"]["silencedBy"]

    wait_until(suppressed, 10, what="the silence to suppress the alert")
    listed = alertmanager.amtool("silence", "query", "-q", "instance=ack-host:9834")
    assert silence_id in listed.stdout.split()

    assert alertmanager.amtool("silence", "expire", silence_id).returncode == 0
    wait_until(lambda: alertmanager.alerts(instance="ack-host:9834")[0]["status"]["state"] == "active", 10,
               what="the alert to be active again after the silence expired")


def test_notifications_carry_labels_and_annotations(alertmanager, webhook):
    """Delivered through the real Alertmanager to the webhook receiver, grouped per alert/instance/model."""
    a = _alert("WanModelMissing", "warning", instance="notify-host:9834", model="wan22-ti2v")
    a["annotations"]["runbook_url"] = "https://example/runbooks.md#wanmodelmissing"
    alertmanager.post_alerts([a])
    got = wait_until(lambda: webhook.alerts("WanModelMissing", "firing", instance="notify-host:9834"), 15,
                     what="the webhook notification")
    assert got[0]["labels"]["model"] == "wan22-ti2v"
    assert got[0]["annotations"]["runbook_url"] == "https://example/runbooks.md#wanmodelmissing"
    payload = next(p for p in webhook.payloads()
                   if any(x["labels"].get("instance") == "notify-host:9834" for x in p["alerts"]))
    assert payload["groupLabels"] == {"alertname": "WanModelMissing", "instance": "notify-host:9834",
                                      "model": "wan22-ti2v"}
    assert payload["receiver"] == "wan-warning"
