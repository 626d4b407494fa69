"""Run heavy work (anything importing torch) in a spawned child, bounded in time.

CUDA forbids fork, and a segfault, OOM or hang in a child must cost one failed run,
never the exporter: so every child is started with ``spawn``, talks back over a pipe,
and is sent SIGTERM at its deadline and SIGKILL after a grace period. The parent never
waits on it without bound.
"""

from __future__ import annotations

import importlib
import logging
import multiprocessing as mp
import signal
import time
from dataclasses import dataclass, field
from typing import Any, Callable

log = logging.getLogger(__name__)

_ctx = mp.get_context("spawn")


@dataclass
class ChildOutcome:
    result: dict | None = None  # what the child returned, None if it never did
    exitcode: int | None = None  # negative: killed by that signal
    timed_out: bool = False
    duration_seconds: float = 0.0  # wall time from start to exit
    start_seconds: float | None = None  # until the child's first message: interpreter + imports
    progress: list[dict] = field(default_factory=list)

    @property
    def signal_name(self) -> str:
        if self.exitcode is not None and self.exitcode < 0:
            try:
                return signal.Signals(-self.exitcode).name
            except ValueError:
                return f"signal {-self.exitcode}"
        return ""


def _entry(target: str, request: dict, conn: Any) -> None:
    """Child side: call ``module:function(request, progress)`` and send back its dict."""
    conn.send(("started", {}))
    mod_name, _, fn_name = target.partition(":")
    try:
        fn = getattr(importlib.import_module(mod_name), fn_name)
        result = fn(request, lambda d: conn.send(("progress", d)))
        conn.send(("result", result))
    except BaseException as e:  # noqa: BLE001 - reported to the parent, which classifies it
        try:
            conn.send(("error", {"type": type(e).__name__, "detail": str(e)[:2000]}))
        except Exception:  # noqa: BLE001
            pass
    finally:
        conn.close()


def run_in_child(target: str, request: dict, timeout: float, kill_grace: float = 10.0,
                 on_progress: Callable[[dict], None] | None = None) -> ChildOutcome:
    """Run ``target`` ("module:function") in a spawned child; always returns within about timeout + grace."""
    parent, child = _ctx.Pipe(duplex=False)
    proc = _ctx.Process(target=_entry, args=(target, request, child), daemon=True)
    out = ChildOutcome()
    t0 = time.monotonic()
    deadline = t0 + timeout
    proc.start()
    child.close()
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                out.timed_out = True
                break
            if not parent.poll(min(remaining, 0.5)):
                if not proc.is_alive() and not parent.poll(0):
                    break
                continue
            try:
                kind, payload = parent.recv()
            except (EOFError, OSError):
                break  # child died (killed, segfault) or closed the pipe
            if kind == "started":
                out.start_seconds = time.monotonic() - t0
            elif kind == "progress":
                out.progress.append(payload)
                if on_progress is not None:
                    try:
                        on_progress(payload)
                    except Exception:  # noqa: BLE001 - display only
                        pass
            elif kind == "result":
                out.result = payload
                break
            elif kind == "error":
                out.result = {"success": False, "reason": "crash",
                              "detail": f"{payload.get('type')}: {payload.get('detail')}"}
                break
    finally:
        out.exitcode = _reap(proc, kill_grace, terminate=out.timed_out)
        parent.close()
    out.duration_seconds = time.monotonic() - t0
    return out


def _reap(proc: Any, grace: float, terminate: bool) -> int | None:
    if terminate and proc.is_alive():
        proc.terminate()  # SIGTERM
    proc.join(grace if terminate else max(grace, 5.0))
    if proc.is_alive():
        log.warning("child %s did not exit after SIGTERM; sending SIGKILL", proc.pid)
        proc.kill()
        proc.join(5.0)
    code = proc.exitcode
    try:
        proc.close()
    except ValueError:
        pass
    return code
