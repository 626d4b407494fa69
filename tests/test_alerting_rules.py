"""The Prometheus side of alerting/: generated rules up to date, valid and unit-tested under both
promtools (Debian's 2.42 and the current 3.x, tests/support/peers.py), every alert well formed,
documented and unit-tested both ways, every recording rule tested."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml

from support.alerting_procs import ALERTING, render_rules, run
from support.peers import PEER_IDS, PEER_SETS

RULES = ALERTING / "rules"
RECORDING = RULES / "wan-recording.rules.yml"
ALERTS = RULES / "wan-alerts.rules.yml"
UNIT_TESTS = sorted((ALERTING / "tests").glob("*.yml"))
RUNBOOKS = ALERTING / "runbooks.md"
EXPORTER_SRC = ALERTING.parent / "exporter" / "wan_exporter"

SETTINGS = yaml.safe_load((ALERTING / "thresholds.yml").read_text())
DASHBOARD_UIDS = ("wan-overview", "wan-model-detail", "wan-comparison", "wan-fleet", "wan-traffic")
# SLO alerts are a service's (job), summed over its replicas: they name the job, not an instance.
SERVICE_ALERTS = ("WanTrafficErrorBudgetBurn", "WanTrafficLatencyBudgetBurn", "WanGenerationStalled", "WanRankSkewHigh")



@pytest.fixture(params=PEER_SETS, ids=PEER_IDS)
def promtool(request) -> str:
    """Each promtool: the rules must load and pass their unit tests on the oldest and the current Prometheus."""
    return request.param.need("promtool").promtool


def rules_of(path: Path) -> list[dict]:
    return [r for g in yaml.safe_load(path.read_text())["groups"] for r in g["rules"]]


ALERT_RULES = rules_of(ALERTS)
RECORDING_RULES = rules_of(RECORDING)
ALERT_NAMES = sorted({r["alert"] for r in ALERT_RULES})


def unit_tests() -> list[dict]:
    out = []
    for f in UNIT_TESTS:
        doc = yaml.safe_load(f.read_text())
        for t in doc["tests"]:
            out.append({**t, "_file": f.name})
    return out


def duration_s(text: str) -> float:
    total = 0.0
    for n, unit in re.findall(r"(\d+)(ms|s|m|h|d|w|y)", str(text)):
        total += int(n) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}[unit]
    return total


# --------------------------------------------------------------------------- generated files


def test_committed_rule_files_match_the_generator():
    """Drift: thresholds.yml or generate.py changed without regenerating the committed rules."""
    r = run([sys.executable, str(ALERTING / "generate.py"), "--check"])
    assert r.returncode == 0, "rule files are stale; run python3 alerting/generate.py\n" + r.stdout + r.stderr


def test_thresholds_are_overridable_in_one_place(tmp_path):
    over = tmp_path / "site.yml"
    over.write_text(yaml.safe_dump({
        "thresholds": {"gpu_temperature_celsius": 78, "benchmark_stale_intervals": 6},
        "for": {"WanGpuHot": "3m"},
        "grafana_url": "https://grafana.example.net/",
        "runbook_base": "https://wiki.example.net/wan",
    }))
    out = render_rules(tmp_path / "rules", overrides=[over])
    rules = {(r["alert"], r["labels"]["severity"]): r for r in rules_of(out / ALERTS.name)}
    hot = rules[("WanGpuHot", "warning")]
    assert "> 78)" in hot["expr"] and hot["for"] == "3m"
    assert "(threshold 78°C)" in hot["annotations"]["description"]
    assert "time() - 21600" in rules[("WanBenchmarkStale", "warning")]["expr"]
    assert hot["annotations"]["runbook_url"] == "https://wiki.example.net/wan#wangpuhot"
    assert hot["annotations"]["dashboard_url"].startswith("https://grafana.example.net/d/wan-overview/")
    # Untouched keys keep their defaults.
    assert rules[("WanGpuThrottling", "warning")]["for"] == SETTINGS["for"]["WanGpuThrottling"]


def test_reason_lists_default_to_the_contract_and_a_site_can_override_them(tmp_path):
    from wan_exporter.contract import labels

    def exprs(out):
        rules = {r["alert"]: r["expr"] for r in rules_of(out / ALERTS.name)}
        return rules["WanGpuThrottling"], rules["WanCollectorFailing"]

    throttling, failing = exprs(render_rules(tmp_path / "default"))
    assert f'reason=~"{"|".join(labels.HARDWARE_THROTTLE_REASONS)}"' in throttling
    assert "|".join(labels.NO_GPU_COLLECTOR_REASONS) in failing
    over = tmp_path / "site.yml"
    over.write_text(yaml.safe_dump({"thresholds": {"gpu_throttle_reasons": ["hw_slowdown"],
                                                   "collector_ignored_reasons": ["library_missing", "no_driver"]}}))
    throttling, failing = exprs(render_rules(tmp_path / "site", overrides=[over]))
    assert 'reason=~"hw_slowdown"' in throttling and "library_missing|no_driver" in failing


def test_test_variant_shortens_every_for(tmp_path):
    out = render_rules(tmp_path / "rules", for_all="1s")
    assert {r["for"] for r in rules_of(out / ALERTS.name)} == {"1s"}
    # Recording rules are the same as the committed ones.
    assert (out / RECORDING.name).read_text() == RECORDING.read_text()


# --------------------------------------------------------------------------- promtool


def test_promtool_check_rules(promtool):
    r = run([promtool, "check", "rules", str(RECORDING), str(ALERTS)])
    assert r.returncode == 0, r.stdout + r.stderr


def test_promtool_check_config_loads_the_rules(promtool):
    r = run([promtool, "check", "config", str(ALERTING / "prometheus.yml")])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 rule files found" in r.stdout + r.stderr


@pytest.mark.parametrize("test_file", UNIT_TESTS, ids=[p.name for p in UNIT_TESTS])
def test_promtool_unit_tests(test_file, promtool):
    r = run([promtool, "test", "rules", test_file.name], cwd=test_file.parent, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


# --------------------------------------------------------------------------- shape of every alert


@pytest.mark.parametrize("rule", ALERT_RULES, ids=[f'{r["alert"]}-{r["labels"]["severity"]}' for r in ALERT_RULES])
def test_every_alert_is_well_formed(rule):
    name = rule["alert"]
    assert re.fullmatch(r"(Wan[A-Z][A-Za-z0-9]+|Watchdog)", name), name
    assert "for" in rule and duration_s(rule["for"]) > 0, f"{name}: needs a for:"
    severity = rule["labels"]["severity"]
    assert severity in (("none",) if name == "Watchdog" else ("warning", "critical")), (name, severity)
    ann = rule["annotations"]
    for key in ("summary", "description", "runbook_url", "dashboard_url"):
        assert ann.get(key), f"{name}: missing annotation {key}"
    assert "{{" not in ann["summary"], f"{name}: summary must be static"
    if name != "Watchdog":  # nothing to name: it is about the pipeline, not a model or a host
        assert "{{" in ann["description"], f"{name}: description must be templated"
    if name in SERVICE_ALERTS:
        assert "$labels.job" in ann["description"], f"{name}: description must name the service's job"
    elif name not in ("Watchdog", "WanExporterAbsent"):
        assert "$labels.instance" in ann["description"], f"{name}: description must name the instance"
    if "model" in rule["expr"] or "instance_model" in rule["expr"]:
        assert "$labels.model" in ann["description"], f"{name}: description must name the model"
    if "wan_gpu_" in rule["expr"] and name != "WanGpuLost":
        assert "$labels.gpu" in ann["description"], f"{name}: description must name the GPU"
    assert ann["runbook_url"] == f'{SETTINGS["runbook_base"]}#{name.lower()}'
    m = re.match(re.escape(SETTINGS["grafana_url"].rstrip("/")) + r"/d/([a-z-]+)/", ann["dashboard_url"])
    assert m and m.group(1) in DASHBOARD_UIDS, ann["dashboard_url"]
    if "wan-traffic" in ann["dashboard_url"]:
        assert "var-model=" in ann["dashboard_url"] and "var-job=" in ann["dashboard_url"]
    if "wan-model-detail" in ann["dashboard_url"]:
        assert "var-model=" in ann["dashboard_url"] and "var-instance=" in ann["dashboard_url"]


def test_the_required_alerts_exist():
    required = {
        "WanModelMissing", "WanModelIntegrityFailure", "WanModelHealthDegraded", "WanModelHealthCritical",
        "WanBenchmarkFailing", "WanBenchmarkStale", "WanGenerationSlow", "WanOutputInvalid", "WanBenchmarkOOM",
        "WanGpuMemoryHeadroomLow", "WanGpuHot", "WanGpuThrottling", "WanGpuXidErrors", "WanGpuEccErrors",
        "WanGpuLost", "WanExporterDown", "WanExporterAbsent", "WanCollectorFailing", "WanExporterJobStuck",
        "WanConfigReloadFailed",
        "WanTrafficErrorBudgetBurn", "WanTrafficLatencyBudgetBurn", "WanGenerationStalled", "WanRankSkewHigh",
        "Watchdog",
    }
    assert required <= set(ALERT_NAMES), required - set(ALERT_NAMES)
    assert set(SETTINGS["for"]) == set(ALERT_NAMES), "thresholds.yml must hold the for: of every alert"


def test_recording_rules_are_named_level_metric_operations():
    for r in RECORDING_RULES:
        parts = r["record"].split(":")
        assert len(parts) == 3 and parts[1] and parts[2], r["record"]
        assert re.fullmatch(r"[a-z_]*", parts[0]) and parts[1].startswith("wan_"), r["record"]
    names = [r["record"] for r in RECORDING_RULES]
    assert len(names) == len(set(names)), "duplicate recording rule"


def test_rules_use_only_metrics_the_exporter_exposes():
    """Every wan_* metric named in a rule is defined by the exporter (catches misnamed metrics)."""
    source = "\n".join(p.read_text() for p in EXPORTER_SRC.rglob("*.py"))
    recorded = {r["record"] for r in RECORDING_RULES}
    missing = set()
    for r in ALERT_RULES + RECORDING_RULES:
        for m in re.findall(r"(?<![:\w])(wan_[a-z0-9_]+)", r["expr"]):
            if m in recorded:
                continue
            base = re.sub(r"_(total|bucket|sum|count|info)$", "", m)
            if f'"{base}"' not in source and f'"{m}"' not in source:
                missing.add(m)
    assert not missing, f"metrics not defined in exporter/wan_exporter: {sorted(missing)}"


# --------------------------------------------------------------------------- runbooks


def runbook_sections() -> dict[str, str]:
    text = RUNBOOKS.read_text()
    parts = re.split(r"^## +(\S+)\s*$", text, flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}


@pytest.mark.parametrize("name", ALERT_NAMES)
def test_every_alert_has_a_runbook_section(name):
    sections = runbook_sections()
    assert name in sections, f"runbooks.md has no '## {name}' section (anchor #{name.lower()})"
    body = sections[name]
    for heading in ("Meaning", "Confirm", "Fix"):
        assert re.search(rf"^### +{heading}", body, flags=re.M), f"{name}: runbook section lacks '### {heading}'"


# --------------------------------------------------------------------------- unit-test coverage


def test_every_alert_is_unit_tested_before_and_after_for():
    """For each alert (and severity): a case with no alert before a case where it fires, and
    every firing case asserts all labels and annotations the rule sets."""
    by_alert: dict[str, dict] = {n: {"empty": [], "firing": []} for n in ALERT_NAMES}
    rules = {}
    for r in ALERT_RULES:
        rules.setdefault(r["alert"], []).append(r)
    for t in unit_tests():
        for case in t.get("alert_rule_test", []) or []:
            name = case["alertname"]
            assert name in by_alert, f'{t["_file"]}: unknown alert {name}'
            at = duration_s(case["eval_time"])
            exp = case.get("exp_alerts") or []
            if not exp:
                by_alert[name]["empty"].append((t["name"], at))
            for a in exp:
                by_alert[name]["firing"].append((t["name"], at, a))
    problems = []
    for name, seen in by_alert.items():
        if not seen["firing"]:
            problems.append(f"{name}: never tested firing")
            continue
        first_fire = {}
        for tname, at, _ in seen["firing"]:
            first_fire[tname] = min(at, first_fire.get(tname, at))
        if not any(tname in first_fire and at < first_fire[tname] for tname, at in seen["empty"]):
            problems.append(f"{name}: no 'no alert yet' case before a firing case in the same test")
        severities = {a["exp_labels"].get("severity") for _, _, a in seen["firing"]}
        for r in rules[name]:
            if r["labels"]["severity"] not in severities:
                problems.append(f'{name}: severity {r["labels"]["severity"]} never tested firing')
        for tname, _, a in seen["firing"]:
            r = next((r for r in rules[name] if r["labels"]["severity"] == a["exp_labels"].get("severity")), None)
            if r is None:
                continue
            if set(a.get("exp_annotations", {})) != set(r["annotations"]):
                problems.append(f"{name} in {tname!r}: must assert every annotation {sorted(r['annotations'])}")
            if not set(r["labels"]) <= set(a.get("exp_labels", {})):
                problems.append(f"{name} in {tname!r}: must assert the rule's labels {sorted(r['labels'])}")
    assert not problems, "\n".join(problems)


def test_staleness_and_absence_are_tested():
    text = "\n".join(p.read_text() for p in UNIT_TESTS)
    assert "stale" in text and "_x" in text
    absent_cases = [c for t in unit_tests() for c in t.get("alert_rule_test", []) or []
                    if c["alertname"] == "WanExporterAbsent" and c.get("exp_alerts")]
    assert absent_cases


def test_every_recording_rule_has_a_promql_expr_test():
    tested: dict[str, bool] = {}
    for t in unit_tests():
        for case in t.get("promql_expr_test", []) or []:
            for name in re.findall(r"[a-z_]*:[a-z0-9_]+:[a-z0-9_]+", case["expr"]):
                tested[name] = tested.get(name, False) or bool(case.get("exp_samples"))
    untested = [r["record"] for r in RECORDING_RULES if not tested.get(r["record"])]
    assert not untested, f"recording rules without a promql_expr_test with samples: {untested}"


def test_latency_objective_threshold_is_a_duration_bucket_bound():
    """The latency SLI reads one bucket (``le``): a threshold between bounds would read nothing."""
    from wan_exporter.contract import traffic

    bounds = traffic.BUCKETS[traffic.REQUEST_DURATION_SECONDS.name]
    assert float(SETTINGS["slo"]["latency_threshold_seconds"]) in bounds
    assert f'le="{float(SETTINGS["slo"]["latency_threshold_seconds"])!r}"' in RECORDING.read_text()
