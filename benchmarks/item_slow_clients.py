"""Item 1s, slow clients: scrapes while another process holds 1,000 half-open connections.

The exporter (embedded default config, 8 fake GPUs) and node_exporter each get their own
flood (:mod:`benchmarks.slow_clients`): 1,000 connections that send an unfinished request
head and never finish it, each re-opened as soon as the server drops it. Both are scraped as
Prometheus scrapes them, one scrape each per tick, first without the flood, then with it. How
many connections each server really holds is read from its own socket table (psutil), not
from the flooding client, whose count includes connections still in the kernel's backlog.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

import psutil

from . import procs, scrape
from .common import REPO, Context, ItemResult, Row, Table, percentile
from .item_scrape import settle
from .scrape import MODES


class Flood:
    """:mod:`benchmarks.slow_clients` against one port, its latest status line kept."""

    def __init__(self, port: int, count: int, seconds: float) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.proc = subprocess.Popen([sys.executable, "-m", "benchmarks.slow_clients", "--port", str(port),
                                      "--count", str(count), "--seconds", str(seconds)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=REPO, env=env,
                                     start_new_session=True)
        self.status: dict = {}
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                self.status = json.loads(line)
            except ValueError:
                pass

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def held_by(pid: int, port: int) -> int:
    """Established connections the server process holds on its listening port."""
    try:
        conns = psutil.Process(pid).net_connections(kind="tcp")
    except psutil.Error:
        return -1
    return sum(1 for c in conns if c.laddr and c.laddr.port == port and c.status == psutil.CONN_ESTABLISHED)


def scrape_once(port: int, request: bytes, timeout: float = 10.0) -> tuple[bool, float]:
    t0 = time.perf_counter()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.sendall(request)
            raw = scrape.read_response(s)
    except OSError:
        return False, time.perf_counter() - t0
    return raw.startswith((b"HTTP/1.0 200", b"HTTP/1.1 200")), time.perf_counter() - t0


def ticks(targets: dict[str, tuple[int, int]], n: int, interval: float, sample_held: bool) -> dict[str, dict]:
    """``n`` ticks; per tick one scrape of each target (rotating order) and, if asked, a count of
    the connections each holds."""
    request = scrape.build_request("/metrics", MODES["prometheus"])
    out = {name: {"lat": [], "ok": 0, "n": 0, "held": [], "cpu0": procs.cpu_seconds(psutil.Process(pid))}
           for name, (port, pid) in targets.items()}
    names = list(targets)
    t_start = time.monotonic()
    t_next = t_start
    for i in range(n):
        t_next += interval
        k = i % len(names)
        for name in names[k:] + names[:k]:
            port, pid = targets[name]
            ok, dt = scrape_once(port, request)
            o = out[name]
            o["n"] += 1
            o["ok"] += ok
            if ok:
                o["lat"].append(dt)
            if sample_held and i % 4 == 0:
                o["held"].append(held_by(pid, port))
        time.sleep(max(0.0, t_next - time.monotonic()))
    wall = time.monotonic() - t_start
    for name, (_, pid) in targets.items():
        o = out[name]
        lat = o.pop("lat")
        o["p50_ms"] = percentile(lat, 50) * 1e3 if lat else None
        o["p99_ms"] = percentile(lat, 99) * 1e3 if lat else None
        o["max_ms"] = max(lat) * 1e3 if lat else None
        o["cpu_percent"] = (procs.cpu_seconds(psutil.Process(pid)) - o.pop("cpu0")) / wall * 100
        o["held_min"] = min(o["held"]) if o["held"] else None
        o["held_median"] = percentile(o["held"], 50) if o["held"] else None
        o["held_max"] = max(o["held"]) if o["held"] else None
        del o["held"]
    return out


def run(ctx: Context) -> ItemResult:
    res = ItemResult("1s", "Scrapes while slow clients hold connections")
    work = ctx.scratch("slow-clients")
    count = ctx.n(1000, 300)
    n, interval = ctx.n(40, 10), 0.5
    started: list[procs.Proc] = []
    floods: list[Flood] = []
    try:
        exp = procs.Exporter(work, "exporter-slow-clients", gpus=8).start()
        started.append(exp)
        settle(exp)
        targets = {"exporter": (exp.port, exp.pid)}
        if procs.node_exporter_bin():
            node = procs.NodeExporter(work).start()
            started.append(node)
            procs.wait_http(node.port, timeout=20, proc=node.proc)
            targets["node_exporter"] = (node.port, node.pid)
        else:
            res.notes.append("node_exporter not installed: no reference row "
                             "(apt-get install -y --no-install-recommends prometheus-node-exporter)")
        ctx.log(f"  no flood: {n} ticks every {interval:g} s")
        quiet = ticks(targets, n, interval, sample_held=False)
        window = n * interval + 60
        floods = [Flood(port, count, window) for port, _ in targets.values()]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all(f.status.get("most_held", 0) >= count for f in floods):
            time.sleep(0.2)
        ctx.log(f"  {count} half-open connections per target: {n} ticks every {interval:g} s")
        loaded = ticks(targets, n, interval, sample_held=True)
        flood_status = {name: f.status for name, f in zip(targets, floods)}
    finally:
        for f in floods:
            f.stop()
        for p in reversed(started):
            p.stop()

    e, eq = loaded["exporter"], quiet["exporter"]
    node, nq = loaded.get("node_exporter"), quiet.get("node_exporter")
    res.rows.append(Row(f"scrapes answered with {count} half-open connections held (exporter)", e["ok"], "scrapes",
                        f"node_exporter, same ticks, same load" if node else "", node["ok"] if node else None,
                        goal=f"all {e['n']}", met=e["ok"] == e["n"],
                        note=f"of {e['n']} scrapes, one every {interval:g} s"))
    res.rows.append(Row("connections the exporter held open during the flood (median of samples)", e["held_median"],
                        "connections", "node_exporter (median of samples)" if node else "",
                        node["held_median"] if node else None, goal=f">= {count}",
                        met=(e["held_median"] or 0) >= count,
                        note="from the server's own socket table, sampled every 2 s; the exporter drops them all at "
                             "their 5 s header deadline and the flood re-opens them, so single samples dip"))
    if e["p99_ms"] is not None:
        res.rows.append(Row(f"p99 latency with {count} half-open connections held", e["p99_ms"], "ms",
                            "node_exporter, same ticks" if node else "", node["p99_ms"] if node else None))
        res.rows.append(Row(f"p99 latency with {count} half-open connections held / without", e["p99_ms"], "ms",
                            "exporter without the flood, same run", eq["p99_ms"]))
    res.rows.append(Row("exporter CPU while the flood re-opens dropped connections", e["cpu_percent"], "% of a core",
                        "node_exporter, same window" if node else "", node["cpu_percent"] if node else None))
    cols = ["target", "flood", "scrapes", "answered", "p50 ms", "p99 ms", "max ms", "CPU % of a core",
            "held (server side, min-max)", "re-opened by the flood"]
    rows = []
    for name in targets:
        for label, d in (("none", quiet[name]), (f"{count} half-open", loaded[name])):
            held = f"{d['held_min']}-{d['held_max']}" if d["held_min"] is not None else "—"
            rows.append([name, label, d["n"], d["ok"], d["p50_ms"], d["p99_ms"], d["max_ms"], d["cpu_percent"], held,
                         flood_status[name].get("reopened") if label != "none" else "—"])
    res.tables.append(Table("Scrapes with and without the flood (as Prometheus scrapes: OpenMetrics, gzip)", cols, rows))
    res.notes.append(f"Each flood holds {count} connections that sent `GET /metrics HTTP/1.1` and two headers but never "
                     "the empty line that ends the head, and re-opens every one the server closes (the exporter "
                     "closes them at its 5 s header deadline). Scrapes are one fresh connection each, as Prometheus "
                     "makes them with keep-alive off; a failed scrape is a refused, reset or timed-out one (10 s).")
    return res


__all__ = ["run", "Flood", "held_by"]
