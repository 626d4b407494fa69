"""The alerts as data: name, severities, runbook anchor and summary, the one place they are spelled.

``alerting/generate.py`` writes each alert under its row (the summary, the ``severity`` label
and the ``runbook_url`` anchor come from here), and the status page links the same runbook
sections by the same rows. A row is checked when it is made, like a :class:`~.family.Family`:
a malformed name, an unknown severity or a duplicate fails at import.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SEVERITIES = ("critical", "warning", "none")
_NAME = re.compile(r"^(Wan[A-Z][A-Za-z0-9]*|Watchdog)$")


@dataclass(frozen=True)
class Alert:
    """One alert; ``severities`` lists every severity it fires at (tiers of one alert share a name)."""

    name: str
    severities: tuple[str, ...]
    summary: str

    def __post_init__(self) -> None:
        problems = []
        if not _NAME.match(self.name):
            problems.append("name must be CamelCase and start with Wan")
        if not self.severities or not set(self.severities) <= set(SEVERITIES):
            problems.append(f"severities {self.severities!r} must be some of {SEVERITIES}")
        if not self.summary.strip() or "{{" in self.summary:
            problems.append("summary must be a static sentence (templates belong in the description)")
        if problems:
            raise ValueError(f"alert {self.name!r}: " + "; ".join(problems))

    @property
    def anchor(self) -> str:
        """The runbook section's anchor: ``## <name>`` in alerting/runbooks.md, as GitHub links it."""
        return self.name.lower()


W, C = ("warning",), ("critical",)

# -- models ---------------------------------------------------------------------------------------------
MODEL_MISSING = Alert("WanModelMissing", W, "A configured Wan model's files are missing.")
MODEL_INTEGRITY_FAILURE = Alert("WanModelIntegrityFailure", C,
                                "A Wan model's files are missing, truncated, corrupt or unreadable.")
MODEL_HEALTH_DEGRADED = Alert("WanModelHealthDegraded", W, "A Wan model is degraded.")
MODEL_HEALTH_CRITICAL = Alert("WanModelHealthCritical", C, "A Wan model is critical.")
# -- benchmarks ----------------------------------------------------------------------------------------
BENCHMARK_FAILING = Alert("WanBenchmarkFailing", ("warning", "critical"), "Wan benchmark runs are failing.")
BENCHMARK_STALE = Alert("WanBenchmarkStale", W, "No Wan benchmark has succeeded recently.")
GENERATION_SLOW = Alert("WanGenerationSlow", W, "Wan generation is slower than its baseline.")
OUTPUT_INVALID = Alert("WanOutputInvalid", C, "A Wan model produced invalid video (NaN, black or frozen frames).")
BENCHMARK_OOM = Alert("WanBenchmarkOOM", W, "A Wan benchmark ran out of memory.")
GPU_MEMORY_HEADROOM_LOW = Alert("WanGpuMemoryHeadroomLow", W, "A Wan generation peaks close to the device's memory.")
# -- GPUs --------------------------------------------------------------------------------------------------
GPU_HOT = Alert("WanGpuHot", W, "A GPU is running hot.")
GPU_THROTTLING = Alert("WanGpuThrottling", W, "A GPU's clocks are throttled by heat or hardware.")
GPU_XID_ERRORS = Alert("WanGpuXidErrors", W, "A GPU reported XID errors.")
GPU_ECC_ERRORS = Alert("WanGpuEccErrors", C, "A GPU has uncorrected ECC memory errors.")
GPU_LOST = Alert("WanGpuLost", C, "A GPU is no longer visible.")
# -- the exporter --------------------------------------------------------------------------------------
EXPORTER_DOWN = Alert("WanExporterDown", C, "The Wan exporter cannot be scraped.")
EXPORTER_ABSENT = Alert("WanExporterAbsent", C, "No Wan exporter target is known to Prometheus.")
COLLECTOR_FAILING = Alert("WanCollectorFailing", W, "A Wan exporter collector is failing.")
EXPORTER_JOB_STUCK = Alert("WanExporterJobStuck", W, "A Wan exporter job is stuck.")
CONFIG_RELOAD_FAILED = Alert("WanConfigReloadFailed", W, "The Wan exporter's config failed to reload.")
# -- traffic of a Wan service (burn-rate tiers: critical pages, warning tickets) --------------------------
TRAFFIC_ERROR_BUDGET_BURN = Alert("WanTrafficErrorBudgetBurn", ("critical", "warning"),
                                  "A Wan service is failing requests fast enough to spend its error budget.")
TRAFFIC_LATENCY_BUDGET_BURN = Alert("WanTrafficLatencyBudgetBurn", ("critical", "warning"),
                                    "A Wan service's requests are too slow often enough to spend its latency budget.")
# -- ranks of one generation across several GPUs (torchrun) ---------------------------------------------
GENERATION_STALLED = Alert("WanGenerationStalled", C, "A rank of a Wan generation has stopped making progress.")
RANK_SKEW_HIGH = Alert("WanRankSkewHigh", W, "One rank of a Wan generation trails the others.")
# -- the alerting pipeline itself --------------------------------------------------------------------------
WATCHDOG = Alert("Watchdog", ("none",), "The alerting pipeline works.")

# In the order the rule file lists them (and alerting/thresholds.yml's ``for:`` keys).
ALL: tuple[Alert, ...] = (
    MODEL_MISSING, MODEL_INTEGRITY_FAILURE, MODEL_HEALTH_DEGRADED, MODEL_HEALTH_CRITICAL,
    BENCHMARK_FAILING, BENCHMARK_STALE, GENERATION_SLOW, OUTPUT_INVALID, BENCHMARK_OOM, GPU_MEMORY_HEADROOM_LOW,
    GPU_HOT, GPU_THROTTLING, GPU_XID_ERRORS, GPU_ECC_ERRORS, GPU_LOST,
    EXPORTER_DOWN, EXPORTER_ABSENT, COLLECTOR_FAILING, EXPORTER_JOB_STUCK, CONFIG_RELOAD_FAILED,
    TRAFFIC_ERROR_BUDGET_BURN, TRAFFIC_LATENCY_BUDGET_BURN, GENERATION_STALLED, RANK_SKEW_HIGH, WATCHDOG,
)


def _index() -> dict[str, Alert]:
    out: dict[str, Alert] = {}
    for a in ALL:
        if a.name in out:
            raise ValueError(f"alert {a.name!r} is declared twice")
        out[a.name] = a
    return out


BY_NAME: dict[str, Alert] = _index()
