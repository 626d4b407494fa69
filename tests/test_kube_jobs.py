"""Job mode against a real Kubernetes control plane on loopback (tests/support/kube_procs.py says
exactly which parts are real: etcd, kube-apiserver with RBAC and admission, kube-controller-manager's
Job, TTL-after-finished, garbage-collector and service-account controllers; the kubelet and
scheduler are stood in for through the API, and the Job pod's command runs here as a process).

The exporter runs in-process with the chart's RBAC (rendered by helm, applied to the API server)
and a real service-account token; its probes become Jobs, the stand-in kubelet runs the pod's
`wan-exporter bench`, which posts its result back to the exporter's HTTP server, and the exporter
publishes it. Preemption, an unschedulable pod and a deadline map to their bounded reasons.
"""

from __future__ import annotations

import base64
import threading

import pytest
import yaml
from prometheus_client import generate_latest

from support.kube_procs import ADMIN_TOKEN, Api, ApiServer, ControllerManager, Etcd, Kubelet, \
    service_account_token, wait_gone
from support.procs import REPO, exporter_env, free_port, parse_metrics, sample, wait_for
from support.tools import require_peer, require_tool
from wan_exporter.app import App
from wan_exporter.config import parse_config

pytestmark = pytest.mark.e2e

NS = "monitoring"
NODE = "gpu-node-1"
KIND = "tiny-wan2.1-t2v"
PROBE_TOKEN = "probe-token-0123456789abcdef"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    apiserver_bin = require_peer("kube-apiserver")
    kcm_bin = require_peer("kube-controller-manager")
    require_tool("etcd")
    work = tmp_path_factory.mktemp("kube")
    with Etcd(work / "etcd") as etcd:
        api = ApiServer(work / "apiserver", apiserver_bin, etcd.url)
        kcm = ControllerManager(work / "kcm", kcm_bin, api.url)
        try:
            api.start(timeout=120)
            kcm.start(timeout=120)
            yield api, Api(api.url, ADMIN_TOKEN), work
        finally:
            kcm.stop()
            api.stop()


def chart_objects() -> list[dict]:
    import subprocess

    out = subprocess.run([require_peer("helm"), "template", "wan", str(REPO / "deploy" / "helm" / "wan-exporter"),
                          "-n", NS, "-f", str(REPO / "deploy" / "helm" / "wan-exporter" / "ci" / "gpu-node-values.yaml")],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def test_probes_run_as_jobs_through_a_real_api_server(cluster, tiny_dir, tmp_path, monkeypatch):
    apiserver, admin, work = cluster
    admin.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    # The chart's own ServiceAccount, Role, RoleBinding and PriorityClass, as helm renders them.
    chart = chart_objects()
    for d in chart:
        if d["kind"] in ("ServiceAccount", "Role", "RoleBinding", "PriorityClass"):
            admin.apply(d)
    sa = next(d for d in chart if d["kind"] == "ServiceAccount")["metadata"]["name"]
    wait_for(lambda: admin.call("GET", f"/api/v1/namespaces/{NS}/serviceaccounts/default")[0] == 200, 60,
             what="the default service account (serviceaccount-controller)")
    admin.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "wan-exporter-probe", "namespace": NS},
                 "data": {"token": base64.b64encode(PROBE_TOKEN.encode()).decode()}})
    # The exporter's own pod object: the Jobs' owner (no kubelet runs it; the exporter runs in this test).
    owner = admin.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "wan-wan-exporter-x7k2p", "namespace": NS},
                         "spec": {"nodeName": NODE, "serviceAccountName": sa, "automountServiceAccountToken": False,
                                  "containers": [{"name": "wan-exporter", "image": "wan-exporter:0.1.0"}]}})

    token_file = tmp_path / "sa-token"
    token_file.write_text(service_account_token(admin, NS, sa))
    probe_token = tmp_path / "probe-token"
    probe_token.write_text(PROBE_TOKEN)
    port = free_port()
    models = "\n".join(f"  - {{name: {n}, kind: {KIND}, path: '{tiny_dir}/{KIND}', device: 'cuda:0', dtype: float32, "
                       f"profiles: [{p}]}}" for n, p in (("run", "tiny"), ("preempt", "tiny"), ("deadline", "short"),
                                                         ("unsched", "tiny")))
    config = (f"models:\n{models}\n"
              "profiles:\n  tiny: {width: 32, height: 32, frames: 9, steps: 2, timeout: 5m}\n"
              "  short: {width: 32, height: 32, frames: 9, steps: 2, timeout: 3s}\n"
              "schedules: {benchmark: {interval: 1h, enabled: false}}\n"
              f"benchmark: {{kill_grace: 2s, baseline_runs: 1}}\nexporter: {{state_dir: '{tmp_path / 'state'}'}}\n"
              "kubernetes:\n  jobs:\n"
              f"    {{enabled: true, api_server: '{apiserver.url}', api_token_file: '{token_file}', "
              f"api_ca_file: '{work / 'apiserver' / 'certs' / 'apiserver.crt'}', token_file: '{probe_token}', "
              f"token_secret: wan-exporter-probe, config_map: wan-exporter-config, ttl_seconds_after_finished: 30, "
              f"pending_timeout: 4s, poll_interval: 0.5s, report_url: 'http://127.0.0.1:{port}', "
              f"image: 'wan-exporter:0.1.0', resources: {{requests: {{cpu: '1', memory: 2Gi}}}}}}\n")
    admin.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "wan-exporter-config", "namespace": NS},
                 "data": {"config.yml": config}})
    for k, v in {"POD_NAMESPACE": NS, "POD_NAME": owner["metadata"]["name"], "POD_UID": owner["metadata"]["uid"],
                 "NODE_NAME": NODE, "POD_IP": "127.0.0.1"}.items():
        monkeypatch.setenv(k, v)

    def decide(pod: dict) -> str:
        job = pod["metadata"]["labels"]["job-name"]
        return {"run": "run", "preempt": "preempt", "deadline": "hang", "unsched": "unschedulable"}[job.split("-")[2]]

    cfg = parse_config(config)
    app = App(cfg)
    bench = next(s for s in app.subsystems if type(s).__name__ == "BenchmarkSubsystem")
    # No GPU here: the pod's command runs on the CPU (its Job still asks the scheduler for nvidia.com/gpu).
    with Kubelet(admin, NS, tmp_path / "pods", decide, {"WAN_BENCH_DEVICE": "cpu"}, exporter_env()) as kubelet:
        app.start(f"127.0.0.1:{port}")
        try:
            jobs_path = f"/apis/batch/v1/namespaces/{NS}/jobs"
            r = bench.run_one(cfg, cfg.model("run"), "tiny")
            # The result arrives while the pod's process is still exiting.
            [ran] = wait_for(lambda: list(kubelet.ran.values()), 30, what="the pod's command to exit")
            assert ran.returncode == 0, ran.stderr[-3000:]
            assert r is not None and r.success, (r, ran.stderr[-2000:])
            assert r.duration_seconds > 0 and r.frames == 9

            # The Job as the API server stored it.
            [pod] = [p for n, p in kubelet.seen.items() if n.startswith("wan-probe-run-")]
            spec = pod["spec"]
            [c] = spec["containers"]
            assert spec["nodeSelector"] == {"kubernetes.io/hostname": NODE}
            assert spec["priorityClassName"] == "wan-exporter-probe" and spec["priority"] == -100
            assert spec["preemptionPolicy"] == "Never"
            assert c["resources"]["requests"]["nvidia.com/gpu"] == "1" and c["resources"]["limits"]["nvidia.com/gpu"] == "1"
            assert c["resources"]["requests"]["memory"] == "2Gi"
            assert c["args"][:1] == ["bench"] and "--model" in c["args"] and "--json" in c["args"]
            owner_refs = pod["metadata"]["ownerReferences"]
            assert owner_refs[0]["kind"] == "Job"  # the pod is the Job's; the Job is the exporter pod's:
            job_name = owner_refs[0]["name"]
            # The exporter deletes a Job once it has read its result (its TTL is the backstop).
            wait_gone(admin, f"{jobs_path}/{job_name}", 60)

            # Owner, deadline and TTL on a Job still there: the deadline probe's.
            out = {}
            t = threading.Thread(target=lambda: out.setdefault("r", bench.run_one(cfg, cfg.model("deadline"), "short")))
            t.start()
            job = wait_for(lambda: next((j for j in admin.ok("GET", jobs_path)["items"]
                                         if j["metadata"]["name"].startswith("wan-probe-deadline-")), None), 30,
                           what="the deadline probe's Job")
            assert job["metadata"]["ownerReferences"] == [{
                "apiVersion": "v1", "kind": "Pod", "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"],
                "controller": True, "blockOwnerDeletion": False}]
            assert job["spec"]["activeDeadlineSeconds"] == 3 and job["spec"]["ttlSecondsAfterFinished"] == 30
            assert job["spec"]["backoffLimit"] == 0
            assert job["metadata"]["labels"]["app.kubernetes.io/component"] == "probe"
            t.join(120)
            assert out["r"] is not None and not out["r"].success and out["r"].reason == "timeout", out["r"]

            assert bench.run_one(cfg, cfg.model("preempt"), "tiny") is None
            assert bench.run_one(cfg, cfg.model("unsched"), "tiny") is None
            # The unschedulable probe's Job is deleted by the exporter, not left pending.
            wait_for(lambda: not [j for j in admin.ok("GET", jobs_path)["items"]
                                  if j["metadata"]["name"].startswith("wan-probe-unsched-")], 60,
                     what="the unschedulable Job deleted")

            s = parse_metrics(generate_latest(app.registry).decode())
            assert sample(s, "wan_benchmark_runs_total", model="run", profile="tiny") == 1
            assert sample(s, "wan_benchmark_last_run_success", model="run", profile="tiny") == 1
            assert sample(s, "wan_generation_duration_seconds_count", model="run", profile="tiny") == 1
            assert sample(s, "wan_benchmark_failures_total", model="deadline", profile="short", reason="timeout") == 1
            assert sample(s, "wan_benchmark_skipped_total", model="preempt", reason="preempted") == 1
            assert sample(s, "wan_benchmark_skipped_total", model="unsched", reason="unschedulable") == 1
            # Every probe's Job was deleted once read: none waits for its TTL.
            wait_for(lambda: not admin.ok("GET", jobs_path)["items"], 60, what="every probe Job deleted")
        finally:
            app.stop()

    # The exporter's service account may do what Job mode needs in its namespace, and nothing else.
    me = Api(apiserver.url, token_file.read_text())
    assert me.call("GET", f"/apis/batch/v1/namespaces/{NS}/jobs")[0] == 200
    assert me.call("GET", f"/api/v1/namespaces/{NS}/pods")[0] == 200
    denied = [
        ("GET", f"/api/v1/namespaces/{NS}/secrets", None),
        ("GET", "/api/v1/nodes", None),
        ("GET", "/apis/batch/v1/namespaces/default/jobs", None),
        ("POST", "/apis/batch/v1/namespaces/default/jobs", {"apiVersion": "batch/v1", "kind": "Job",
                                                            "metadata": {"name": "x"}}),
        ("POST", f"/api/v1/namespaces/{NS}/pods", {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}}),
        ("DELETE", f"/api/v1/namespaces/{NS}/pods/{owner['metadata']['name']}", None),
        ("PATCH", f"/apis/batch/v1/namespaces/{NS}/jobs/x", {}),
        ("GET", f"/api/v1/namespaces/{NS}/configmaps", None),
        ("POST", "/apis/scheduling.k8s.io/v1/priorityclasses", {}),
    ]
    for method, path, body in denied:
        status, out = me.call(method, path, body,
                              "application/merge-patch+json" if method == "PATCH" else "application/json")
        assert status == 403, (method, path, status, out)

    # The result endpoint takes only the Secret's token, and only for a probe being waited on.
    from wan_exporter.kube.jobs import ProbeInbox

    inbox = ProbeInbox(str(probe_token))
    inbox.expect("p1")

    def post(token: str, probe: str) -> str:
        import io
        import json

        body = json.dumps({"probe_id": probe, "result": {"success": True}}).encode()
        seen = {}
        inbox.wsgi(lambda e, s: [])({"PATH_INFO": "/-/probe-result", "REQUEST_METHOD": "POST",
                                     "HTTP_AUTHORIZATION": f"Bearer {token}", "CONTENT_LENGTH": str(len(body)),
                                     "wsgi.input": io.BytesIO(body)}, lambda st, h: seen.setdefault("s", st))
        return seen["s"]

    assert post("wrong", "p1").startswith("401")
    assert post(PROBE_TOKEN, "p2").startswith("404")
    assert post(PROBE_TOKEN, "p1").startswith("202")
    assert post(PROBE_TOKEN, "p1").startswith("404"), "one result per probe"


def test_job_manifest_is_a_valid_job_and_fate_maps_to_bounded_reasons():
    """Without the control plane: the Job validates against Kubernetes' schema, and pod fates map
    to declared skip reasons (the cluster test above drives the same code through a real API server)."""
    kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate not installed")
    from wan_exporter.contract.labels import SKIP_REASONS
    from wan_exporter.kube import jobs

    cfg = parse_config(f"models: [{{name: m, kind: {KIND}, path: /m, device: 'cuda:3', profiles: [p]}}]\n"
                       "profiles: {p: {width: 32, height: 32, frames: 9, steps: 2, timeout: 20m}}\n"
                       "kubernetes: {jobs: {enabled: true, config_map: cm, report_ca_secret: tls, "
                       "models_volume: {hostPath: {path: /var/lib/wan-models, type: Directory}}}}\n")
    me = jobs.Identity(NS, "wan-exporter-abc", "0b6c6f1e-0000-4000-8000-000000000001", NODE, "wan-exporter:0.1.0")
    job = jobs._strip_none(jobs.job_manifest(cfg, cfg.model("m"), "p", "f" * 32, me, "https://10.0.0.7:9834"))
    kv.validate(job, "1.34.0", strict=True)
    assert job["spec"]["activeDeadlineSeconds"] == 1200 and len(job["metadata"]["name"]) <= 63
    [c] = job["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["WAN_BENCH_DEVICE"] == "cuda:0", "the pod sees only the GPUs it was given"
    assert env["WAN_PROBE_REPORT_CA"].endswith("/ca.crt") and env["WAN_PROBE_REPORT_URL"] == "https://10.0.0.7:9834"
    assert c["args"][:3] == ["bench", "--config.file", "/etc/wan-exporter/config.yml"]

    def pod(*conds, reason=None):
        return {"status": {"conditions": [dict(c, status=c.get("status", "True")) for c in conds],
                           **({"reason": reason} if reason else {})}}

    cases = {"PreemptionByScheduler": "preempted", "EvictionByEvictionAPI": "evicted",
             "TerminationByKubelet": "evicted", "SomethingNew": "evicted"}
    for why, want in cases.items():
        assert jobs.pod_outcome([pod({"type": "DisruptionTarget", "reason": why})]) == want
    assert jobs.pod_outcome([pod(reason="Evicted")]) == "evicted"
    assert jobs.pod_outcome([pod({"type": "PodScheduled", "status": "False", "reason": "Unschedulable"})]) is None
    assert jobs.unschedulable([pod({"type": "PodScheduled", "status": "False", "reason": "Unschedulable"})])
    assert {"preempted", "evicted", "unschedulable"} <= set(SKIP_REASONS)


def test_job_results_are_handed_back_over_the_exporters_tls_with_the_token(tmp_path, monkeypatch):
    """The real exporter HTTP server with TLS and basic auth: a Job pod's result gets in with the
    probe token over TLS verified by the CA the Job mounts; basic auth still guards /metrics."""
    import ssl
    import urllib.error
    import urllib.request

    import bcrypt

    from support.web_certs import CA
    from wan_exporter.kube.jobs import post_result
    from wan_exporter.web.config import make_wrapper

    ca = CA(tmp_path / "pki")
    srv = ca.issue("server", "wan-exporter", server=True, ips=("127.0.0.1",))
    web = tmp_path / "web.yml"
    web.write_text(yaml.safe_dump({
        "tls_server_config": {"cert_file": str(srv.cert), "key_file": str(srv.key)},
        "basic_auth_users": {"prometheus": bcrypt.hashpw(b"scrape", bcrypt.gensalt(4)).decode()}}))
    token = tmp_path / "probe-token"
    token.write_text(PROBE_TOKEN)
    for k, v in {"POD_NAMESPACE": NS, "POD_NAME": "wan-exporter-x", "POD_UID": "u1", "NODE_NAME": NODE}.items():
        monkeypatch.setenv(k, v)
    port = free_port()
    cfg = parse_config(f"kubernetes: {{jobs: {{enabled: true, api_server: 'https://127.0.0.1:1', token_file: '{token}', "
                       f"api_token_file: '{token}', api_ca_file: '{ca.cert_path}'}}}}\n")
    app = App(cfg)
    bench = next(s for s in app.subsystems if type(s).__name__ == "BenchmarkSubsystem")
    app.start(f"127.0.0.1:{port}", wsgi_wrapper=make_wrapper(str(web)))
    try:
        url = f"https://127.0.0.1:{port}"
        assert bench.job_probes.report_url == url, "the default hand-back address follows the exporter's TLS"
        inbox = bench.job_probes.inbox
        inbox.expect("p1")
        assert post_result(url, str(token), "p1", {"success": True}, ca_file=str(ca.cert_path)) == 202
        assert inbox.take("p1") == {"success": True}
        inbox.expect("p2")
        bad = tmp_path / "bad-token"
        bad.write_text("not-the-token")
        assert post_result(url, str(bad), "p2", {"success": True}, ca_file=str(ca.cert_path)) == 401
        with pytest.raises(urllib.error.URLError):  # an exporter the Job cannot verify gets nothing
            post_result(url, str(token), "p2", {"success": True})
        ctx = ssl.create_default_context(cafile=str(ca.cert_path))
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(url + "/metrics", context=ctx, timeout=10)
        assert e.value.code == 401
    finally:
        app.stop()
