"""The native stack (python3 -m wan_exporter.stack, scripts/stack.sh): the exporter, Prometheus and
Alertmanager on loopback with the configuration docker-compose uses, stopped cleanly by Ctrl-C."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from support.deploy_procs import PROMTOOL, active_targets, api, demo_stack
from support.peers import PEER_IDS, PEER_SETS
from support.procs import REPO, free_port, wait_for
from wan_exporter import stack

ALERTING = REPO / "alerting"


def stack_env(path: str | None = None, **extra: str) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "exporter") + os.pathsep + str(REPO / "tests")
    env["PYTHONUNBUFFERED"] = "1"
    if path is not None:
        env["PATH"] = path
    env.update(extra)
    return env


def bin_dir_with(tmp_path: Path, **links: str) -> str:
    """A PATH of one directory holding only python3 and the given binaries (name -> target)."""
    d = tmp_path / "bin"
    d.mkdir()
    (d / "python3").symlink_to(sys.executable)
    for name, target in links.items():
        (d / name).symlink_to(target)
    return str(d)


# --------------------------------------------------------------------------- missing binaries


def test_missing_binaries_are_named_with_the_install_command(tmp_path):
    r = subprocess.run([sys.executable, "-m", "wan_exporter.stack", "--demo", "--data-dir", str(tmp_path / "d")],
                       env=stack_env(path=bin_dir_with(tmp_path)), capture_output=True, text=True, timeout=60)
    assert r.returncode == stack.EXIT_MISSING, r.stdout + r.stderr
    out = r.stdout
    assert "missing prometheus" in out and "prometheus-alertmanager" in out
    assert "apt-get install --no-install-recommends prometheus prometheus-alertmanager" in out
    assert "https://prometheus.io/download/" in out
    assert not (tmp_path / "d").exists(), "nothing is started or written when a binary is missing"


@pytest.mark.skipif(not shutil.which("prometheus"), reason="needs the prometheus binary")
def test_only_the_missing_binary_is_named(tmp_path):
    path = bin_dir_with(tmp_path, prometheus=shutil.which("prometheus"))
    # Through the script, with nothing on PATH but python3 and prometheus.
    r = subprocess.run([shutil.which("bash"), str(REPO / "scripts" / "stack.sh"), "--data-dir", str(tmp_path / "d")],
                       env=stack_env(path=path), capture_output=True, text=True, timeout=60)
    assert r.returncode == stack.EXIT_MISSING, r.stdout + r.stderr
    assert "missing prometheus-alertmanager" in r.stdout
    assert "missing prometheus (" not in r.stdout


# --------------------------------------------------------------------------- config rewriting


def test_compose_addresses_become_the_chosen_loopback_ports(tmp_path):
    ports = stack.Ports("127.0.0.1", 19834, 19090, 19093)
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "wan-exporter.yml").write_text("- targets: ['wan-exporter:9834']\n  labels: {site: a}\n")
    (tmp_path / "t" / "alertmanager.yml").write_text("- targets: ['alertmanager:9093']\n")
    cfg = {
        "rule_files": ["rules/*.rules.yml", "/abs/x.yml"],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": ["alertmanager:9093"]}]},
                                       {"file_sd_configs": [{"files": ["t/alertmanager*.yml"]}]}]},
        "scrape_configs": [
            {"job_name": "wan-exporter", "static_configs": [{"targets": ["wan-exporter:9834", "127.0.0.1:9834"]}]},
            {"job_name": "prometheus", "static_configs": [{"targets": ["localhost:9090"]}]},
            {"job_name": "file", "file_sd_configs": [{"files": ["t/wan-exporter*.yml"]}]},
            {"job_name": "node", "static_configs": [{"targets": ["gpu-host-7:9100"]}]},
        ],
    }
    out, warnings = stack.rewrite_prometheus_config(cfg, tmp_path, ports, sd_root=tmp_path / "sd")
    assert out["rule_files"] == [str(tmp_path / "rules/*.rules.yml"), "/abs/x.yml"]
    assert out["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["127.0.0.1:19093"]
    jobs = {j["job_name"]: j for j in out["scrape_configs"]}
    assert jobs["wan-exporter"]["static_configs"][0]["targets"] == ["127.0.0.1:19834"]
    assert jobs["prometheus"]["static_configs"][0]["targets"] == ["127.0.0.1:19090"]
    assert jobs["node"]["static_configs"][0]["targets"] == ["gpu-host-7:9100"]
    assert any("gpu-host-7:9100" in w for w in warnings)
    [files] = [sd["files"] for sd in jobs["file"]["file_sd_configs"]]
    [copied] = Path(files[0]).parent.glob("*.yml")
    assert yaml.safe_load(copied.read_text()) == [{"targets": ["127.0.0.1:19834"], "labels": {"site": "a"}}]
    am_sd = out["alerting"]["alertmanagers"][1]["file_sd_configs"][0]["files"][0]
    [am_copy] = Path(am_sd).parent.glob("*.yml")
    assert yaml.safe_load(am_copy.read_text()) == [{"targets": ["127.0.0.1:19093"]}]
    # The originals are untouched.
    assert "wan-exporter:9834" in (tmp_path / "t" / "wan-exporter.yml").read_text()
    assert cfg["scrape_configs"][0]["static_configs"][0]["targets"][0] == "wan-exporter:9834"


@pytest.mark.skipif(not PROMTOOL, reason="needs promtool (Debian package prometheus)")
def test_rewritten_repo_configs_are_valid(tmp_path):
    prom, am, warnings = stack.write_configs(ALERTING, tmp_path, stack.Ports("127.0.0.1", 1, 2, 3))
    assert not warnings
    r = subprocess.run([PROMTOOL, "check", "config", str(prom)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    # Every rule file of the repo is loaded (promtool names each one it checked).
    for f in sorted((ALERTING / "rules").glob("*.rules.yml")):
        assert str(f) in r.stdout, f"{f} not loaded by the stack's Prometheus config"
    amtool = shutil.which("amtool")
    if amtool:
        r = subprocess.run([amtool, "check-config", str(am)], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr


# --------------------------------------------------------------------------- the whole stack


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("peers", PEER_SETS, ids=PEER_IDS)
def test_demo_stack_comes_up_and_ctrl_c_stops_every_child(tmp_path, tiny_dir, peers):
    """The demo stack with each peer set's Prometheus and Alertmanager (--prometheus.binary, --alertmanager.binary)."""
    peers.need("prometheus", "alertmanager")
    ports = {"--exporter-port": free_port(), "--prometheus-port": free_port(), "--alertmanager-port": free_port(),
             "--serve-port": free_port()}
    argv = [sys.executable, "-m", "wan_exporter.stack", "--demo",
            f"--prometheus.binary={peers.prometheus}", f"--alertmanager.binary={peers.alertmanager}"]
    env = stack_env(WAN_EXPORTER_CACHE=str(tiny_dir), XDG_STATE_HOME=str(tmp_path / "state"),
                    HF_HUB_CACHE=str(tmp_path / "hf"), WAN_EXPORTER_NVML_MODULE="no_such_nvml_module")
    with demo_stack(argv, ports, tmp_path, tmp_path, env, up_within=150) as (proc, out_path, prom):
        text = out_path.read_text()
        for port in ports.values():
            assert f"http://127.0.0.1:{port}" in text, text

        def exporter_up():
            ts = [t for t in active_targets(prom) if t["labels"]["job"] == "wan-exporter"]
            return ts if ts and ts[0]["health"] == "up" else None

        [target] = wait_for(exporter_up, 60, interval=0.5, what="Prometheus to report the exporter target up")
        assert target["labels"]["instance"] == f"127.0.0.1:{ports['--exporter-port']}"
        # The demo's traffic: the example Wan service under its load generator, scraped as wan-serve.
        served = f'wan_requests_total{{job="wan-serve", instance="127.0.0.1:{ports["--serve-port"]}", outcome="ok"}} > 0'
        wait_for(lambda: api(prom, "/api/v1/query", query=served)["data"]["result"], 90,
                 interval=0.5, what="served requests of the demo's Wan service in Prometheus")
        # Same rules as docker-compose and the rule tests; alerts go to the stack's Alertmanager.
        groups = {g["name"] for g in api(prom, "/api/v1/rules")["data"]["groups"]}
        expected = {g["name"] for f in sorted((ALERTING / "rules").glob("*.rules.yml"))
                    for g in yaml.safe_load(f.read_text())["groups"]}
        assert groups == expected
        ams = wait_for(lambda: api(prom, "/api/v1/alertmanagers")["data"]["activeAlertmanagers"], 30,
                       what="the Alertmanager to be discovered")
        assert ams[0]["url"].startswith(f"http://127.0.0.1:{ports['--alertmanager-port']}/")

        children = psutil.Process(proc.pid).children(recursive=True)
        names = " ".join(" ".join(c.cmdline()) for c in children)
        assert "prometheus" in names and "alertmanager" in names and "wan_exporter" in names
        assert "examples/serve/server.py" in names
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0, out_path.read_text()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children):
        time.sleep(0.2)
    alive = [c.pid for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"children left running after Ctrl-C: {alive}"
    text = out_path.read_text()
    assert "stopped prometheus" in text and "stopped alertmanager" in text and "stopped wan-exporter" in text
    assert text.rstrip().endswith("stack stopped.")
