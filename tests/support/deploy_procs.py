"""Real Prometheus, Alertmanager and a webhook receiver on loopback, for the deployment tests.

The binaries are the Debian packages' (``prometheus``, ``prometheus-alertmanager``) unless a
``PeerSet`` (tests/support/peers.py) names others; tests that need them skip with the install
command when they are absent. The processes are
``support.procs.ManagedProcess``es; the receiver is ``support.alerting_procs.WebhookReceiver``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import urllib.parse
from pathlib import Path

from support.alerting_procs import WebhookReceiver  # noqa: F401 - re-exported for the deployment tests
from support.peers import DEBIAN, PeerSet
from support.procs import REPO, ManagedProcess, free_port, http_get, wait_for

PROMETHEUS = DEBIAN.prometheus
ALERTMANAGER = DEBIAN.alertmanager
PROMTOOL = shutil.which("promtool")
AMTOOL = shutil.which("amtool")



def build_tiny_models(dest: Path) -> Path:
    """Build the tiny Wan pipelines into ``dest`` once (a child process; reused when complete)."""
    from wan_exporter.tiny import TINY_KINDS, is_built

    if all(is_built(dest / k) for k in TINY_KINDS):
        return dest
    env = dict(os.environ, PYTHONPATH=str(REPO / "exporter") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    subprocess.run([sys.executable, "-m", "wan_exporter", "tiny-models", str(dest)], check=True, timeout=600,
                   env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return dest


# A binary started on loopback with its output in a log file: Process(name, argv, log_path, ready_url).
Process = ManagedProcess


def prometheus(config: Path, workdir: Path, port: int | None = None, peers: PeerSet = DEBIAN) -> Process:
    port = port or free_port()
    return Process("prometheus", [
        peers.need("prometheus").prometheus, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}", "--web.enable-lifecycle",
    ], workdir / "prometheus.log", port=port)


def alertmanager(config: Path, workdir: Path, name: str, cluster_port: int | None = None,
                 peers: list[str] = (), port: int | None = None, peer_timeout: str = "2s",
                 peer_set: PeerSet = DEBIAN) -> Process:
    """One Alertmanager; gossiping on ``cluster_port`` with ``peers`` when given, else with clustering off."""
    port = port or free_port()
    data = workdir / name
    data.mkdir(parents=True, exist_ok=True)
    argv = [peer_set.need("alertmanager").alertmanager, f"--config.file={config}", f"--storage.path={data}",
            f"--web.listen-address=127.0.0.1:{port}", f"--web.external-url=http://127.0.0.1:{port}"]
    if cluster_port is None:
        argv.append("--cluster.listen-address=")
    else:
        argv += [f"--cluster.listen-address=127.0.0.1:{cluster_port}", f"--cluster.peer-timeout={peer_timeout}",
                 "--cluster.reconnect-timeout=30s", "--cluster.gossip-interval=100ms",
                 "--cluster.pushpull-interval=1s"]
        argv += [f"--cluster.peer={p}" for p in peers]
    return Process(name, argv, workdir / f"{name}.log", port=port)


def api(base: str, path: str, **params: str) -> dict | list:
    url = base + path + ("?" + urllib.parse.urlencode(params) if params else "")
    status, body = http_get(url, 10)
    data = json.loads(body)
    if status != 200:
        raise AssertionError(f"GET {url}: {status} {data}")
    return data


def query(prom: str, expr: str) -> list[dict]:
    """Instant query; raises with Prometheus' error for an expression that does not parse."""
    status, body = http_get(f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr}), 10)
    data = json.loads(body)
    if status != 200 or data.get("status") != "success":
        raise AssertionError(f"query failed ({status}): {expr}\n{data.get('error')}")
    return data["data"]["result"]


def active_targets(prom: str) -> list[dict]:
    return api(prom, "/api/v1/targets", state="active")["data"]["activeTargets"]


@contextlib.contextmanager
def demo_stack(argv: list[str], ports: dict[str, int], tmp_path: Path, cwd: Path, env: dict, up_within: float):
    """``wan-exporter stack --demo`` as ``argv`` (with a data dir under ``tmp_path`` and ``ports``), once it
    says it is up: (process, the file of its output, Prometheus' URL). Killed on leaving if still running."""
    argv = [*argv, "--data-dir", str(tmp_path / "data")]
    for k, v in ports.items():
        argv += [k, str(v)]
    out_path = tmp_path / "stack.out"
    with open(out_path, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=str(cwd), env=env)
    try:
        def up_message():
            assert proc.poll() is None, f"stack exited with {proc.returncode}: {out_path.read_text()}"
            return "stack is up" in out_path.read_text()

        wait_for(up_message, up_within, interval=0.5, what="the stack to say it is up")
        yield proc, out_path, f"http://127.0.0.1:{ports['--prometheus-port']}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
