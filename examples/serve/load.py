#!/usr/bin/env python3
"""A bounded load generator for examples/serve/server.py: stops by itself.

    python3 examples/serve/load.py --url http://127.0.0.1:9836 --count 200 --duration 600

Sends at most ``--count`` requests within at most ``--duration`` seconds, one at a time (or
``--concurrency`` at a time), ``--interval`` seconds apart. Every ``--invalid-every``-th request
asks for a width that is not a multiple of 16, which the pipeline rejects: real bad input, so
the failure panels and the ``invalid_input`` outcome have data. Prints a count per HTTP status
at the end. Standard library only.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter

SIZES = ((32, 32), (48, 32), (32, 48))  # valid: multiples of 16
INVALID = (40, 32)  # 40 is not a multiple of 16


def body_for(i: int, a: argparse.Namespace) -> dict:
    sizes = (a.size,) if a.size else SIZES
    w, h = INVALID if a.invalid_every and (i + 1) % a.invalid_every == 0 else sizes[i % len(sizes)]
    return {"prompt": f"test pattern {i % 7}", "width": w, "height": h, "frames": a.frames, "steps": a.steps}


def post(url: str, body: dict, timeout: float) -> int:
    req = urllib.request.Request(url + "/generate", data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            r.read()
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0  # unreachable / timed out


def run(a: argparse.Namespace, out=sys.stdout) -> Counter:
    deadline = time.monotonic() + a.duration
    counter = itertools.count()
    statuses: Counter = Counter()
    lock = threading.Lock()

    def worker() -> None:
        while time.monotonic() < deadline:
            with lock:
                i = next(counter)
            if i >= a.count:
                return
            status = post(a.url.rstrip("/"), body_for(i, a), a.timeout)
            with lock:
                statuses[status] += 1
            time.sleep(a.interval)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(max(1, a.concurrency))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print("load: " + ", ".join(f"{n} x HTTP {s or 'unreachable'}" for s, n in sorted(statuses.items())), file=out,
          flush=True)
    return statuses


def _size(text: str) -> tuple[int, int]:
    w, _, h = text.lower().partition("x")
    try:
        return int(w), int(h)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:9836", help="the service (default http://127.0.0.1:9836)")
    p.add_argument("--count", type=int, default=200, help="most requests to send (default 200)")
    p.add_argument("--duration", type=float, default=600.0, help="most seconds to run (default 600)")
    p.add_argument("--interval", type=float, default=0.5, help="pause after each request, seconds (default 0.5)")
    p.add_argument("--concurrency", type=int, default=1, help="requests in flight at once (default 1)")
    p.add_argument("--invalid-every", type=int, default=5,
                   help="every Nth request has an invalid size (default 5; 0: never)")
    p.add_argument("--size", type=_size, metavar="WxH",
                   help="width x height of the valid requests (default: 32x32, 48x32 and 32x48 in turn)")
    p.add_argument("--frames", type=int, default=5, help="frames per request (default 5)")
    p.add_argument("--steps", type=int, default=2, help="denoising steps per request (default 2)")
    p.add_argument("--timeout", type=float, default=120.0, help="per request, seconds (default 120)")
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    if a.count < 0 or a.duration < 0:
        print("load: --count and --duration must not be negative", file=sys.stderr)
        return 2
    statuses = run(a)
    return 0 if statuses.get(200) else 1


if __name__ == "__main__":
    raise SystemExit(main())
