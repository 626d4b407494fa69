"""A client that holds many half-open connections and re-opens each one the server drops.

``python3 -m benchmarks.slow_clients --port 9835 --count 1000 --seconds 30`` connects
``count`` times, sends on each an unfinished request head (or nothing, ``--idle``) and never
finishes it; every connection the server closes is opened again at once. Once a second it
prints one JSON line: connections held now, the most held at once, re-opened, failed connects.
It stops after ``--seconds``, on SIGTERM, or when its stdin closes.

Used by the slow-client test and by the benchmark item that measures scrapes under this load.
"""

from __future__ import annotations

import argparse
import json
import selectors
import signal
import socket
import sys
import time

HALF_HEAD = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slow-client\r\n"  # no empty line: unfinished


def raise_nofile(need: int) -> int:
    """Raise the soft open-file limit towards ``need``; returns the soft limit now."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


class Flood:
    def __init__(self, host: str, port: int, count: int, payload: bytes) -> None:
        self.addr = (host, port)
        self.count = count
        self.payload = payload
        self.sel = selectors.DefaultSelector()
        self.held = 0
        self.most_held = 0
        self.reopened = 0
        self.connect_errors = 0
        self.opened = 0

    def _open(self) -> bool:
        try:
            s = socket.create_connection(self.addr, timeout=2.0)
            if self.payload:
                s.sendall(self.payload)
            s.setblocking(False)
        except OSError:
            self.connect_errors += 1
            return False
        self.sel.register(s, selectors.EVENT_READ)
        self.held += 1
        self.opened += 1
        self.most_held = max(self.most_held, self.held)
        return True

    def _closed(self, s: socket.socket) -> None:
        self.sel.unregister(s)
        s.close()
        self.held -= 1

    def step(self, budget: float) -> None:
        """Top up to ``count`` and notice closed connections, for about ``budget`` seconds."""
        end = time.monotonic() + budget
        while time.monotonic() < end:
            missing = self.count - self.held
            for _ in range(min(missing, 200)):
                if not self._open():
                    time.sleep(0.01)
                    break
                if self.opened > self.count:
                    self.reopened += 1
            for key, _ in self.sel.select(0.0 if self.held < self.count else min(0.05, max(0.0, end - time.monotonic()))):
                s = key.fileobj
                try:
                    data = s.recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    self._closed(s)

    def status(self) -> dict:
        return {"held": self.held, "most_held": self.most_held, "reopened": self.reopened,
                "connect_errors": self.connect_errors}

    def close(self) -> None:
        for key in list(self.sel.get_map().values()):
            key.fileobj.close()
        self.sel.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m benchmarks.slow_clients", description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--count", type=int, default=1000, help="connections to hold (default 1000)")
    ap.add_argument("--seconds", type=float, default=30.0, help="stop after this long (default 30)")
    ap.add_argument("--idle", action="store_true", help="send nothing at all instead of an unfinished head")
    args = ap.parse_args(argv)
    raise_nofile(args.count + 64)
    flood = Flood(args.host, args.port, args.count, b"" if args.idle else HALF_HEAD)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    sel_stdin = selectors.DefaultSelector()
    if not sys.stdin.isatty():
        sel_stdin.register(sys.stdin, selectors.EVENT_READ)
    end = time.monotonic() + args.seconds
    try:
        while not stop and time.monotonic() < end:
            flood.step(1.0)
            print(json.dumps(flood.status()), flush=True)
            if sel_stdin.get_map() and sel_stdin.select(0) and not sys.stdin.buffer.read1(1):
                break  # the parent went away
    finally:
        flood.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
