"""A plain (non-editable) install is whole: the wheel carries the rules, the Alertmanager config, its
templates, the runbooks and the dashboards, and `wan-exporter stack --demo` runs from any directory.

The wheel is built offline from a copy of the checkout (setuptools from this machine, no build
isolation), installed into a fresh virtual environment that sees the system's torch and diffusers.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import psutil
import pytest

from support.deploy_procs import active_targets, api, demo_stack
from support.peers import PEER_IDS, PEER_SETS
from support.procs import REPO, free_port, wait_for
from wan_exporter import shipped

# What a build reads from the checkout: the package, its metadata, and the shipped files.
BUILD_INPUTS = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "exporter", "alerting", "grafana")


def _clean_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("src")
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "dist")
    for name in BUILD_INPUTS:
        p = REPO / name
        if p.is_dir():
            shutil.copytree(p, src / name, ignore=ignore)
        else:
            shutil.copy2(p, src / name)
    out = tmp_path_factory.mktemp("wheels")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                        "-q", str(src), "-w", str(out)], capture_output=True, text=True, timeout=300, env=_clean_env())
    assert r.returncode == 0, r.stdout + r.stderr
    [whl] = out.glob("wan_exporter-*.whl")
    return whl


def see_outer_packages(d: Path) -> None:
    """Run inside a virtualenv (the way on PEP 668 systems), the suite's packages are that venv's, which
    ``--system-site-packages`` does not show (it shows the base interpreter's). Its site directories
    are added as plain path lines, after the new venv's own: the wheel installed there still wins,
    and the outer venv's .pth files (an editable install's finder) are not run."""
    import sysconfig

    if sys.prefix == sys.base_prefix:
        return  # system-wide: --system-site-packages already shows them
    outer = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    inner = subprocess.run([str(d / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                           capture_output=True, text=True, check=True, timeout=60, env=_clean_env()).stdout.strip()
    (Path(inner) / "outer-venv.pth").write_text("".join(f"{p}\n" for p in outer))


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(d)], check=True, timeout=120)
    see_outer_packages(d)
    r = subprocess.run([str(d / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                        str(wheel)], capture_output=True, text=True, timeout=300, env=_clean_env())
    assert r.returncode == 0, r.stdout + r.stderr
    return d


def test_the_wheel_carries_every_shipped_file_byte_for_byte(wheel):
    expected = shipped.files(REPO)
    names = {part for p in expected for part in p.parts}
    assert {"rules", "templates", "dashboards", "provisioning"} <= names
    assert any(p.name == "runbooks.md" for p in expected) and any(p.name == "alertmanager.yml" for p in expected)
    with zipfile.ZipFile(wheel) as z:
        for rel in expected:
            assert z.read(f"wan_exporter/assets/{rel.as_posix()}") == (REPO / rel).read_bytes(), rel


def test_an_installed_package_finds_its_files_from_any_directory(venv, tmp_path):
    run = lambda *a: subprocess.run([str(venv / "bin" / "wan-exporter"), *a], capture_output=True, text=True,  # noqa: E731
                                    cwd=str(tmp_path), env=_clean_env(), timeout=120)
    r = run("assets")
    assert r.returncode == 0, r.stderr
    site = Path(r.stdout.strip())
    assert site.is_relative_to(venv) and site.name == "assets", site
    r = run("assets", str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr
    assert sorted(shipped.files(tmp_path / "out")) == sorted(shipped.files(REPO))
    r = run("stack", "--help")
    assert r.returncode == 0 and "--demo" in r.stdout, r.stdout + r.stderr


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("peers", PEER_SETS, ids=PEER_IDS)
def test_wheel_install_runs_the_demo_stack_from_another_directory(venv, tiny_dir, tmp_path, peers):
    """The installed wheel's stack, with each peer set's Prometheus and Alertmanager."""
    peers.need("prometheus", "alertmanager")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    ports = {"--exporter-port": free_port(), "--prometheus-port": free_port(), "--alertmanager-port": free_port()}
    env = _clean_env(WAN_EXPORTER_CACHE=str(tiny_dir), XDG_STATE_HOME=str(tmp_path / "state"),
                     HF_HUB_CACHE=str(tmp_path / "hf"), WAN_EXPORTER_NVML_MODULE="no_such_nvml_module",
                     PYTHONUNBUFFERED="1")
    argv = [str(venv / "bin" / "wan-exporter"), "stack", "--demo",
            f"--prometheus.binary={peers.prometheus}", f"--alertmanager.binary={peers.alertmanager}"]
    with demo_stack(argv, ports, tmp_path, elsewhere, env, up_within=200) as (proc, out_path, prom):
        # The configs came from the installed package, not from a checkout.
        generated = (tmp_path / "data" / "config" / "prometheus.yml").read_text()
        assert str(venv) in generated and str(REPO) not in generated, generated
        assert "wan_exporter/assets/grafana/dashboards" in out_path.read_text()

        def scraped():
            r = api(prom, "/api/v1/query", query='wan_exporter_build_info{job="wan-exporter"}')["data"]["result"]
            return r or None

        wait_for(scraped, 90, interval=0.5, what="Prometheus to have scraped the exporter")
        [target] = [t for t in active_targets(prom) if t["labels"]["job"] == "wan-exporter"]
        assert target["health"] == "up" and target["labels"]["instance"] == f"127.0.0.1:{ports['--exporter-port']}"
        groups = api(prom, "/api/v1/rules")["data"]["groups"]
        assert groups and all(g["file"].startswith(str(venv)) for g in groups), [g["file"] for g in groups]
        children = psutil.Process(proc.pid).children(recursive=True)
        exporter = [c for c in children if "wan_exporter" in " ".join(c.cmdline())]
        assert exporter and exporter[0].cmdline()[0].startswith(str(venv)), exporter[0].cmdline()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0, out_path.read_text()
    assert out_path.read_text().rstrip().endswith("stack stopped.")
