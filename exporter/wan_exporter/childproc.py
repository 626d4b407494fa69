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


def _collect(proc: Any, parent: Any, out: ChildOutcome, t0: float, timeout: float,
             on_progress: Callable[[dict], None] | None) -> None:
    """Read the child's messages until its result, its death or the deadline."""
    deadline = t0 + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            out.timed_out = True
            return
        if not parent.poll(min(remaining, 0.5)):
            if not proc.is_alive() and not parent.poll(0):
                return
            continue
        try:
            kind, payload = parent.recv()
        except (EOFError, OSError):
            return  # child died (killed, segfault) or closed the pipe
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
            return
        elif kind == "error":
            out.result = {"success": False, "reason": "unknown",  # an exception escaped: the process lives
                          "detail": f"{payload.get('type')}: {payload.get('detail')}"}
            return


def run_in_child(target: str, request: dict, timeout: float, kill_grace: float = 10.0,
                 on_progress: Callable[[dict], None] | None = None) -> ChildOutcome:
    """Run ``target`` ("module:function") in a spawned child; always returns within about timeout + grace."""
    parent, child = _ctx.Pipe(duplex=False)
    proc = _ctx.Process(target=_entry, args=(target, request, child), daemon=True)
    out = ChildOutcome()
    t0 = time.monotonic()
    proc.start()
    child.close()
    try:
        _collect(proc, parent, out, t0, timeout, on_progress)
    finally:
        out.exitcode = _reap(proc, kill_grace, terminate=out.timed_out)
        parent.close()
    out.duration_seconds = time.monotonic() - t0
    return out


def _warm_entry(target: str, conn: Any) -> None:
    """Child side of a :class:`WarmWorker`: serve requests until told to stop or killed."""
    conn.send(("started", {}))
    keep_heap()  # it generates again and again: its buffers are faulted in once, not once per run
    mod_name, _, fn_name = target.partition(":")
    fn = getattr(importlib.import_module(mod_name), fn_name)
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        if request is None:
            return
        try:
            conn.send(("result", fn(request, lambda d: conn.send(("progress", d)))))
        except BaseException as e:  # noqa: BLE001
            try:
                conn.send(("error", {"type": type(e).__name__, "detail": str(e)[:2000]}))
            except Exception:  # noqa: BLE001
                return


class WarmWorker:
    """A long-lived spawned child that serves one request at a time (keep-warm benchmarks).

    Same bounds as :func:`run_in_child`: a call that overruns its timeout kills the
    worker (SIGTERM, then SIGKILL), and the next call starts a fresh one.
    """

    def __init__(self, target: str, kill_grace: float = 10.0) -> None:
        self.target = target
        self.kill_grace = kill_grace
        self._proc: Any = None
        self._conn: Any = None

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.is_alive()

    def call(self, request: dict, timeout: float, on_progress: Callable[[dict], None] | None = None) -> ChildOutcome:
        out = ChildOutcome()
        t0 = time.monotonic()
        if not self.alive:
            self.close()
            parent, child = _ctx.Pipe(duplex=True)
            self._proc = _ctx.Process(target=_warm_entry, args=(self.target, parent), daemon=True)
            self._proc.start()
            parent.close()
            self._conn = child
        try:
            self._conn.send(request)
            _collect(self._proc, self._conn, out, t0, timeout, on_progress)
        except (OSError, EOFError):
            pass
        if out.result is None:  # timed out or died: never reuse a worker in an unknown state
            out.exitcode = _reap(self._proc, self.kill_grace, terminate=True)
            self._proc = None
            self._conn.close()
            self._conn = None
        out.duration_seconds = time.monotonic() - t0
        return out

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.send(None)
            except (OSError, EOFError, ValueError):
                pass
        if self._proc is not None:
            _reap(self._proc, self.kill_grace, terminate=False)
        if self._conn is not None:
            self._conn.close()
        self._proc = self._conn = None


def _reap(proc: Any, grace: float, terminate: bool) -> int | None:
    """Wait for the child to exit: at once SIGTERM when ``terminate``, else after ``grace``; then SIGKILL."""
    if not terminate:
        proc.join(grace)
        if proc.is_alive():
            log.info("child %s still running %.0fs after its result; sending SIGTERM", proc.pid, grace)
    if proc.is_alive():
        proc.terminate()  # SIGTERM
        proc.join(grace)
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


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Ask Linux to send this process ``sig`` when its parent dies (``PR_SET_PDEATHSIG``), so a child
    started with plain subprocess never outlives the process that waits for it. A no-op elsewhere."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(sig))
    except (OSError, AttributeError):
        pass


def keep_heap() -> None:
    """Keep freed memory in this process (glibc), so a keep-warm benchmark worker does not hand a
    generation's buffers back to the OS after each run and fault them in again on the next: at
    128x128, 33 frames on the CPU that was about 56,000 page faults and 8-11 % of every warm
    generation (benchmarks/analysis.md, item 3). A long-lived serving process keeps them, so a
    probe's figure should too. The cost: the worker holds its peak heap, which it holds anyway
    while its pipeline stays loaded. A one-shot child has nothing to keep. A no-op outside glibc."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD: keep up to 1 GiB free at the top of the heap
        libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD: glibc's largest; smaller blocks are reused, not unmapped
    except (OSError, AttributeError):
        pass
