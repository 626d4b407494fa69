"""The per-rank row (one generation over several processes, torchrun) of the Traffic and Model detail dashboards."""

from __future__ import annotations

from grafana_foundation_sdk.models import units

from . import common as c
from . import traffic_queries as tq


def ranks(job: bool = True) -> list:
    """The ranks of one generation spread over processes (torchrun): one series per rank."""
    return [
        c.series("Step time by rank",
                 "Mean denoising step time of each rank, 5 m windows (wan_rank_step_duration_seconds). Ranks "
                 "in lockstep wait for a slow rank inside the next collective, so these converge; the step-end "
                 "skew beside shows which rank trails.", units.Seconds, 6,
                 c.prom_query(tq.rank_seconds_per_step(job), "{{job}} {{model}} rank {{rank}}")),
        c.series("Skew across ranks",
                 "How far the last rank ends the same step after the first (heartbeats at an equal step), and "
                 "the slowest minus the fastest rank's mean step time. WanRankSkewHigh fires on the first.",
                 units.Seconds, 6,
                 c.prom_query(tq.rank_step_end_skew(job), "step end {{job}} {{model}}", "A"),
                 c.prom_query(tq.rank_step_skew(job), "mean step {{job}} {{model}}", "B")),
        c.series("Heartbeat age by rank",
                 "Seconds since each rank with a request in flight last ended a step; stalled ranks "
                 "(wan_rank_stalled, the collective they wait in) on top. WanGenerationStalled pages.",
                 units.Seconds, 6,
                 c.prom_query(tq.rank_heartbeat_age(job), "{{job}} {{model}} rank {{rank}}", "A"),
                 c.prom_query(tq.rank_stalled(job), "stalled rank {{rank}} in {{collective}}", "B")),
        c.series("Peak memory by rank", "CUDA peak memory of each rank's last request (absent on CPU).",
                 units.BytesIEC, 6,
                 c.prom_query(tq.rank_peak_memory(job), "{{job}} {{model}} rank {{rank}}")),
    ]
