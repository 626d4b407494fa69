"""Every dashboard query against real data: the real exporter, a real Prometheus with the repo's rules.

The exporter runs the demo's tiny Wan models on the CPU (built into a temporary
WAN_EXPORTER_CACHE) with test-sized schedules, two GPUs from the fake NVML module (one
reporting an ECC error and an XID event, so GPU alerts really fire), and one real catalog
model that is not on disk (published VRAM figures, "missing" health, skipped benchmarks).
Prometheus scrapes it and the Alertmanager every second with alerting/rules/*.yml, and
sends alerts to the Alertmanager, where a silence holds the Watchdog. One such Prometheus and
Alertmanager pair per peer set (tests/support/peers.py: Debian's 2.42/0.25 and the current
3.x/0.35 built from source) scrape the same exporter and service side by side; the query tests
are parametrized by peer set, so every panel query runs against both Prometheus versions.

The current Prometheus also remote-writes, with the configuration docs/deployment.md gives, to a
single-node VictoriaMetrics (the long-term store test at the end of this file).

The example Wan service (examples/serve/) serves model A's tiny pipeline through
wan_exporter.instrument under its bounded load generator (a fifth of the requests with a size
the pipeline rejects), scraped as job wan-serve: the Traffic dashboard's data.

Then every panel target's expression, with the dashboard variables replaced by real values,
goes through Prometheus' HTTP API: each must parse and return data, or be listed in
ALLOWED_EMPTY with the reason it may legitimately be empty. Variables' label_values()
queries must return values too.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from support.dashboards_promql import (
    RULES_DIR,
    label_values_parts,
    load_dashboards,
    generator,
    panels,
    referenced_variables,
    substitute,
    targets,
    variables,
)
from support.dashboards_stack import (
    AlertmanagerProcess,
    PrometheusProcess,
    PromQLError,
    VictoriaMetricsProcess,
    has_data,
)
from support.peers import BUILT, PEER_IDS, PEER_SETS, available, built, require_built
from support.procs import ExporterProcess, ServeProcess, wait_for, write_nvml_state

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(420)]

# Models of the stack: two tiny demo models that really run, one real model absent from disk.
MODEL_A = "tiny-t2v"
MODEL_B = "tiny-ti2v"
MODEL_A_BF16 = "tiny-t2v-bf16"
MISSING = "wan2.2-ti2v-5b"
MODELS = (MODEL_A, MODEL_B, MISSING)

_NO_PEAK = "benchmarks run on the CPU here; utilisation needs a GPU with a datasheet peak (measure/efficiency.py)"
# (dashboard uid, panel title, refId) -> why it may be empty in this stack.
ALLOWED_EMPTY: dict[tuple[str, str, str], str] = {
    ("wan-model-detail", "Energy per generation", "A"):
        "benchmarks run on the CPU here; generation energy is read from the GPU's NVML counter only",
    ("wan-model-detail", "Model FLOPs utilisation", "A"): _NO_PEAK,
    ("wan-model-detail", "Model FLOPs utilisation", "C"): _NO_PEAK,
    ("wan-comparison", "Model FLOPs utilisation: A and B", "A"): _NO_PEAK,
    ("wan-comparison", "Model FLOPs utilisation: A and B", "B"): _NO_PEAK,
    ("wan-traffic", "Model FLOPs utilisation", "A"):
        "the example service runs on the CPU here; traffic utilisation needs a GPU with a datasheet peak "
        "(instrument/efficiency.py)",
    ("wan-model-detail", "Real-time factor", "B"):
        "benchmarks run on the CPU here; joules per video second need the GPU's NVML energy counter",
    **{(uid, "Heartbeat age by rank", "B"): "wan_rank_stalled is 1 only while a rank is stalled; none is here"
       for uid in ("wan-traffic", "wan-model-detail")},
    **{(uid, "Peak memory by rank", "A"): "the example service runs on the CPU here; a rank's peak memory is CUDA's"
       for uid in ("wan-traffic", "wan-model-detail")},
    ("wan-overview", "Collector errors", "A"):
        "wan_exporter_collector_error_info exists only while a collector fails; every collector works here",
}

RANGE_SECONDS = 120  # range queries look at the last two minutes, like a short dashboard time range
DEADLINE_SECONDS = 210  # from the stack's start; on an idle machine all data is there in ~80 s
BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__range": "1h", "__range_s": "3600"}


def demo_config(tiny_dir: Path, state_dir: Path, hf_dir: Path) -> str:
    """The demo's own config (tiny models on the CPU), trimmed and sped up for a test."""
    from wan_exporter.defaults import demo_config_text

    cfg = yaml.safe_load(demo_config_text(tiny_dir))
    by_name = {m["name"]: m for m in cfg["models"]}
    a = dict(by_name["tiny-t2v-a14b"], name=MODEL_A, profiles=["tiny"], baselines={"tiny": "1s"})
    b = dict(by_name["tiny-ti2v-5b"], name=MODEL_B, profiles=["tiny"])
    # A's weights in bfloat16, compared with A: the Comparison dashboard's "Formats side by side" row.
    a_bf16 = dict(by_name["tiny-t2v-a14b-bf16"], name=MODEL_A_BF16, compare_to=MODEL_A, profiles=["tiny"])
    missing = {"name": MISSING, "kind": "wan2.2-ti2v-5b", "hub_id": "Wan-AI/Wan2.2-TI2V-5B-Diffusers",
               "device": "cuda:1", "profiles": ["tiny"]}
    cfg["models"] = [a, b, a_bf16, missing]
    cfg["schedules"] = {
        "gpu": {"interval": "1s"}, "host": {"interval": "1s"}, "layout": {"interval": "2s"},
        "headers": {"interval": "5s"}, "hash": {"interval": "10m"}, "load": {"interval": "10m", "enabled": False},
        "benchmark": {"interval": "1s", "jitter": "0s"},
    }
    cfg["benchmark"] = {"baseline_runs": 1}  # B records its baseline from its first healthy run
    cfg["exporter"] = {**cfg.get("exporter", {}), "state_dir": str(state_dir), "hf_cache_dir": str(hf_dir)}
    return yaml.safe_dump(cfg, sort_keys=False)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dashboards-live")
    cache = tmp / "tiny-models"
    env = {"WAN_EXPORTER_CACHE": str(cache), "HF_HUB_CACHE": str(tmp / "hf"), "XDG_STATE_HOME": str(tmp / "state"),
           "WAN_EXPORTER_NVML_MODULE": "support.fake_pynvml", "OMP_NUM_THREADS": "1"}
    from support.procs import exporter_env

    subprocess.run([sys.executable, "-m", "wan_exporter", "tiny-models", str(cache)], env=exporter_env(env),
                   check=True, timeout=300, capture_output=True)
    cfg = tmp / "wan.yaml"
    cfg.write_text(demo_config(cache, tmp / "state", tmp / "hf"))
    nvml = write_nvml_state(tmp / "nvml.json", gpus=[
        {"util_gpu": 3},
        {"util_gpu": 60, "temperature": 71, "ecc_uncorrected": 1, "memory_used": 3 << 30,
         "processes": [{"pid": 4242, "memory": 2 << 30}]},
    ], xid_events=[[1, 79]])
    env["FAKE_NVML_STATE"] = str(nvml)

    peer_sets = available("prometheus", "alertmanager")
    if not peer_sets:
        pytest.skip("no Prometheus and Alertmanager found: " + PEER_SETS[0].missing_hint)
    vm_binary = built("victoria-metrics")
    started = []
    try:
        exporter = ExporterProcess([f"--config.file={cfg}"], env=env, log_path=tmp / "exporter.log").start()
        started.append(exporter)
        serve = ServeProcess(log_path=tmp / "serve.log", model=MODEL_A).start()
        started.append(serve)
        started.append(serve.load("--count=2000", f"--duration={DEADLINE_SECONDS + 60}", "--interval=0.5",
                                  log_path=tmp / "load.log"))
        vm = None
        if vm_binary and BUILT in peer_sets:
            vm = VictoriaMetricsProcess(tmp / "victoria-metrics", vm_binary).start()
            started.append(vm)
        pairs = {}
        for peers in peer_sets:
            am = AlertmanagerProcess(tmp / f"alertmanager-{peers.id}", peers).start()
            started.append(am)
            am.silence({"alertname": "Watchdog"})
            remote_write = [remote_write_as_documented(vm.write_url)] if vm and peers is BUILT else []
            prom = PrometheusProcess(tmp / f"prometheus-{peers.id}", f"127.0.0.1:{exporter.port}",
                                     f"127.0.0.1:{am.port}", sorted(RULES_DIR.glob("*.yml")), serve=serve.address,
                                     peers=peers, remote_write=remote_write).start()
            started.append(prom)
            pairs[peers.id] = {"prometheus": prom, "alertmanager": am}
        yield {"exporter": exporter, "peers": pairs, "victoria-metrics": vm, "t0": time.monotonic(),
               "instance": f"127.0.0.1:{exporter.port}"}
    finally:
        for p in reversed(started):
            p.stop()


@pytest.fixture(scope="module", params=PEER_SETS, ids=PEER_IDS)
def peer(request):
    """One Prometheus and Alertmanager pair of the shared stack, per peer set."""
    peers = request.param.need("prometheus", "alertmanager")
    return request.getfixturevalue("stack")["peers"][peers.id]


def query_cases() -> list[dict]:
    """Every panel target of every dashboard."""
    cases = []
    for d in load_dashboards().values():
        for p, t in targets(d):
            cases.append({"uid": d["uid"], "panel": p["title"], "ref": t["refId"], "expr": t["expr"],
                          "instant": bool(t.get("instant"))})
    return cases


# Real choices of the model variables, tried in turn: a query passes when one of them gives data
# (the tiny models have benchmarks but no published VRAM figures; the missing model the reverse).
ASSIGNMENTS = (
    {"model": MODEL_A, "model_a": MODEL_A, "model_b": MODEL_B},
    {"model": MODEL_B, "model_a": MODEL_B, "model_b": MODEL_A},
    {"model": MISSING, "model_a": MODEL_A, "model_b": MISSING},
)


def values_for(assignment: dict, instance: str) -> dict[str, str]:
    return {**BUILTINS, "instance": instance, "instance_a": instance, "instance_b": instance, "gpu": "0",
            "job": "wan-serve", "gpu_model": ".*", **assignment}


def run_case(prom: PrometheusProcess, case: dict, instance: str) -> tuple[str, str | None]:
    """('data', models) when a choice of the model variables gives data, ('empty', None), or ('error', message)."""
    uses_models = bool(referenced_variables(case["expr"]) & {"model", "model_a", "model_b"})
    for assignment in (ASSIGNMENTS if uses_models else ASSIGNMENTS[:1]):
        expr = substitute(case["expr"], values_for(assignment, instance))
        try:
            data = prom.query(expr) if case["instant"] else prom.query_range(expr, RANGE_SECONDS)
        except PromQLError as e:
            if e.kind == "bad_data":
                return "error", f"{e}\n{expr}"
            raise
        if has_data(data):
            return "data", str(assignment)
    return "empty", None


def test_every_panel_query_parses_and_returns_data(stack, peer):
    prom, instance = peer["prometheus"], stack["instance"]
    cases = query_cases()
    assert len(cases) > 100
    deadline = stack["t0"] + DEADLINE_SECONDS
    pending = list(cases)
    first_data: dict[int, float] = {}
    while True:
        stack["exporter"].alive()
        prom.alive()
        peer["alertmanager"].alive()
        still = []
        for case in pending:
            status, detail = run_case(prom, case, instance)
            assert status != "error", f"{case['uid']}: {case['panel']!r} {case['ref']}: does not parse: {detail}"
            if status == "data":
                first_data.setdefault(id(case), time.monotonic() - stack["t0"])
            else:
                still.append(case)
        pending = [c for c in still if (c["uid"], c["panel"], c["ref"]) not in ALLOWED_EMPTY]
        if not pending or time.monotonic() > deadline:
            break
        time.sleep(5)
    missing = [f"{c['uid']}: {c['panel']!r} {c['ref']}: {c['expr']}" for c in pending]
    assert not missing, (f"{len(missing)} of {len(cases)} panel queries returned no data after "
                         f"{time.monotonic() - stack['t0']:.0f}s:\n" + "\n".join(missing)
                         + f"\n--- exporter log ---\n{stack['exporter'].log_tail()}")
    slowest = sorted(((t, c["uid"], c["panel"], c["ref"]) for c in cases if (t := first_data.get(id(c)))),
                     reverse=True)[:4]
    print(f"{len(cases)} panel queries: all data after {time.monotonic() - stack['t0']:.0f}s; last to come: "
          + "; ".join(f"{uid} {panel!r} {ref} at {t:.0f}s" for t, uid, panel, ref in slowest))
    # An allow-listed query that returns data after all (asked again now) should leave the list.
    allowed = [c for c in cases if (c["uid"], c["panel"], c["ref"]) in ALLOWED_EMPTY]
    stale = [(c["uid"], c["panel"], c["ref"]) for c in allowed if run_case(prom, c, instance)[0] == "data"]
    assert not stale, f"allowed to be empty but returned data, remove from ALLOWED_EMPTY: {stale}"
    unknown = [k for k in ALLOWED_EMPTY if not any((c["uid"], c["panel"], c["ref"]) == k for c in cases)]
    assert not unknown, f"ALLOWED_EMPTY names no panel target: {unknown}"


def test_every_variable_query_returns_values(stack, peer):
    prom, instance = peer["prometheus"], stack["instance"]
    for name, d in load_dashboards().items():
        for v in variables(d).values():
            if v["type"] != "query":
                continue
            selector, label = label_values_parts(v["query"])
            values = values_for(ASSIGNMENTS[0], instance)
            if selector:
                found = {s.get(label) for s in prom.series(substitute(selector, values)) if s.get(label)}
            else:
                found = set(prom.api(f"label/{label}/values"))
            assert found, f"{name}: variable {v['name']}: {v['query']} has no values"
            if v["name"] in ("model", "model_a", "model_b"):
                assert set(MODELS) <= found, (name, v["name"], found)
            if v["name"] == "gpu":
                assert found == {"0", "1"}, found


def test_panels_without_queries_are_the_alert_list_and_rows():
    for d in load_dashboards().values():
        for p in panels(d):
            if not p.get("targets"):
                assert p["type"] in ("row", "alertlist"), (d["uid"], p.get("title"))


def test_silenced_alert_reaches_the_silenced_count(stack, peer):
    """The Watchdog fires after its for: and lands silenced in the Alertmanager: the overview's count sees it."""
    generator()
    from grafana.dashboards_src import queries as q  # the same expression the overview runs

    prom = peer["prometheus"]
    wait_for(lambda: any(float(s["value"][1]) >= 1 for s in prom.query(q.alertmanager_alerts("suppressed"))["result"]),
             max(5.0, stack["t0"] + DEADLINE_SECONDS - time.monotonic()), interval=2, what="a silenced alert")


# --------------------------------------------------------------------------- long-term store

DEPLOYMENT_DOC = Path(__file__).resolve().parents[1] / "docs" / "deployment.md"
# Raw samples and values computed from them at one instant: VictoriaMetrics stores a float as a
# decimal mantissa and exponent (12 significant digits at least), so "equal" is relative 1e-9.
RAW_RTOL = 1e-9
# A dashboard query's value at the same instant from both: relative 2% (absolute 1e-9 near zero).
QUERY_RTOL, QUERY_ATOL = 0.02, 1e-9
# Where MetricsQL answers differently by design: rate()/increase()/irate() over a window. PromQL
# takes the samples inside the window and extrapolates to its edges; MetricsQL does not
# extrapolate and counts from the last sample before the window. For a counter that steps once
# per benchmark run (a few per minute here), a [1m] window then holds one step more or less: e.g.
# 'Generation time distribution' (PromQL 1.02, MetricsQL 2) and 'Skipped runs by reason' (51.1
# vs 50). Their series must still be the same; their values are reported, not compared.
COUNTER_RANGE = re.compile(r"\b(rate|irate|increase)\s*\(")


def remote_write_as_documented(url: str) -> dict:
    """The remote_write entry docs/deployment.md gives, pointed at ``url``, sending a partial batch after 1 s."""
    text = DEPLOYMENT_DOC.read_text()
    m = re.search(r"<!-- remote-write:tested -->\n```yaml\n(.*?)```", text, re.S)
    assert m, f"{DEPLOYMENT_DOC}: no tested remote_write block"
    (entry,) = yaml.safe_load(m.group(1))["remote_write"]
    entry["url"] = url
    entry["queue_config"]["batch_send_deadline"] = "1s"
    return entry


def _series(data: dict) -> dict[tuple, float]:
    """An instant query's result as {label set without __name__: value}; a scalar under ()."""
    if data["resultType"] == "scalar":
        return {(): float(data["result"][1])}
    return {tuple(sorted((k, v) for k, v in s["metric"].items() if k != "__name__")): float(s["value"][1])
            for s in data["result"]}


def _close(a: float, b: float, rtol: float, atol: float = 0.0) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= max(atol, rtol * max(abs(a), abs(b)))


def test_remote_write_to_victoriametrics_keeps_series_rules_and_dashboard_answers(stack):
    """Prometheus 3 remote-writes to VictoriaMetrics with the documented config: the exporter's series
    arrive with their labels and values, the recording rules' outputs arrive, and every dashboard query
    gives the same series from VictoriaMetrics as from Prometheus at one instant, with the same values
    (QUERY_RTOL) except where MetricsQL's rate/increase differ by design (COUNTER_RANGE)."""
    require_built("victoria-metrics")
    BUILT.need("prometheus", "alertmanager")
    vm, prom = stack["victoria-metrics"], stack["peers"][BUILT.id]["prometheus"]
    instance = stack["instance"]
    recorded: set[str] = set()

    def at_instant() -> float:
        # Past VictoriaMetrics' latency offset and a few batch deadlines, so both have the same samples.
        return time.time() - 12

    # Wait for the data the dashboards need (the live test above waits too; alone, this one does).
    def ready():
        t = at_instant()
        rules = {s["metric"]["__name__"] for s in prom.query('{__name__=~"[a-z_]*:wan_.+"}', at=t)["result"]}
        bench = prom.query("wan_benchmark_last_run_success", at=t)["result"]
        return rules if len(rules) >= 10 and bench else None

    wait_for(ready, max(30.0, stack["t0"] + DEADLINE_SECONDS - time.monotonic()), interval=3,
             what="recording rules and a benchmark result in Prometheus")
    vm.alive()
    t = at_instant()

    # The exporter's (and the served model's) series, with every label, and their raw values.
    for selector in ('{__name__=~"wan_.+"}', '{__name__=~"[a-z_]*:wan_.+"}'):
        want = {tuple(sorted(s["metric"].items())): float(s["value"][1]) for s in prom.query(selector, at=t)["result"]}
        got = {tuple(sorted(s["metric"].items())): float(s["value"][1]) for s in vm.query(selector, at=t)["result"]}
        assert want, selector
        assert set(got) == set(want), (selector, "missing in VictoriaMetrics:", sorted(set(want) - set(got))[:5],
                                       "only in VictoriaMetrics:", sorted(set(got) - set(want))[:5])
        off = [(dict(k), want[k], got[k]) for k in want if not _close(want[k], got[k], RAW_RTOL)]
        assert not off, (selector, off[:5])
        recorded.update(dict(k)["__name__"] for k in want if ":" in dict(k)["__name__"])
    assert recorded, "no recording rule output arrived"

    # Every dashboard query, with the variables as the live test sets them, at the same instant.
    differs, same, empty, by_design = [], 0, 0, []
    for case in query_cases():
        key = (case["uid"], case["panel"], case["ref"])
        uses_models = bool(referenced_variables(case["expr"]) & {"model", "model_a", "model_b"})
        for assignment in (ASSIGNMENTS if uses_models else ASSIGNMENTS[:1]):
            expr = substitute(case["expr"], values_for(assignment, instance))
            p = _series(prom.query(expr, at=t))
            if p:
                break
        v = _series(vm.query(expr, at=t))
        if not p and not v:
            empty += 1
            continue
        if set(p) != set(v):
            differs.append(f"{key}: series differ: Prometheus {sorted(p)[:3]} VictoriaMetrics {sorted(v)[:3]}\n  {expr}")
            continue
        bad = [(k, p[k], v[k]) for k in p if not _close(p[k], v[k], QUERY_RTOL, QUERY_ATOL)]
        if not bad:
            same += 1
        elif COUNTER_RANGE.search(case["expr"]):
            by_design.append(f"{key}: PromQL/MetricsQL {[(x, round(y, 4)) for _, x, y in bad[:2]]}")
        else:
            differs.append(f"{key}: values differ beyond {QUERY_RTOL:.0%}: {bad[:3]}\n  {expr}")
    print(f"VictoriaMetrics vs Prometheus {BUILT.prometheus_version} at one instant: {same} queries agree within "
          f"{QUERY_RTOL:.0%}, {len(by_design)} differ by MetricsQL's rate/increase (same series), {empty} empty in "
          f"both; {len(recorded)} recording rules arrived\n  " + "\n  ".join(by_design))
    assert not differs, f"{len(differs)} dashboard queries differ:\n" + "\n".join(differs)
