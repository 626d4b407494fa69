"""Scrape latency and CPU per scrape, interleaved across targets so they share the same noise.

Every scrape is one HTTP/1.0 GET over a fresh connection, read to EOF, timed with
``perf_counter`` in this process (the client is the same for every target, so its own cost
is in every figure alike). CPU per scrape is the target process's CPU time (user + system,
psutil) over a block of scrapes, divided by the scrapes in the block, summed over blocks;
it includes whatever the target did in the background meanwhile (conservative).
"""

from __future__ import annotations

import gzip
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from .common import percentile

PROMETHEUS_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
                     "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
MODES: dict[str, dict[str, str]] = {
    # What Prometheus 2.42 sends: OpenMetrics preferred, gzip, and its scrape timeout.
    "prometheus": {"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "gzip",
                   "X-Prometheus-Scrape-Timeout-Seconds": "10"},
    # The bare rendering cost: text format, no compression.
    "plain": {"Accept": "text/plain"},
}


def build_request(path: str, headers: dict[str, str]) -> bytes:
    lines = [f"GET {path} HTTP/1.0", "Host: 127.0.0.1", "User-Agent: wan-exporter-benchmarks"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_response(s: socket.socket) -> bytes:
    chunks = []
    while True:
        c = s.recv(262144)
        if not c:
            break
        chunks.append(c)
    return b"".join(chunks)


def split_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        status = 0
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    return status, headers, body


def decoded_body(raw: bytes) -> bytes:
    _, headers, body = split_response(raw)
    return gzip.decompress(body) if headers.get("content-encoding") == "gzip" else body


def count_series(text: bytes) -> int:
    return sum(1 for ln in text.split(b"\n") if ln and not ln.startswith(b"#"))


@dataclass
class Target:
    name: str
    port: int
    pid: int
    headers: dict[str, str]
    latencies: list[float] = field(default_factory=list)
    cpu: float = 0.0
    scrapes: int = 0
    errors: int = 0
    bytes: int = 0
    wall: float = 0.0  # seconds spent in recorded blocks
    idle_cpu_rate: float | None = None  # the process's CPU seconds per second without scrapes, if measured
    blocks: list[dict] = field(default_factory=list)  # per block: start time, tags, latencies

    def __post_init__(self) -> None:
        self.request = build_request("/metrics", self.headers)
        self.proc = psutil.Process(self.pid)

    def once(self) -> float | None:
        t0 = time.perf_counter()
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                s.sendall(self.request)
                raw = read_response(s)
        except OSError:
            self.errors += 1
            return None
        dt = time.perf_counter() - t0
        if not raw.startswith((b"HTTP/1.0 200", b"HTTP/1.1 200")):
            self.errors += 1
            return None
        self.bytes = len(raw)
        return dt

    def block(self, n: int, record: bool = True, tag: str = "") -> list[float]:
        c0 = _cpu(self.proc)
        lats = []
        t_start = time.monotonic()
        for _ in range(n):
            v = self.once()
            if v is not None:
                lats.append(v)
        c1 = _cpu(self.proc)
        if record:
            self.latencies.extend(lats)
            self.cpu += c1 - c0
            self.scrapes += n
            self.wall += time.monotonic() - t_start
            self.blocks.append({"t": t_start, "tag": tag, "lat": lats, "cpu": c1 - c0, "n": n})
        return lats

    def summary(self) -> dict:
        s = summarise(self.latencies, self.cpu, self.scrapes, self.errors, self.bytes)
        if self.idle_cpu_rate is not None and self.scrapes:
            # What scraping adds: the CPU over the blocks less what the process spends without scrapes.
            s["cpu_ms_per_scrape_marginal"] = max(0.0, self.cpu - self.idle_cpu_rate * self.wall) / self.scrapes * 1e3
            s["idle_cpu_percent"] = self.idle_cpu_rate * 100
        return s


def summarise(lat: list[float], cpu: float, n: int, errors: int = 0, nbytes: int = 0) -> dict:
    return {
        "p50_ms": percentile(lat, 50) * 1e3 if lat else None,
        "p90_ms": percentile(lat, 90) * 1e3 if lat else None,
        "p99_ms": percentile(lat, 99) * 1e3 if lat else None,
        "max_ms": max(lat) * 1e3 if lat else None,
        "mean_ms": sum(lat) / len(lat) * 1e3 if lat else None,
        "cpu_ms_per_scrape": cpu / n * 1e3 if n else None,
        "scrapes": n,
        "errors": errors,
        "bytes": nbytes,
    }


def _cpu(p: psutil.Process) -> float:
    t = p.cpu_times()
    return t.user + t.system


def interleaved(targets: list[Target], rounds: int, per_round: int, warmup: int = 20,
                tag: "callable | None" = None) -> None:
    """``rounds`` rounds; in each, every target gets a block of ``per_round`` scrapes, in a rotating order."""
    for t in targets:
        t.block(warmup, record=False)
    for r in range(rounds):
        k = r % len(targets)
        for t in targets[k:] + targets[:k]:
            t.block(per_round, tag=tag() if tag else "")


def periodic(targets: list[Target], ticks: int, interval: float) -> dict[str, dict]:
    """Every ``interval`` seconds one scrape of each target, as a scraper with a fixed interval does.

    Back-to-back scrapes mostly see an unchanged snapshot; these see the exporter's background
    updates between scrapes, as Prometheus does. Returns per target its summary plus the share of
    scrapes whose bytes differed from the previous scrape's (the snapshot changed in between).
    """
    bodies: dict[str, bytes | None] = {t.name: None for t in targets}
    changed = {t.name: 0 for t in targets}
    lat: dict[str, list[float]] = {t.name: [] for t in targets}
    cpu0 = {t.name: _cpu(t.proc) for t in targets}
    t_next = time.monotonic()
    for _ in range(ticks):
        t_next += interval
        for t in targets:
            t0 = time.perf_counter()
            with socket.create_connection(("127.0.0.1", t.port), timeout=10) as s:
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                s.sendall(t.request)
                raw = read_response(s)
            lat[t.name].append(time.perf_counter() - t0)
            body = decoded_body(raw)  # gzip bytes differ with their mtime alone
            if bodies[t.name] is not None and body != bodies[t.name]:
                changed[t.name] += 1
            bodies[t.name] = body
        time.sleep(max(0.0, t_next - time.monotonic()))
    out = {}
    for t in targets:
        s = summarise(lat[t.name], _cpu(t.proc) - cpu0[t.name], ticks)
        s["changed_share"] = changed[t.name] / max(1, ticks - 1)
        s["cpu_note"] = "whole window"
        out[t.name] = s
    return out


def idle_rate(pid: int, seconds: float) -> float:
    """CPU seconds per second the process uses while nobody scrapes it (its background jobs)."""
    p = psutil.Process(pid)
    c0, t0 = _cpu(p), time.monotonic()
    time.sleep(seconds)
    return (_cpu(p) - c0) / (time.monotonic() - t0)


def capture(port: int, headers: dict[str, str], path: Path) -> bytes:
    """One scrape's raw response (status line, headers, body), saved for a floor server."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(build_request("/metrics", headers))
        raw = read_response(s)
    if not raw.startswith((b"HTTP/1.0 200", b"HTTP/1.1 200")):
        raise RuntimeError(f"capture from :{port} failed: {raw[:200]!r}")
    path.write_bytes(raw)
    return raw


def block_stats(blocks: list[dict], tag: str) -> tuple[list[float], float, int]:
    lat: list[float] = []
    cpu, n = 0.0, 0
    for b in blocks:
        if b["tag"] == tag:
            lat.extend(b["lat"])
            cpu += b["cpu"]
            n += b["n"]
    return lat, cpu, n


__all__ = ["MODES", "Target", "capture", "count_series", "decoded_body", "interleaved", "periodic", "summarise"]
