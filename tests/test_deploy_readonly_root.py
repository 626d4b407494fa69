"""The container's promise, checked without Docker: the exporter runs with a read-only root filesystem.

The test runs the demo in a user + mount namespace (``unshare -rm``) whose root is remounted
read-only, laid out like the image: HOME, XDG_STATE_HOME, XDG_CACHE_HOME and WAN_EXPORTER_CACHE
under one writable directory (the image's /var/lib/wan-exporter volume) and TMPDIR as the /tmp
tmpfs. Benchmarks and health checks must succeed and nothing may hit "Read-only file system".
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys

import pytest

from support.deploy_procs import build_tiny_models
from support.procs import REPO, free_port, http_get, parse_metrics, sample, samples_named, wait_for


def _unshare_works() -> bool:
    if not shutil.which("unshare"):
        return False
    r = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -o remount,bind,ro / && ! touch /.wan-ro-probe"],
                       capture_output=True, timeout=10)
    return r.returncode == 0


pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240),
              pytest.mark.skipif(not _unshare_works(), reason="needs unprivileged user and mount namespaces")]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_models(tmp_path_factory.getbasetemp() / "tiny-models-shared")


def test_demo_runs_on_a_read_only_root_writing_only_to_its_volume(tmp_path, tiny_dir):
    volume = tmp_path / "var-lib-wan-exporter"  # the image's VOLUME
    for d in ("state", "cache", "tmp"):
        (volume / d).mkdir(parents=True)
    shutil.copytree(tiny_dir, volume / "tiny-models")  # the demo's cache lives in the volume
    port = free_port()
    log = tmp_path / "exporter.log"
    env = {
        "PATH": "/usr/bin:/bin", "PYTHONPATH": f"{REPO / 'exporter'}:{REPO / 'tests'}",
        "HOME": str(volume), "XDG_STATE_HOME": str(volume / "state"), "XDG_CACHE_HOME": str(volume / "cache"),
        "WAN_EXPORTER_CACHE": str(volume / "tiny-models"), "TMPDIR": str(volume / "tmp"),
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
        "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1", "WAN_EXPORTER_NVML_MODULE": "no_such_nvml_module",
    }
    script = (f'mount --bind "{volume}" "{volume}" && mount -o remount,bind,ro / && '
              f'exec "{sys.executable}" -m wan_exporter --demo --web.listen-address=127.0.0.1:{port}')
    with open(log, "wb") as out:
        proc = subprocess.Popen(["unshare", "-rm", "sh", "-c", script], env=env, cwd="/", stdout=out,
                                stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        def alive():
            assert proc.poll() is None, f"exporter exited with {proc.returncode}: {log.read_text()[-3000:]}"
            return True

        wait_for(lambda: alive() and http_get(url + "/-/healthy", 1)[0] == 200, 90, what="/-/healthy")

        def benchmarked():
            alive()
            s = parse_metrics(http_get(url + "/metrics", 5)[1].decode())
            ok = [v for v in samples_named(s, "wan_benchmark_last_run_success").values()]
            return s if ok and any(v == 1 for v in ok) else None

        s = wait_for(benchmarked, 150, interval=1, what="a successful benchmark")
        assert sample(s, "wan_health_check_success", model="tiny-t2v-a14b", check="layout") == 1
        assert sample(s, "wan_exporter_config_last_reload_successful") == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    text = log.read_text(errors="replace")
    assert "Read-only file system" not in text and "EROFS" not in text, text[-3000:]
    # It did write, and only where the image lets it.
    assert any((volume / "state").rglob("*")) or any((volume / "tiny-models").rglob("*"))
