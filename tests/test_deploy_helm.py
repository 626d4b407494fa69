"""deploy/helm/wan-exporter: the chart, linted and rendered by a real helm (built from helm.sh/helm/v4
by scripts/peers.sh), for the default values, a GPU-node values file and a TLS values file.

Every rendered core object is validated against Kubernetes' own OpenAPI schemas with
kubernetes-validate; the Prometheus Operator's CRDs (ServiceMonitor, PrometheusRule) are checked
structurally and their rules through promtool. The rules and dashboards come from alerting/ and
grafana/ (copied into the chart by deploy/helm/generate.py; a difference fails).
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys

import pytest
import yaml

from support.procs import REPO
from support.tools import require_peer, require_tool
from wan_exporter.config import parse_config

HELM = REPO / "deploy" / "helm"
CHART = HELM / "wan-exporter"
KUBERNETES_VERSION = "1.34.0"
VALUES = {"default": [], "gpu-node": ["-f", str(CHART / "ci" / "gpu-node-values.yaml")],
          "tls": ["-f", str(CHART / "ci" / "tls-values.yaml")]}

spec = importlib.util.spec_from_file_location("helm_generate", HELM / "generate.py")
generate = importlib.util.module_from_spec(spec)
sys.modules["helm_generate"] = generate
spec.loader.exec_module(generate)


def helm(*args: str) -> str:
    r = subprocess.run([require_peer("helm"), *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    """values-file name -> every object ``helm template`` renders (release wan, namespace monitoring)."""
    return {name: [d for d in yaml.safe_load_all(helm("template", "wan", str(CHART), "-n", "monitoring", *args)) if d]
            for name, args in VALUES.items()}


def one(objects: list[dict], kind: str) -> dict:
    [obj] = [d for d in objects if d["kind"] == kind]
    return obj


def exporter_container(objects: list[dict]) -> dict:
    [c] = one(objects, "DaemonSet")["spec"]["template"]["spec"]["containers"]
    return c


# --------------------------------------------------------------------------- one source for rules and dashboards


def test_chart_files_match_alerting_and_grafana(tmp_path):
    problems = generate.stale(generate.render())
    assert not problems, "run python3 deploy/helm/generate.py and commit:\n" + "\n".join(problems)
    rendered_files = generate.render()
    generate.write(rendered_files, tmp_path)
    name = next(n for n in rendered_files if n.startswith("rules/"))
    (tmp_path / name).write_bytes(rendered_files[name].replace(b"severity: critical", b"severity: page", 1))
    (tmp_path / "rules" / "gone.rules.yml").write_text("{}\n")
    problems = generate.stale(rendered_files, tmp_path)
    assert f"{name}: differs from its source" in problems and "rules/gone.rules.yml: stale (its source is gone)" in problems


def test_lint_and_every_object_validates(rendered):
    kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate not installed")
    for name, args in VALUES.items():
        out = helm("lint", "--strict", str(CHART), *args)
        assert "0 chart(s) failed" in out, out
    for name, objects in rendered.items():
        kinds = {d["kind"] for d in objects}
        assert {"DaemonSet", "Service", "ServiceAccount", "ConfigMap", "ServiceMonitor", "PrometheusRule"} <= kinds, name
        seen = set()
        for d in objects:
            md = d["metadata"]
            assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", md["name"]) and len(md["name"]) <= 63, md["name"]
            assert (d["kind"], md["name"]) not in seen, f"{name}: duplicate {d['kind']}/{md['name']}"
            seen.add((d["kind"], md["name"]))
            if d["kind"] != "PriorityClass":
                assert md["namespace"] == "monitoring", (name, d["kind"])
            if d["apiVersion"].startswith("monitoring.coreos.com/"):
                continue  # CRDs: not in Kubernetes' schemas; checked below
            kv.validate(d, KUBERNETES_VERSION, strict=True)
    broken = json.loads(json.dumps(one(rendered["default"], "DaemonSet")))
    broken["spec"]["template"]["spec"]["containers"][0]["securityContxt"] = {}
    with pytest.raises(kv.ValidationError):
        kv.validate(broken, KUBERNETES_VERSION, strict=True)
    # Job mode without its token Secret is refused at render time, with the reason.
    r = subprocess.run([require_peer("helm"), "template", "wan", str(CHART), "--set", "jobMode.enabled=true"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "jobMode.tokenSecret" in r.stderr


def test_rules_and_dashboards_come_from_the_repository(rendered, tmp_path):
    objects = rendered["default"]
    rules = {d["metadata"]["name"]: d for d in objects if d["kind"] == "PrometheusRule"}
    sources = sorted((REPO / "alerting" / "rules").glob("*.rules.yml"))
    assert sources and len(rules) == len(sources)
    for src in sources:
        obj = rules["wan-wan-exporter-" + src.name.removesuffix(".rules.yml")]
        assert obj["spec"]["groups"] == yaml.safe_load(src.read_text())["groups"], src.name
        f = tmp_path / src.name
        f.write_text(yaml.safe_dump({"groups": obj["spec"]["groups"]}))
        r = subprocess.run([require_tool("promtool"), "check", "rules", str(f)], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
    maps = {d["metadata"]["name"]: d for d in objects if d["kind"] == "ConfigMap"}
    dashboards = sorted((REPO / "grafana" / "dashboards").glob("*.json"))
    assert dashboards
    for src in dashboards:
        cm = maps[f"wan-wan-exporter-dashboard-{src.stem}"]
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert json.loads(cm["data"][src.name]) == json.loads(src.read_text()), src.name
    # kube-prometheus-stack's selector label, when the values give it.
    for d in rendered["gpu-node"]:
        if d["kind"] in ("ServiceMonitor", "PrometheusRule"):
            assert d["metadata"]["labels"]["release"] == "kube-prometheus-stack"


# --------------------------------------------------------------------------- the DaemonSet


def test_daemonset_watches_every_gpu_and_reserves_none(rendered):
    for name, objects in rendered.items():
        ds = one(objects, "DaemonSet")
        pod = ds["spec"]["template"]["spec"]
        c = exporter_container(objects)
        for k in ("requests", "limits"):
            assert not any("gpu" in r for r in (c.get("resources") or {}).get(k, {})), (name, c["resources"])
        env = {e["name"]: e for e in c["env"]}
        assert env["NVIDIA_VISIBLE_DEVICES"]["value"] == "all" and pod["runtimeClassName"] == "nvidia"
        for var, path in (("NODE_NAME", "spec.nodeName"), ("POD_UID", "metadata.uid"), ("POD_IP", "status.podIP")):
            assert env[var]["valueFrom"]["fieldRef"]["fieldPath"] == path
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        mounts = {m["name"]: m for m in c["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert mounts["models"]["readOnly"] is True
        assert mounts["pod-resources"]["mountPath"] == "/var/lib/kubelet/pod-resources"
        assert volumes["pod-resources"]["hostPath"]["path"] == "/var/lib/kubelet/pod-resources"
        assert {m["mountPath"] for m in c["volumeMounts"]} >= {"/var/lib/wan-exporter", "/tmp"}
        # The rendered config is one the exporter accepts.
        cm = next(d for d in objects if d["kind"] == "ConfigMap" and "config.yml" in d.get("data", {}))
        cfg = parse_config(cm["data"]["config.yml"], source=f"{name}:config.yml")
        assert cfg.kubernetes.pod_resources.enabled
    default, gpu_node = rendered["default"], rendered["gpu-node"]
    assert one(default, "DaemonSet")["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    assert "hostPath" in next(v for v in one(default, "DaemonSet")["spec"]["template"]["spec"]["volumes"]
                              if v["name"] == "models")
    assert not [d for d in default if d["kind"] in ("Role", "RoleBinding", "PriorityClass")]
    gpod = one(gpu_node, "DaemonSet")["spec"]["template"]["spec"]
    assert next(v for v in gpod["volumes"] if v["name"] == "models")["persistentVolumeClaim"] == {
        "claimName": "wan-models", "readOnly": True}
    assert gpod["affinity"]["nodeAffinity"] and len(gpod["tolerations"]) == 2


def test_job_mode_rbac_is_a_role_over_jobs_and_pods_in_its_namespace(rendered):
    objects = rendered["gpu-node"]
    role, binding, pc = one(objects, "Role"), one(objects, "RoleBinding"), one(objects, "PriorityClass")
    assert role["rules"] == [{"apiGroups": ["batch"], "resources": ["jobs"],
                              "verbs": ["create", "get", "list", "watch", "delete"]},
                             {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
    assert not [d for d in objects if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    sa = one(objects, "ServiceAccount")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": "monitoring"}]
    assert sa["automountServiceAccountToken"] is True
    assert pc["value"] < 0 and pc["preemptionPolicy"] == "Never" and pc["globalDefault"] is False
    cm = next(d for d in objects if d["kind"] == "ConfigMap" and "config.yml" in d.get("data", {}))
    kj = parse_config(cm["data"]["config.yml"]).kubernetes.jobs
    assert kj.enabled and kj.priority_class == pc["metadata"]["name"] and kj.token_secret == "wan-exporter-probe"
    assert kj.config_map == cm["metadata"]["name"] and kj.models_volume["persistentVolumeClaim"]["claimName"] == "wan-models"
    assert kj.resources["requests"]["memory"] == "64Gi"
    c = exporter_container(objects)
    assert "/var/run/secrets/wan-exporter/probe" in {m["mountPath"] for m in c["volumeMounts"]}


def test_tls_and_basic_auth_come_from_existing_secrets(rendered):
    objects = rendered["tls"]
    c = exporter_container(objects)
    pod = one(objects, "DaemonSet")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == "wan-exporter-tls"
    assert volumes["web"]["secret"]["secretName"] == "wan-exporter-web-config"
    assert "--web.config.file=/etc/wan-exporter/web/web-config.yml" in c["args"]
    assert c["livenessProbe"]["httpGet"]["scheme"] == "HTTPS"
    assert "readinessProbe" not in c, "basic auth would refuse the kubelet's unauthenticated probe"
    assert not [d for d in objects if d["kind"] == "Secret"], "no credential is rendered by the chart"
    [ep] = one(objects, "ServiceMonitor")["spec"]["endpoints"]
    assert ep["scheme"] == "https" and ep["basicAuth"]["username"]["name"] == "wan-exporter-scrape"
    # TLS alone: the chart writes the web config that points at the mounted certificate.
    only_tls = [d for d in yaml.safe_load_all(helm("template", "wan", str(CHART), "-n", "monitoring", "--set",
                                                   "web.tls.existingSecret=my-tls")) if d]
    cm = next(d for d in only_tls if d["kind"] == "ConfigMap" and "web-config.yml" in d.get("data", {}))
    assert yaml.safe_load(cm["data"]["web-config.yml"])["tls_server_config"]["cert_file"] == "/etc/wan-exporter/tls/tls.crt"


def test_service_and_servicemonitor_select_the_exporter(rendered):
    objects = rendered["default"]
    ds, svc, sm = one(objects, "DaemonSet"), one(objects, "Service"), one(objects, "ServiceMonitor")
    pod_labels = ds["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    assert ds["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert svc["spec"]["clusterIP"] == "None", "headless: every exporter pod is its own target"
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    [ep] = sm["spec"]["endpoints"]
    assert ep["port"] == svc["spec"]["ports"][0]["name"] and ep["path"] == "/metrics"
    job = svc["metadata"]["labels"][sm["spec"]["jobLabel"]]
    selector = yaml.safe_load((REPO / "alerting" / "thresholds.yml").read_text())["selector"]
    assert selector == f'job="{job}"', "the selector every rule in alerting/ uses"
    assert any(r["targetLabel"] == "instance" and r["sourceLabels"] == ["__meta_kubernetes_pod_node_name"]
               for r in ep["relabelings"])


def test_readme_values_table_names_every_value():
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def leaves(d, prefix=""):
        for k, v in d.items():
            key = f"{prefix}{k}"
            if isinstance(v, dict) and v:
                yield from leaves(v, key + ".")
            else:
                yield key

    readme = (CHART / "README.md").read_text()
    table = set(re.findall(r"^\| `([^`]+)` \|", readme, re.M))
    missing = [k for k in leaves(values) if k not in table and not any(k.startswith(t + ".") for t in table)]
    assert not missing, f"deploy/helm/wan-exporter/README.md values table lacks {missing}"
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert re.fullmatch(r"\d+\.\d+\.\d+", chart["version"]) and chart["apiVersion"] == "v2"
    assert "release:" in readme, "the README says kube-prometheus-stack selects by its release label"
