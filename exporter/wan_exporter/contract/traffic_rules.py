"""Recording-rule names of the traffic figures (issue 13), ``level:metric:operations``.

The serving side's families (``wan_requests_total``, ``wan_request_duration_seconds`` ...) are
exposed by the instrumented service, not by the exporter, under the service's own scrape job.
Rules keep ``job`` (the service) and ``model``; they aggregate over instances (replicas), since
an objective is the service's, not one replica's.

The SLO rules are named after their window (``rate5m``, ``rate1h`` ...); the windows come from
``alerting/thresholds.yml`` and a test can shorten them, so those names are made by functions.
"""

from __future__ import annotations

from . import traffic

JOB_MODEL = "job_model"
JOB_MODEL_RESOLUTION = "job_model_resolution"
JOB_MODEL_OUTCOME = "job_model_outcome"
JOB_MODEL_OUTCOME_PHASE = "job_model_outcome_phase"
JOB_MODEL_RANK = "job_model_rank"

LEVEL_LABELS = {
    JOB_MODEL: "job, model",
    JOB_MODEL_RESOLUTION: "job, model, resolution",
    JOB_MODEL_OUTCOME: "job, model, outcome",
    JOB_MODEL_OUTCOME_PHASE: "job, model, outcome, phase",
    JOB_MODEL_RANK: "job, model, rank",
}

# The window of the dashboard figures: short enough to follow a laptop demo, long enough for rate().
PANEL_WINDOW = "5m"
QUANTILES: tuple[tuple[float, str], ...] = ((0.5, "p50"), (0.95, "p95"), (0.99, "p99"))

# Outcomes that are not the service's failure: a client's bad input, a client's cancellation.
NOT_COUNTED_AGAINST_SLO: tuple[str, ...] = ("invalid_input", "cancelled")
assert set(NOT_COUNTED_AGAINST_SLO) <= set(traffic.OUTCOMES)


def _n(level: str, metric: str, operations: str) -> str:
    return f"{level}:{metric}:{operations}"


_W = PANEL_WINDOW

# -- dashboard figures --------------------------------------------------------------------------------
LATENCY_QUANTILE = {qn: _n(JOB_MODEL_RESOLUTION, "wan_request_duration_seconds", f"{qn}_rate{_W}")
                    for _q, qn in QUANTILES}
QUEUE_WAIT_QUANTILE = {qn: _n(JOB_MODEL, "wan_request_queue_wait_seconds", f"{qn}_rate{_W}")
                       for _q, qn in QUANTILES}
REQUESTS_BY_OUTCOME = _n(JOB_MODEL_OUTCOME, "wan_requests", f"rate{_W}")
FAILURES_BY_OUTCOME_PHASE = _n(JOB_MODEL_OUTCOME_PHASE, "wan_request_failures", f"rate{_W}")
VIDEOS_PER_HOUR = _n(JOB_MODEL, "wan_request_videos_per_hour", f"rate{_W}")
REAL_TIME_FACTOR = _n(JOB_MODEL, "wan_request_real_time_factor", f"ratio_rate{_W}")
PIXELS_PER_SECOND = _n(JOB_MODEL, "wan_request_pixels_per_second", f"ratio_rate{_W}")
SECONDS_PER_STEP = _n(JOB_MODEL_RESOLUTION, "wan_request_step_duration_seconds", f"mean_rate{_W}")
# Model FLOPs of the denoising steps over the seconds spent denoising, and that over the GPU's peak.
FLOPS_PER_SECOND = _n(JOB_MODEL, "wan_request_flops_per_second", f"ratio_rate{_W}")
MODEL_FLOPS_UTILIZATION = _n(JOB_MODEL, "wan_request_model_flops_utilization", f"ratio_rate{_W}")

# -- ranks of one generation (a job is one torchrun job: its ranks are the generation's) -----------------
RANK_SECONDS_PER_STEP = _n(JOB_MODEL_RANK, "wan_rank_step_duration_seconds", f"mean_rate{_W}")
# Slowest minus fastest rank's mean step time: ranks in lockstep wait for each other inside a step, so this
# stays near zero unless ranks do unequal work where they do not wait for each other.
RANK_STEP_SKEW = _n(JOB_MODEL, "wan_rank_step_duration_seconds", f"skew_rate{_W}")
# How far the last rank trails the first at the end of the same step (heartbeats of equal step index).
RANK_STEP_END_SKEW = _n(JOB_MODEL, "wan_rank_last_step_timestamp_seconds", "max_minus_min")


# -- service level objectives (one rule per window) ------------------------------------------------------

def requests_ok(window: str) -> str:
    """Successful requests per second: the availability SLI's numerator."""
    return _n(JOB_MODEL, "wan_requests_ok", f"rate{window}")


def requests_counted(window: str) -> str:
    """Requests per second that count for the SLO (every outcome but bad input and cancellation)."""
    return _n(JOB_MODEL, "wan_requests_counted", f"rate{window}")


def availability(window: str) -> str:
    """Share of counted requests that succeeded."""
    return _n(JOB_MODEL, "wan_requests_success", f"ratio_rate{window}")


def requests_fast(window: str) -> str:
    """Successful requests per second that finished within the latency objective's threshold."""
    return _n(JOB_MODEL, "wan_request_duration_seconds_within_objective", f"rate{window}")


def requests_timed(window: str) -> str:
    """Successful requests per second (the latency SLI's denominator)."""
    return _n(JOB_MODEL, "wan_request_duration_seconds_count", f"rate{window}")


def latency(window: str) -> str:
    """Share of successful requests that finished within the threshold."""
    return _n(JOB_MODEL, "wan_request_duration_seconds_within_objective", f"ratio_rate{window}")


# The committed windows (alerting/thresholds.yml's slo.burn_rates): short and long of each tier.
DEFAULT_SLO_WINDOWS: tuple[str, ...] = ("5m", "30m", "1h", "2h", "6h", "1d")
SLO_FUNCTIONS = (requests_ok, requests_counted, availability, requests_fast, requests_timed, latency)


def slo_names(windows: tuple[str, ...] = DEFAULT_SLO_WINDOWS) -> tuple[str, ...]:
    return tuple(fn(w) for w in windows for fn in SLO_FUNCTIONS)


ALL: tuple[str, ...] = (
    *LATENCY_QUANTILE.values(), *QUEUE_WAIT_QUANTILE.values(), REQUESTS_BY_OUTCOME, FAILURES_BY_OUTCOME_PHASE,
    VIDEOS_PER_HOUR, REAL_TIME_FACTOR, PIXELS_PER_SECOND, SECONDS_PER_STEP, FLOPS_PER_SECOND, MODEL_FLOPS_UTILIZATION,
    RANK_SECONDS_PER_STEP, RANK_STEP_SKEW, RANK_STEP_END_SKEW, *slo_names(),
)
