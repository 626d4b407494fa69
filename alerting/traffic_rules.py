"""Traffic rules: figures of the requests a Wan service serves, and its SLO burn-rate alerts.

Read by generate.py, which renders them into the same two rule files as the exporter's rules.
The series come from a service instrumented with ``wan_exporter.instrument`` and scraped
under its own job (``slo.selector`` in thresholds.yml), not from the exporter.

Success ratio and latency SLI are aggregated as numerator and denominator separately, summed
over the service's replicas, then divided (prometheus/docs practices/rules.md). A window with
no counted request gives no series rather than NaN, so an idle service never alerts.

Burn-rate alerts follow the Google SRE workbook's multi-window, multi-burn-rate scheme
("Alerting on SLOs", table 5-8): a tier fires when the error budget burns faster than
``factor`` times the sustainable rate over both its long window (the budget really spent) and
its short window (still burning now, so the alert resolves soon after the cause is gone).
"""

from __future__ import annotations

import sys
from pathlib import Path

_EXPORTER = str(Path(__file__).resolve().parents[1] / "exporter")
if _EXPORTER not in sys.path:  # the contract, without installing the package
    sys.path.insert(0, _EXPORTER)

from wan_exporter.contract import alerts as A  # noqa: E402 - after the path set-up
from wan_exporter.contract import traffic as F  # noqa: E402
from wan_exporter.contract import traffic_rules as names  # noqa: E402

JM = names.LEVEL_LABELS[names.JOB_MODEL]
JMR = names.LEVEL_LABELS[names.JOB_MODEL_RESOLUTION]
JMO = names.LEVEL_LABELS[names.JOB_MODEL_OUTCOME]
JMOP = names.LEVEL_LABELS[names.JOB_MODEL_OUTCOME_PHASE]
JMR_ = names.LEVEL_LABELS[names.JOB_MODEL_RANK]

DURATION = F.REQUEST_DURATION_SECONDS.name
REQUESTS = F.REQUESTS.exposed_name
FAILURES = F.REQUEST_FAILURES.exposed_name
DASHBOARD = ("/d/wan-traffic/wan-traffic?var-job={{ $labels.job | urlquery }}"
             "&var-model={{ $labels.model | urlquery }}")


def le_text(bound: float) -> str:
    """A bucket bound as prometheus_client writes it in ``le`` (300 -> "300.0", 0.25 -> "0.25")."""
    return repr(float(bound))


def slo_windows(s: dict) -> tuple[str, ...]:
    """Every window a burn-rate tier reads, shortest first, each once."""
    from_tiers = {w for tier in s["slo"]["burn_rates"] for w in (tier["short"], tier["long"])}
    return tuple(sorted(from_tiers, key=_seconds))


def _seconds(text: str) -> float:
    import re

    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)(ms|s|m|h|d|w|y)", text))


def recording_groups(s: dict, rec) -> list[dict]:
    slo = s["slo"]
    sel = slo["selector"]
    w = names.PANEL_WINDOW
    excluded = "|".join(names.NOT_COUNTED_AGAINST_SLO)

    panels: list[dict] = []
    for q, qn in names.QUANTILES:
        # A quantile only where requests finished in the window: no NaN series while idle.
        panels.append(rec(names.LATENCY_QUANTILE[qn], f"""
            histogram_quantile({q},
              sum by ({JMR}, le) (rate({DURATION}_bucket{{{sel}}}[{w}]))
              and on ({JMR})
              (sum by ({JMR}) (rate({DURATION}_count{{{sel}}}[{w}])) > 0)
            )
        """))
    for q, qn in names.QUANTILES:
        wait = F.REQUEST_QUEUE_WAIT_SECONDS.name
        panels.append(rec(names.QUEUE_WAIT_QUANTILE[qn], f"""
            histogram_quantile({q},
              sum by ({JM}, le) (rate({wait}_bucket{{{sel}}}[{w}]))
              and on ({JM})
              (sum by ({JM}) (rate({wait}_count{{{sel}}}[{w}])) > 0)
            )
        """))
    panels.append(rec(names.REQUESTS_BY_OUTCOME, f"sum by ({JMO}) (rate({REQUESTS}{{{sel}}}[{w}]))"))
    panels.append(rec(names.FAILURES_BY_OUTCOME_PHASE,
                      f"sum by ({JMOP}) (rate({FAILURES}{{{sel}}}[{w}]))"))
    panels.append(rec(names.VIDEOS_PER_HOUR,
                      f'3600 * sum by ({JM}) (rate({REQUESTS}{{{sel}, outcome="ok"}}[{w}]))'))
    # Seconds of video (or pixels) per second spent generating: both over the same successful requests.
    for name, counter in ((names.REAL_TIME_FACTOR, F.REQUEST_VIDEO_SECONDS.exposed_name),
                          (names.PIXELS_PER_SECOND, F.REQUEST_PIXELS.exposed_name)):
        panels.append(rec(name, f"""
            sum by ({JM}) (rate({counter}{{{sel}}}[{w}]))
            /
            (sum by ({JM}) (rate({DURATION}_sum{{{sel}}}[{w}])) > 0)
        """))
    step = F.REQUEST_STEP_DURATION_SECONDS.name
    panels.append(rec(names.SECONDS_PER_STEP, f"""
        sum by ({JMR}) (rate({step}_sum{{{sel}}}[{w}]))
        /
        (sum by ({JMR}) (rate({step}_count{{{sel}}}[{w}])) > 0)
    """))

    # Achieved FLOP/s: the FLOPs of the successful requests' denoising steps over the same requests'
    # denoise seconds. Utilisation divides each replica's denoise seconds by its own GPU's peak first,
    # so replicas on different GPUs weigh right; replicas without a peak (CPU, unknown GPU) are left
    # out of both sides, and a service with none has no utilisation.
    flops_total = F.REQUEST_FLOPS.exposed_name
    denoise = f'{F.REQUEST_PHASE_DURATION_SECONDS.name}_sum{{{sel}, phase="denoise"}}'
    peak = F.REQUEST_PEAK_FLOPS_PER_SECOND.name
    jim = "job, instance, model"
    panels.append(rec(names.FLOPS_PER_SECOND, f"""
        sum by ({JM}) (rate({flops_total}{{{sel}}}[{w}]))
        /
        (sum by ({JM}) (rate({denoise}[{w}]) and on ({jim}) rate({flops_total}{{{sel}}}[{w}])) > 0)
    """))
    panels.append(rec(names.MODEL_FLOPS_UTILIZATION, f"""
        sum by ({JM}) (rate({flops_total}{{{sel}}}[{w}]) and on ({jim}) {peak}{{{sel}}})
        /
        (sum by ({JM}) (rate({denoise}[{w}]) * on ({jim}) max by ({jim}) ({peak}{{{sel}}})) > 0)
    """))

    ranks = _rank_rules(sel, rec)

    le = le_text(slo["latency_threshold_seconds"])
    sli: list[dict] = []
    for win in slo_windows(s):
        sli += [
            rec(names.requests_ok(win), f'sum by ({JM}) (rate({REQUESTS}{{{sel}, outcome="ok"}}[{win}]))'),
            rec(names.requests_counted(win),
                f'sum by ({JM}) (rate({REQUESTS}{{{sel}, outcome!~"{excluded}"}}[{win}]))'),
            rec(names.availability(win), f"""
                {names.requests_ok(win)}
                /
                ({names.requests_counted(win)} > 0)
            """),
            rec(names.requests_fast(win), f'sum by ({JM}) (rate({DURATION}_bucket{{{sel}, le="{le}"}}[{win}]))'),
            rec(names.requests_timed(win), f"sum by ({JM}) (rate({DURATION}_count{{{sel}}}[{win}]))"),
            rec(names.latency(win), f"""
                {names.requests_fast(win)}
                /
                ({names.requests_timed(win)} > 0)
            """),
        ]
    return [
        {"name": "wan-traffic.rules", "rules": panels},
        {"name": "wan-traffic-ranks.rules", "rules": ranks},
        {"name": "wan-traffic-slo.rules", "rules": sli},
    ]


def _rank_rules(sel: str, rec) -> list[dict]:
    """Skew across the ranks of one generation, from each rank's own series: no collective in any step."""
    w = names.PANEL_WINDOW
    step = F.RANK_STEP_DURATION_SECONDS.name
    ts, idx = F.RANK_LAST_STEP_TIMESTAMP_SECONDS.name, F.RANK_LAST_STEP.name
    return [
        rec(names.RANK_SECONDS_PER_STEP, f"""
            sum by ({JMR_}) (rate({step}_sum{{{sel}}}[{w}]))
            /
            (sum by ({JMR_}) (rate({step}_count{{{sel}}}[{w}])) > 0)
        """),
        rec(names.RANK_STEP_SKEW, f"""
            max by ({JM}) ({names.RANK_SECONDS_PER_STEP})
            -
            min by ({JM}) ({names.RANK_SECONDS_PER_STEP})
        """),
        # Only while every rank reports the same step: the spread of that step's end across ranks.
        rec(names.RANK_STEP_END_SKEW, f"""
            (max by ({JM}) ({ts}{{{sel}}}) - min by ({JM}) ({ts}{{{sel}}}))
            and on ({JM})
            (max by ({JM}) ({idx}{{{sel}}}) == min by ({JM}) ({idx}{{{sel}}}))
        """),
    ]


def _burn(ratio, budget: float, tiers: list[dict]) -> str:
    """Error budget burn of each tier over its long AND short window; tiers joined with ``or``."""
    branches = []
    for t in tiers:
        branches.append(f"""(
              (1 - {ratio(t["long"])}) / {budget:g} > {t["factor"]:g}
              and
              (1 - {ratio(t["short"])}) / {budget:g} > {t["factor"]:g}
            )""")
    return "\n            or\n            ".join(branches)


def _tiers_text(tiers: list[dict]) -> str:
    return ", or ".join(f'{t["factor"]:g}x over {t["long"]} and {t["short"]}' for t in tiers)


def alert_groups(s: dict, alert) -> list[dict]:
    """``alert`` is generate.py's alert builder (for:, runbook and dashboard links added there)."""
    slo = s["slo"]
    M, J = "{{ $labels.model }}", "{{ $labels.job }}"
    burn = '{{ printf "%.1f" $value }}'
    avail, lat = float(slo["availability_objective"]), float(slo["latency_objective"])
    threshold = slo["latency_threshold_seconds"]
    out = []
    for severity in ("critical", "warning"):
        tiers = [t for t in slo["burn_rates"] if t["severity"] == severity]
        if not tiers:
            continue
        what = "pages" if severity == "critical" else "tickets"
        out.append(alert(A.TRAFFIC_ERROR_BUDGET_BURN, f"""
            {_burn(names.availability, 1 - avail, tiers)}
        """,
            f"Model {M} served by job {J} fails requests at {burn} times the rate its availability "
            f"objective ({avail * 100:g}% of requests succeed, bad input and cancellations not counted) can "
            f"sustain ({what} at {_tiers_text(tiers)}).", "traffic", value=burn, severity=severity))
        out.append(alert(A.TRAFFIC_LATENCY_BUDGET_BURN, f"""
            {_burn(names.latency, 1 - lat, tiers)}
        """,
            f"Model {M} served by job {J} finishes too few requests within {threshold:g}s: slow requests come "
            f"at {burn} times the rate its latency objective ({lat * 100:g}% of successful requests within "
            f"{threshold:g}s) can sustain ({what} at {_tiers_text(tiers)}).", "traffic", value=burn,
            severity=severity))
    out.sort(key=lambda r: r["alert"])
    return [{"name": "wan-traffic-slo", "rules": out}, {"name": "wan-traffic-ranks", "rules": _rank_alerts(s, alert)}]


def _rank_alerts(s: dict, alert) -> list[dict]:
    sel = s["slo"]["selector"]
    skew = s["thresholds"]["rank_step_skew_seconds"]
    M, J, R, I = "{{ $labels.model }}", "{{ $labels.job }}", "{{ $labels.rank }}", "{{ $labels.instance }}"
    stalled = F.RANK_STALLED.name
    ts = F.RANK_LAST_STEP_TIMESTAMP_SECONDS.name
    return [
        alert(A.GENERATION_STALLED, f"""
            max by (job, instance, model, rank, collective) ({stalled}{{{sel}}}) == 1
        """,
            f"Rank {R} of model {M} (job {J}, {I}) has a request in flight and has finished no denoising step "
            f"for longer than its stall_after. Collective in flight on it: {{{{ $labels.collective }}}} (none: it "
            f"waits for nothing, so its peers wait for it; compare {F.RANK_COLLECTIVE_SEQUENCE.name} across ranks: the "
            f"rank whose number lags is the stuck one).", "traffic"),
        alert(A.RANK_SKEW_HIGH, f"""
            {names.RANK_STEP_END_SKEW} > {skew:g}
            and on (job, model)
            (time() - max by (job, model) ({ts}{{{sel}}}) < 600)
        """,
            f"The ranks of model {M} (job {J}) end the same denoising step {{{{ printf \"%.2f\" $value }}}}s apart "
            f"(threshold {skew:g}s): one rank does more work outside the collectives, or runs on a slower device.",
            "traffic", value='{{ printf "%.2f" $value }}'),
    ]
