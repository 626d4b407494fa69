"""Runs the health checks on their schedules and publishes each result to the store.

Jobs ``health.layout``, ``health.headers``, ``health.hash`` and ``health.load`` each walk the
configured models in turn (read from the live config at run time, so a reload applies to
the next run). The layout job's scan of a model's files (:mod:`wan_exporter.scan`) is kept
and read by the header and hash jobs while it is younger than the layout interval, so the
files are walked once per cycle, not once per check. A check that raises is a bug, not a finding: it is logged, the model keeps
its previous result, and the job is recorded as failed.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from pathlib import Path
from typing import Callable

from .. import catalog
from ..config import Config, ModelConfig, state_dir
from ..scheduler import Jobs
from ..state import CheckResult, Snapshot, Store, frozen_map
from ..scan import Scan
from ..scan.cache import ScanCache
from . import hashing, headers, layout, loadcheck
from ..collectors.health import HealthFigures
from ..findings import CHECKS

log = logging.getLogger(__name__)

Check = Callable[[Config, ModelConfig, "Path | None"], "CheckResult | None"]


def publish(store: Store, result: CheckResult) -> None:
    """Put a result in the store, and its time as the last success when it passed."""
    key = (result.model, result.check)

    def fn(s: Snapshot) -> Snapshot:
        checks = dict(s.checks)
        checks[key] = result
        if not result.success:
            return replace(s, checks=frozen_map(checks))
        last = dict(s.check_last_success)
        last[key] = result.finished_at
        return replace(s, checks=frozen_map(checks), check_last_success=frozen_map(last))

    store.update(fn)


class HealthSubsystem:
    """The health checks' jobs and figures; given the store, the scheduler and the live config only."""

    name = "health"

    def __init__(self, store: Store, jobs: Jobs, config: Callable[[], Config], scans: ScanCache | None = None) -> None:
        self.store = store
        self.jobs = jobs
        self.config = config
        self._stop = threading.Event()
        self.scans = scans or ScanCache()  # shared with the checkpoint facts: one walk per cycle

    def parts(self) -> list:
        return [HealthFigures()]

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
        # A cached digest stands in for a read only within half a hash interval: every scheduled
        # run (jitter and long reads included) reads every byte; a restart soon after one does not.
        self._each("hash", lambda cfg, m, d: hashing.check(
            m.name, d, state_dir(cfg), chunk_bytes=cfg.hashing.chunk_bytes,
            rate_limit_bytes_per_second=cfg.hashing.rate_limit_bytes_per_second, stop=self._stop,
            scanned=self.scan_of(cfg, m, d), max_age=cfg.schedules.hash.interval / 2))

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
        from ..pollers import resolve_model_dir

        cfg = self.config()
        failed: list[str] = []
        for m in cfg.models:
            if self._stop.is_set():
                return
            try:
                result = fn(cfg, m, resolve_model_dir(m, cfg))
            except Exception:  # noqa: BLE001 - one model's bug never stops the others
                log.exception("health check %s of %s failed", check, m.name)
                failed.append(m.name)
                continue
            if result is not None:  # None: skipped (another hash run, shutdown)
                publish(self.store, result)
        if failed:
            raise RuntimeError(f"health.{check} raised for {', '.join(failed)}")

    def _prune(self, cfg: Config) -> None:
        """Forget results of models no longer configured (after a reload)."""
        names = {m.name for m in cfg.models}
        self.scans.forget(names)

        def fn(s: Snapshot) -> Snapshot:
            keep = lambda k: k[1] not in CHECKS or k[0] in names  # noqa: E731
            return replace(s, checks=frozen_map({k: v for k, v in s.checks.items() if keep(k)}),
                           check_last_success=frozen_map({k: v for k, v in s.check_last_success.items() if keep(k)}))

        self.store.update(fn)

