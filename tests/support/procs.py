"""Start real processes on loopback for the tests: the exporter, Prometheus, Alertmanager."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 5.0, headers: dict | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_for(pred: Callable[[], object], timeout: float, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            v = pred()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last_exc = e
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last_exc})" if last_exc else ""))


def parse_metrics(text: str) -> dict[tuple[str, tuple], float]:
    """Samples keyed by (name, sorted label items), via prometheus_client's own parser."""
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def sample(samples: dict, name: str, **labels: str) -> float | None:
    key = (name, tuple(sorted(labels.items())))
    return samples.get(key)


def samples_named(samples: dict, name: str) -> dict[tuple, float]:
    return {k[1]: v for k, v in samples.items() if k[0] == name}


def exporter_env(extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "exporter") + os.pathsep + str(REPO / "tests") + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


class ExporterProcess:
    """The real ``wan-exporter`` process on a free loopback port."""

    def __init__(self, args: list[str], env: dict | None = None, log_path: Path | None = None) -> None:
        self.port = free_port()
        self.args = [sys.executable, "-m", "wan_exporter", f"--web.listen-address=127.0.0.1:{self.port}", *args]
        self.env = exporter_env(env)
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self._log = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, ready_timeout: float = 60.0) -> "ExporterProcess":
        self._log = open(self.log_path, "wb") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(self.args, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
                                     cwd=str(REPO))
        wait_for(lambda: self.alive() and http_get(self.url + "/-/healthy", 1)[0] == 200, ready_timeout,
                 what="exporter to serve /-/healthy")
        return self

    def alive(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            raise AssertionError(f"exporter exited with {self.proc.returncode if self.proc else None}; log: {self.log_tail()}")
        return True

    def log_tail(self, n: int = 4000) -> str:
        if self.log_path and Path(self.log_path).exists():
            return Path(self.log_path).read_text(errors="replace")[-n:]
        return ""

    def metrics_text(self) -> str:
        status, body = http_get(self.url + "/metrics")
        assert status == 200, status
        return body.decode()

    def metrics(self) -> dict:
        return parse_metrics(self.metrics_text())

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self._log not in (None, subprocess.DEVNULL):
            self._log.close()

    def __enter__(self) -> "ExporterProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def write_nvml_state(path: Path, **state) -> Path:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    os.replace(tmp, path)
    return path
