"""Wiring: config, store, scheduler, collectors, HTTP server and reloads.

Collectors are registered explicitly and can be switched off (``--no-collector.NAME``).
Subsystems (health checks, benchmarks) are given the store, the scheduler and the live
config, nothing else: they register jobs for the current config and contribute
exposition parts.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from typing import Callable, Collection, Protocol

from prometheus_client import CollectorRegistry

from . import __version__
from .clockwatch import ClockWatch
from .bench.subsystem import BenchmarkSubsystem
from .collectors import COLLECTORS, Part, SnapshotCollector
from .collectors.exporter import ExporterSelf, build_labels
from .collectors.gpu import GpuFigures
from .collectors.host import HostFigures
from .collectors.models import ModelCapabilities
from .config import Config, ConfigError, load_config
from .health.subsystem import HealthSubsystem
from .nvml import NvmlReader
from .pollers import CheckpointPoller, GpuPoller, HostPoller
from .scan.cache import ScanCache
from .scheduler import Jobs
from .web.server import HttpServer, make_app
from .state import Store
from .status import StatusPages

log = logging.getLogger(__name__)

class Subsystem(Protocol):
    name: str

    def parts(self) -> list[Part]: ...

    def register_jobs(self, cfg: Config) -> None: ...

    def shutdown(self) -> None: ...


def _end_children(grace: float = 5.0) -> None:
    """End benchmark and load-check children still running at shutdown (SIGTERM, then SIGKILL).

    Without this, exit waited for the job thread awaiting its child (up to the profile
    timeout), and a supervisor's SIGKILL then orphaned a child that went on holding its GPU.
    Reaping stays with the thread that started the child; this only signals and waits.
    """
    import multiprocessing
    import multiprocessing.connection
    import os
    import signal

    pids: dict[int, int] = {}  # sentinel fd -> pid
    for c in multiprocessing.active_children():
        try:
            pids[c.sentinel] = c.pid
            os.kill(c.pid, signal.SIGTERM)
        except (ValueError, OSError):  # closed by its runner meanwhile, or already gone
            pass
    if not pids:
        return
    log.info("shutting down: ending %d running child process(es)", len(pids))
    try:
        ended = set(multiprocessing.connection.wait(list(pids), timeout=grace))
    except (ValueError, OSError):
        ended = set()
    for fd, pid in pids.items():
        if fd not in ended:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


class App:
    def __init__(self, config: Config, config_path: str | None = None,
                 config_loader: Callable[[], Config] | None = None, collectors: Collection[str] | None = None) -> None:
        """``collectors``: the names of :data:`COLLECTORS` to run (all when None)."""
        self._config = config
        self.config_path = config_path
        if config_loader is None and config_path:
            config_loader = lambda: load_config(config_path)  # noqa: E731
        self._config_loader = config_loader
        self.store = Store()
        self.jobs = Jobs(self.store)
        self.nvml = NvmlReader(timeout=config.exporter.nvml_timeout)
        self.gpu_poller = GpuPoller(self.store, self.nvml)
        self.host_poller = HostPoller(self.store, self.config)
        self.scans = ScanCache()  # the latest scan of each model's files, read by every check and the facts
        self.checkpoint_poller = CheckpointPoller(self.store, self.config, self.scans)
        on = set(COLLECTORS) if collectors is None else set(collectors)
        unknown = on - set(COLLECTORS)
        if unknown:
            raise ValueError(f"unknown collector(s): {', '.join(sorted(unknown))}")
        self.collectors = frozenset(on)
        self.subsystems: list[Subsystem] = []
        if HealthSubsystem.name in on:
            self.subsystems.append(HealthSubsystem(self.store, self.jobs, self.config, self.scans))
        if BenchmarkSubsystem.name in on:
            self.subsystems.append(BenchmarkSubsystem(self.store, self.jobs, self.config, self.scans))
        parts: list[Part] = [part for part in (ExporterSelf(build_labels(__version__)), ModelCapabilities(),
                                               GpuFigures(), HostFigures()) if part.name in on]
        for s in self.subsystems:
            parts.extend(s.parts())
        self.registry = CollectorRegistry(auto_describe=True)
        self.snapshot_collector = SnapshotCollector(self.store, self.config, parts)
        self.registry.register(self.snapshot_collector)
        self.server: HttpServer | None = None
        self.metrics_cache = None  # the pre-rendered /metrics (wan_exporter.web.exposition), once serving
        self._reload_lock = threading.Lock()
        self.clockwatch = ClockWatch(self.store, self.jobs.reschedule_all)
        self.store.set(config_last_reload_success=True, config_last_reload_at=time.time())

    def config(self) -> Config:
        return self._config

    # -- lifecycle -----------------------------------------------------------------
    def start(self, listen_address: str, wsgi_wrapper: Callable | None = None) -> None:
        app = make_app(self.registry, lambda: self.store.snapshot.ready, lambda: [m.name for m in self._config.models],
                       version=lambda: (self.store.snapshot, self._config),
                       sections=self.snapshot_collector.sections,
                       status=StatusPages(lambda: (self.store.snapshot, self._config)))
        self.metrics_cache = app.metrics_cache
        if wsgi_wrapper is not None:
            app = wsgi_wrapper(app)
        self.server = HttpServer(app, listen_address)
        self.server.start()
        log.info("listening on %s (port %d)", listen_address, self.server.port)
        self._register_jobs()
        self.jobs.start()
        self.clockwatch.start()
        threading.Thread(target=self._first_snapshot, name="first-snapshot", daemon=True).start()

    def _first_snapshot(self) -> None:
        """Ready once host, checkpoint and GPU have each been read once (NVML bounded by its timeout)."""
        for poll in (self.host_poller.poll, self.checkpoint_poller.poll, self.gpu_poller.poll):
            try:
                poll()
            except Exception:  # noqa: BLE001
                log.exception("first poll failed")
        self.store.set(ready=True)

    def stop(self) -> None:
        self.clockwatch.stop()
        self.jobs.shutdown()
        if self.metrics_cache is not None:
            self.metrics_cache.close()
        for s in self.subsystems:
            try:
                s.shutdown()
            except Exception:  # noqa: BLE001
                log.exception("subsystem shutdown failed")
        _end_children()
        if self.server is not None:
            self.server.stop()

    def _register_jobs(self) -> None:
        cfg = self._config
        self.jobs.clear()
        sch = cfg.schedules
        delay = 1.0  # first scheduled runs after the synchronous first snapshot
        self.jobs.add("collector.gpu", self.gpu_poller.poll, sch.gpu, first_delay=delay + sch.gpu.interval)
        self.jobs.add("collector.host", self.host_poller.poll, sch.host, first_delay=delay + sch.host.interval)
        self.jobs.add("collector.checkpoint", self.checkpoint_poller.poll, sch.layout,
                      first_delay=delay + sch.layout.interval)
        for s in self.subsystems:
            s.register_jobs(cfg)

    # -- reload --------------------------------------------------------------------
    def reload(self) -> bool:
        """Re-read the config; on any error keep the running one and report the failure."""
        with self._reload_lock:
            if self._config_loader is None:
                log.info("reload requested, but running on an embedded config: nothing to reload")
                return True
            try:
                new = self._config_loader()
            except ConfigError as e:
                log.error("config reload failed, keeping the running config:\n%s", e)
                self.store.set(config_last_reload_success=False)
                return False
            except Exception as e:  # noqa: BLE001
                log.error("config reload failed, keeping the running config: %s", e)
                self.store.set(config_last_reload_success=False)
                return False
            self._config = new
            self.nvml.timeout = new.exporter.nvml_timeout
            self.store.update(lambda s: replace(s, config_last_reload_success=True,
                                                config_last_reload_at=time.time(),
                                                config_generation=s.config_generation + 1))
            self._register_jobs()
            log.info("config reloaded: %d models", len(new.models))
            return True
