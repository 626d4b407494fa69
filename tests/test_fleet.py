"""A fleet on loopback: four demo exporters, one real Prometheus, an Alertmanager HA pair.

What it proves, with the real binaries:
- one Prometheus scrapes four exporters (distinct ports and ``instance`` labels) and the repo's
  recording rules roll their figures up per instance and fleet-wide;
- the fleet dashboard's queries (grafana/dashboards/wan-fleet.json) parse and return
  per-instance and aggregated data;
- two ``prometheus-alertmanager`` processes gossiping on loopback, both fed by Prometheus,
  deliver exactly one notification per alert group to a webhook receiver.

One Prometheus and one Alertmanager pair per peer set (tests/support/peers.py: Debian's 2.42/0.25
and the current ones built from source) watch the same four exporters from the start; the tests
are parametrized by peer set (``fleet``), so each runs against both.

CPU stays low on two cores: one tiny model per exporter (two on the first), benchmarks once
except on the first exporter, and fake GPUs at the NVML boundary (no GPU here).

No step waits for time: the other exporters start their one benchmark (by config reload) only
once Prometheus holds their run counters at 0, so ``increase()`` always sees the run; each
check waits for the state it reads.
"""

from __future__ import annotations

import collections
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from support.deploy_procs import (
    WebhookReceiver, active_targets, alertmanager, api, build_tiny_models, prometheus, query,
)
from support.peers import PEER_IDS, PEER_SETS, available
from support.procs import REPO, ExporterProcess, free_port, wait_for, write_nvml_state

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]

N_EXPORTERS = 4
GPUS_PER_INSTANCE = [2, 1, 1, 2]  # fake GPUs behind each exporter's NVML
HOT = (3, 1)  # (instance, gpu) of a GPU at 95 °C: WanGpuHot fires for it
GIB = 1 << 30
FLEET_DASHBOARD = REPO / "grafana" / "dashboards" / "wan-fleet.json"
RECORDING_RULES = REPO / "alerting" / "rules" / "wan-recording.rules.yml"


def instance_name(i: int) -> str:
    return f"gpu-node-{i + 1}"


def exporter_config(tiny: Path, state: Path, first: bool, benchmark: bool = True) -> str:
    """A demo-like config: the shared tiny models, short health intervals, benchmarks mostly idle."""
    # A baseline from config (not recorded from three runs), so the regression panels have data.
    models = [{"name": "tiny-t2v-a14b", "kind": "tiny-wan2.2-t2v-a14b", "path": str(tiny / "tiny-wan2.2-t2v-a14b"),
               "device": "cpu", "dtype": "float32", "profiles": ["tiny"], "baselines": {"tiny": "20s"}}]
    if first:
        models.append({"name": "tiny-wan2.1-t2v", "kind": "tiny-wan2.1-t2v", "path": str(tiny / "tiny-wan2.1-t2v"),
                       "device": "cpu", "dtype": "float32", "profiles": ["tiny"]})
    return yaml.safe_dump({
        "models": models,
        "profiles": {"tiny": {"width": 32, "height": 32, "frames": 9, "steps": 2, "timeout": "2m"}},
        "schedules": {
            "gpu": {"interval": "2s"}, "host": {"interval": "5s"}, "layout": {"interval": "10s"},
            "headers": {"interval": "1m"}, "hash": {"interval": "1h"}, "load": {"interval": "1h", "enabled": False},
            # Every exporter benchmarks once when enabled; only the first keeps going.
            "benchmark": {"interval": "20s" if first else "1h", "jitter": "0s", "enabled": benchmark},
        },
        # A benchmark child that lingers after its result is killed after 2s, not the default 10s.
        "benchmark": {"kill_grace": "2s"},
        "exporter": {"state_dir": str(state), "demo": True},
    }, sort_keys=False)


def temperature(i: int, g: int) -> int:
    return 95 if (i, g) == HOT else 40 + i


def fake_gpus(i: int) -> dict:
    return {"gpus": [{"name": "NVIDIA H200", "uuid": f"GPU-{i:08d}-0000-0000-0000-{g:012d}",
                      "memory_total": 140 * GIB, "memory_used": (10 + 10 * g + i) * GIB,
                      "util_gpu": 5 + i, "temperature": temperature(i, g), "power_mw": 100000 + 1000 * i}
                     for g in range(GPUS_PER_INSTANCE[i])]}


def alerts_for0(dest: Path) -> Path:
    """The repo's alert rules with every for: shortened to 0s (alerting/generate.py's test variant)."""
    subprocess.run([sys.executable, str(REPO / "alerting" / "generate.py"), "--for-all", "0s", "--out-dir", str(dest)],
                   check=True, timeout=60, capture_output=True)
    return dest / "wan-alerts.rules.yml"


def dashboard_targets(path: Path) -> list[tuple[str, str]]:
    """(panel title, expr) of every Prometheus target in a dashboard, rows included."""
    def panels(ps):
        for p in ps:
            yield p
            yield from panels(p.get("panels") or [])

    dash = json.loads(path.read_text(encoding="utf-8"))
    out = []
    for p in panels(dash.get("panels") or []):
        for t in p.get("targets") or []:
            if t.get("expr"):
                out.append((p.get("title", ""), t["expr"]))
    return out


def substitute(expr: str, instances: list[str]) -> str:
    """Grafana's variable interpolation for these tests: every variable at "All"."""
    values = {"instance": "|".join(instances), "gpu": ".*", "model": ".*",
              "profile": ".*", "__rate_interval": "1m", "__interval": "15s", "__range": "1h"}
    for k, v in values.items():
        expr = expr.replace("${%s}" % k, v).replace("$" + k, v)
    left = re.findall(r"\$\{?[A-Za-z_]\w*", expr)  # ($1 in label_replace is PromQL's, not Grafana's)
    assert not left, f"uninterpolated variable {left} in {expr}"
    return expr


def by_instance(result: list[dict]) -> dict[str, float]:
    return {r["metric"].get("instance"): float(r["value"][1]) for r in result}


def scalar(result: list[dict]) -> float:
    assert len(result) == 1, result
    return float(result[0]["value"][1])


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_models(tmp_path_factory.getbasetemp() / "tiny-models-shared")


@pytest.fixture(scope="module")
def fleets(tmp_path_factory, tiny_dir):
    """The four exporters, and per available peer set a Prometheus and an Alertmanager HA pair over them."""
    sets = available("prometheus", "alertmanager")
    if not sets:
        PEER_SETS[0].need("prometheus", "alertmanager")
    work = tmp_path_factory.mktemp("fleet")
    exporters, procs, hooks = [], [], []
    try:
        for i in range(N_EXPORTERS):
            cfg = work / f"exporter-{i}.yaml"
            cfg.write_text(exporter_config(tiny_dir, work / f"state-{i}", first=(i == 0), benchmark=(i == 0)))
            nvml = write_nvml_state(work / f"nvml-{i}.json", **fake_gpus(i))
            exp = ExporterProcess([f"--config.file={cfg}"], log_path=work / f"exporter-{i}.log", env={
                "WAN_EXPORTER_CACHE": str(tiny_dir), "WAN_EXPORTER_NVML_MODULE": "support.fake_pynvml",
                "FAKE_NVML_STATE": str(nvml), "HF_HUB_CACHE": str(work / "hf"), "OMP_NUM_THREADS": "1",
                "XDG_STATE_HOME": str(work / f"xdg-{i}")})
            exporters.append(exp.start())

        out = {}
        for peers in sets:
            pw = work / peers.id
            pw.mkdir()
            hook = WebhookReceiver().start()
            hooks.append(hook)
            # The Alertmanager HA pair: each gossips with the other; one receiver, short waits.
            am_cfg = pw / "alertmanager.yml"
            am_cfg.write_text(yaml.safe_dump({
                "route": {"receiver": "hook", "group_by": ["alertname", "instance", "model"],
                          "group_wait": "1s", "group_interval": "10m", "repeat_interval": "4h"},
                "receivers": [{"name": "hook", "webhook_configs": [{"url": hook.url(), "send_resolved": True}]}],
            }))
            c1, c2 = free_port(), free_port()
            am1 = alertmanager(am_cfg, pw, "am1", cluster_port=c1, peers=[f"127.0.0.1:{c2}"], peer_set=peers)
            am2 = alertmanager(am_cfg, pw, "am2", cluster_port=c2, peers=[f"127.0.0.1:{c1}"], peer_set=peers)
            procs += [am1.start(), am2.start()]

            prom_cfg = pw / "prometheus.yml"
            prom_cfg.write_text(yaml.safe_dump({
                "global": {"scrape_interval": "2s", "evaluation_interval": "2s", "scrape_timeout": "2s"},
                "rule_files": [str(RECORDING_RULES), str(alerts_for0(pw / "rules"))],
                "alerting": {"alertmanagers": [{"static_configs": [
                    {"targets": [f"127.0.0.1:{am1.port}", f"127.0.0.1:{am2.port}"]}]}]},
                "scrape_configs": [{"job_name": "wan-exporter", "static_configs": [
                    {"targets": [f"127.0.0.1:{e.port}"], "labels": {"instance": instance_name(i)}}
                    for i, e in enumerate(exporters)]}],
            }, sort_keys=False))
            prom = prometheus(prom_cfg, pw, peers=peers)
            procs.append(prom.start())
            base = prom.ready_url.rsplit("/-/", 1)[0]
            out[peers.id] = {"prom": base, "am": [am1, am2], "hook": hook, "exporters": exporters, "work": work}
        start_single_benchmarks_once_scraped([f["prom"] for f in out.values()], exporters, work, tiny_dir)
        yield out
    finally:
        for e in exporters:  # all at once: each may have a benchmark child to stop
            if e.proc.poll() is None:
                e.signal(signal.SIGTERM)
        for p in reversed(procs):
            p.stop()
        for e in exporters:
            e.stop()
        for h in hooks:
            h.stop()
    for p in procs:
        assert p.proc.poll() is not None, f"{p.name} still running"
    for e in exporters:
        assert e.proc.poll() is not None, "an exporter is still running"


@pytest.fixture(scope="module", params=PEER_SETS, ids=PEER_IDS)
def fleet(request):
    """The fleet as one peer set's Prometheus and Alertmanager pair see it."""
    peers = request.param.need("prometheus", "alertmanager")
    return request.getfixturevalue("fleets")[peers.id]


def start_single_benchmarks_once_scraped(proms: list[str], exporters: list, work: Path, tiny: Path) -> None:
    """Enable the one benchmark of exporters 2-4 (SIGHUP) once every Prometheus has their run counters at 0.

    A run that ended before the first scrape would be the counter's first sample, and
    ``increase()`` would never see it."""
    others = {instance_name(i) for i in range(1, N_EXPORTERS)}

    def counters_at_zero():
        return all(others <= set(by_instance(query(prom, 'wan_benchmark_runs_total{model="tiny-t2v-a14b"} == 0')))
                   for prom in proms)

    wait_for(counters_at_zero, 60, interval=0.5, what="Prometheus to hold every idle exporter's run counter at 0")
    for i in range(1, N_EXPORTERS):
        (work / f"exporter-{i}.yaml").write_text(exporter_config(tiny, work / f"state-{i}", first=False))
        exporters[i].signal(signal.SIGHUP)


def test_fleet_is_scraped_with_distinct_instances(fleet):
    prom = fleet["prom"]
    targets = wait_for(lambda: (lambda ts: ts if len(ts) == N_EXPORTERS and all(t["health"] == "up" for t in ts)
                                else None)(active_targets(prom)), 30, what="four exporter targets up")
    assert sorted(t["labels"]["instance"] for t in targets) == [instance_name(i) for i in range(N_EXPORTERS)]
    assert {t["labels"]["job"] for t in targets} == {"wan-exporter"}
    r = wait_for(lambda: (lambda r: r if len(r) == N_EXPORTERS else None)(
        query(prom, 'count by (instance) (wan_exporter_build_info{job="wan-exporter"})')), 15, what="build_info")
    assert sorted(by_instance(r)) == [instance_name(i) for i in range(N_EXPORTERS)]


def test_fleet_rollup_rules_give_per_instance_and_fleet_figures(fleet):
    prom = fleet["prom"]
    n_gpus = sum(GPUS_PER_INSTANCE)
    # GPU rollups: per instance, then fleet-wide (the fake GPUs' figures are known).
    wait_for(lambda: query(prom, ":wan_gpu_devices:sum") and scalar(query(prom, ":wan_gpu_devices:sum")) == n_gpus,
             30, what=":wan_gpu_devices:sum")
    used = by_instance(query(prom, "instance:wan_gpu_memory_used_bytes:sum"))
    expect_used = {instance_name(i): sum((10 + 10 * g + i) * GIB for g in range(GPUS_PER_INSTANCE[i]))
                   for i in range(N_EXPORTERS)}
    assert used == expect_used
    total = sum(140 * GIB * n for n in GPUS_PER_INSTANCE)
    assert scalar(query(prom, ":wan_gpu_memory_total_bytes:sum")) == total
    assert scalar(query(prom, ":wan_gpu_memory_used:ratio")) == pytest.approx(sum(expect_used.values()) / total)
    temps = by_instance(query(prom, "instance:wan_gpu_temperature_celsius:max"))
    assert temps == {instance_name(i): max(temperature(i, g) for g in range(GPUS_PER_INSTANCE[i]))
                     for i in range(N_EXPORTERS)}

    # Benchmarks: every instance ran its tiny model once; the rollups see all four.
    def runs_everywhere():
        r = query(prom, 'instance_model_profile:wan_benchmark_runs:increase1h{model="tiny-t2v-a14b"} > 0')
        return r if len(by_instance(r)) == N_EXPORTERS else None

    wait_for(runs_everywhere, 150, interval=1, what="a benchmark run on every instance")
    assert scalar(query(prom, ":wan_benchmark_runs:increase1h")) >= N_EXPORTERS
    def success_everywhere():
        ok = by_instance(query(prom, 'instance_model_profile:wan_benchmark_success:ratio_rate1h{model="tiny-t2v-a14b"}'))
        return ok if set(ok) == {instance_name(i) for i in range(N_EXPORTERS)} else None

    ok = wait_for(success_everywhere, 30, interval=1, what="a success ratio for every instance")
    assert all(v == 1 for v in ok.values()), ok
    assert scalar(query(prom, ":wan_benchmark_success:ratio_rate1h")) == 1
    # Per model and profile across the fleet: one series for the model every instance runs.
    p95 = query(prom, 'model_profile:wan_generation_duration_seconds:p95_rate24h{model="tiny-t2v-a14b"}')
    assert len(p95) == 1 and float(p95[0]["value"][1]) > 0, p95
    # Health verdicts, per instance and fleet-wide.
    # (A model's verdict appears once its first checks ran.) One model per exporter, two on the first.
    wait_for(lambda: sum(float(r["value"][1]) for r in query(prom, "status:wan_model_health_status:sum"))
             == N_EXPORTERS + 1, 60, what="a health verdict for every model")
    states = by_instance(query(prom, 'sum by (instance) (instance_status:wan_model_health_status:sum)'))
    assert states == {instance_name(i): (2 if i == 0 else 1) for i in range(N_EXPORTERS)}


def test_fleet_dashboard_queries_return_per_instance_and_fleet_data(fleet):
    assert FLEET_DASHBOARD.exists(), f"{FLEET_DASHBOARD} missing: run python3 -m grafana.dashboards_src"
    prom = fleet["prom"]
    instances = [instance_name(i) for i in range(N_EXPORTERS)]
    # Let a benchmark land everywhere first (the previous test usually did).
    wait_for(lambda: len(query(prom, "instance_model_profile:wan_benchmark_runs:increase24h > 0")) >= N_EXPORTERS,
             120, interval=1, what="benchmarks on every instance")
    targets = dashboard_targets(FLEET_DASHBOARD)
    assert len(targets) >= 10, "the fleet dashboard has hardly any queries"

    def evaluate() -> dict[tuple[str, str], list[dict]]:
        return {(title, raw): query(prom, substitute(raw, instances)) for title, raw in targets}  # all parse

    def per_instance_query(raw: str) -> bool:
        return re.search(r"by \((?:[^)]*, )?instance\b", raw) is not None

    def all_have_data():
        # Every query has data, and every per-instance one has each instance (rules lag a run).
        results = evaluate()
        complete = all(r and (not per_instance_query(raw) or {x["metric"].get("instance") for x in r} >= set(instances))
                       for (_, raw), r in results.items())
        return results if complete else None

    # Every query returns data: with fake GPUs, a benchmark on every instance and a configured
    # baseline, nothing on the fleet dashboard needs to be empty. (Rules evaluate every 2s.)
    try:
        results = wait_for(all_have_data, 60, interval=2, what="data for every fleet query")
    except AssertionError:
        empty = [f"  {t}: {' '.join(e.split())}" for (t, e), r in evaluate().items() if not r]
        raise AssertionError("fleet dashboard queries without data:\n" + "\n".join(empty)) from None
    per_instance = 0
    for (title, raw), result in results.items():
        labels = {r["metric"].get("instance") for r in result}
        if per_instance_query(raw):
            # A per-instance panel shows every instance of the fleet.
            assert labels == set(instances), (title, raw, labels)
            per_instance += 1
    assert per_instance >= 5, f"only {per_instance} per-instance queries"
    # The fleet-wide stat panels: instances up, GPUs, models.
    assert scalar(query(prom, substitute('count(up{instance=~"${instance}"} == 1) or vector(0)', instances))) == 4
    assert scalar(query(prom, substitute('sum(wan_gpu_devices{instance=~"${instance}"})', instances))) == sum(
        GPUS_PER_INSTANCE)


def test_alertmanager_ha_pair_delivers_one_notification_per_group(fleet):
    prom, am1, am2, hook = fleet["prom"], *fleet["am"], fleet["hook"]
    # Both peers see each other and Prometheus sends to both.
    for am in (am1, am2):
        status = api(f"http://127.0.0.1:{am.port}", "/api/v2/status")
        wait_for(lambda am=am: len(api(f"http://127.0.0.1:{am.port}", "/api/v2/status")["cluster"]["peers"]) == 2,
                 30, what=f"{am.name} to see both peers")
        assert status["cluster"]["status"] in ("ready", "settling")
    wait_for(lambda: len(api(prom, "/api/v1/alertmanagers")["data"]["activeAlertmanagers"]) == 2, 30,
             what="Prometheus to know both Alertmanagers")

    def firing_everywhere():
        names = []
        for am in (am1, am2):
            alerts = api(f"http://127.0.0.1:{am.port}", "/api/v2/alerts")
            names.append({a["labels"]["alertname"] for a in alerts})
        return names if all({"Watchdog", "WanGpuHot"} <= n for n in names) else None

    wait_for(firing_everywhere, 60, what="Watchdog and WanGpuHot on both Alertmanagers")
    # group_wait 1s, then the second peer waits one peer_timeout (2s) and finds the first's entry
    # in the gossiped notification log; leave several timeouts for duplicates to show.
    wait_for(lambda: {"Watchdog", "WanGpuHot"} <= {n["groupLabels"].get("alertname") for n in hook.received()}, 30,
             what="the Watchdog and WanGpuHot notifications")
    time.sleep(10)
    got = hook.received()
    per_group = collections.Counter((n["groupKey"], n["status"]) for n in got)
    dupes = {k: v for k, v in per_group.items() if v > 1}
    assert not dupes, f"duplicate notifications from the HA pair: {dupes}"
    watchdog = [n for n in got if n["groupLabels"].get("alertname") == "Watchdog"]
    assert len(watchdog) == 1 and watchdog[0]["status"] == "firing"
    hot = [n for n in got if n["groupLabels"].get("alertname") == "WanGpuHot"]
    assert len(hot) == 1 and hot[0]["groupLabels"]["instance"] == instance_name(HOT[0]), hot
    assert [a["labels"]["gpu"] for a in hot[0]["alerts"]] == [str(HOT[1])]
    # Both peers did get the alerts (Prometheus fed both); only one notified.
    for am in (am1, am2):
        assert any(a["labels"]["alertname"] == "Watchdog"
                   for a in api(f"http://127.0.0.1:{am.port}", "/api/v2/alerts"))
