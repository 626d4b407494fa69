"""Tools for the fault-injection and soak tests: steady scrape load, process watching,
a filesystem that can be made full, a wall clock that can be made to jump, configs.

Everything here drives the real exporter process from outside (``support.procs``); every
loop is bounded in time and count.
"""

from __future__ import annotations

import errno
import http.client
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import psutil

from .procs import sample, wait_for

HARD_CAP_SECONDS = 900.0  # no helper thread outlives this, whatever a test forgets


# --------------------------------------------------------------------------- scrape load


@dataclass(frozen=True)
class Scrape:
    t: float  # time.monotonic() when the request started
    seconds: float
    status: int  # 0: no answer (connection error, timeout)
    error: str = ""


class ScrapeLoad:
    """``threads`` threads, each scraping ``path`` ``rate`` times a second over a kept-alive connection.

    Every answer is kept. ``threads`` stays well below the server's cap of 16 requests at
    once, so a 503 here is a real refusal, not the cap working as designed.
    """

    def __init__(self, url: str, threads: int = 1, rate: float = 5.0, timeout: float = 10.0,
                 path: str = "/metrics") -> None:
        u = urlsplit(url)
        self.host, self.port = u.hostname or "127.0.0.1", u.port or 80
        self.threads, self.rate, self.timeout, self.path = threads, rate, timeout, path
        self.results: list[Scrape] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []

    def start(self) -> "ScrapeLoad":
        for i in range(self.threads):
            t = threading.Thread(target=self._run, args=(i,), name=f"scrape-{i}", daemon=True)
            t.start()
            self._workers.append(t)
        return self

    def stop(self) -> "ScrapeLoad":
        self._stop.set()
        for t in self._workers:
            t.join(self.timeout + 5)
        return self

    def __enter__(self) -> "ScrapeLoad":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self, i: int) -> None:
        period = 1.0 / self.rate
        # Spread the threads over the period so the load is steady, not in bursts.
        next_at = time.monotonic() + period * i / max(1, self.threads)
        hard_stop = time.monotonic() + HARD_CAP_SECONDS
        conn: http.client.HTTPConnection | None = None
        while not self._stop.is_set() and time.monotonic() < hard_stop:
            delay = next_at - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                break
            next_at = max(next_at + period, time.monotonic())
            t0 = time.monotonic()
            status, error = 0, ""
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
                conn.request("GET", self.path)
                r = conn.getresponse()
                body = r.read()
                status = r.status
                if status == 200 and self.path == "/metrics" and b"wan_exporter_build_info" not in body:
                    error = f"incomplete exposition ({len(body)} bytes)"
                if r.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as e:
                error = f"{type(e).__name__}: {e}"
                if conn is not None:
                    conn.close()
                conn = None
            s = Scrape(t0, time.monotonic() - t0, status, error)
            with self._lock:
                self.results.append(s)
        if conn is not None:
            conn.close()

    def snapshot(self) -> list[Scrape]:
        with self._lock:
            return list(self.results)

    def failures(self) -> list[Scrape]:
        return [s for s in self.snapshot() if s.status != 200 or s.error]

    def latencies(self, since: float | None = None, until: float | None = None) -> list[float]:
        return [s.seconds for s in self.snapshot()
                if (since is None or s.t >= since) and (until is None or s.t < until)]


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0-1) of values, nearest rank; nan for none."""
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, max(0, int(round(q * (len(v) - 1)))))]


def describe(values: list[float]) -> str:
    if not values:
        return "no scrapes"
    return (f"n={len(values)} p50={pct(values, .5) * 1e3:.1f}ms p95={pct(values, .95) * 1e3:.1f}ms "
            f"p99={pct(values, .99) * 1e3:.1f}ms max={max(values) * 1e3:.1f}ms")


def assert_served(load: ScrapeLoad, what: str, worst: float = 2.5, typical: float = 0.5) -> None:
    """Every scrape answered 200 with a whole exposition, and none waited on the failing work.

    The bounds only separate "answered from the snapshot" from "blocked on the fault": each
    fault in the suite lasts several times ``worst``, so a scrape waiting on it would take
    longer, while a noisy shared machine leaves the typical scrape far below ``typical``.
    """
    results = load.snapshot()
    assert len(results) >= 3, f"{what}: only {len(results)} scrapes were made"
    bad = load.failures()
    assert not bad, f"{what}: {len(bad)} of {len(results)} scrapes failed, first: {bad[0]}"
    lat = [s.seconds for s in results]
    assert max(lat) < worst, f"{what}: a scrape took {max(lat):.2f}s; {describe(lat)}"
    assert statistics.median(lat) < typical, f"{what}: {describe(lat)}"
    print(f"\n{what}: {describe(lat)}")


# --------------------------------------------------------------------------- process watching


@dataclass
class Usage:
    t: float
    rss: int
    fds: int
    threads: int
    children: int  # live, non-zombie child processes (benchmark / load-check children)


def usage(pid: int) -> Usage:
    p = psutil.Process(pid)
    with p.oneshot():
        rss, fds, threads = p.memory_info().rss, p.num_fds(), p.num_threads()
    return Usage(time.monotonic(), rss, fds, threads, len(work_children(pid)))


def work_children(pid: int) -> list[psutil.Process]:
    """Child processes doing work: multiprocessing's resource tracker is a helper, not a run."""
    out = []
    for c in psutil.Process(pid).children(recursive=True):
        try:
            if c.status() == psutil.STATUS_ZOMBIE or "resource_tracker" in " ".join(c.cmdline()):
                continue
        except psutil.Error:
            continue
        out.append(c)
    return out


def zombies(pid: int) -> list[psutil.Process]:
    out = []
    for c in psutil.Process(pid).children(recursive=True):
        try:
            if c.status() == psutil.STATUS_ZOMBIE:
                out.append(c)
        except psutil.Error:
            pass
    return out


class ProcWatch:
    """Samples a process's RSS, open file descriptors, threads and children every ``interval`` seconds."""

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        self.pid, self.interval = pid, interval
        self.samples: list[Usage] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="procwatch", daemon=True)

    def start(self) -> "ProcWatch":
        self._thread.start()
        return self

    def stop(self) -> "ProcWatch":
        self._stop.set()
        self._thread.join(self.interval + 5)
        return self

    def _run(self) -> None:
        hard_stop = time.monotonic() + HARD_CAP_SECONDS
        while not self._stop.is_set() and time.monotonic() < hard_stop:
            try:
                self.samples.append(usage(self.pid))
            except psutil.Error:
                return
            self._stop.wait(self.interval)

    def busy_intervals(self) -> list[tuple[float, float]]:
        """Spans (monotonic) during which the process had a work child alive."""
        spans, start = [], None
        for u in self.samples:
            if u.children and start is None:
                start = u.t
            elif not u.children and start is not None:
                spans.append((start, u.t))
                start = None
        if start is not None:
            spans.append((start, self.samples[-1].t + self.interval))
        return spans


# --------------------------------------------------------------------------- metrics helpers


def wait_metric(exp, pred, timeout: float, what: str, interval: float = 0.25) -> dict:
    """Scrape until ``pred(samples)`` holds; returns those samples."""
    def check() -> dict | None:
        exp.alive()
        s = exp.metrics()
        return s if pred(s) else None

    return wait_for(check, timeout, interval, what)


def value(s: dict, name: str, **labels: str) -> float:
    """A sample's value, 0 when absent (counters of things that never happened)."""
    v = sample(s, name, **labels)
    return 0.0 if v is None else v


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# Benchmark faults are a test hook, not configuration: the exporter reads them from the JSON file
# this variable names, afresh at every run (wan_exporter.bench.faults).
FAULTS_ENV = "WAN_EXPORTER_TEST_FAULTS"


def set_faults(path: Path, faults: dict[str, str]) -> None:
    """Switch benchmark faults by model name ({"m": "oom"}); an empty dict switches them all off."""
    write_atomic(path, json.dumps(faults))


def reload(exp, cfg_path: Path, text: str, timeout: float = 15.0) -> dict:
    """Rewrite the config and SIGHUP; returns the first scrape that shows the reload applied."""
    before = sample(exp.metrics(), "wan_exporter_config_last_reload_success_timestamp_seconds") or 0.0
    write_atomic(cfg_path, text)
    time.sleep(0.01)  # a distinct wall-clock timestamp for the reload
    exp.signal(signal.SIGHUP)
    return wait_metric(exp, lambda s: (sample(s, "wan_exporter_config_last_reload_successful") == 1 and
                                       (sample(s, "wan_exporter_config_last_reload_success_timestamp_seconds")
                                        or 0) > before), timeout, "config reload applied")


def config_text(state_dir: Path, models: list[str] | None = None, schedules: dict[str, str] | None = None,
                profiles: dict[str, str] | None = None, benchmark: str = "{kill_grace: 2s, baseline_runs: 1}",
                nvml_timeout: str = "1s") -> str:
    """A config from flow-style YAML snippets; schedules not named keep their defaults."""
    lines = ["models:" + ("" if models else " []")]
    lines += [f"  - {m}" for m in models or []]
    if profiles:
        lines.append("profiles:")
        lines += [f"  {k}: {v}" for k, v in profiles.items()]
    if schedules:
        lines.append("schedules:")
        lines += [f"  {k}: {v}" for k, v in schedules.items()]
    lines.append(f"benchmark: {benchmark}")
    lines.append(f"exporter: {{state_dir: '{state_dir}', nvml_timeout: {nvml_timeout}}}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- a full disk


def _mount_tmpfs(path: Path, size: int) -> bool:
    """Mount a tmpfs of ``size`` bytes on ``path`` (root, or CAP_SYS_ADMIN); False where not allowed."""
    if not shutil.which("mount") or not shutil.which("umount"):
        return False
    try:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
                           capture_output=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return False
    return r.returncode == 0


class FullDisk:
    """A filesystem under ``path`` that a test can make full for the exporter, and free again.

    Preferred: a real small tmpfs mounted on ``path``; ``fill()`` writes a filler file until
    the kernel answers ENOSPC, ``free()`` deletes it. Where mounting is not permitted (not
    root, no CAP_SYS_ADMIN), the exporter's own file-size limit is lowered with prlimit(2):
    a write past it fails with EFBIG (CPython ignores SIGXFSZ, so it is an error, not a
    kill) — a real failed write on the same code path, not a mock. ``WAN_FAULTS_DISK=rlimit``
    forces that mode. With the limit, the exporter cannot write its log either: run it with
    no log file (/dev/null is not a regular file, so no limit applies there).
    """

    FSIZE_LIMIT = 16  # bytes: an empty temp file can be created, no manifest fits

    def __init__(self, path: Path, size: int = 1 << 20) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        forced = os.environ.get("WAN_FAULTS_DISK", "")
        self.mounted = forced != "rlimit" and _mount_tmpfs(path, size)
        self.mode = "tmpfs" if self.mounted else "rlimit_fsize"
        self.pid: int | None = None
        self._filler = path / ".filler"

    def fill(self) -> None:
        if self.mounted:
            chunk = b"\0" * (64 << 10)
            with open(self._filler, "wb", buffering=0) as f:
                for _ in range(1 << 16):  # bounded: far more chunks than any test filesystem holds
                    try:
                        f.write(chunk)
                    except OSError as e:
                        if e.errno != errno.ENOSPC:
                            raise
                        break
                else:
                    raise AssertionError(f"{self.path} never became full")
                for small in (4096, 512, 1):  # the last partial page too
                    for _ in range(64):
                        try:
                            f.write(b"\0" * small)
                        except OSError:
                            break
            st = os.statvfs(self.path)
            assert st.f_bavail == 0, f"{self.path} still has {st.f_bavail} blocks free"
        else:
            assert self.pid is not None, "set FullDisk.pid to the exporter's pid first"
            soft, hard = resource.prlimit(self.pid, resource.RLIMIT_FSIZE)
            resource.prlimit(self.pid, resource.RLIMIT_FSIZE, (self.FSIZE_LIMIT, hard))

    def free(self) -> None:
        if self.mounted:
            self._filler.unlink(missing_ok=True)
        elif self.pid is not None:
            try:
                soft, hard = resource.prlimit(self.pid, resource.RLIMIT_FSIZE)
                resource.prlimit(self.pid, resource.RLIMIT_FSIZE, (hard, hard))
            except ProcessLookupError:
                pass

    def close(self) -> None:
        self.free()
        if self.mounted:
            for _ in range(10):  # bounded: the exporter may still hold a file open for a moment
                if subprocess.run(["umount", str(self.path)], capture_output=True, timeout=20).returncode == 0:
                    break
                time.sleep(0.5)
            else:
                subprocess.run(["umount", "-l", str(self.path)], capture_output=True, timeout=20)
            self.mounted = False

    def __enter__(self) -> "FullDisk":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- a jumping wall clock

FAKETIME_PATHS = (
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
    "/usr/lib/faketime/libfaketimeMT.so.1",
    "/usr/local/lib/faketime/libfaketimeMT.so.1",
)


def libfaketime() -> str | None:
    """The multi-threaded libfaketime (Debian package ``faketime``), if installed."""
    env = os.environ.get("WAN_LIBFAKETIME")
    for p in ((env,) if env else ()) + FAKETIME_PATHS:
        if p and Path(p).is_file():
            return p
    return None


@dataclass
class JumpingClock:
    """The wall clock of one process, steppable from outside: libfaketime reads ``offset_file`` on
    every call (FAKETIME_NO_CACHE=1). The monotonic clock is left alone, as the kernel does when
    the wall clock is set."""

    offset_file: Path
    lib: str
    offset: float = 0.0
    history: list[float] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        self.set(0)
        return {"LD_PRELOAD": self.lib, "FAKETIME_TIMESTAMP_FILE": str(self.offset_file),
                "FAKETIME_NO_CACHE": "1", "FAKETIME_DONT_FAKE_MONOTONIC": "1"}

    def set(self, offset_seconds: float) -> None:
        """Wall clock = real time + offset_seconds, from the next call on."""
        self.offset = offset_seconds
        self.history.append(offset_seconds)
        write_atomic(self.offset_file, f"{offset_seconds:+.0f}\n")

    def now(self) -> float:
        return time.time() + self.offset


def build_tiny_model(dest_root, kind: str):
    """One tiny real Wan pipeline of ``kind`` under ``dest_root``, built in a child (no torch in the test process)."""
    import subprocess
    import sys

    from .procs import exporter_env

    subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; from wan_exporter.tiny import build; "
                    "build(sys.argv[1], Path(sys.argv[2]))", kind, str(dest_root / kind)],
                   check=True, env=exporter_env(), timeout=300, capture_output=True)
    return dest_root
