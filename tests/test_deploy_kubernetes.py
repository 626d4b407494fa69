"""deploy/kubernetes: the manifests, and the PrometheusRules and dashboard ConfigMaps generated from
alerting/ and grafana/ (regenerated here: a difference fails).

Core objects are validated against Kubernetes' own OpenAPI schemas with kubernetes-validate when
it is installed (pip install kubernetes-validate); the Prometheus Operator's CRDs (ServiceMonitor,
PrometheusRule) are checked structurally, and the rules through promtool.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from support.procs import REPO

K8S = REPO / "deploy" / "kubernetes"
GENERATED = K8S / "generated"
KUBERNETES_VERSION = "1.34.0"
API_VERSIONS = {
    "Namespace": "v1", "ServiceAccount": "v1", "Service": "v1", "ConfigMap": "v1", "DaemonSet": "apps/v1",
    "ServiceMonitor": "monitoring.coreos.com/v1", "PrometheusRule": "monitoring.coreos.com/v1",
}

spec = importlib.util.spec_from_file_location("k8s_generate", K8S / "generate.py")
generate = importlib.util.module_from_spec(spec)
sys.modules["k8s_generate"] = generate
spec.loader.exec_module(generate)


def kustomize_resources(directory) -> list:
    """Every object ``kubectl apply -k`` would apply, following kustomization resources."""
    kust = yaml.safe_load((directory / "kustomization.yaml").read_text())
    out = []
    for r in kust["resources"]:
        path = directory / r
        assert path.exists(), f"{directory / 'kustomization.yaml'} lists {r}, which does not exist"
        if path.is_dir():
            out += kustomize_resources(path)
        else:
            out += [(path, d) for d in yaml.safe_load_all(path.read_text()) if d]
    return out


@pytest.fixture(scope="module")
def objects() -> list:
    return kustomize_resources(K8S)


def one(objects, kind: str) -> dict:
    [obj] = [d for _, d in objects if d["kind"] == kind]
    return obj


# --------------------------------------------------------------------------- generated files


def test_generated_objects_match_alerting_and_grafana():
    problems = generate.stale(generate.render())
    assert not problems, "run python3 deploy/kubernetes/generate.py and commit:\n" + "\n".join(problems)


def test_generator_check_mode_reports_drift(tmp_path, monkeypatch):
    rendered = generate.render()
    generate.write(rendered, tmp_path)
    assert generate.stale(rendered, tmp_path) == []
    name = next(n for n in rendered if n.startswith("prometheusrule-"))
    (tmp_path / name).write_text(rendered[name].replace("severity: critical", "severity: page", 1))
    (tmp_path / "prometheusrule-gone.yaml").write_text("{}\n")
    problems = generate.stale(rendered, tmp_path)
    assert any(p.startswith(f"{name}: differs") for p in problems)
    assert any(p.startswith("prometheusrule-gone.yaml: stale") for p in problems)
    r = subprocess.run([sys.executable, str(K8S / "generate.py"), "--check"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_every_rule_file_is_a_prometheusrule_with_the_same_groups(objects):
    rules = {d["metadata"]["name"]: d for _, d in objects if d["kind"] == "PrometheusRule"}
    sources = sorted((REPO / "alerting" / "rules").glob("*.rules.yml"))
    assert sources and len(rules) == len(sources)
    for src in sources:
        obj = rules[generate.rule_stem(src)]
        assert obj["spec"]["groups"] == yaml.safe_load(src.read_text())["groups"], src.name


def test_every_dashboard_is_a_sidecar_configmap_with_the_same_json(objects):
    maps = {d["metadata"]["name"]: d for _, d in objects if d["kind"] == "ConfigMap"}
    sources = sorted((REPO / "grafana" / "dashboards").glob("*.json"))
    assert sources
    for src in sources:
        cm = maps[f"dashboard-{src.stem}"]
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert cm["data"] == {src.name: src.read_text()}, "the dashboard JSON, byte for byte"
        json.loads(cm["data"][src.name])
        size = len(src.read_bytes())
        assert size < generate.CONFIGMAP_MAX_BYTES


@pytest.mark.skipif(not shutil.which("promtool"), reason="needs promtool (Debian package prometheus)")
def test_prometheusrule_groups_pass_promtool(objects, tmp_path):
    for _, d in objects:
        if d["kind"] == "PrometheusRule":
            f = tmp_path / f"{d['metadata']['name']}.yml"
            f.write_text(yaml.safe_dump({"groups": d["spec"]["groups"]}))
            r = subprocess.run(["promtool", "check", "rules", str(f)], capture_output=True, text=True, timeout=60)
            assert r.returncode == 0, r.stdout + r.stderr


# --------------------------------------------------------------------------- the manifests


def test_every_manifest_parses_with_known_kinds(objects):
    kinds = [d["kind"] for _, d in objects]
    for kind in ("Namespace", "ServiceAccount", "DaemonSet", "Service", "ServiceMonitor", "PrometheusRule", "ConfigMap"):
        assert kind in kinds, f"no {kind}"
    names = set()
    for path, d in objects:
        assert d["apiVersion"] == API_VERSIONS[d["kind"]], (path, d["kind"], d["apiVersion"])
        md = d["metadata"]
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", md["name"]) and len(md["name"]) <= 63, md["name"]
        if d["kind"] != "Namespace":
            assert md["namespace"] == "wan-exporter", (path, md)
        assert (d["kind"], md["name"]) not in names, f"duplicate {d['kind']}/{md['name']}"
        names.add((d["kind"], md["name"]))


@pytest.mark.skipif(importlib.util.find_spec("kubernetes_validate") is None,
                    reason="kubernetes-validate not installed (pip install kubernetes-validate)")
def test_core_objects_validate_against_the_kubernetes_schemas(objects):
    import kubernetes_validate

    for path, d in objects:
        if d["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # CRDs: not in Kubernetes' schemas; checked below
        kubernetes_validate.validate(d, KUBERNETES_VERSION, strict=True)
    broken = json.loads(json.dumps(one(objects, "DaemonSet")))
    broken["spec"]["template"]["spec"]["containers"][0]["securityContxt"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_daemonset_runs_on_gpu_nodes_locked_down(objects):
    ds = one(objects, "DaemonSet")
    pod = ds["spec"]["template"]["spec"]
    assert ds["spec"]["selector"]["matchLabels"].items() <= ds["spec"]["template"]["metadata"]["labels"].items()
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    [c] = pod["containers"]
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1 and c["resources"]["requests"]["nvidia.com/gpu"] == 1
    assert {"cpu", "memory"} <= set(c["resources"]["limits"])
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert mounts["models"]["readOnly"] is True and mounts["models"]["mountPath"] == "/models"
    assert "hostPath" in volumes["models"] or "persistentVolumeClaim" in volumes["models"]
    # A read-only root: everything the image writes to is a volume (HOME/state, /tmp).
    assert {m["mountPath"] for m in c["volumeMounts"]} >= {"/var/lib/wan-exporter", "/tmp"}
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"metrics": 9834}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"]["port"] in ports, probe
    assert c["livenessProbe"]["httpGet"]["path"] == "/-/healthy"
    assert c["readinessProbe"]["httpGet"]["path"] == "/-/ready"


def test_service_and_servicemonitor_select_the_exporter(objects):
    ds, svc, sm = one(objects, "DaemonSet"), one(objects, "Service"), one(objects, "ServiceMonitor")
    pod_labels = ds["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    assert svc["spec"]["clusterIP"] == "None", "headless: every exporter pod is its own target"
    [port] = svc["spec"]["ports"]
    assert port["targetPort"] == "metrics"
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert sm["spec"]["namespaceSelector"]["matchNames"] == [svc["metadata"]["namespace"]]
    [ep] = sm["spec"]["endpoints"]
    assert ep["port"] == port["name"] and ep["path"] == "/metrics"
    # job= the value of the jobLabel on the Service: the selector every rule in alerting/ uses.
    job = svc["metadata"]["labels"][sm["spec"]["jobLabel"]]
    selector = yaml.safe_load((REPO / "alerting" / "thresholds.yml").read_text())["selector"]
    assert selector == f'job="{job}"'
    assert any(r["targetLabel"] == "instance" and r["sourceLabels"] == ["__meta_kubernetes_pod_node_name"]
               for r in ep["relabelings"]), "instance = node name, stable across pod restarts"
    for _, d in objects:
        if d["kind"] in ("ServiceMonitor", "PrometheusRule"):
            assert d["metadata"]["labels"].get("release"), f"{d['kind']} carries the Prometheus selector label"


def test_kustomization_image_names_the_daemonset_image(objects):
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    image = one(objects, "DaemonSet")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image.split(":")[0] in {i["name"] for i in kust["images"]}
    assert image.split(":")[1] == next(i["newTag"] for i in kust["images"]), "a pinned tag"
