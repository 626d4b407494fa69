"""Ranks 1..N-1 of a parallel benchmark profile: each a plain subprocess that loads the same
pipeline and makes the same call as rank 0 (the benchmark child), measured on its own rank.

``python -m wan_exporter.bench.rank RANK REQUEST_JSON`` prints one JSON line: the rank's figures,
or its error. Started by :class:`.parallel.Ranks`.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from typing import Any

from ..childproc import die_with_parent
from .parallel import StepClock, init_group, rank_device, ready


def rank_main(req: dict[str, Any], rank: int) -> dict[str, Any]:
    """Ranks 1..N-1: the same pipeline and call as rank 0, measured on this rank; its figures, or its error."""
    from ..measure import phases as measure
    from .child import _generate, _load_phase
    from ..load.pipeline import offline_env
    from .request import conditioning_image

    offline_env()
    out: dict[str, Any] = {"rank": rank}
    try:
        import torch

        init_group(req, rank)
        mine = dict(req, device=rank_device(str(req["device"]), rank), keep_loaded=False)
        pipe, image_mode = _load_phase(torch, mine, {"phases": {}}, None)
        measure.install(pipe, image_mode)
        image = conditioning_image(int(req["width"]), int(req["height"]), int(req["seed"])) if image_mode else None
        run = measure.Run(torch, mine["device"], None, generation=1, steps=int(req["steps"]))
        measure.reset_peak(torch, mine["device"])
        clock = StepClock(run)
        ready()
        _generate(pipe, mine, image, run, "none", clock)
        out = clock.figures(rank, torch, mine["device"])
    except BaseException as exc:  # noqa: BLE001 - reported to rank 0, which fails the benchmark with it
        out["error"] = measure.detail(exc)
    with contextlib.suppress(Exception):
        import torch

        torch.distributed.destroy_process_group()
    return out




def main(argv: list[str]) -> int:
    req = json.loads(argv[1])
    # Killed with the benchmark child (rank 0) that started it: a rank whose rank 0 died, was killed at
    # its timeout or was stopped with the exporter would otherwise wait in its collectives for minutes.
    die_with_parent()
    if req.get("_parent") and os.getppid() != int(req["_parent"]):
        return 1  # rank 0 died before this rank could ask to die with it
    print(json.dumps(rank_main(req, int(argv[0]))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
