"""The Grafana dashboards: generated from code and committed, consistent, and every reference resolves.

Regenerate after a change with ``python3 -m grafana.dashboards_src`` (from the repository root).
Every query is also run against a real Prometheus in tests/test_dashboards_live.py.
"""

from __future__ import annotations

import json
import re

import pytest
import yaml

from support.dashboards_promql import (
    DASHBOARD_DIR,
    EXTERNAL_METRICS,
    GRAFANA_BUILTINS,
    PROVISIONING_DIR,
    README,
    REPO,
    alert_dashboard_urls,
    dashboard_link_target,
    documented,
    exposed_metric_names,
    generator,
    label_values_parts,
    load_dashboards,
    metric_names,
    panels,
    range_windows,
    readme_metric_names,
    recording_rule_names,
    referenced_variables,
    targets,
    variables,
)

UIDS = {"wan-overview", "wan-model-detail", "wan-comparison", "wan-fleet", "wan-traffic"}
STANDARD_VARIABLES = ("datasource", "instance", "gpu", "model")


@pytest.fixture(scope="module")
def sdk():
    """The generator needs grafana-foundation-sdk (pinned in the test extra); the other checks read JSON only."""
    return pytest.importorskip("grafana_foundation_sdk", reason="pip install -e '.[test]' (grafana-foundation-sdk)")


@pytest.fixture(scope="module")
def dashboards() -> dict[str, dict]:
    return load_dashboards()


@pytest.fixture(scope="module")
def by_uid(dashboards) -> dict[str, dict]:
    return {d["uid"]: d for d in dashboards.values()}


@pytest.fixture(scope="module")
def datasources() -> list[dict]:
    return yaml.safe_load((PROVISIONING_DIR / "datasources" / "datasources.yml").read_text())["datasources"]


def all_exprs(dashboards):
    for name, d in dashboards.items():
        for p, t in targets(d):
            yield name, p, t["expr"]


# -- (a) generated, committed, no drift -------------------------------------------------------------------

def test_committed_json_is_what_the_code_generates(tmp_path, sdk):
    main = generator()
    main.write_all(tmp_path)
    generated = sorted(p.name for p in tmp_path.glob("*.json"))
    committed = sorted(p.name for p in DASHBOARD_DIR.glob("*.json"))
    assert generated == committed, "run: python3 -m grafana.dashboards_src"
    for name in generated:
        assert (tmp_path / name).read_bytes() == (DASHBOARD_DIR / name).read_bytes(), (
            f"grafana/dashboards/{name} is stale: run python3 -m grafana.dashboards_src and commit the result")


def test_json_is_sorted_two_space_indented_with_trailing_newline(dashboards):
    for name, d in dashboards.items():
        text = (DASHBOARD_DIR / name).read_text(encoding="utf-8")
        assert text == json.dumps(d, sort_keys=True, indent=2, ensure_ascii=False) + "\n", name


def test_check_mode_reports_a_stale_file(tmp_path, sdk):
    main = generator()
    main.write_all(tmp_path)
    assert main.check(tmp_path) == []
    victim = tmp_path / "wan-fleet.json"
    victim.write_text(victim.read_text().replace('"refresh": "30s"', '"refresh": "1m"'))
    problems = main.check(tmp_path)
    assert len(problems) == 1 and "wan-fleet.json" in problems[0]


# -- dashboard conventions -------------------------------------------------------------------------------------

def test_four_dashboards_with_stable_uids(dashboards):
    assert {d["uid"] for d in dashboards.values()} == UIDS
    assert {name: d["uid"] for name, d in dashboards.items()} == {f"{u}.json": u for u in UIDS}


def test_refresh_time_and_tags(dashboards):
    for name, d in dashboards.items():
        assert d["refresh"] == "30s", name
        assert "30s" in d["timepicker"]["refresh_intervals"], name
        assert "wan-exporter" in d["tags"], name  # the "Wan dashboards" dropdown lists by this tag
        assert d["title"].startswith("Wan / "), name


def test_standard_variables(dashboards):
    for name, d in dashboards.items():
        vs = variables(d)
        assert list(vs)[:4] == list(STANDARD_VARIABLES), name
        assert vs["datasource"]["type"] == "datasource" and vs["datasource"]["query"] == "prometheus", name
        for v in ("instance", "gpu", "model"):
            assert vs[v]["type"] == "query", (name, v)
            assert vs[v]["query"].startswith("label_values("), (name, v)
            assert vs[v]["datasource"]["uid"] == "${datasource}", (name, v)


def test_model_detail_takes_one_model_and_one_instance(by_uid):
    vs = variables(by_uid["wan-model-detail"])
    for v in ("model", "instance"):
        assert vs[v]["multi"] is False and vs[v]["includeAll"] is False, v


def test_comparison_chooses_a_and_b(by_uid):
    vs = variables(by_uid["wan-comparison"])
    for v in ("model_a", "model_b", "instance_a", "instance_b"):
        assert vs[v]["type"] == "query" and vs[v]["multi"] is False, v
    assert "instance_a" in vs["model_a"]["query"] and "instance_b" in vs["model_b"]["query"]


def test_every_panel_has_a_unit_and_queries_the_datasource_variable(dashboards):
    for name, d in dashboards.items():
        for p in panels(d):
            if p["type"] == "row":
                continue
            unit = p.get("fieldConfig", {}).get("defaults", {}).get("unit")
            assert unit, f"{name}: panel {p.get('title')!r} has no unit"
            for t in p.get("targets") or []:
                assert t["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, (name, p["title"])
                assert t["expr"].strip(), (name, p["title"])
            if p.get("targets"):
                assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, (name, p["title"])


def test_panel_ids_unique_and_ref_ids_unique_per_panel(dashboards):
    for name, d in dashboards.items():
        ids = [p["id"] for p in panels(d)]
        assert len(ids) == len(set(ids)) and all(isinstance(i, int) for i in ids), name
        for p in panels(d):
            refs = [t["refId"] for t in p.get("targets") or []]
            assert len(refs) == len(set(refs)), (name, p["title"])


def test_rates_use_rate_interval_or_a_deliberate_window(dashboards):
    for name, p, expr in all_exprs(dashboards):
        for w in range_windows(expr):
            assert w == "$__rate_interval" or re.fullmatch(r"\d+[hd]", w), (
                f"{name}: {p['title']!r}: rate/increase over {w!r}; use $__rate_interval (or a fixed 1h+ period)")


def test_status_cards_link_to_model_detail_with_the_model_set(by_uid):
    cards = [p for p in panels(by_uid["wan-overview"]) if p.get("repeat") == "model"]
    assert cards, "overview has no per-model card"
    for p in cards:
        urls = [link["url"] for link in p.get("links", [])]
        want = ("wan-model-detail", {"model", "instance", "datasource"})
        assert any(dashboard_link_target(u) == want for u in urls), urls


# -- (b) every metric is real: exposed by the exporter, documented, or a recording rule -----------------------

def referenced_metrics(dashboards) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for name, p, expr in all_exprs(dashboards):
        for m in metric_names(expr):
            out.setdefault(m, set()).add(f"{name}: {p['title']}")
    for name, d in dashboards.items():
        for v in variables(d).values():
            if v["type"] == "query":
                selector, _label = label_values_parts(v["query"])
                for m in metric_names(selector or ""):
                    out.setdefault(m, set()).add(f"{name}: variable {v['name']}")
    return out


def test_every_recording_rule_a_dashboard_reads_exists(dashboards):
    rules = recording_rule_names()
    used = {m for m in referenced_metrics(dashboards) if ":" in m}
    assert used, "the dashboards read no recording rule"
    assert used <= rules, f"not recorded by alerting/rules/*.yml: {sorted(used - rules)}"


def test_every_metric_a_dashboard_reads_is_exposed_by_the_exporter(dashboards):
    exposed = exposed_metric_names()
    raw = {m: where for m, where in referenced_metrics(dashboards).items() if ":" not in m}
    unknown = {m: sorted(w)[:2] for m, w in raw.items() if m not in exposed and m not in EXTERNAL_METRICS}
    assert not unknown, f"not exposed by wan-exporter: {unknown}"


def test_every_metric_a_dashboard_reads_is_in_the_readme_metrics_reference(dashboards):
    names = readme_metric_names()
    assert names, f"{README} has no metrics reference table: run python3 -m wan_exporter.reference --write"
    raw = {m for m in referenced_metrics(dashboards) if ":" not in m and m not in EXTERNAL_METRICS}
    missing = sorted(m for m in raw if not documented(m, names))
    assert not missing, f"read by a dashboard but missing from README.md's metrics reference: {missing}"


def test_metric_name_extraction():
    expr = ('max by (model, profile) (label_replace(wan_a{instance=~"${instance}", x="y z"}[5m], '
            '"c", "$1", "d", "(.*)"))'
            ' / on (model) group_left (name) instance_model:wan_b:sum offset 1h or vector(0) and up')
    assert metric_names(expr) == {"wan_a", "instance_model:wan_b:sum", "up"}


# -- (c) every reference resolves -------------------------------------------------------------------------------------

def test_provisioned_datasources(datasources):
    by_uid = {d["uid"]: d for d in datasources}
    assert by_uid["prometheus"]["type"] == "prometheus"
    assert by_uid["prometheus"]["url"] == "http://prometheus:9090"
    assert by_uid["alertmanager"]["type"] == "alertmanager"
    assert by_uid["alertmanager"]["url"] == "http://alertmanager:9093"
    assert by_uid["alertmanager"]["jsonData"]["implementation"] == "prometheus"
    assert len({d["name"] for d in datasources}) == len(datasources)


def grafana_mounts() -> dict[str, str]:
    """Host path -> container path of the grafana service's volumes in docker-compose.yml."""
    compose = REPO / "docker-compose.yml"
    vols = yaml.safe_load(compose.read_text())["services"]["grafana"].get("volumes", [])
    return {v.split(":")[0].removeprefix("./").rstrip("/"): v.split(":")[1] for v in vols if isinstance(v, str)}


def test_provisioned_dashboards_provider_reads_where_compose_mounts_the_json():
    doc = yaml.safe_load((PROVISIONING_DIR / "dashboards" / "dashboards.yml").read_text())
    (provider,) = doc["providers"]
    assert provider["type"] == "file" and provider["disableDeletion"] is True
    path = provider["options"]["path"]
    assert path.startswith("/")
    mounts = grafana_mounts()
    assert mounts.get("grafana/dashboards") == path, mounts
    assert mounts.get("grafana/provisioning") == "/etc/grafana/provisioning", mounts


def test_every_datasource_reference_resolves(dashboards, datasources):
    uids = {d["uid"]: d["type"] for d in datasources}
    names = {d["name"]: d["type"] for d in datasources}
    for name, d in dashboards.items():
        vs = variables(d)
        refs = [(p.get("title"), p.get("datasource")) for p in panels(d)]
        refs += [(p.get("title"), t.get("datasource")) for p, t in targets(d)]
        refs += [(f"variable {v['name']}", v.get("datasource")) for v in vs.values() if v["type"] == "query"]
        for where, ref in refs:
            if ref is None:
                continue
            uid = ref["uid"]
            if uid.startswith("$"):
                (var,) = referenced_variables(uid)
                assert vs[var]["type"] == "datasource" and vs[var]["query"] == ref["type"], (name, where)
            else:
                assert uids.get(uid) == ref["type"], (name, where, ref)
        for p in panels(d):
            if p["type"] == "alertlist":
                assert names.get(p["options"]["datasource"]) == "prometheus", (name, p["title"])


def test_every_variable_a_query_or_link_uses_is_defined(dashboards):
    for name, d in dashboards.items():
        defined = set(variables(d)) | GRAFANA_BUILTINS
        texts = [(p["title"], t["expr"]) for p, t in targets(d)]
        texts += [(p.get("title"), t.get("legendFormat", "")) for p, t in targets(d)]
        texts += [(f"variable {v['name']}", v.get("query", "")) for v in variables(d).values()
                  if isinstance(v.get("query"), str)]
        texts += [(p.get("title"), link["url"]) for p in panels(d) for link in p.get("links") or []]
        texts += [(p.get("title"), json.dumps(p.get("fieldConfig", {}))) for p in panels(d)]
        texts += [(p.get("title"), p.get("title", "")) for p in panels(d)]
        texts += [(p.get("title"), p.get("repeat", "") and "$" + p["repeat"]) for p in panels(d)]
        for where, text in texts:
            undefined = referenced_variables(text) - defined
            assert not undefined, f"{name}: {where!r} uses undefined variables {undefined}"


def dashboard_urls(d: dict) -> list[tuple[str, str]]:
    out = [("dashboard link " + link["title"], link["url"]) for link in d.get("links", []) if link.get("url")]
    for p in panels(d):
        out += [(f"panel {p['title']!r}", link["url"]) for link in p.get("links") or []]
        for o in p.get("fieldConfig", {}).get("overrides", []):
            for prop in o["properties"]:
                if prop["id"] == "links":
                    out += [(f"data link in {p['title']!r}", link["url"]) for link in prop["value"]]
    return out


def test_every_dashboard_link_resolves(dashboards, by_uid, datasources):
    am_names = {d["name"] for d in datasources if d["type"] == "alertmanager"}
    linked = set()
    for name, d in dashboards.items():
        for where, url in dashboard_urls(d):
            if url.startswith("/alerting/"):
                am = dict(re.findall(r"[?&](\w+)=([^&]*)", url)).get("alertmanager")
                assert am in am_names, f"{name}: {where}: {url} names no provisioned Alertmanager"
                continue
            uid, var_names = dashboard_link_target(url)
            assert uid in by_uid, f"{name}: {where}: {url} opens no Wan dashboard"
            missing = var_names - set(variables(by_uid[uid]))
            assert not missing, f"{name}: {where}: {uid} has no variables {missing}"
            linked.add((d["uid"], uid))
        # Dashboard links: each of the others directly, and the tag dropdown of all four.
        direct = {dashboard_link_target(link["url"])[0] for link in d["links"] if link["type"] == "link"}
        assert direct >= UIDS - {d["uid"]}, name
        assert any(link["type"] == "dashboards" and "wan-exporter" in link["tags"] for link in d["links"]), name
    assert ("wan-overview", "wan-model-detail") in linked


def test_alerts_dashboard_urls_land_on_a_dashboard_with_their_variables(by_uid):
    urls = alert_dashboard_urls()
    if not urls:
        pytest.skip("no alert carries a dashboard_url")
    for alert, url in urls:
        path = re.sub(r"^https?://[^/]+", "", url)
        uid, var_names = dashboard_link_target(path)
        assert uid in by_uid, f"{alert}: {url} opens no Wan dashboard"
        missing = var_names - set(variables(by_uid[uid]))
        assert not missing, f"{alert}: {url}: {uid} has no variables {missing}"


# -- (d) the JSON round-trips through the SDK's models ---------------------------------------------------------------

def test_json_round_trips_through_the_sdk_models(dashboards, sdk):
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models.dashboard import Dashboard

    for name, d in dashboards.items():
        parsed = Dashboard.from_json(d)
        again = json.loads(JSONEncoder(sort_keys=True).encode(parsed))
        assert again == d, f"{name} does not survive Dashboard.from_json -> to_json"
        assert len(list(panels(again))) == len(list(panels(d)))


def test_panels_fit_the_grid_without_overlapping(dashboards):
    for name, d in dashboards.items():
        taken: dict[tuple[int, int], str] = {}
        for p in panels(d):
            g = p["gridPos"]
            assert g["x"] >= 0 and g["w"] > 0 and g["x"] + g["w"] <= 24, (name, p.get("title"), g)
            for x in range(g["x"], g["x"] + g["w"]):
                for y in range(g["y"], g["y"] + g["h"]):
                    assert (x, y) not in taken, f"{name}: {p.get('title')!r} overlaps {taken[(x, y)]!r}"
                    taken[(x, y)] = p.get("title")
