"""One APScheduler scheduler drives all periodic work.

Subsystems register plain callables with :meth:`Jobs.add`; every run is timed and its
outcome recorded in the store as a :class:`JobStatus` (batch-job metrics). Jobs
coalesce missed runs, never overlap themselves, and get jitter so a fleet does not
run its benchmarks in lockstep.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Callable

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from .config import Schedule
from .state import JobStatus, Store

log = logging.getLogger(__name__)


class Jobs:
    def __init__(self, store: Store, max_workers: int = 8) -> None:
        self.store = store
        self._sched = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max_workers=max_workers)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone="UTC",
        )
        self._started = False

    def start(self) -> None:
        if not self._started:
            self._sched.start()
            self._started = True

    def shutdown(self) -> None:
        if self._started:
            self._sched.shutdown(wait=False)
            self._started = False

    def clear(self) -> None:
        self._sched.remove_all_jobs()

    def job_ids(self) -> list[str]:
        return [j.id for j in self._sched.get_jobs()]

    def add(self, job_id: str, func: Callable[[], object], schedule: Schedule, run_now: bool = True,
            first_delay: float = 0.0) -> None:
        """Register ``func`` to run every ``schedule.interval`` seconds (first run soon after start)."""
        if not schedule.enabled:
            return
        from datetime import datetime, timedelta, timezone

        start = datetime.now(timezone.utc) + timedelta(seconds=first_delay)
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

    def run_now(self, job_id: str) -> bool:
        job = self._sched.get_job(job_id)
        if job is None:
            return False
        from datetime import datetime, timezone

        job.modify(next_run_time=datetime.now(timezone.utc))
        return True

    def _wrap(self, job_id: str, func: Callable[[], object]) -> Callable[[], None]:
        def run() -> None:
            started_wall = time.time()
            t0 = time.perf_counter()
            ok = True
            try:
                func()
            except Exception:  # noqa: BLE001 - a job failure is recorded, never fatal
                ok = False
                log.exception("job %s failed", job_id)
            duration = time.perf_counter() - t0
            self._record(job_id, started_wall, duration, ok)

        return run

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
            )
            from .state import frozen_map

            return replace(s, jobs=frozen_map(jobs))

        self.store.update(fn)
