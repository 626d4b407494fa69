"""Notice wall-clock jumps and keep the scheduled jobs running through them.

APScheduler 3 plans next runs in wall-clock time but sleeps on the monotonic clock. When
the wall clock steps back (an NTP step, an operator's ``date -s``, a VM restored from a
snapshot), every job's next run lies that much further in the future, and the scheduler
thread goes to sleep until then: an hour's step back silences every collector, check and
benchmark for an hour, and stepping the clock forward again does not wake it. A step
forward (or a host suspend, which stops the monotonic clock) leaves the thread asleep on a
wait computed with the old clock.

:class:`ClockWatch` is a plain thread (a scheduler job would stall with the rest), ticking
every ``interval`` seconds: when the wall clock advanced more than ``threshold`` seconds
more or less than the monotonic clock over one tick, that difference is a jump. It is
logged, counted in the store (``wan_exporter_clock_jumps_total{direction}``) and handed
to ``on_jump`` (:meth:`wan_exporter.scheduler.Jobs.reschedule_all`), which re-plans the jobs.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from typing import Callable

from .state import Snapshot, Store, frozen_map

log = logging.getLogger(__name__)

class ClockWatch:
    """Ticks every ``interval`` seconds; a step beyond ``threshold`` seconds is counted and handed on."""

    def __init__(self, store: Store, on_jump: Callable[[float], object], interval: float = 1.0,
                 threshold: float = 5.0, wall: Callable[[], float] = time.time,
                 mono: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.on_jump = on_jump
        self.interval = interval
        self.threshold = threshold
        self._wall = wall
        self._mono = mono
        self._last: tuple[float, float] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._last = self._read()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="clockwatch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        t, self._thread = self._thread, None
        if t is not None:
            t.join(2 * self.interval + 1)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):  # Event.wait times out on the monotonic clock
            try:
                self.check()
            except Exception:  # noqa: BLE001 - the watch must outlive any one bad tick
                log.exception("clock watch tick failed")

    def _read(self) -> tuple[float, float]:
        """(wall, monotonic) read as one instant: a thread paused between two reads (load, a frozen
        cgroup) must not look like a jump, so the wall read is bracketed by two monotonic reads."""
        for _ in range(3):
            m1 = self._mono()
            wall = self._wall()
            m2 = self._mono()
            if m2 - m1 < 0.5:
                break
        return wall, (m1 + m2) / 2

    def check(self) -> float | None:
        """One tick: the jump in seconds (positive: forward) if there was one since the last tick, else None."""
        wall, mono = self._read()
        last, self._last = self._last, (wall, mono)
        if last is None:
            return None
        jump = (wall - last[0]) - (mono - last[1])
        if abs(jump) <= self.threshold:
            return None
        direction = "forward" if jump > 0 else "backward"
        log.warning("wall clock jumped %s by %.1fs (time.time() against time.monotonic()); re-planning jobs",
                    direction, abs(jump))

        def count(s: Snapshot) -> Snapshot:
            jumps = dict(s.clock_jumps)
            jumps[direction] = jumps.get(direction, 0) + 1
            return replace(s, clock_jumps=frozen_map(jumps))

        self.store.update(count)
        try:
            self.on_jump(jump)
        except Exception:  # noqa: BLE001 - counted and logged; the next jump tries again
            log.exception("re-planning jobs after a clock jump failed")
        return jump
