"""Every read of a model's files runs on a worker of its own, under a deadline, and can be left behind.

A read that blocks in the kernel (``stat`` on a hung NFS or FUSE mount, an ``open`` that
:mod:`wan_exporter.fileio` could not refuse) cannot be interrupted from Python. So the
caller does not wait for it: it waits for the worker at most ``timeout`` seconds *without
progress* (a worker reports progress with :func:`beat`, e.g. per hashed chunk), then raises
:class:`IoTimeout` and goes on with the next model. The worker is a daemon thread, so it
never holds up the exporter's exit. While a left-behind worker of a model is still blocked,
that model's next reads are not started at all: :class:`IoTimeout` at once, so a hung mount
costs one thread per model, not one per run.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, TypeVar

T = TypeVar("T")
_local = threading.local()
POLL = 0.1  # how often a waiting caller looks at the deadline and the stop event


class IoTimeout(Exception):
    """Reading a model's files made no progress within the deadline (the finding ``io_timeout``).

    ``left_behind`` is True for the call that gave up on a worker, False for the calls refused
    while that worker stays blocked (log the first loudly, the others quietly)."""

    def __init__(self, msg: str, left_behind: bool = False) -> None:
        super().__init__(msg)
        self.left_behind = left_behind


class Stopped(Exception):
    """The exporter is shutting down; the worker was left behind."""


def beat() -> None:
    """Progress of the current worker (a chunk read, a file done): its deadline starts again."""
    b = getattr(_local, "beat", None)
    if b is not None:
        b()


class Lanes:
    """The workers reading each model's files; one left-behind worker per model at most."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stuck: dict[str, tuple[threading.Thread, float, str]] = {}  # key -> (worker, since, what)

    def stuck(self) -> dict[str, float]:
        """Models whose left-behind worker is still blocked, and since when (monotonic)."""
        with self._lock:
            return {k: since for k, (t, since, _) in self._stuck.items() if t.is_alive()}

    def run(self, key: str, fn: Callable[[], T], timeout: float, what: str = "",
            stop: threading.Event | None = None) -> T:
        """``fn()`` on a worker; its result, or its exception, or :class:`IoTimeout` / :class:`Stopped`."""
        with self._lock:
            held = self._stuck.get(key)
            if held is not None and not held[0].is_alive():
                del self._stuck[key]
                held = None
        if held is not None:
            raise IoTimeout(f"an earlier read of these files ({held[2]}) has been blocked for "
                            f"{time.monotonic() - held[1]:.0f}s; not started again until it returns")
        last = [time.monotonic()]
        box: dict[str, object] = {}
        done = threading.Event()

        def work() -> None:
            _local.beat = lambda: last.__setitem__(0, time.monotonic())
            try:
                box["value"] = fn()
            except BaseException as e:  # noqa: BLE001 - handed to the caller
                box["error"] = e
            finally:
                done.set()

        worker = threading.Thread(target=work, name=f"io {key}", daemon=True)
        worker.start()
        while not done.wait(POLL):
            if stop is not None and stop.is_set():
                self._leave(key, worker, what)
                raise Stopped(key)
            if time.monotonic() - last[0] > timeout:
                self._leave(key, worker, what)
                raise IoTimeout(f"{what or 'reading the files'}: no progress within {timeout:g}s (a hung mount, "
                                "a file that blocks); the read is left behind", left_behind=True)
        if "error" in box:
            raise box["error"]  # type: ignore[misc]
        return box.get("value")  # type: ignore[return-value]

    def _leave(self, key: str, worker: threading.Thread, what: str) -> None:
        with self._lock:
            self._stuck[key] = (worker, time.monotonic(), what or "a read")


def log_timeout(log: Any, e: IoTimeout, what: str) -> None:
    """Warn once per blocked read; the refusals while it stays blocked go to debug."""
    (log.warning if e.left_behind else log.debug)("%s: %s", what, e)


__all__ = ["IoTimeout", "Lanes", "Stopped", "beat", "log_timeout"]
