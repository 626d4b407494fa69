"""Real processes on loopback: the exporter (fake NVML at its boundary), node_exporter, the floor servers.

Every process is started by the suite, tracked by its pid and stopped by that pid; nothing is
ever stopped by name.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import yaml

from . import common
from .common import REPO, TESTS_DIR

FAKE_NVML = "support.fake_pynvml"  # tests/support/fake_pynvml.py: the only fake, at the pynvml boundary


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raw_get(port: int, path: str = "/metrics", headers: dict[str, str] | None = None,
            timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.0 GET over a fresh connection; (status, headers, body). Raises OSError if refused."""
    from .scrape import build_request, read_response, split_response

    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(build_request(path, headers or {}))
        raw = read_response(s)
    return split_response(raw)


def wait_http(port: int, path: str = "/metrics", timeout: float = 60.0, interval: float = 0.01,
              proc: subprocess.Popen | None = None) -> float:
    """Poll until ``path`` answers 200; returns the monotonic time it first did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before serving {path}")
        try:
            status, _, _ = raw_get(port, path, timeout=2.0)
            if status == 200:
                return time.monotonic()
        except OSError:
            pass
        time.sleep(interval)
    raise TimeoutError(f"nothing answered 200 on 127.0.0.1:{port}{path} within {timeout}s")


class Proc:
    """A child process with a log file; stopped with SIGTERM then SIGKILL, by pid."""

    def __init__(self, name: str, args: list[str], env: dict[str, str] | None = None, log: Path | None = None,
                 cwd: Path | None = None) -> None:
        self.name = name
        self.args = args
        self.env = env
        self.log_path = log
        self.cwd = cwd
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0
        self._log: Any = None

    def start(self) -> "Proc":
        self._log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(self.args, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
                                     cwd=str(self.cwd or REPO), start_new_session=True)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def ps(self) -> psutil.Process:
        return psutil.Process(self.pid)

    def log_tail(self, n: int = 3000) -> str:
        try:
            return Path(self.log_path).read_text(errors="replace")[-n:] if self.log_path else ""
        except OSError:
            return ""

    def stop(self) -> None:
        p = self.proc
        if p is not None and p.poll() is None:
            try:
                p.send_signal(signal.SIGTERM)
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
            except ProcessLookupError:
                pass
        if self._log not in (None, subprocess.DEVNULL):
            self._log.close()
            self._log = None

    def __enter__(self) -> "Proc":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------- the exporter


def nvml_state(path: Path, gpus: int, fault: str = "none") -> Path:
    """A fake-NVML state file with ``gpus`` H200s, each with its own plausible readings."""
    state = {
        "fault": fault,
        "gpus": [
            {"util_gpu": 3 * i, "util_memory": i, "temperature": 34 + i, "power_mw": 75000 + 1000 * i,
             "energy_mj": 123456789 + i, "memory_used": (1 + i) << 30}
            for i in range(gpus)
        ],
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    os.replace(tmp, path)
    return path


def exporter_env(work: Path, nvml: Path | None, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(common.EXPORTER_SRC), str(TESTS_DIR), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PYTHONUNBUFFERED"] = "1"
    env["HF_HUB_CACHE"] = str(work / "hf-empty")  # an empty cache: hub models are "missing", nothing fetched
    env["HF_HUB_OFFLINE"] = "1"
    env["XDG_STATE_HOME"] = str(work / "state")  # manifests and baselines stay in the scratch dir
    (work / "hf-empty").mkdir(parents=True, exist_ok=True)
    if nvml is not None:
        env["WAN_EXPORTER_NVML_MODULE"] = FAKE_NVML
        env["FAKE_NVML_STATE"] = str(nvml)
    else:
        env["WAN_EXPORTER_NVML_MODULE"] = "pynvml"
    env.update(extra or {})
    return env


class Exporter(Proc):
    """``python3 -m wan_exporter`` on a free loopback port."""

    def __init__(self, work: Path, name: str = "exporter", config: Path | None = None, demo: bool = False,
                 gpus: int | None = 8, extra_env: dict[str, str] | None = None, real_nvml: bool = False) -> None:
        self.port = free_port()
        self.work = work
        nvml = None
        if gpus is not None and not real_nvml:
            nvml = nvml_state(work / f"{name}-nvml.json", gpus)
        self.nvml_path = nvml
        args = [sys.executable, "-m", "wan_exporter", f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"]
        if config is not None:
            args.append(f"--config.file={config}")
        if demo:
            args.append("--demo")
        super().__init__(name, args, env=exporter_env(work, nvml, extra_env), log=work / f"{name}.log")

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Until /-/ready answers 200 (host, checkpoint and GPU read once); returns seconds since launch."""
        t = wait_http(self.port, "/-/ready", timeout, 0.02, self.proc)
        return t - self.started_at

    def wait_metrics(self, timeout: float = 60.0) -> float:
        t = wait_http(self.port, "/metrics", timeout, 0.005, self.proc)
        return t - self.started_at


def write_config(path: Path, doc: dict) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def models_config(tiny_dir: Path | None, n_models: int, *, benchmark: bool = False, extra: dict | None = None) -> dict:
    """``n_models`` models, round-robin over the tiny kinds (present on disk) or, without tiny models,
    over the Wan2.2 hub ids in an empty cache (missing). Default schedules; scheduled benchmarks off
    unless ``benchmark`` (they would start a torch child per model)."""
    kinds_built = common.built_kinds(tiny_dir)
    models = []
    for i in range(n_models):
        if kinds_built:
            kind = kinds_built[i % len(kinds_built)]
            prof = "tiny-image" if "i2v" in kind else "tiny"
            models.append({"name": f"m{i:03d}-{kind}", "kind": kind, "path": str(tiny_dir / kind), "device": "cpu",
                           "dtype": "float32", "profiles": [prof]})
        else:
            kinds = [("wan2.2-t2v-a14b", "Wan-AI/Wan2.2-T2V-A14B-Diffusers", "probe"),
                     ("wan2.2-i2v-a14b", "Wan-AI/Wan2.2-I2V-A14B-Diffusers", "probe-image"),
                     ("wan2.2-ti2v-5b", "Wan-AI/Wan2.2-TI2V-5B-Diffusers", "probe")]
            kind, hub, prof = kinds[i % 3]
            models.append({"name": f"m{i:03d}-{kind}", "kind": kind, "hub_id": hub, "profiles": [prof]})
    doc: dict[str, Any] = {
        "models": models,
        "profiles": {
            "tiny": {"width": 32, "height": 32, "frames": 9, "steps": 4, "timeout": "2m"},
            "tiny-image": {"width": 32, "height": 32, "frames": 9, "steps": 4, "image": True, "timeout": "2m"},
            "probe": {"width": 832, "height": 480, "frames": 17, "steps": 4},
            "probe-image": {"width": 832, "height": 480, "frames": 17, "steps": 4, "image": True},
        },
        "schedules": {"benchmark": {"interval": "1h", "enabled": benchmark}},
        "exporter": {"max_models": max(64, n_models)},
    }
    for k, v in (extra or {}).items():
        doc[k] = {**doc.get(k, {}), **v} if isinstance(v, dict) else v
    return doc


# --------------------------------------------------------------------------- references


def node_exporter_bin() -> str | None:
    return shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")


class NodeExporter(Proc):
    def __init__(self, work: Path) -> None:
        self.port = free_port()
        binary = node_exporter_bin()
        assert binary is not None
        super().__init__("node_exporter", [binary, f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
                         log=work / "node_exporter.log")


class Floor(Proc):
    """:mod:`benchmarks.floor`: the same bytes, precomputed, from a minimal server in the same language."""

    def __init__(self, work: Path, name: str, response: Path, raw: bool = False) -> None:
        self.port = free_port()
        args = [sys.executable, "-m", "benchmarks.floor", "--port", str(self.port), "--response", str(response)]
        if raw:
            args.append("--raw")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        super().__init__(name, args, env=env, log=work / f"{name}.log")


def has_mapped(pid: int, needle: str) -> list[str]:
    """Files mapped into ``pid`` whose path contains ``needle`` (e.g. libtorch)."""
    out = set()
    try:
        with open(f"/proc/{pid}/maps") as f:
            for line in f:
                parts = line.split(None, 5)
                if len(parts) == 6 and needle in parts[5]:
                    out.add(parts[5].strip())
    except OSError:
        pass
    return sorted(out)


def cpu_seconds(p: psutil.Process) -> float:
    t = p.cpu_times()
    return t.user + t.system
