"""Runs the health checks on their schedules and publishes each result to the store.

Jobs ``health.layout``, ``health.headers``, ``health.hash`` and ``health.load`` each walk the
configured models in turn (read from the live config at run time, so a reload applies to
the next run). The layout job's scan of a model's files (:mod:`wan_exporter.scan`) is kept
and read by the header and hash jobs while it is younger than the layout interval, so the
files are walked once per cycle, not once per check. A check that raises is a bug, not a finding: it is logged, the model keeps
its previous result, and the job is recorded as failed.

Each model's check runs on that model's worker (:mod:`wan_exporter.scan.bounded`): a read that
makes no progress within ``exporter.io_timeout`` (a FIFO, a hung mount) is left behind, the
model gets an ``io_timeout`` finding, and the job goes on with the next model on schedule.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

from .. import catalog
from ..config import Config, ModelConfig, state_dir
from ..scheduler import Jobs
from ..state import CheckResult, Snapshot, Store, frozen_map
from ..scan import Scan
from ..scan.bounded import IoTimeout, Stopped, beat, log_timeout
from ..scan.cache import ScanCache
from . import hashing, headers, layout, loadcheck
from ..findings import CHECKS, timed_out

log = logging.getLogger(__name__)

Check = Callable[[Config, ModelConfig, "Path | None"], "CheckResult | None"]


def publish(store: Store, *results: CheckResult) -> None:
    """Put results in the store in one update, and their times as the last success where they passed."""

    def fn(s: Snapshot) -> Snapshot:
        checks = dict(s.checks)
        last = dict(s.check_last_success)
        for result in results:
            key = (result.model, result.check)
            checks[key] = result
            if result.success:
                last[key] = result.finished_at
        return replace(s, checks=frozen_map(checks), check_last_success=frozen_map(last))

    store.update(fn)


PUBLISH_WITHIN = 1.0  # seconds: the longest a finished check's result waits for others of its round


class _Batches:
    """A round's results, published together: every publication re-renders the health series of
    every model, so fifty models checked in a third of a second are one render, not fifty (scrape
    p99 at 50 models: BENCHMARKS.md item 1). A result waits at most ``within`` seconds, so a model
    whose check is slow or blocked never holds back another's result longer than that."""

    def __init__(self, store: Store, within: float = PUBLISH_WITHIN) -> None:
        self.store, self.within = store, within
        self._lock = threading.Lock()
        self._pending: list[CheckResult] = []
        self._timer: threading.Timer | None = None

    def add(self, result: CheckResult) -> None:
        with self._lock:
            self._pending.append(result)
            if self._timer is None:
                self._timer = threading.Timer(self.within, self.flush)
                self._timer.daemon = True
                self._timer.start()

    def flush(self) -> None:
        with self._lock:  # published under the lock: batches reach the store in the order they were made
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            pending, self._pending = self._pending, []
            if pending:
                publish(self.store, *pending)


class HealthSubsystem:
    """The health checks' jobs and figures; given the store, the scheduler and the live config only."""

    name = "health"

    def __init__(self, store: Store, jobs: Jobs, config: Callable[[], Config], scans: ScanCache | None = None) -> None:
        self.store = store
        self.jobs = jobs
        self.config = config
        self._stop = threading.Event()
        self.scans = scans or ScanCache()  # shared with the checkpoint facts: one walk per cycle

    def register_jobs(self, cfg: Config) -> None:
        self._prune(cfg)
        sch = cfg.schedules
        jobs = self.jobs
        # Staggered first runs: the cheap layout check first, the full hash once startup has settled.
        jobs.add("health.layout", self.run_layout, sch.layout, first_delay=1.0)
        jobs.add("health.headers", self.run_headers, sch.headers, first_delay=3.0)
        jobs.add("health.hash", self.run_hash, sch.hash, first_delay=60.0)
        jobs.add("health.load", self.run_load, sch.load, first_delay=10.0)

    def shutdown(self) -> None:
        self._stop.set()  # a hash run stops at its next chunk

    # -- jobs ----------------------------------------------------------------------
    def scan_of(self, cfg: Config, m: ModelConfig, target: object, fresh: bool = False) -> Scan | None:
        """The model's scan: the layout job's while younger than the layout interval, else a new one."""
        return self.scans.get(m.name, target, m.format, cfg.schedules.layout.interval, fresh=fresh)

    def run_layout(self) -> None:
        self._each("layout", lambda cfg, m, d: layout.check(m.name, d, scanned=self.scan_of(cfg, m, d, fresh=True)))

    def run_headers(self) -> None:
        self._each("headers", lambda cfg, m, d: headers.check(m.name, d, catalog.CATALOG.get(m.kind),
                                                              scanned=self.scan_of(cfg, m, d)))

    def run_hash(self) -> None:
        # Every hashed chunk is progress: a long read is not a blocked one (scan.bounded).
        # A cached digest stands in for a read only within half a hash interval: every scheduled
        # run (jitter and long reads included) reads every byte; a restart soon after one does not.
        self._each("hash", lambda cfg, m, d: hashing.check(
            m.name, d, state_dir(cfg), chunk_bytes=cfg.hashing.chunk_bytes,
            rate_limit_bytes_per_second=cfg.hashing.rate_limit_bytes_per_second, stop=self._stop,
            scanned=self.scan_of(cfg, m, d), max_age=cfg.schedules.hash.interval / 2,
            on_chunk=lambda rel, done: beat()))

    def run_load(self) -> None:
        def one(cfg: Config, m: ModelConfig, d: Path | None) -> CheckResult | None:
            sc = self.scan_of(cfg, m, d)
            if (sc is not None and sc.form not in (None, "diffusers")) or not (d is None or isinstance(d, Path)):
                return None  # the load check builds a diffusers pipeline directory; other forms have none
            entry = catalog.CATALOG.get(m.kind)
            r = loadcheck.check(m.name, d, kind=m.kind, pipeline=entry.pipeline if entry else None,
                                timeout=cfg.schedules.load.timeout, kill_grace=cfg.benchmark.kill_grace)
            versions = r.facts.get("versions")
            if versions and not self.store.snapshot.versions:
                self.store.set(versions=frozen_map(versions))
            return r

        self._each("load", one)

    def _each(self, check: str, fn: Check) -> None:
        cfg = self.config()
        failed: list[str] = []
        deadline = cfg.exporter.io_timeout
        if check == "load":  # the load check's child has its own timeout; it is not a blocked read
            deadline = max(deadline, (cfg.schedules.load.timeout or 0) + cfg.benchmark.kill_grace + 5.0)
        batches = _Batches(self.store)
        try:
            self._each_model(check, fn, cfg, deadline, batches, failed)
        finally:
            batches.flush()
        if failed:
            raise RuntimeError(f"health.{check} raised for {', '.join(failed)}")

    def _each_model(self, check: str, fn: Check, cfg: Config, deadline: float, batches: _Batches,
                    failed: list[str]) -> None:
        from ..checkpoint.locate import resolve_model_dir

        for m in cfg.models:
            if self._stop.is_set():
                return
            t0 = time.perf_counter()
            try:
                result = self.scans.lanes.run(m.name, lambda m=m: fn(cfg, m, resolve_model_dir(m, cfg)), deadline,
                                              f"the {check} check", self._stop)
            except Stopped:
                return
            except IoTimeout as e:
                log_timeout(log, e, f"health check {check} of {m.name}")
                result = timed_out(m.name, check, str(e), time.perf_counter() - t0)
            except Exception:  # noqa: BLE001 - one model's bug never stops the others
                log.exception("health check %s of %s failed", check, m.name)
                failed.append(m.name)
                continue
            if result is not None:  # None: skipped (another hash run, shutdown)
                batches.add(result)

    def _prune(self, cfg: Config) -> None:
        """Forget results of models no longer configured (after a reload)."""
        names = {m.name for m in cfg.models}
        self.scans.forget(names)

        def fn(s: Snapshot) -> Snapshot:
            keep = lambda k: k[1] not in CHECKS or k[0] in names  # noqa: E731
            return replace(s, checks=frozen_map({k: v for k, v in s.checks.items() if keep(k)}),
                           check_last_success=frozen_map({k: v for k, v in s.check_last_success.items() if keep(k)}))

        self.store.update(fn)

