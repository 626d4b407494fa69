"""One APScheduler scheduler drives all periodic work.

Subsystems register plain callables with :meth:`Jobs.add`; every run is timed and its
outcome recorded in the store as a :class:`JobStatus` (batch-job metrics). Jobs
coalesce missed runs, never overlap themselves, and get jitter so a fleet does not
run its benchmarks in lockstep.

A job that never returns would otherwise only show as log lines ("maximum number of running
instances reached") while its figures go stale. So the start of the run in progress is
published, a watchdog thread marks the job ``stuck`` once that run has outlived its deadline
(``schedules.<job>.deadline``, by default the interval), and every run skipped because the
previous one was still going is counted.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from typing import Callable

from apscheduler.events import EVENT_JOB_MAX_INSTANCES
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from .config import Schedule
from .state import JobStatus, Store

log = logging.getLogger(__name__)


WATCH_INTERVAL = 1.0  # how often the watchdog compares runs in progress with their deadlines


class _SkipCounted(logging.Filter):
    """APScheduler warns on every skipped run; they are counted and alerted on instead (a hung
    job at a 1 s interval would otherwise write a warning a second), and logged once when stuck."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "maximum number of running instances reached" not in record.getMessage()


_APS_LOG = logging.getLogger("apscheduler.scheduler")
if not any(isinstance(f, _SkipCounted) for f in _APS_LOG.filters):
    _APS_LOG.addFilter(_SkipCounted())


class Jobs:
    def __init__(self, store: Store, max_workers: int = 8) -> None:
        self.store = store
        self._sched = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max_workers=max_workers)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone="UTC",
        )
        self._sched.add_listener(self._skipped, EVENT_JOB_MAX_INSTANCES)
        self._started = False
        self._running: dict[str, float] = {}  # job -> monotonic start of the run in progress
        self._deadlines: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._watchdog: threading.Thread | None = None

    def start(self) -> None:
        if not self._started:
            self._sched.start()
            self._started = True
            self._stop.clear()
            self._watchdog = threading.Thread(target=self._watch, name="job-watchdog", daemon=True)
            self._watchdog.start()

    def shutdown(self) -> None:
        if self._started:
            self._stop.set()
            self._sched.shutdown(wait=False)
            self._started = False

    # -- stuck and skipped runs -------------------------------------------------------
    def _watch(self) -> None:
        while not self._stop.wait(WATCH_INTERVAL):
            self.check_stuck()

    def check_stuck(self) -> list[str]:
        """Mark the jobs whose run in progress has outlived its deadline (and unmark the others)."""
        now = time.monotonic()
        with self._lock:
            stuck = {j for j, t0 in self._running.items() if now - t0 > self._deadlines.get(j, float("inf"))}
        if any(js.stuck != (name in stuck) for name, js in self.store.snapshot.jobs.items()):
            from .state import frozen_map

            def fn(s):
                return replace(s, jobs=frozen_map({k: v if v.stuck == (k in stuck) else replace(v, stuck=k in stuck)
                                                   for k, v in s.jobs.items()}))

            self.store.update(fn)
            for j in sorted(stuck):
                log.warning("job %s stuck: a run has been in progress for more than its deadline (%.0fs)", j,
                            self._deadlines.get(j, 0))
        return sorted(stuck)

    def _skipped(self, event: object) -> None:
        """APScheduler did not start a run because the previous one is still in progress: count it."""
        job_id = getattr(event, "job_id", None)
        if job_id is None:
            return
        from .state import frozen_map

        def fn(s):
            jobs = dict(s.jobs)
            prev = jobs.get(job_id) or JobStatus(job=job_id)
            jobs[job_id] = replace(prev, skipped=prev.skipped + 1)
            return replace(s, jobs=frozen_map(jobs))

        self.store.update(fn)

    def clear(self) -> None:
        """Remove every job; their status stays, but the interval is forgotten until re-added."""
        from .state import frozen_map

        self._sched.remove_all_jobs()
        self.store.update(lambda s: replace(s, jobs=frozen_map(
            {k: replace(v, interval_seconds=None) for k, v in s.jobs.items()})))
        with self._lock:  # a run still in progress keeps its deadline until it returns
            self._deadlines = {k: v for k, v in self._deadlines.items() if k in self._running}

    def job_ids(self) -> list[str]:
        return [j.id for j in self._sched.get_jobs()]

    def add(self, job_id: str, func: Callable[[], object], schedule: Schedule, run_now: bool = True,
            first_delay: float = 0.0) -> None:
        """Register ``func`` to run every ``schedule.interval`` seconds (first run soon after start).

        The first run comes after ``first_delay``, but never later than one interval: a job
        configured to run every 2s does not wait a start-up delay meant for daily ones.
        """
        if not schedule.enabled:
            return
        from datetime import datetime, timedelta, timezone

        start = datetime.now(timezone.utc) + timedelta(seconds=min(first_delay, schedule.interval))
        with self._lock:
            self._deadlines[job_id] = schedule.deadline_seconds
        self._set_interval(job_id, schedule.interval, schedule.deadline_seconds)
        self._sched.add_job(
            self._wrap(job_id, func),
            trigger="interval",
            seconds=schedule.interval,
            jitter=int(schedule.jitter) or None,
            id=job_id,
            name=job_id,
            replace_existing=True,
            next_run_time=start if run_now else None,
        )

    def _set_interval(self, job_id: str, interval: float, deadline: float) -> None:
        from .state import frozen_map

        def fn(s):
            jobs = dict(s.jobs)
            jobs[job_id] = replace(jobs.get(job_id) or JobStatus(job=job_id), interval_seconds=interval,
                                   deadline_seconds=deadline)
            return replace(s, jobs=frozen_map(jobs))

        self.store.update(fn)

    def run_now(self, job_id: str) -> bool:
        job = self._sched.get_job(job_id)
        if job is None:
            return False
        from datetime import datetime, timezone

        job.modify(next_run_time=datetime.now(timezone.utc))
        return True

    def reschedule_all(self, jump_seconds: float = 0.0) -> list[str]:
        """Re-plan the jobs after the wall clock jumped by ``jump_seconds`` (see :mod:`.clockwatch`).

        Next runs are planned in wall-clock time, so a step back leaves them that much
        further away: every job whose next run now lies beyond one interval (plus jitter)
        runs now instead, as it would have without the jump. A step forward leaves jobs
        overdue: they run once now (coalesced). Either way the scheduler thread is woken,
        because its sleep was computed with the old clock. Returns the jobs moved to now.
        """
        from datetime import datetime, timedelta, timezone

        if not self._started:
            return []
        now = datetime.now(timezone.utc)
        moved = []
        for job in self._sched.get_jobs():
            nxt = job.next_run_time
            interval = getattr(job.trigger, "interval_length", None)
            if nxt is None or interval is None:
                continue  # paused, or not an interval job
            slack = timedelta(seconds=float(interval) + float(getattr(job.trigger, "jitter", None) or 0) + 1.0)
            if nxt > now + slack:
                try:
                    job.modify(next_run_time=now)
                    moved.append(job.id)
                except Exception:  # noqa: BLE001 - removed by a reload meanwhile
                    log.debug("could not re-plan job %s", job.id, exc_info=True)
        self._sched.wakeup()
        log.info("clock jumped %+.1fs: %d job(s) re-planned to run now%s", jump_seconds, len(moved),
                 f" ({', '.join(sorted(moved))})" if moved else "")
        return moved

    def _wrap(self, job_id: str, func: Callable[[], object]) -> Callable[[], None]:
        def run() -> None:
            started_wall = time.time()
            t0 = time.perf_counter()
            with self._lock:
                self._running[job_id] = time.monotonic()
            self._started_run(job_id, started_wall)
            ok = True
            try:
                func()
            except Exception:  # noqa: BLE001 - a job failure is recorded, never fatal
                ok = False
                log.exception("job %s failed", job_id)
            duration = time.perf_counter() - t0
            with self._lock:
                self._running.pop(job_id, None)
            self._record(job_id, started_wall, duration, ok)

        return run

    def _started_run(self, job_id: str, started: float) -> None:
        from .state import frozen_map

        def fn(s):
            jobs = dict(s.jobs)
            jobs[job_id] = replace(jobs.get(job_id) or JobStatus(job=job_id), running_since=started)
            return replace(s, jobs=frozen_map(jobs))

        self.store.update(fn)

    def _record(self, job_id: str, started: float, duration: float, ok: bool) -> None:
        def fn(s):
            jobs = dict(s.jobs)
            prev = jobs.get(job_id) or JobStatus(job=job_id)
            jobs[job_id] = replace(
                prev,
                last_run_at=started + duration,
                last_success_at=(started + duration) if ok else prev.last_success_at,
                last_duration_seconds=duration,
                runs=prev.runs + 1,
                failures=prev.failures + (0 if ok else 1),
                running_since=None,
                stuck=False,
            )
            from .state import frozen_map

            return replace(s, jobs=frozen_map(jobs))

        self.store.update(fn)
