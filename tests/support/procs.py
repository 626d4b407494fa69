"""Start real processes on loopback for the tests: the exporter, Prometheus, Alertmanager.

``ManagedProcess`` is the one base for every child process the test support modules start."""

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
    """Poll ``pred`` until it returns something truthy (exceptions count as "not yet"); return that value.

    ``pred`` is tried at least once, and once more at the deadline; on timeout, AssertionError names ``what``.
    """
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while True:
        try:
            v = pred()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last_exc = e
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}"
                                 + (f" (last error: {last_exc})" if last_exc else ""))
        time.sleep(interval)


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


class ManagedProcess:
    """A child process with its output in a log file (or discarded): started and polled until ready,
    stopped with SIGTERM, then SIGKILL after 15 s. Usable as a context manager.

    The command line is ``command()`` (``argv`` unless overridden), read when the process starts. It
    is ready once ``ready()`` says so: by default, once ``ready_url`` answers GET with 200, where
    ``ready_url`` is the one given or ``url + ready_path`` for a server on ``port``.
    """

    name = "process"
    scheme = "http"
    ready_path = "/-/ready"
    ready_interval = 0.2

    def __init__(self, name: str | None = None, argv: list[str] = (), log_path: Path | None = None,
                 ready_url: str | None = None, *, env: dict | None = None, cwd: Path | None = None,
                 port: int | None = None) -> None:
        self.name = name or type(self).name
        self.argv = list(argv)
        self.log_path = Path(log_path) if log_path else None
        self.env = env
        self.cwd = cwd
        self.port = port
        self._ready_url = ready_url
        self.proc: subprocess.Popen | None = None
        self._log = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def ready_url(self) -> str:
        return self._ready_url or self.url + self.ready_path

    def command(self) -> list[str]:
        return self.argv

    def ready(self) -> bool:
        return http_get(self.ready_url, 1)[0] == 200

    def start(self, timeout: float = 30.0):
        """Start the process and wait up to ``timeout`` seconds for it to be ready; on failure, stop it and raise."""
        argv = self.command()
        self._log = open(self.log_path, "wb") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(argv, env=self.env, cwd=str(self.cwd) if self.cwd else None,
                                     stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT)
        try:
            # An exited process ends the wait at once.
            wait_for(lambda: self.proc.poll() is not None or self.ready(), timeout, self.ready_interval,
                     what=f"{self.name} to be ready")
        except AssertionError as e:
            self.stop()
            raise AssertionError(f"{e}; log:\n{self.log_tail()}") from None
        if self.proc.poll() is not None:
            self.stop()  # closes the log
            self.alive()  # raises, with the exit status and the log's tail
        return self

    def alive(self) -> bool:
        """True while the process runs; AssertionError with the log's tail once it has exited."""
        if self.proc is None or self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited with {self.proc.returncode if self.proc else None}; "
                                 f"log: {self.log_tail()}")
        return True

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:] if self.log_path else ""
        except OSError:
            return ""

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
        self._log = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class WorkdirServer(ManagedProcess):
    """A server binary on a free loopback port, run in ``workdir`` with its log there as ``<name>.log``.

    Subclasses give the command line as ``args()``, called when the process starts (it may write configs).
    """

    name = "server"

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        super().__init__(log_path=self.workdir / f"{self.name}.log", cwd=self.workdir, port=free_port())

    def args(self) -> list[str]:
        raise NotImplementedError

    def command(self) -> list[str]:
        return self.args()


class ExporterProcess(ManagedProcess):
    """The real ``wan-exporter`` process on a free loopback port."""

    name = "exporter"
    ready_path = "/-/healthy"

    def __init__(self, args: list[str], env: dict | None = None, log_path: Path | None = None) -> None:
        port = free_port()
        super().__init__(argv=[sys.executable, "-m", "wan_exporter", f"--web.listen-address=127.0.0.1:{port}", *args],
                         log_path=log_path, env=exporter_env(env), cwd=REPO, port=port)

    @property
    def args(self) -> list[str]:
        """The command line (``argv``); may be replaced before ``start()``."""
        return self.argv

    @args.setter
    def args(self, value: list[str]) -> None:
        self.argv = list(value)

    def start(self, ready_timeout: float = 60.0):
        return super().start(ready_timeout)

    def metrics_text(self) -> str:
        status, body = http_get(self.url + "/metrics")
        assert status == 200, status
        return body.decode()

    def metrics(self) -> dict:
        return parse_metrics(self.metrics_text())


def write_nvml_state(path: Path, **state) -> Path:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    os.replace(tmp, path)
    return path


SERVE_EXAMPLE = REPO / "examples" / "serve"


class ServeProcess(ManagedProcess):
    """The example Wan service (examples/serve/server.py): a tiny pipeline served through instrument."""

    name = "wan-serve"
    ready_path = "/healthz"

    def __init__(self, log_path: Path | None = None, model: str = "tiny-t2v", kind: str = "tiny-wan2.1-t2v",
                 env: dict | None = None) -> None:
        port = free_port()
        super().__init__(argv=[sys.executable, str(SERVE_EXAMPLE / "server.py"),
                               f"--web.listen-address=127.0.0.1:{port}", f"--model={model}", f"--kind={kind}"],
                         log_path=log_path, env=exporter_env({"OMP_NUM_THREADS": "1", **(env or {})}), cwd=REPO,
                         port=port)

    def start(self, ready_timeout: float = 120.0):
        return super().start(ready_timeout)

    def generate(self, *args: str) -> float:
        """One request with the load generator's flags (--size=WxH, --frames=N, --steps=N); the
        generation seconds the service reports."""
        import json
        import urllib.request

        opts = dict(a.lstrip("-").split("=", 1) for a in args)
        w, h = (int(x) for x in opts.get("size", "32x32").split("x"))
        body = {"prompt": "one request", "width": w, "height": h, "frames": int(opts.get("frames", 1)),
                "steps": int(opts.get("steps", 1))}
        req = urllib.request.Request(self.url + "/generate", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as r:
            return float(json.load(r)["seconds"])

    def load(self, *args: str, log_path: Path | None = None) -> ManagedProcess:
        """The bounded load generator (examples/serve/load.py) against this service, started."""
        return ManagedProcess("wan-serve-load", [sys.executable, str(SERVE_EXAMPLE / "load.py"), f"--url={self.url}",
                                                 *args], log_path=log_path, ready_url=self.url + "/healthz",
                              env=exporter_env(), cwd=REPO).start()
